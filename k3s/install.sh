#!/usr/bin/env bash
# On-prem install of the Temporal platform on k3s. Air-gap friendly and idempotent.
#
# Usage: k3s/install.sh [--dry-run] [--bundle-dir DIR] [--values FILE] [--bootstrap-image REF]
#                       [--postgres cnpg|external] [--visibility postgres|opensearch-operator|external]
#                       [--data-dir DIR] [--config-dir DIR] [--no-secrets] [--root DIR]
#
# Bundle directory (everything the install needs, nothing is downloaded):
#   DIR/k3s                 the k3s binary            (skipped when k3s is already installed)
#   DIR/install-k3s.sh      the k3s install script    (run with INSTALL_K3S_SKIP_DOWNLOAD=true)
#   DIR/images/*.tar[.zst]  image archives, imported by k3s at start (agent/images)
#   DIR/charts/*.tgz        chart archives served by k3s at /static/charts/ to its HelmCharts:
#                           temporal-platform.tgz, kube-prometheus-stack.tgz, keda.tgz,
#                           cloudnative-pg.tgz, opensearch-operator.tgz (optional)
# --bootstrap-image REF     the temporal-bootstrap image repository, without tag (default
#                           temporal-bootstrap: `docker build -t temporal-bootstrap:<chart version> .`
#                           saved into images/); the tag is the chart's version
# Secret names come from ../helm/temporal-platform/secret-names.yaml (the chart's own list).
#
# Every step compares before it writes: running it twice changes nothing the second time.
# Each action is printed as "+ ..."; --dry-run prints them and changes nothing.
# --root DIR installs the files under DIR (node image builds, tests) and runs nothing against
# the host: no sysctl -p, no k3s install script, no kubectl.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
dry_run=false
bundle_dir=""
values_file=""
postgres=cnpg
visibility=postgres
data_dir=/var/lib/rancher/k3s
config_dir=/etc/rancher/k3s
make_secrets=true
namespace=temporal
root=""
bootstrap_image=temporal-bootstrap

usage() { sed -n '2,20p' "$0" | sed 's/^# \{0,1\}//'; }
die() {
  printf 'install.sh: %s\n' "$*" >&2
  exit 2
}
say() { printf '%s\n' "$*"; }

while (($# > 0)); do
  case "$1" in
    --dry-run) dry_run=true ;;
    --bundle-dir) bundle_dir="${2:?--bundle-dir needs a directory}"; shift ;;
    --values) values_file="${2:?--values needs a file}"; shift ;;
    --bootstrap-image) bootstrap_image="${2:?--bootstrap-image needs an image repository}"; shift ;;
    --postgres) postgres="${2:?}"; shift ;;
    --visibility) visibility="${2:?}"; shift ;;
    --data-dir) data_dir="${2:?}"; shift ;;
    --config-dir) config_dir="${2:?}"; shift ;;
    --no-secrets) make_secrets=false ;;
    --root) root="${2:?--root needs a directory}"; shift ;;
    -h | --help) usage; exit 0 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift
done
case "$postgres" in cnpg | external) ;; *) die "--postgres must be cnpg or external" ;; esac
case "$visibility" in postgres | opensearch-operator | external) ;; *) die "--visibility must be postgres, opensearch-operator or external" ;; esac
[[ -z "$values_file" || -r "$values_file" ]] || die "cannot read --values file $values_file"
if [[ ! "$bootstrap_image" =~ ^[a-z0-9][a-z0-9._:/-]*$ || "${bootstrap_image##*/}" == *:* ]]; then
  die "--bootstrap-image must be an image repository without tag or digest, e.g. registry.example.internal/temporal-bootstrap (got '$bootstrap_image'); the tag is the chart's version"
