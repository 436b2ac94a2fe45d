# shellcheck shell=bash
# scripts/lib/kube.sh: a real Kubernetes API server (with its etcd) and the Helm CLI for the
# deployment tests, built from the published Go modules and cached by version on this machine
# (never committed). There is no kubelet, scheduler or controller-manager: objects are accepted,
# validated, admitted (Pod Security, RBAC) and stored, but no pod ever runs.
#
# Source it, then call:
#   kube_tools_ensure_built   builds kube-apiserver and etcd (scripts/dev-services.d/kube: the
#                             k8s.io/kubernetes release its go.mod requires) and helm
#                             (helm.sh/helm/v4 at KUBE_HELM_VERSION) once; sets KUBE_BIN
#   kube_crds_dir             downloads the operator modules of KUBE_CRD_MODULES (Go module
#                             proxy) and copies their CRD files into one folder; sets KUBE_CRDS
#   kube_start DIR            starts etcd and kube-apiserver on free loopback ports with state in
#                             DIR; writes DIR/kubeconfig (admin: a static token in group
#                             system:masters) and sets KUBE_API_URL, KUBECONFIG, KUBE_ADMIN_TOKEN
#   kube_stop DIR             stops both (also safe when they never started)
#
# Cache: ${XDG_CACHE_HOME:-~/.cache}/temporal-bootstrap/kube/<kubernetes>-helm<helm>/bin/
#   kube-apiserver etcd helm .complete
# Returns non-zero with a message saying what failed.

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  echo "scripts/lib/kube.sh is a library: source it" >&2
  exit 2
fi

KUBE_WRAPPER_DIR=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../dev-services.d/kube" && pwd)
# One source for the Kubernetes release: the wrapper module's requirement.
KUBE_VERSION=$(sed -n 's/^[[:space:]]*k8s\.io\/kubernetes v\([0-9.]*\).*$/\1/p' "$KUBE_WRAPPER_DIR/go.mod")
KUBE_HELM_VERSION=${KUBE_HELM_VERSION:-4.3.2}
# module@version  folder inside the module whose *.yaml files are CRDs (a glob filters names).
KUBE_CRD_MODULES=(
  # v2.21.1 needs go >= 1.27.4, newer than the toolchains this machine may use.
  "github.com/kedacore/keda/v2@v2.21.0 config/crd/bases/keda.sh_*.yaml"
  "github.com/prometheus-operator/prometheus-operator@v0.85.0 example/prometheus-operator-crd/monitoring.coreos.com_*.yaml"
  "github.com/cert-manager/cert-manager@v1.21.2 deploy/crds/cert-manager.io_*.yaml"
  "github.com/k3s-io/helm-controller@v0.17.9 pkg/crds/yaml/generated/helm.cattle.io_*.yaml"
  "github.com/cloudnative-pg/cloudnative-pg@v1.28.0 config/crd/bases/postgresql.cnpg.io_*.yaml"
)
KUBE_CACHE_ROOT=${XDG_CACHE_HOME:-$HOME/.cache}/temporal-bootstrap/kube

_kube_log() { printf 'kube: %s\n' "$*" >&2; }

