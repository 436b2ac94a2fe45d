# shellcheck shell=bash
# scripts/lib/apt.sh: install missing Debian packages, for scripts that need system tools.
#
# Source it, then call:
#   apt_ensure_packages PKG...        install the packages that are not installed yet
#   apt_ensure_commands CMD=PKG...    install PKG for every CMD that is not on PATH
#
# `apt-get update` runs at most once per process, and only when something must be installed.
# Needs root (or passwordless sudo). Waits for the dpkg lock when another install is running.

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  echo "scripts/lib/apt.sh is a library: source it" >&2
  exit 2
fi

_TB_APT_UPDATED=${_TB_APT_UPDATED:-0}

_apt_run() {
  local -a sudo=()
  if [[ $EUID -ne 0 ]]; then
    if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
      sudo=(sudo -n)
    else
      echo "apt: need root (or passwordless sudo) to run: apt-get $*" >&2
      return 1
    fi
  fi
  "${sudo[@]}" env DEBIAN_FRONTEND=noninteractive \
    apt-get -o DPkg::Lock::Timeout=600 -o Acquire::Retries=3 "$@"
}

# apt_is_installed PKG: true when dpkg reports PKG as installed.
apt_is_installed() {
  [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null || true)" == "install ok installed" ]]
}

apt_ensure_packages() {
  local pkg
  local -a missing=()
  for pkg in "$@"; do
    apt_is_installed "$pkg" || missing+=("$pkg")
  done
  [[ ${#missing[@]} -eq 0 ]] && return 0
  echo "apt: installing ${missing[*]}" >&2
  if [[ $_TB_APT_UPDATED -eq 0 ]]; then
    _apt_run update -qq >&2 || { echo "apt: apt-get update failed" >&2; return 1; }
    _TB_APT_UPDATED=1
  fi
  _apt_run install -y -qq --no-install-recommends "${missing[@]}" >&2 ||
    { echo "apt: could not install ${missing[*]}" >&2; return 1; }
}

apt_ensure_commands() {
  local pair
  local -a pkgs=()
  for pair in "$@"; do
    command -v "${pair%%=*}" >/dev/null 2>&1 || pkgs+=("${pair#*=}")
  done
  [[ ${#pkgs[@]} -eq 0 ]] && return 0
  apt_ensure_packages "${pkgs[@]}"
}
