# shellcheck shell=bash
# scripts/lib/temporal-server.sh: the real Temporal server and its tools, built from the Go module
# go.temporal.io/server at a release tag and cached by version on this machine (never committed).
#
# Source it, then call:
#   temporal_release_resolve         sets TEMPORAL_RELEASE (e.g. 1.32.2): $TB_TEMPORAL_VERSION, or the
#                                    newest 1.32.x the Go module proxy serves (the newest cached one
#                                    when the proxy cannot be asked)
#   temporal_release_ensure_built    builds temporal-server, temporal-sql-tool and (1.30+)
#                                    temporal-elasticsearch-tool of TEMPORAL_RELEASE once, and copies
#                                    the release's schema/ folder beside them; sets TEMPORAL_HOME
#
# Layout of the cache: ${XDG_CACHE_HOME:-~/.cache}/temporal-bootstrap/temporal/<release>/
#   bin/temporal-server bin/temporal-sql-tool bin/temporal-elasticsearch-tool schema/ .complete
# A build goes into a temporary folder that is renamed when complete: a killed build leaves no
# half cache. Returns non-zero with a message saying what failed and what to do: 2 for a bad
# TB_TEMPORAL_VERSION (not a release, or one the proxy does not serve), 1 for anything else.

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  echo "scripts/lib/temporal-server.sh is a library: source it" >&2
  exit 2
fi

# The release line the stack runs by default, and the Go toolchain that builds it (1.32.x needs
# go >= 1.26.10; the machine's own Go may be older, and the go command fetches this toolchain from
# the module proxy like any module).
TEMPORAL_DEFAULT_LINE=${TEMPORAL_DEFAULT_LINE:-1.32}
TEMPORAL_GOTOOLCHAIN=${TB_GOTOOLCHAIN:-go1.27.3}
TEMPORAL_CACHE_ROOT=${XDG_CACHE_HOME:-$HOME/.cache}/temporal-bootstrap/temporal

_ts_log() { printf 'temporal-server: %s\n' "$*" >&2; }

