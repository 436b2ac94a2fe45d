# shellcheck shell=bash
# scripts/lib/opensearch.sh: a single-node OpenSearch for the dev stack, run in a plain JVM from
# Maven Central artifacts (the launcher in scripts/dev-services.d/opensearch: the server jar plus
# the transport-netty4, analysis-common, lang-painless and mapper-extras plugins on the classpath; no security
# plugin, loopback only). No Docker, no distribution tarball.
#
# Source it, then call:
#   opensearch_ensure_built     build the launcher once per version and source, into
#                               ${XDG_CACHE_HOME:-$HOME/.cache}/temporal-bootstrap/opensearch/
#                               <version>-<hash of pom.xml and src/>/ (the launcher jar and every
#                               dependency jar); a no-op when that directory is there. Needs java
#                               (a JDK) and mvn, and Maven Central the first time.
#   opensearch_command DATA_DIR HTTP_PORT TRANSPORT_PORT
#                               fill the array OPENSEARCH_CMD with the java command line of a node
#                               whose files all live under DATA_DIR (path.home; data/, logs/,
#                               config/, tmp/ in it; creates DATA_DIR/tmp and DATA_DIR/logs).
#                               Run it in the background: it prints one "started: ..." line on
#                               stdout once HTTP is up, warnings on stderr, and closes the node on
#                               SIGTERM (exit status 143 then; 1 if it could not start).
#
# Environment:
#   OPENSEARCH_VERSION    2.19.6 unless set: the one place the version is chosen. 3.x works too
#                         (checked with 3.3.2) but needs Java 21+:
#                         JAVA_HOME=/usr/lib/jvm/temurin-25-jdk-amd64
#   JAVA_HOME             the JDK to build and run with (default: java on PATH)
#   OPENSEARCH_JAVA_OPTS  extra JVM flags, appended (e.g. "-Xmx2g" to override the heap)
#   MVN                   the Maven command (default: mvn)
#
# Sets OPENSEARCH_VERSION, OPENSEARCH_LAUNCHER_DIR (the cache directory of this version and
# source) and, through opensearch_command, OPENSEARCH_CMD.
# Safe to call from several scripts at once (a lock file serialises builds; a build goes to a
# temporary directory renamed into place at the end, so a killed build leaves no half cache).

if [[ "${BASH_SOURCE[0]}" == "$0" ]]; then
  echo "scripts/lib/opensearch.sh is a library: source it" >&2
  exit 2
fi

OPENSEARCH_VERSION=${OPENSEARCH_VERSION:-2.19.6}

_tb_opensearch_repo_root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd -P)
_tb_opensearch_src=$_tb_opensearch_repo_root/scripts/dev-services.d/opensearch
_tb_opensearch_cache_root=${XDG_CACHE_HOME:-$HOME/.cache}/temporal-bootstrap/opensearch
# What a first build downloads into ~/.m2 (dependencies plus Maven's plugins), for the message.
_tb_opensearch_download_mb=85
OPENSEARCH_LAUNCHER_DIR=
OPENSEARCH_CMD=()

# The java command: $JAVA_HOME/bin/java when JAVA_HOME is set, else java from PATH.
_opensearch_java() {
  if [[ -n "${JAVA_HOME:-}" ]]; then
    printf '%s\n' "$JAVA_HOME/bin/java"
  else
    printf '%s\n' java
  fi
}

# The Java release that OPENSEARCH_VERSION needs (and that the launcher is compiled for).
_opensearch_java_release() {
  case $OPENSEARCH_VERSION in
    1.* | 2.*) echo 17 ;;
    *) echo 21 ;;
  esac
}