kube_tools_ensure_built() {
  [[ -n $KUBE_VERSION ]] || {
    _kube_log "cannot read the k8s.io/kubernetes requirement from $KUBE_WRAPPER_DIR/go.mod"
    return 1
  }
  KUBE_BIN=$KUBE_CACHE_ROOT/$KUBE_VERSION-helm$KUBE_HELM_VERSION/bin
  [[ -f $KUBE_BIN/.complete ]] && return 0
  command -v go >/dev/null 2>&1 || {
    _kube_log "the go command is missing: install Go 1.26+"
    return 1
  }
  mkdir -p -- "$KUBE_CACHE_ROOT"
  local tmp log start=$SECONDS
  tmp=$(mktemp -d "$KUBE_CACHE_ROOT/.build.XXXXXX")
  log=$tmp/build.log
  _kube_log "building kube-apiserver $KUBE_VERSION, etcd and helm $KUBE_HELM_VERSION from the Go module proxy (first time on this machine: about 10 minutes)"
  # The version the binary reports (Helm checks charts' kubeVersion against it); `go build` of a
  # module leaves it at v0.0.0 otherwise.
  local version_pkg=k8s.io/component-base/version
  local ldflags="-s -w -X $version_pkg.gitVersion=v$KUBE_VERSION -X $version_pkg.gitMajor=${KUBE_VERSION%%.*}"
  ldflags+=" -X $version_pkg.gitMinor=$(cut -d. -f2 <<<"$KUBE_VERSION") -X $version_pkg.gitTreeState=clean"
  if ! (cd "$KUBE_WRAPPER_DIR" && GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0 \
    go build -trimpath -ldflags "$ldflags" -o "$tmp/" k8s.io/kubernetes/cmd/kube-apiserver go.etcd.io/etcd/server/v3) >"$log" 2>&1; then
    _kube_log "building kube-apiserver/etcd failed; last lines:"
    tail -n 15 "$log" | sed 's/^/  | /' >&2
    rm -rf -- "$tmp"
    return 1
  fi
  mv -- "$tmp/server" "$tmp/etcd"
  if ! (cd / && GOFLAGS=-mod=mod GOTOOLCHAIN=local CGO_ENABLED=0 GOBIN=$tmp \
    go install -trimpath -ldflags "-s -w" "helm.sh/helm/v4/cmd/helm@v$KUBE_HELM_VERSION") >>"$log" 2>&1; then
    _kube_log "building helm $KUBE_HELM_VERSION failed; last lines:"
    tail -n 15 "$log" | sed 's/^/  | /' >&2
    rm -rf -- "$tmp"
    return 1
  fi
  rm -f -- "$log"
  touch "$tmp/.complete"
  rm -rf -- "$KUBE_BIN"
  mkdir -p -- "$(dirname -- "$KUBE_BIN")"
  mv -- "$tmp" "$KUBE_BIN"
  _kube_log "built in $((SECONDS - start))s -> $KUBE_BIN"
}

