#!/usr/bin/env bash
# scripts/test-postgres.sh - throwaway PostgreSQL test cluster with every extension pgcode needs.
#
#   scripts/test-postgres.sh up      # (default) install what is missing, start, create DB; prints the DSN (only stdout line)
#   scripts/test-postgres.sh down    # stop the cluster and delete its directory
#   scripts/test-postgres.sh status  # exit 0 if running
#   scripts/test-postgres.sh dsn     # print the DSN
#   scripts/test-postgres.sh env     # print exports: eval "$(scripts/test-postgres.sh env)"
#
# Idempotent: every step checks before it acts. Listens on 127.0.0.1 and a unix socket in $PGTEST_DIR only.
# Debian 12 (bookworm). pgvector has no bookworm package for PG15, so it is built from the Debian *source*
# package of a newer suite (default trixie), fetched with an isolated apt config (global apt state untouched).
set -euo pipefail

PG_MAJOR=${PG_MAJOR:-15}
PGTEST_PORT=${PGTEST_PORT:-54329}
PGTEST_DIR=${PGTEST_DIR:-/tmp/pgcode-pg${PG_MAJOR}-${PGTEST_PORT}}
PGTEST_DB=${PGTEST_DB:-pgcode_test}
PGTEST_OSUSER=${PGTEST_OSUSER:-postgres}     # OS user that runs the server when this script runs as root
PGVECTOR_SUITE=${PGVECTOR_SUITE:-trixie}     # Debian suite whose pgvector *source* package is built
PGVECTOR_VERSION=${PGVECTOR_VERSION:-}       # pin, e.g. 0.8.0-1; empty = newest in $PGVECTOR_SUITE
PGVECTOR_MIRROR=${PGVECTOR_MIRROR:-}         # empty = the Debian mirror apt is already configured with
PGTEST_EXTENSIONS=${PGTEST_EXTENSIONS:-"vector postgis pg_cron pg_partman pg_stat_statements pg_stat_kcache citext ltree pgcrypto pg_trgm fuzzystrmatch hypopg"}

PGBIN=/usr/lib/postgresql/$PG_MAJOR/bin
PG_CONFIG=$PGBIN/pg_config
DATA=$PGTEST_DIR/data
LOG=$PGTEST_DIR/server.log
DSN="postgresql://postgres@127.0.0.1:${PGTEST_PORT}/${PGTEST_DB}"
RUNTIME_PKGS=("postgresql-$PG_MAJOR" "postgresql-client-$PG_MAJOR" "postgresql-$PG_MAJOR-postgis-3"
              "postgresql-$PG_MAJOR-cron" "postgresql-$PG_MAJOR-partman" "postgresql-$PG_MAJOR-pg-stat-kcache"
              "postgresql-$PG_MAJOR-hypopg")
BUILD_PKGS=("postgresql-server-dev-$PG_MAJOR" make gcc dpkg-dev)

