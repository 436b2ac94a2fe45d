# shellcheck shell=bash
# scripts/lib/venv.sh: the project's Python virtualenv at <repo>/.local/venv.
#
# Source it, then call:
#   venv_ensure [PIP_SPEC...]   create the venv if needed, then `pip install -q` only the specs that
#                               are not satisfied yet (name, or name with a version specifier:
#                               "yamllint", "temporalio==1.35.0", "checkov>=3")
#   venv_bin NAME               print the path of NAME in the venv's bin/ directory
#
# Sets TB_VENV (the venv directory; set it before sourcing to use another one) and TB_VENV_PYTHON.
# Safe to call from several scripts at once (a lock file serialises creation and installs).

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  echo "scripts/lib/venv.sh is a library: source it" >&2
  exit 2
fi

_tb_venv_repo_root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
TB_VENV=${TB_VENV:-$_tb_venv_repo_root/.local/venv}
TB_VENV_PYTHON=$TB_VENV/bin/python

# Prints, one a line, the specs from the arguments that the venv does not satisfy.
_venv_unsatisfied() {
  "$TB_VENV_PYTHON" - "$@" <<'PY'
import re
import sys
from importlib import metadata

try:
    from pip._vendor.packaging.requirements import Requirement
except ImportError:  # very old pip: fall back to checking names only
    Requirement = None

for spec in sys.argv[1:]:
    if Requirement is not None:
        req = Requirement(spec)
        name, specifier = req.name, req.specifier
    else:
        name, specifier = re.split(r"[\s<>=!~\[;]", spec, maxsplit=1)[0], None
    try:
        version = metadata.version(name)
    except metadata.PackageNotFoundError:
        print(spec)
        continue
    if specifier and not specifier.contains(version, prereleases=True):
        print(spec)
PY
}

venv_ensure() {
  local python3=${TB_PYTHON3:-python3}
  mkdir -p -- "$(dirname -- "$TB_VENV")"
  (
    # Serialise concurrent callers (other check scripts may run at the same time).
    exec 9>"$TB_VENV.lock"
    flock -w 900 9 || { echo "venv: timed out waiting for $TB_VENV.lock" >&2; exit 1; }

    if ! "$TB_VENV_PYTHON" -c 'import sys' >/dev/null 2>&1; then
      command -v "$python3" >/dev/null 2>&1 || { echo "venv: $python3 not found" >&2; exit 1; }
      echo "venv: creating $TB_VENV" >&2
      rm -rf -- "$TB_VENV"
      if ! "$python3" -m venv "$TB_VENV" >&2; then
        echo "venv: '$python3 -m venv' failed (on Debian: apt-get install python3-venv)" >&2
        exit 1
      fi
    fi
    [[ $# -eq 0 ]] && exit 0

    local out
    out=$(_venv_unsatisfied "$@") || { echo "venv: could not inspect $TB_VENV" >&2; exit 1; }
    [[ -z "$out" ]] && exit 0
    local -a missing
    mapfile -t missing <<<"$out"
    echo "venv: pip install ${missing[*]}" >&2
    "$TB_VENV_PYTHON" -m pip install -q --disable-pip-version-check "${missing[@]}" >&2 ||
      { echo "venv: pip install ${missing[*]} failed" >&2; exit 1; }
  )
}

venv_bin() {
  printf '%s\n' "$TB_VENV/bin/$1"
}
