"""The CLI as a user runs it: real subprocesses, real exit codes, a real server on a loopback port."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client

_DB_VARS = ("PGCODE_DATABASE_URL", "DATABASE_URL", "PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER",
            "PGSERVICE")


def _env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in _DB_VARS}
    env.update(extra)
    return env


def _pgcode(*args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pgcode", *args], env=env, capture_output=True, text=True,
                          timeout=timeout, check=False)


def test_call_prints_json_and_exits_zero(dsn: str) -> None:
    out = _pgcode("call", "pg_read_query", '{"sql": "SELECT 6 * 7 AS n"}', env=_env(PGCODE_DATABASE_URL=dsn))
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["rows"] == [{"n": 42}]


def test_call_tool_error_exits_one_with_error_json(dsn: str) -> None:
    out = _pgcode("call", "pg_read_query", '{"sql": "DELETE FROM pg_class"}', env=_env(PGCODE_DATABASE_URL=dsn))
    assert out.returncode == 1
    assert json.loads(out.stdout)["error"]["code"] == "INVALID_INPUT"


def test_call_bad_json_exits_two(dsn: str) -> None:
    out = _pgcode("call", "pg_read_query", "{nope", env=_env(PGCODE_DATABASE_URL=dsn))
    assert out.returncode == 2
    assert json.loads(out.stdout)["error"]["code"] == "INVALID_INPUT"


def test_call_libpq_variables_are_a_configured_database(dsn: str) -> None:
    from psycopg.conninfo import conninfo_to_dict

    parts = conninfo_to_dict(dsn)
    env = _env(PGHOST=str(parts.get("host", "")), PGPORT=str(parts.get("port", "5432")),
               PGDATABASE=str(parts.get("dbname", "")), PGUSER=str(parts.get("user", "")),
               PGCODE_EMBEDDED_DIR="/nonexistent/never-used")
    out = _pgcode("call", "pg_read_query", '{"sql": "SELECT current_database() AS db"}', env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["rows"] == [{"db": parts.get("dbname")}]


def test_tools_lists_the_registry() -> None:
    out = _pgcode("tools", "--json", env=_env())
    assert out.returncode == 0
    names = {t["name"] for t in json.loads(out.stdout)}
    assert {"pg_read_query", "pg_transaction_execute"} <= names
    plain = _pgcode("tools", "--group", "transactions", env=_env())
    assert plain.returncode == 0 and len(plain.stdout.strip().splitlines()) == 8


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@pytest.fixture
def served(dsn: str, tmp_path: Path) -> Iterator[str]:
    port = _free_port()
    log = tmp_path / "serve.log"
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "pgcode", "serve", "--port", str(port)],
                                env=_env(PGCODE_DATABASE_URL=dsn), stdout=subprocess.DEVNULL, stderr=err)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx2.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx2.HTTPError:
                time.sleep(0.1)
        else:
            pytest.fail(f"pgcode serve did not come up: {log.read_text()}")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_serve_answers_rest_and_mcp_over_a_real_socket(served: str) -> None:
    resp = httpx2.post(f"{served}/v1/tools/pg_read_query", json={"sql": "SELECT 1 AS one"})
    assert resp.status_code == 200 and resp.json()["rows"] == [{"one": 1}]

    async def over_mcp() -> Any:
        async with Client(f"{served}/mcp") as client:
            return await client.call_tool("pg_read_query", {"sql": "SELECT 2 AS two"})

    import anyio

    result = anyio.run(over_mcp)
    assert result.is_error is False and result.structured_content["rows"] == [{"two": 2}]


def test_embedded_demo_starts_and_lists_tables(tmp_path: Path) -> None:
    """With no database configured, the CLI starts the embedded PostgreSQL 18 with the demo data."""
    env = _env(PGCODE_EMBEDDED_DIR=str(tmp_path / "embedded"))
    out = _pgcode("call", "pg_list_tables", "{}", env=env, timeout=180)
    assert out.returncode == 0, out.stderr
    tables = {t["name"]: t for t in json.loads(out.stdout)}
    assert {"products", "orders", "customers", "order_items", "events"} <= set(tables)
    assert tables["orders"]["row_estimate"] == 40000 and tables["orders"]["size_bytes"] > 1_000_000
    pending = _pgcode("call", "pg_count", '{"table": "products", "where": "data->>\'status\' = \'pending\'"}',
                      env=env, timeout=60)
    assert pending.returncode == 0, pending.stderr
    assert json.loads(pending.stdout)["count"] == 50
    version = _pgcode("call", "pg_read_query", '{"sql": "SHOW server_version_num"}', env=env, timeout=60)
    assert int(json.loads(version.stdout)["rows"][0]["server_version_num"]) >= 180000
