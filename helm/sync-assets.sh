#!/usr/bin/env bash
# Copy the repository's alert rule files and dashboards into the chart before `helm package`.
# Rule files are alerts/*.yml|yaml (promtool unit tests, named *_test.* or under tests/, stay out);
# dashboards are dashboards/*.json.
set -euo pipefail
repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
chart="$repo/helm/temporal-platform"
shopt -s nullglob
rules=("$repo"/alerts/*.yml "$repo"/alerts/*.yaml)
dashboards=("$repo"/dashboards/*.json)
if ((${#rules[@]} > 0)); then
  rm -f "$chart"/files/alerts/*.yml "$chart"/files/alerts/*.yaml
  for f in "${rules[@]}"; do
    case "$(basename "$f")" in
      *_test.yml | *_test.yaml | *.test.yml | *.test.yaml | thresholds.yaml | thresholds.yml) continue ;;
    esac
    cp "$f" "$chart/files/alerts/"
  done
fi
if ((${#dashboards[@]} > 0)); then
  rm -f "$chart"/files/dashboards/*.json
  cp "${dashboards[@]}" "$chart/files/dashboards/"
fi
echo "synced $(find "$chart/files/alerts" -name '*.y*ml' | wc -l) rule files and $(find "$chart/files/dashboards" -name '*.json' | wc -l) dashboards into $chart/files"
