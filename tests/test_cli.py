"""The CLI as a user runs it: real subprocesses, real exit codes, a real server on a loopback port."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters

from tests._serve import free_port, serving

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


def test_tools_unknown_group_is_an_error_naming_the_groups() -> None:
    out = _pgcode("tools", "--group", "nosuch", env=_env())
    assert out.returncode == 2 and out.stdout == ""
    assert "'nosuch'" in out.stderr and "core, cron" in out.stderr and "performance" in out.stderr


def test_tools_shows_the_aliases_examples_use() -> None:
    out = _pgcode("tools", "--group", "performance", env=_env())
    assert out.returncode == 0
    line = next(ln for ln in out.stdout.splitlines() if ln.startswith("pg_index_stats "))
    assert "pg.performance.indexStats" in line and "pg.performance.indexUsage" in line
    locks = next(ln for ln in out.stdout.splitlines() if ln.startswith("pg_locks "))
    assert "pg.monitoring.locks" in locks


def test_tools_on_a_read_only_server_shows_what_it_serves() -> None:
    from pgcode.core.registry import load_registry

    full = len(load_registry())
    for out in (_pgcode("tools", env=_env(PGCODE_READ_ONLY="true")), _pgcode("tools", "--read-only", env=_env())):
        assert out.returncode == 0
        served = {ln.split()[0]: ln.split()[2] for ln in out.stdout.splitlines()}
        assert {"pg_read_query", "pg_execute_code", "pg_validate_code"} <= set(served)
        assert not {"pg_write_query", "pg_drop_table", "pg_script_save"} & set(served)
        assert {effect for name, effect in served.items() if name not in ("pg_execute_code", "pg_script_run")} \
            == {"read"}
        assert len(served) < full and f"{len(served)} tools" in out.stderr


README = Path(__file__).resolve().parent.parent / "README.md"


def _readme_desktop_config() -> tuple[str, list[str], dict[str, str]]:
    """The `mcpServers` entry README tells desktop-client users to paste, exactly."""
    blocks = re.findall(r"```json\n(.*?)```", README.read_text(), re.DOTALL)
    config = next(json.loads(b) for b in blocks if '"mcpServers"' in b)
    ((_, server),) = config["mcpServers"].items()
    return server["command"], server["args"], server["env"]


@pytest.mark.anyio
async def test_readme_desktop_config_serves_over_stdio(dsn: str) -> None:
    """README's config launched as a client would (SDK stdio client): it lists the read-only catalog and calls."""
    command, args, env = _readme_desktop_config()
    assert command.endswith("/.venv/bin/pgcode") and args == ["stdio", "--read-only"]
    assert list(env) == ["PGCODE_DATABASE_URL"]
    installed = README.parent / command.split("/pgcode/", 1)[1]  # the clone's .venv, as the quick start makes it
    if not installed.exists():
        installed = Path(sys.executable).with_name("pgcode")  # the venv running these tests
    assert installed.exists()
    env = {"PGCODE_DATABASE_URL": dsn, **{k: v for k, v in os.environ.items() if k == "PYTHONPATH"}}
    async with Client(StdioServerParameters(command=str(installed), args=args, env=env)) as client:
        tools = {t.name: t for t in (await client.list_tools()).tools}
        assert {"pg_read_query", "pg_list_tables", "pg_execute_code"} <= set(tools)
        assert "pg_write_query" not in tools and "pg_drop_table" not in tools
        assert all(t.annotations.read_only_hint for n, t in tools.items() if n not in ("pg_execute_code",
                                                                                        "pg_script_run"))
        ok = await client.call_tool("pg_read_query", {"sql": "SELECT 6 * 7 AS n"})
        assert ok.is_error is False and ok.structured_content["rows"] == [{"n": 42}]
        ran = await client.call_tool("pg_execute_code", {"code": "return (await pg.core.readQuery("
                                                                 "{sql: 'SELECT 1 AS one'})).rows", "readonly": True})
        assert ran.is_error is False and ran.structured_content["result"] == [{"one": 1}]



@pytest.fixture
def served(dsn: str, tmp_path: Path) -> Iterator[str]:
    with serving(_env(PGCODE_DATABASE_URL=dsn), tmp_path / "serve.log") as base:
        yield base


def test_serve_answers_rest_and_mcp_over_a_real_socket(served: str) -> None:
    resp = httpx2.post(f"{served}/v1/tools/pg_read_query", json={"sql": "SELECT 1 AS one"})
    assert resp.status_code == 200 and resp.json()["rows"] == [{"one": 1}]

    async def over_mcp() -> Any:
        async with Client(f"{served}/mcp") as client:
            return await client.call_tool("pg_read_query", {"sql": "SELECT 2 AS two"})

    import anyio

    result = anyio.run(over_mcp)
    assert result.is_error is False and result.structured_content["rows"] == [{"two": 2}]


@pytest.fixture(scope="module")
def demo_dir() -> Iterator[Path]:
    """One embedded demo server's directory for this module (outside pytest's 0700 tree: it runs as its own user)."""
    data_dir = Path(tempfile.mkdtemp(prefix="pgcode-demo-"))
    yield data_dir
    shutil.rmtree(data_dir, ignore_errors=True)


def test_embedded_demo_starts_and_lists_tables(demo_dir: Path) -> None:
    """With no database configured, the CLI starts the embedded PostgreSQL 18 with the demo data."""
    env = _env(PGCODE_EMBEDDED_DIR=str(demo_dir))
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


def test_demo_reset_restores_the_demo_data(demo_dir: Path) -> None:
    """`pgcode demo --reset` drops what a user changed in the demo database and serves it freshly loaded."""
    env = _env(PGCODE_EMBEDDED_DIR=str(demo_dir))
    pending = '{"table": "products", "where": "data->>\'status\' = \'pending\'"}'
    sold = _pgcode("call", "pg_write_query", '{"sql": "UPDATE products SET data = data || \'{\\"status\\": '
                   '\\"sold\\"}\' WHERE data->>\'status\' = \'pending\'"}', env=env, timeout=180)
    assert sold.returncode == 0, sold.stdout + sold.stderr
    assert json.loads(_pgcode("call", "pg_count", pending, env=env).stdout)["count"] == 0
    port = free_port()
    with (demo_dir / "serve.log").open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "pgcode", "demo", "--reset", "--port", str(port)],
                                env=env, stdout=subprocess.DEVNULL, stderr=err)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx2.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx2.HTTPError:
                time.sleep(0.2)
        else:
            pytest.fail(f"pgcode demo did not come up: {(demo_dir / 'serve.log').read_text()}")
        count = httpx2.post(f"{base}/v1/tools/pg_count", content=pending, headers={"content-type": "application/json"})
        assert count.status_code == 200 and count.json()["count"] == 50
    finally:
        proc.terminate()
        proc.wait(timeout=20)