kube_crds_dir() {
  KUBE_CRDS=$KUBE_CACHE_ROOT/crds
  local stamp
  stamp=$(printf '%s\n' "${KUBE_CRD_MODULES[@]}" | sha256sum | cut -c1-16)
  KUBE_CRDS=$KUBE_CRDS/$stamp
  [[ -f $KUBE_CRDS/.complete ]] && return 0
  local tmp entry module pattern dir n
  mkdir -p -- "$KUBE_CACHE_ROOT/crds"
  tmp=$(mktemp -d "$KUBE_CACHE_ROOT/crds/.tmp.XXXXXX")
  for entry in "${KUBE_CRD_MODULES[@]}"; do
    module=${entry%% *}
    pattern=${entry#* }
    # A module the proxy refuses prints an "Error" field and exits non-zero: dir stays empty.
    dir=$(
      cd / || exit
      GOFLAGS=-mod=mod GOTOOLCHAIN=local go mod download -json "$module" 2>/dev/null |
        sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p'
    ) || true
    if [[ -z $dir || ! -d $dir ]]; then
      _kube_log "the Go module proxy did not serve $module (its CRDs are needed by the deployment test): $(cd / && GOFLAGS=-mod=mod GOTOOLCHAIN=local go mod download -json "$module" 2>&1 | sed -n 's/^[[:space:]]*"Error": //p')"
      rm -rf -- "$tmp"
      return 1
    fi
    n=0
    for f in $dir/$pattern; do
      [[ -f $f ]] || continue
      cp -- "$f" "$tmp/" && chmod u+w "$tmp/$(basename -- "$f")"
      n=$((n + 1))
    done
    if ((n == 0)); then
      _kube_log "$module has no files matching $pattern"
      rm -rf -- "$tmp"
      return 1
    fi
  done
  printf '%s\n' "${KUBE_CRD_MODULES[@]}" >"$tmp/.complete"
  rm -rf -- "$KUBE_CRDS"
  mv -- "$tmp" "$KUBE_CRDS"
}

_kube_free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

_kube_wait() { # pid url seconds [curl args...]: fails early when the process has exited
  local pid=$1 url=$2 deadline=$((SECONDS + $3))
  shift 3
  while ((SECONDS < deadline)) && kill -0 "$pid" 2>/dev/null; do
    curl -fsS --max-time 2 "$@" "$url" >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  return 1
}

kube_start() {
  local dir=$1
  [[ -n ${KUBE_BIN:-} ]] || kube_tools_ensure_built || return
  mkdir -p -- "$dir/etcd" "$dir/certs"
  chmod 0700 "$dir"
  local etcd_port peer_port api_port
  etcd_port=$(_kube_free_port)
  peer_port=$(_kube_free_port)
  api_port=$(_kube_free_port)
  # The ServiceAccount token signing key, and an admin token (random, this run only).
  [[ -f $dir/sa.key ]] || openssl ecparam -name prime256v1 -genkey -noout -out "$dir/sa.key" 2>/dev/null
  openssl ec -in "$dir/sa.key" -pubout -out "$dir/sa.pub" 2>/dev/null
  KUBE_ADMIN_TOKEN=$(head -c 24 /dev/urandom | base64 | tr -d '/+=')
  printf '%s,admin,admin-uid,system:masters\n' "$KUBE_ADMIN_TOKEN" >"$dir/tokens.csv"
  chmod 0600 "$dir/tokens.csv" "$dir/sa.key"

  "$KUBE_BIN/etcd" --data-dir "$dir/etcd" --name kube-test \
    --listen-client-urls "http://127.0.0.1:$etcd_port" --advertise-client-urls "http://127.0.0.1:$etcd_port" \
    --listen-peer-urls "http://127.0.0.1:$peer_port" --initial-advertise-peer-urls "http://127.0.0.1:$peer_port" \
    --initial-cluster "kube-test=http://127.0.0.1:$peer_port" --log-level warn \
    >"$dir/etcd.log" 2>&1 &
  echo $! >"$dir/etcd.pid"
  if ! _kube_wait "$(cat "$dir/etcd.pid")" "http://127.0.0.1:$etcd_port/health" 60; then
    _kube_log "etcd did not become healthy; see $dir/etcd.log"
    tail -n 10 "$dir/etcd.log" | sed 's/^/  | /' >&2
    return 1
  fi
  "$KUBE_BIN/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$etcd_port" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$api_port" \
    --cert-dir "$dir/certs" \
    --token-auth-file "$dir/tokens.csv" \
    --authorization-mode Node,RBAC \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-account-key-file "$dir/sa.pub" --service-account-signing-key-file "$dir/sa.key" \
    --service-cluster-ip-range 10.96.0.0/16 \
    --enable-priority-and-fairness=false \
    --endpoint-reconciler-type none \
    --allow-privileged=true \
    >"$dir/apiserver.log" 2>&1 &
  echo $! >"$dir/apiserver.pid"
  KUBE_API_URL=https://127.0.0.1:$api_port
  if ! _kube_wait "$(cat "$dir/apiserver.pid")" "$KUBE_API_URL/readyz" 120 -k -H "Authorization: Bearer $KUBE_ADMIN_TOKEN"; then
    _kube_log "kube-apiserver did not become ready; see $dir/apiserver.log"
    tail -n 15 "$dir/apiserver.log" | sed 's/^/  | /' >&2
    return 1
  fi
  # The serving certificate it generated for itself is its own CA.
  cat >"$dir/kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters:
  - name: test
    cluster:
      server: $KUBE_API_URL
      certificate-authority: $dir/certs/apiserver.crt
users:
  - name: admin
    user:
      token: $KUBE_ADMIN_TOKEN
contexts:
  - name: test
    context: { cluster: test, user: admin }
current-context: test
EOF
  chmod 0600 "$dir/kubeconfig"
  KUBECONFIG=$dir/kubeconfig
  export KUBE_API_URL KUBECONFIG KUBE_ADMIN_TOKEN
  _kube_log "kube-apiserver $KUBE_VERSION ready at $KUBE_API_URL (etcd 127.0.0.1:$etcd_port)"
}

kube_stop() {
  local dir=$1 name pid
  for name in apiserver etcd; do
    [[ -f $dir/$name.pid ]] || continue
    pid=$(cat "$dir/$name.pid")
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
    rm -f -- "$dir/$name.pid"
  done
}