# Checks that java exists and is new enough for OPENSEARCH_VERSION; prints its major version.
_opensearch_check_java() {
  local java major need
  java=$(_opensearch_java)
  need=$(_opensearch_java_release)
  if ! command -v "$java" >/dev/null 2>&1; then
    echo "opensearch: java not found ($java): install a JDK $need+ (apt-get install openjdk-17-jdk-headless) or set JAVA_HOME" >&2
    return 1
  fi
  major=$("$java" -XshowSettings:properties -version 2>&1 |
    awk -F'= ' '/^ *java\.specification\.version =/ {print $2; exit}')
  major=${major#1.}
  if [[ ! $major =~ ^[0-9]+$ ]]; then
    echo "opensearch: could not tell the version of $java" >&2
    return 1
  fi
  if ((major < need)); then
    echo "opensearch: OpenSearch $OPENSEARCH_VERSION needs Java $need+, but $java is Java $major:" \
      "set JAVA_HOME (e.g. JAVA_HOME=/usr/lib/jvm/temurin-25-jdk-amd64)" >&2
    return 1
  fi
  printf '%s\n' "$major"
}

# The cache directory for OPENSEARCH_VERSION and the launcher's current source.
_opensearch_launcher_dir() {
  local hash
  hash=$(cd -- "$_tb_opensearch_src" &&
    find pom.xml src -type f -print0 | LC_ALL=C sort -z | xargs -0 sha256sum | sha256sum | cut -c1-12) ||
    return 1
  printf '%s/%s-%s\n' "$_tb_opensearch_cache_root" "$OPENSEARCH_VERSION" "$hash"
}

# True when DIR holds a finished build (build-info is written last, before the rename).
_opensearch_complete() {
  [[ -f "$1/build-info" && -f "$1/local-opensearch.jar" && -d "$1/lib" ]]
}

opensearch_ensure_built() {
  local dir
  dir=$(_opensearch_launcher_dir) || { echo "opensearch: cannot read $_tb_opensearch_src" >&2; return 1; }
  OPENSEARCH_LAUNCHER_DIR=$dir
  _opensearch_complete "$dir" && return 0
  mkdir -p -- "$_tb_opensearch_cache_root" || return 1
  (
    # Serialise concurrent callers: one builds, the others find the result.
    exec 9>"$_tb_opensearch_cache_root/.lock"
    flock -w 1200 9 || { echo "opensearch: timed out waiting for $_tb_opensearch_cache_root/.lock" >&2; exit 1; }
    _opensearch_complete "$dir" && exit 0

    local java_major release mvn=${MVN:-mvn} javac
    java_major=$(_opensearch_check_java) || exit 1
    release=$(_opensearch_java_release)
    javac=$(dirname -- "$(readlink -f -- "$(command -v "$(_opensearch_java)")")")/javac
    if [[ ! -x "$javac" ]]; then
      echo "opensearch: $javac not found: the build needs a JDK, not a JRE (apt-get install openjdk-17-jdk-headless)" >&2
      exit 1
    fi
    if ! command -v "$mvn" >/dev/null 2>&1; then
      echo "opensearch: $mvn not found: install Maven (apt-get install maven) or set MVN" >&2
      exit 1
    fi

    # Leftovers of killed builds (we hold the lock: nobody else is building).
    rm -rf -- "$_tb_opensearch_cache_root"/.build.*
    local tmp
    tmp=$(mktemp -d "$_tb_opensearch_cache_root/.build.XXXXXX") || exit 1
    trap 'rm -rf -- "$tmp"' EXIT
    mkdir -p -- "$tmp/src" "$tmp/out/lib"
    cp -R -- "$_tb_opensearch_src/pom.xml" "$_tb_opensearch_src/src" "$tmp/src/" || exit 1

    echo "opensearch: building the launcher for OpenSearch $OPENSEARCH_VERSION (Java $java_major;" \
      "first time: downloads ~${_tb_opensearch_download_mb} MB from Maven Central)..." >&2
    local start=$SECONDS
    # JAVA_HOME (when set) is the JDK that mvn compiles with. -U: retry downloads that failed
    # before (Maven caches a failure in ~/.m2 and would not ask again for a day).
    if ! (cd -- "$tmp/src" && "$mvn" -B -q -U package \
      -Dopensearch.version="$OPENSEARCH_VERSION" -Dmaven.compiler.release="$release" \
      -Dlauncher.lib.dir="$tmp/out/lib") >"$tmp/build.log" 2>&1; then
      if grep -qiE 'UnknownHost|Connect(ion)? (timed out|refused)|Network is unreachable|No route to host|transfer failed|Could not transfer|No plugin found for prefix' "$tmp/build.log"; then
        echo "opensearch: Maven Central is unreachable: the first build downloads the OpenSearch jars;" \
          "check the network (or a proxy in ~/.m2/settings.xml) and run again" >&2
      elif grep -qiE 'was not found in|Could not find artifact|Could not resolve dependencies' "$tmp/build.log"; then
        echo "opensearch: an artifact of OpenSearch $OPENSEARCH_VERSION could not be resolved:" \
          "is OPENSEARCH_VERSION a version served on Maven Central?" >&2
      else
        echo "opensearch: the launcher build (mvn package of scripts/dev-services.d/opensearch, OpenSearch $OPENSEARCH_VERSION) failed: the log below says why" >&2
      fi
      echo "opensearch: last lines of the Maven log:" >&2
      tail -n 25 -- "$tmp/build.log" | sed -e $'s/\e\\[[0-9;]*m//g' -e 's/^/  | /' >&2
      exit 1
    fi
    cp -- "$tmp/src/target/local-opensearch.jar" "$tmp/out/" || exit 1
    {
      echo "opensearch_version=$OPENSEARCH_VERSION"
      echo "java_release=$release"
      echo "built_with_java=$java_major"
      echo "built_at=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
    } >"$tmp/out/build-info"
    rm -rf -- "$dir"
    mv -T -- "$tmp/out" "$dir" || { echo "opensearch: could not move the build to $dir" >&2; exit 1; }
    # Builds of this version from older sources (~50 MB each); a node still running from one
    # should be restarted.
    local old
    for old in "$_tb_opensearch_cache_root/$OPENSEARCH_VERSION"-*; do
      if [[ -d $old && $old != "$dir" ]]; then rm -rf -- "$old"; fi
    done
    echo "opensearch: launcher ready in $dir ($((SECONDS - start)) s, $(du -sm -- "$dir" | cut -f1) MB)" >&2
  )
}

opensearch_command() {
  if [[ $# -ne 3 ]]; then
    echo "usage: opensearch_command DATA_DIR HTTP_PORT TRANSPORT_PORT" >&2
    return 2
  fi
  local data=$1 http_port=$2 transport_port=$3 dir
  [[ $data == /* ]] || data=$PWD/$data
  dir=$(_opensearch_launcher_dir) || return 1
  if ! _opensearch_complete "$dir"; then
    echo "opensearch: the launcher for OpenSearch $OPENSEARCH_VERSION is not built: call opensearch_ensure_built first" >&2
    return 1
  fi
  # shellcheck disable=SC2034  # for the caller
  OPENSEARCH_LAUNCHER_DIR=$dir
  _opensearch_check_java >/dev/null || return 1
  mkdir -p -- "$data/tmp" "$data/logs" || return 1

  OPENSEARCH_CMD=(
    "$(_opensearch_java)"
    -Xms512m -Xmx1g -Xss1m -XX:+UseG1GC
    -XX:+ExitOnOutOfMemoryError
    "-XX:ErrorFile=$data/logs/hs_err_pid%p.log"
    # no /tmp/hsperfdata_* file; java.io.tmpdir (Lucene, Netty) under the data dir
    -XX:+PerfDisableSharedMem
    "-Djava.io.tmpdir=$data/tmp"
    -XX:-OmitStackTraceInFastThrow -XX:+ShowCodeDetailsInExceptionMessages
    -Djava.awt.headless=true -Dfile.encoding=UTF-8 -Djna.nosys=true
    # what OpenSearch's own launcher sets for Netty and Log4j
    -Dio.netty.noUnsafe=true -Dio.netty.noKeySetOptimization=true
    -Dio.netty.recycler.maxCapacityPerThread=0 -Dio.netty.allocator.numDirectArenas=0
    -Dlog4j.shutdownHookEnabled=false -Dlog4j2.disable.jmx=true
    # java.util.logging (Lucene's warnings) through Log4j, to the same console lines
    -Djava.util.logging.manager=org.apache.logging.log4j.jul.LogManager
  )
  case $OPENSEARCH_VERSION in
    # 2.x date parsing expects the COMPAT locale data (what its distribution sets on Java 9+)
    1.* | 2.*) OPENSEARCH_CMD+=("-Djava.locale.providers=SPI,COMPAT") ;;
    # 3.x: CLDR (COMPAT is gone in Java 23); Lucene 10 calls madvise through java.lang.foreign
    *) OPENSEARCH_CMD+=("-Djava.locale.providers=SPI,CLDR" --enable-native-access=ALL-UNNAMED) ;;
  esac
  if [[ -n "${OPENSEARCH_JAVA_OPTS:-}" ]]; then
    local -a extra
    read -r -a extra <<<"$OPENSEARCH_JAVA_OPTS"
    OPENSEARCH_CMD+=("${extra[@]}")
  fi
  OPENSEARCH_CMD+=(
    -cp "$dir/local-opensearch.jar:$dir/lib/*"
    dev.temporalbootstrap.opensearch.LocalOpenSearch
    --data-dir "$data" --http-port "$http_port" --transport-port "$transport_port"
  )
}