log() { printf '[test-postgres] %s\n' "$*" >&2; }
die() { log "ERROR: $*"; exit 1; }
timed() {  # run "$@" and log its wall time
  local t0=$EPOCHREALTIME; "$@"
  log "$1 took $(awk -v a="$t0" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }') s"
}
is_root() { [[ $(id -u) -eq 0 ]]; }
as_root() {
  if is_root; then "$@"
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then sudo "$@"
  else die "need root (or passwordless sudo) for: $*"; fi
}
as_pg() { if is_root; then runuser -u "$PGTEST_OSUSER" -- "$@"; else "$@"; fi; }
psql_() { "$PGBIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PGTEST_PORT" -U postgres "$@"; }
pkg_missing() {  # prints the packages among "$@" that are not installed
  local p; for p in "$@"; do
    [[ $(dpkg-query -W -f='${db:Status-Status}' "$p" 2>/dev/null) == installed ]] || printf '%s\n' "$p"
  done
}
vector_installed() {
  [[ -x $PG_CONFIG && -f $("$PG_CONFIG" --pkglibdir)/vector.so && -f $("$PG_CONFIG" --sharedir)/extension/vector.control ]]
}
is_running() { [[ -f $DATA/PG_VERSION ]] && as_pg "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; }

ensure_packages() {
  local missing
  missing=$(pkg_missing "${RUNTIME_PKGS[@]}"; vector_installed || pkg_missing "${BUILD_PKGS[@]}")
  if [[ -z $missing ]]; then log "Debian packages: all present"; return; fi
  log "installing: ${missing//$'\n'/ }"
  as_root apt-get update -qq
  # shellcheck disable=SC2086
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing >&2
}

debian_mirror() {  # base URI of the Debian archive apt already uses for this release (e.g. <mirror>/debian/)
  local codename
  # shellcheck disable=SC1091
  codename=$(. /etc/os-release && echo "$VERSION_CODENAME")
  # shellcheck disable=SC2016  # $(REPO_URI) is apt's format placeholder, not a shell expansion
  apt-get indextargets --format '$(REPO_URI)' "Codename: $codename" 'Label: Debian' 'Created-By: Packages' | head -n1
}

ensure_pgvector() {
  if vector_installed; then log "pgvector: present ($("$PG_CONFIG" --pkglibdir)/vector.so)"; return; fi
  local mirror=${PGVECTOR_MIRROR:-$(debian_mirror)}
  [[ -n $mirror ]] || { as_root apt-get update -qq; mirror=$(debian_mirror); }
  [[ -n $mirror ]] || die "cannot find the Debian mirror in apt's configuration; set PGVECTOR_MIRROR"
  local w; w=$(mktemp -d "${TMPDIR:-/tmp}/pgvector-build.XXXXXX"); chmod 755 "$w"
  mkdir -p "$w/lists/partial" "$w/src"
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] ${mirror%/} $PGVECTOR_SUITE main" > "$w/sources.list"
  if is_root && id _apt >/dev/null 2>&1; then chown _apt "$w/lists/partial" "$w/src"; fi
  local apt=(apt-get -q -o "Dir::Etc::SourceList=$w/sources.list" -o Dir::Etc::SourceParts=/dev/null
             -o "Dir::State::Lists=$w/lists" -o Dir::Cache::pkgcache= -o Dir::Cache::srcpkgcache=)
  log "pgvector: fetching Debian source package from $PGVECTOR_SUITE"
  "${apt[@]}" update >&2
  (cd "$w/src" && "${apt[@]}" source --only-source "pgvector${PGVECTOR_VERSION:+=$PGVECTOR_VERSION}" >&2)
  local srcdir; srcdir=$(find "$w/src" -mindepth 1 -maxdepth 1 -type d -name 'pgvector-*' | head -n1)
  [[ -n $srcdir ]] || die "pgvector source not unpacked"
  log "pgvector: building $(basename "$srcdir") against $("$PG_CONFIG" --version)"
  make -C "$srcdir" -s -j"$(nproc)" PG_CONFIG="$PG_CONFIG" with_llvm=no >&2
  as_root make -C "$srcdir" -s PG_CONFIG="$PG_CONFIG" with_llvm=no install >&2
  rm -rf "$w"
  vector_installed || die "pgvector install failed"
}