fi
secret_names_file="$here/../helm/temporal-platform/secret-names.yaml"
[[ -r "$secret_names_file" ]] || die "cannot read $secret_names_file (run install.sh from the repository that holds helm/ next to k3s/)"
# secret_name ROLE: the Secret name of ROLE in secret-names.yaml (flat `role: name` lines).
secret_name() {
  local name
  name="$(sed -n "s/^$1: *//p" "$secret_names_file")"
  [[ -n "$name" ]] || die "secret-names.yaml has no role '$1'"
  printf '%s' "$name"
}
if [[ "$dry_run" == false && -z "$root" && "$(id -u)" -ne 0 ]]; then
  die "run as root (or use --dry-run / --root)"
fi
if [[ -n "$root" ]]; then
  root="$(cd "$root" && pwd)"
  data_dir="$root$data_dir"
  config_dir="$root$config_dir"
  make_secrets=false
fi
sysctl_dir="$root/etc/sysctl.d"
bin_dir="$root/usr/local/bin"

# run CMD...: print it, then execute it unless in dry-run mode.
run() {
  printf '+ %s\n' "$*"
  if [[ "$dry_run" == false ]]; then
    "$@"
  fi
}
# host CMD...: like run, but never against an alternate --root.
host() {
  if [[ -n "$root" ]]; then
    printf 'skip (--root): %s\n' "$*"
  else
    run "$@"
  fi
}

# install_file SRC DEST MODE: copy only when the content differs.
install_file() {
  local src="$1" dest="$2" mode="$3"
  if [[ -f "$dest" ]] && cmp -s "$src" "$dest"; then
    say "unchanged $dest"
    return 0
  fi
  run install -D -m "$mode" "$src" "$dest"
}

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT

# ------------------------------------------------------------------ 1. kernel settings
say "== kernel settings required by protect-kernel-defaults"
cat >"$tmp/90-kubelet.conf" <<'EOF'
vm.panic_on_oom=0
vm.overcommit_memory=1
kernel.panic=10
kernel.panic_on_oops=1
vm.max_map_count=262144
EOF
if ! { [[ -f "$sysctl_dir/90-kubelet.conf" ]] && cmp -s "$tmp/90-kubelet.conf" "$sysctl_dir/90-kubelet.conf"; }; then
  install_file "$tmp/90-kubelet.conf" "$sysctl_dir/90-kubelet.conf" 0644
  host sysctl -p "$sysctl_dir/90-kubelet.conf"
else
  say "unchanged $sysctl_dir/90-kubelet.conf"
fi

# ------------------------------------------------------------------ 2. k3s configuration
say "== k3s configuration"
install_file "$here/config.yaml" "$config_dir/config.yaml" 0600
install_file "$here/audit-policy.yaml" "$config_dir/audit-policy.yaml" 0600