temporal_release_resolve() {
  if [[ -n ${TB_TEMPORAL_VERSION:-} ]]; then
    if [[ ! $TB_TEMPORAL_VERSION =~ ^1\.[0-9]+\.[0-9]+$ ]]; then
      _ts_log "TB_TEMPORAL_VERSION=$TB_TEMPORAL_VERSION is not a release: use MAJOR.MINOR.PATCH such as 1.32.2"
      return 2
    fi
    TEMPORAL_RELEASE=$TB_TEMPORAL_VERSION
    [[ -f $TEMPORAL_CACHE_ROOT/$TEMPORAL_RELEASE/.complete ]] && return 0
    # Not built yet: refuse a release the proxy does not serve before anything starts. Ask for
    # the exact version: the proxy's version list can omit versions it serves (1.29.7).
    local answer
    if ! answer=$(cd / && GOFLAGS=-mod=mod GOTOOLCHAIN=local timeout 60 go list -m -json "go.temporal.io/server@v$TEMPORAL_RELEASE" 2>&1); then
      if grep -qE '403 Forbidden|404 Not Found|410 Gone|unknown revision|invalid version|not available' <<<"$answer"; then
        _ts_log "the Go module proxy does not serve go.temporal.io/server v$TEMPORAL_RELEASE: pick a served release (go list -m -versions go.temporal.io/server) and set TB_TEMPORAL_VERSION"
        return 2
      fi
    fi
    return 0
  fi
  command -v go >/dev/null 2>&1 || {
    _ts_log "the go command is missing: install Go 1.26+ (the polyglot machine has it) or set PATH"
    return 1
  }
  local versions newest
  if versions=$(cd / && GOFLAGS=-mod=mod GOTOOLCHAIN=local timeout 60 go list -m -versions go.temporal.io/server 2>/dev/null); then
    newest=$(tr ' ' '\n' <<<"$versions" | grep -E "^v${TEMPORAL_DEFAULT_LINE//./\\.}\.[0-9]+$" | sort -V | tail -n 1)
  fi
  if [[ -z ${newest:-} ]]; then
    # Offline: the newest release of the line already built here.
    newest=$(find "$TEMPORAL_CACHE_ROOT" -mindepth 2 -maxdepth 2 -name .complete 2>/dev/null |
      sed -E 's|.*/([0-9.]+)/\.complete$|v\1|' | grep -E "^v${TEMPORAL_DEFAULT_LINE//./\\.}\." | sort -V | tail -n 1)
    if [[ -z $newest ]]; then
      _ts_log "could not list go.temporal.io/server versions from the Go module proxy ($(go env GOPROXY)) and none is cached: check the network, or set TB_TEMPORAL_VERSION"
      return 1
    fi
    _ts_log "the Go module proxy did not answer; using the newest cached release ${newest#v}"
  fi
  TEMPORAL_RELEASE=${newest#v}
}

temporal_release_ensure_built() {
  [[ -n ${TEMPORAL_RELEASE:-} ]] || temporal_release_resolve || return
  TEMPORAL_HOME=$TEMPORAL_CACHE_ROOT/$TEMPORAL_RELEASE
  [[ -f $TEMPORAL_HOME/.complete ]] && return 0

  command -v go >/dev/null 2>&1 || {
    _ts_log "the go command is missing: install Go 1.26+ or set PATH"
    return 1
  }
  mkdir -p -- "$TEMPORAL_CACHE_ROOT"
  local tmp log rc=0
  tmp=$(mktemp -d "$TEMPORAL_CACHE_ROOT/.build-$TEMPORAL_RELEASE.XXXXXX")
  log=$tmp/build.log
  _ts_log "building Temporal server $TEMPORAL_RELEASE and its tools from go.temporal.io/server (first time on this machine: several minutes)"
  local module=go.temporal.io/server
  local -a pkgs=("$module/cmd/server@v$TEMPORAL_RELEASE" "$module/cmd/tools/sql@v$TEMPORAL_RELEASE")
  # temporal-elasticsearch-tool exists from 1.30 on; older releases have no such package.
  local srcdir
  srcdir=$(cd / && GOTOOLCHAIN=$TEMPORAL_GOTOOLCHAIN GOFLAGS=-mod=mod go mod download -json "$module@v$TEMPORAL_RELEASE" 2>/dev/null |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  if [[ -z $srcdir || -d $srcdir/cmd/tools/elasticsearch ]]; then
    pkgs+=("$module/cmd/tools/elasticsearch@v$TEMPORAL_RELEASE")
  fi
  # From /: no go.mod of ours is involved; each build is the module at its release tag.
  (cd / && GOTOOLCHAIN=$TEMPORAL_GOTOOLCHAIN GOFLAGS=-mod=mod CGO_ENABLED=0 GOBIN=$tmp/bin \
    go install -trimpath "${pkgs[@]}") >"$log" 2>&1 &
  local pid=$! start=$SECONDS
  while kill -0 "$pid" 2>/dev/null; do
    sleep 15
    kill -0 "$pid" 2>/dev/null && _ts_log "  still building ($((SECONDS - start))s)"
  done
  wait "$pid" || rc=$?
  if [[ $rc -ne 0 ]]; then
    if grep -qE 'unknown revision|invalid version|not found: |no matching versions|not available|403 Forbidden|404 Not Found|410 Gone' "$log"; then
      _ts_log "the Go module proxy does not serve go.temporal.io/server v$TEMPORAL_RELEASE: pick a served release (go list -m -versions go.temporal.io/server) and set TB_TEMPORAL_VERSION"
      tail -n 15 "$log" | sed 's/^/  | /' >&2
      rm -rf -- "$tmp"
      return 2
    else
      _ts_log "building Temporal $TEMPORAL_RELEASE failed (exit $rc); last lines of the build log:"
    fi
    tail -n 15 "$log" | sed 's/^/  | /' >&2
    rm -rf -- "$tmp"
    return 1
  fi
  mv -f -- "$tmp/bin/server" "$tmp/bin/temporal-server"
  mv -f -- "$tmp/bin/sql" "$tmp/bin/temporal-sql-tool"
  if [[ -f $tmp/bin/elasticsearch ]]; then
    mv -f -- "$tmp/bin/elasticsearch" "$tmp/bin/temporal-elasticsearch-tool"
  fi
  # The release's own schema folder, from the module cache (read-only there: copy and make writable
  # so the cache can be removed with rm).
  local modroot
  modroot=$(cd / && GOTOOLCHAIN=$TEMPORAL_GOTOOLCHAIN GOFLAGS=-mod=mod go mod download -json "$module@v$TEMPORAL_RELEASE" 2>>"$log" |
    sed -n 's/^[[:space:]]*"Dir": "\(.*\)",\{0,1\}$/\1/p')
  if [[ -z $modroot || ! -d $modroot/schema ]]; then
    _ts_log "the module source of go.temporal.io/server v$TEMPORAL_RELEASE has no schema/ folder (module cache: $(go env GOMODCACHE))"
    rm -rf -- "$tmp"
    return 1
  fi
  cp -R -- "$modroot/schema" "$tmp/schema"
  find "$tmp/schema" -name '*.go' -delete
  chmod -R u+w -- "$tmp/schema"
  printf '%s\n' "$TEMPORAL_RELEASE" >"$tmp/.complete"
  rm -rf -- "$TEMPORAL_HOME"
  mv -- "$tmp" "$TEMPORAL_HOME"
  _ts_log "built Temporal $TEMPORAL_RELEASE in $((SECONDS - start))s -> $TEMPORAL_HOME"
}