ensure_cluster() {
  if is_root && ! id "$PGTEST_OSUSER" >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin "$PGTEST_OSUSER"
  fi
  if [[ ! -d $PGTEST_DIR ]]; then
    if is_root; then install -d -m 700 -o "$PGTEST_OSUSER" -g "$(id -gn "$PGTEST_OSUSER")" "$PGTEST_DIR"
    else install -d -m 700 "$PGTEST_DIR"; fi
  fi
  as_pg test -w "$PGTEST_DIR" || die "$PGTEST_DIR is not writable by the server user ($PGTEST_OSUSER)"
  if [[ ! -f $DATA/PG_VERSION ]]; then
    log "initdb $DATA"
    as_pg rm -rf "$DATA"
    as_pg "$PGBIN/initdb" -D "$DATA" -U postgres --auth=trust --encoding=UTF8 --locale=C.UTF-8 --no-sync \
      > "$PGTEST_DIR/initdb.log" 2>&1 || { cat "$PGTEST_DIR/initdb.log" >&2; die "initdb failed"; }
    echo "include_if_exists = 'pgcode-test.conf'" | as_pg tee -a "$DATA/postgresql.conf" >/dev/null
  fi
  # Rewritten on every run; takes effect at the next (re)start.
  as_pg tee "$DATA/pgcode-test.conf" >/dev/null <<EOF
port = $PGTEST_PORT
listen_addresses = '127.0.0.1'
unix_socket_directories = '$PGTEST_DIR'
shared_preload_libraries = 'pg_stat_statements,pg_cron,pg_stat_kcache'
cron.database_name = '$PGTEST_DB'
cron.host = '$PGTEST_DIR'
pg_stat_statements.track = all
# throwaway test cluster: trade durability for speed
fsync = off
synchronous_commit = off
full_page_writes = off
EOF
  if is_running; then log "server: already running (pid $(head -n1 "$DATA/postmaster.pid"))"; return; fi
  if "$PGBIN/pg_isready" -q -h 127.0.0.1 -p "$PGTEST_PORT"; then
    die "port $PGTEST_PORT is taken by another server; set PGTEST_PORT"
  fi
  log "server: starting on 127.0.0.1:$PGTEST_PORT (log: $LOG)"
  # 9>&- : the server must not inherit the flock fd of cmd_up, or it would hold the lock for its lifetime
  as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$LOG" -w -t 60 start >/dev/null 9>&- \
    || { tail -n 30 "$LOG" >&2; die "server did not start"; }
}

ensure_database() {
  if [[ $(psql_ -d postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$PGTEST_DB'") != 1 ]]; then
    log "creating database $PGTEST_DB"
    psql_ -d postgres -c "CREATE DATABASE \"$PGTEST_DB\""
  fi
  local ext sql=""
  for ext in $PGTEST_EXTENSIONS; do
    case $ext in
      pg_partman) sql+="CREATE SCHEMA IF NOT EXISTS partman; CREATE EXTENSION IF NOT EXISTS pg_partman SCHEMA partman;" ;;
      *) sql+="CREATE EXTENSION IF NOT EXISTS \"$ext\" CASCADE;" ;;
    esac
  done
  psql_ -d "$PGTEST_DB" -c "SET client_min_messages = warning; $sql"
  log "extensions: $(psql_ -d "$PGTEST_DB" -tAc "SELECT string_agg(extname || ' ' || extversion, ', ' ORDER BY extname) FROM pg_extension")"
}

cmd_up() {
  local lock="${TMPDIR:-/tmp}/test-postgres-$PGTEST_PORT.lock"
  exec 9>>"$lock"; chmod 666 "$lock" 2>/dev/null || true
  flock -w 300 9 || die "another test-postgres.sh holds $lock"
  timed ensure_packages
  timed ensure_pgvector
  timed ensure_cluster
  timed ensure_database
  exec 9>&-
  echo "$DSN"
}

cmd_down() {
  if is_running; then
    log "server: stopping"
    as_pg "$PGBIN/pg_ctl" -D "$DATA" -m fast -w -t 60 stop >/dev/null
  fi
  if [[ -d $PGTEST_DIR ]]; then log "removing $PGTEST_DIR"; rm -rf "$PGTEST_DIR"; fi
}

cmd_env() {
  cat <<EOF
export PGHOST=127.0.0.1 PGPORT=$PGTEST_PORT PGUSER=postgres PGDATABASE=$PGTEST_DB
export TEST_DATABASE_URL=$DSN
EOF
}

case ${1:-up} in
  up) cmd_up ;;
  down) cmd_down ;;
  status) if is_running; then echo "running: $DSN"; else echo "stopped"; exit 3; fi ;;
  dsn) echo "$DSN" ;;
  env) cmd_env ;;
  *) echo "usage: $0 [up|down|status|dsn|env]" >&2; exit 2 ;;
esac