# ------------------------------------------------------------------ 3. air-gap content
say "== preloaded images and charts"
shopt -s nullglob
if [[ -n "$bundle_dir" ]]; then
  for image in "$bundle_dir"/images/*.tar "$bundle_dir"/images/*.tar.zst "$bundle_dir"/images/*.tar.gz; do
    install_file "$image" "$data_dir/agent/images/$(basename "$image")" 0644
  done
  for chart in "$bundle_dir"/charts/*.tgz; do
    install_file "$chart" "$data_dir/server/static/charts/$(basename "$chart")" 0644
  done
else
  say "no --bundle-dir: images are pulled by the nodes and charts must already be in $data_dir/server/static/charts"
fi

# ------------------------------------------------------------------ 4. k3s itself
say "== k3s"
if [[ -z "$root" ]] && command -v k3s >/dev/null 2>&1; then
  say "k3s already installed: $(k3s --version 2>/dev/null | head -n1)"
elif [[ -n "$bundle_dir" && -x "$bundle_dir/k3s" && -r "$bundle_dir/install-k3s.sh" ]]; then
  install_file "$bundle_dir/k3s" "$bin_dir/k3s" 0755
  host env INSTALL_K3S_SKIP_DOWNLOAD=true INSTALL_K3S_EXEC=server sh "$bundle_dir/install-k3s.sh"
elif [[ -n "$root" ]]; then
  say "k3s binary not in the bundle: not installed under --root"
elif [[ "$dry_run" == true ]]; then
  say "+ (k3s missing: would need DIR/k3s and DIR/install-k3s.sh from --bundle-dir)"
else
  die "k3s is not installed and --bundle-dir has no k3s binary + install-k3s.sh"
fi

# ------------------------------------------------------------------ 5. auto-deployed manifests
say "== auto-deployed manifests ($data_dir/server/manifests)"
manifests=("$here"/manifests/00-namespaces.yaml "$here"/manifests/10-kube-prometheus-stack.yaml "$here"/manifests/15-keda.yaml)
[[ "$postgres" == cnpg ]] && manifests+=("$here"/manifests/20-cloudnative-pg.yaml)
[[ "$visibility" == opensearch-operator ]] && manifests+=("$here"/optional/30-opensearch-operator.yaml)
for m in "${manifests[@]}"; do
  install_file "$m" "$data_dir/server/manifests/temporal-platform-$(basename "$m")" 0600
done
platform="$tmp/40-temporal-platform.yaml"
if [[ -n "$values_file" ]]; then
  # Replace valuesContent with the rendered values (indented under the block scalar).
  sed '/^  valuesContent: |-$/,$d' "$here/manifests/40-temporal-platform.yaml" >"$platform"
  printf '  valuesContent: |-\n' >>"$platform"
  sed 's/^/    /' "$values_file" >>"$platform"
else
  cp "$here/manifests/40-temporal-platform.yaml" "$platform"
fi
install_file "$platform" "$data_dir/server/manifests/temporal-platform-40-temporal-platform.yaml" 0600
# What only this install knows, merged by k3s' helm-controller over the HelmChart's valuesContent.
cat >"$tmp/41-temporal-platform-k3s.yaml" <<EOF
# Written by k3s/install.sh: values only this install knows, merged over the HelmChart's.
apiVersion: helm.cattle.io/v1
kind: HelmChartConfig
metadata:
  name: temporal-platform
  namespace: kube-system
spec:
  valuesContent: |-
    bootstrap:
      image:
        repository: $bootstrap_image
EOF
install_file "$tmp/41-temporal-platform-k3s.yaml" "$data_dir/server/manifests/temporal-platform-41-temporal-platform-k3s.yaml" 0600

# ------------------------------------------------------------------ 6. credentials
# Generated once into Kubernetes Secrets when missing; never written to disk or printed.
kubectl_() { k3s kubectl "$@"; }
ensure_secret() { # name username
  local name="$1" user="$2"
  if [[ "$dry_run" == true ]]; then
    say "+ create Secret $namespace/$name (basic-auth, random password) if missing"
    return 0
  fi
  if kubectl_ -n "$namespace" get secret "$name" >/dev/null 2>&1; then
    say "unchanged Secret $namespace/$name"
    return 0
  fi
  local password
  password="$(head -c 32 /dev/urandom | base64 | tr -d '/+=\n' | head -c 32)"
  kubectl_ -n "$namespace" create secret generic "$name" --type kubernetes.io/basic-auth \
    --from-literal=username="$user" --from-literal=password="$password" >/dev/null
  say "created Secret $namespace/$name"
}
if [[ "$make_secrets" == true ]]; then
  say "== credentials"
  if [[ "$dry_run" == false ]]; then
    for _ in $(seq 1 60); do
      kubectl_ get namespace "$namespace" >/dev/null 2>&1 && break
      sleep 5
    done
    kubectl_ get namespace "$namespace" >/dev/null 2>&1 || die "namespace $namespace did not appear (is k3s running?)"
  fi
  if [[ "$postgres" == cnpg ]]; then
    ensure_secret "$(secret_name postgres)" temporal
    ensure_secret "$(secret_name postgres_admin)" postgres
  fi
  if [[ "$visibility" == opensearch-operator ]]; then
    ensure_secret temporal-opensearch-admin admin
    ensure_secret "$(secret_name elasticsearch)" temporal
  fi
fi

say "== done"
say "watch progress: k3s kubectl -n kube-system get helmcharts; k3s kubectl -n $namespace get pods"
