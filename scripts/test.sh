#!/usr/bin/env bash
# Install everything the tests need and run them, on a fresh Debian 12 machine or a warm one:
# Python dependencies into .venv, the PostgreSQL 15 test cluster with every extension
# (scripts/test-postgres.sh), lint and types, then the suite against PostgreSQL 15 and again
# against the embedded PostgreSQL 18. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

log() { printf '[test] %s\n' "$*" >&2; }

if [[ ! -x .venv/bin/python ]]; then
  log "creating .venv"
  python3 -m venv .venv
fi
log "installing pgcode and its test dependencies"
.venv/bin/python -m pip install -q --disable-pip-version-check -e '.[test]'

if ! command -v redis-server >/dev/null; then
  log "installing redis-server (the shared rate-limit tests start one on a loopback port)"
  sudo_=""; [[ $(id -u) -eq 0 ]] || sudo_="sudo -n"
  $sudo_ apt-get update -qq
  $sudo_ env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server >&2
fi

log "starting a fresh PostgreSQL 15 test cluster"
scripts/test-postgres.sh down
scripts/test-postgres.sh up >/dev/null
eval "$(scripts/test-postgres.sh env)"

log "ruff, mypy and the import layers"
.venv/bin/ruff check pgcode tests bench
.venv/bin/mypy
.venv/bin/lint-imports --no-cache

log "tests against PostgreSQL 15 (${TEST_DATABASE_URL})"
.venv/bin/python -m pytest "$@"

log "tests against the embedded PostgreSQL 18"
PGCODE_TEST_SERVER=embedded .venv/bin/python -m pytest "$@"
