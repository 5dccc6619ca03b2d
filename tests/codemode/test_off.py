"""PGCODE_CODEMODE=off and --no-codemode: no code-mode tool or route on any face, and the server says so."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.shared.exceptions import MCPError

from pgcode.cli import build_runtime
from pgcode.core.runtime import Runtime
from pgcode.server.app import create_app
from pgcode.server.mcp import build_mcp_server
from pgcode.settings import Settings
from tests._serve import serving

pytestmark = pytest.mark.anyio

CODE_MODE_TOOLS = {"pg_execute_code", "pg_validate_code", "pg_codemode_docs", "pg_execution_list",
                   "pg_execution_get", "pg_execution_stats", "pg_script_save", "pg_script_list", "pg_script_get",
                   "pg_script_update", "pg_script_delete", "pg_script_run"}
_DB_VARS = ("PGCODE_DATABASE_URL", "DATABASE_URL", "PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER",
            "PGSERVICE", "PGCODE_CODEMODE")


def _env(**extra: str) -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in _DB_VARS} | extra


def _pgcode(*args: str, env: dict[str, str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "pgcode", *args], env=env, input=stdin, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture(scope="module")
async def off_rt(settings: Settings) -> AsyncIterator[Runtime]:
    async with build_runtime(settings.model_copy(update={"codemode": False})) as runtime:
        yield runtime


@pytest.fixture
async def off_http(off_rt: Runtime) -> AsyncIterator[httpx2.AsyncClient]:
    app = create_app(off_rt)
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            yield client


# -- REST ------------------------------------------------------------------------------------------------

async def test_rest_catalog_has_no_code_mode_tools(off_http: httpx2.AsyncClient, http: httpx2.AsyncClient) -> None:
    off = {t["name"] for t in (await off_http.get("/v1/tools")).json()["tools"]}
    on = {t["name"] for t in (await http.get("/v1/tools")).json()["tools"]}
    assert on >= CODE_MODE_TOOLS  # positive control: the same catalog with code mode on
    assert not off & CODE_MODE_TOOLS and off == on - CODE_MODE_TOOLS
    assert (await off_http.get("/v1/tools", params={"group": "codemode"})).json()["count"] == 0
    assert "/v1/tools/pg_execute_code" not in (await off_http.get("/openapi.json")).json()["paths"]
    detail = await off_http.get("/v1/tools/pg_execute_code")
    assert detail.status_code == 404 and detail.json()["error"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize(("method", "path"), [
    ("POST", "/v1/execute"), ("POST", "/v1/validate"), ("GET", "/v1/executions"), ("GET", "/v1/executions/stats"),
    ("GET", "/v1/executions/3f2b1c2e-1111-4222-8333-444455556666"), ("GET", "/v1/scripts"), ("POST", "/v1/scripts"),
    ("GET", "/v1/scripts/nightly"), ("PUT", "/v1/scripts/nightly"), ("DELETE", "/v1/scripts/7"),
    ("POST", "/v1/scripts/nightly/run"), ("GET", "/v1/languages"), ("GET", "/v1/docs"),
    ("POST", "/v1/tools/pg_execute_code"), ("POST", "/v1/tools/pg_script_list"),
])
async def test_rest_code_mode_routes_are_404(off_http: httpx2.AsyncClient, method: str, path: str) -> None:
    body = {"code": "return 1"} if method in ("POST", "PUT") else None
    resp = await off_http.request(method, path, json=body)
    assert resp.status_code == 404, resp.text
    assert resp.json()["error"]["code"] == "NOT_FOUND"
    if not path.startswith("/v1/tools/"):
        assert "code mode is off" in resp.json()["error"]["message"].lower()


async def test_rest_other_tools_still_work(off_http: httpx2.AsyncClient) -> None:
    resp = await off_http.post("/v1/tools/pg_read_query", json={"sql": "SELECT 6 * 7 AS n"})
    assert resp.status_code == 200 and resp.json()["rows"] == [{"n": 42}]


async def test_healthz_says_code_mode_is_off(off_http: httpx2.AsyncClient, http: httpx2.AsyncClient) -> None:
    off, on = (await off_http.get("/healthz")).json(), (await http.get("/healthz")).json()
    assert off["codeMode"] == "off" and on["codeMode"] == "on"
    assert off["tools"] == on["tools"] - len(CODE_MODE_TOOLS)


# -- MCP -------------------------------------------------------------------------------------------------

async def test_mcp_lists_no_code_mode_tools_and_says_why(off_rt: Runtime, mcp_client: Any) -> None:
    async with Client(build_mcp_server(off_rt)) as client:
        listed = await client.list_tools()
        names = {t.name for t in listed.tools}
        assert not names & CODE_MODE_TOOLS and "pg_read_query" in names
        assert (listed.meta or {})["pgcode/codeMode"] == "off"
        assert "Code mode is off" in (client.instructions or "")
        with pytest.raises(MCPError) as unknown:  # not served: an unknown tool, a protocol error
            await client.call_tool("pg_execute_code", {"code": "return 1"})
        assert unknown.value.code == -32602
    on = await mcp_client.list_tools()
    assert {t.name for t in on.tools} >= CODE_MODE_TOOLS and (on.meta or {})["pgcode/codeMode"] == "on"
    assert "Code mode is off" not in (mcp_client.instructions or "")


# -- CLI -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("switch", ["flag", "env"])
def test_cli_tools_lists_no_code_mode_tools(switch: str) -> None:
    args, env = (["--no-codemode"], _env()) if switch == "flag" else ([], _env(PGCODE_CODEMODE="off"))
    out = _pgcode("tools", "--json", *args, env=env)
    assert out.returncode == 0, out.stderr
    names = {t["name"] for t in json.loads(out.stdout)}
    assert not names & CODE_MODE_TOOLS and "pg_read_query" in names
    assert "Code mode is off" in out.stderr
    on = _pgcode("tools", "--group", "codemode", env=_env())
    assert on.returncode == 0 and len(on.stdout.strip().splitlines()) == len(CODE_MODE_TOOLS)


def test_cli_run_and_call_refuse_with_code_mode_off(dsn: str, tmp_path: Path) -> None:
    script = tmp_path / "one.js"
    script.write_text("return 1\n")
    run = _pgcode("run", str(script), "--no-codemode", env=_env(PGCODE_DATABASE_URL=dsn))
    assert run.returncode == 2 and "code mode is off" in run.stderr and run.stdout == ""
    call = _pgcode("call", "pg_execute_code", '{"code": "return 1"}',
                   env=_env(PGCODE_DATABASE_URL=dsn, PGCODE_CODEMODE="off"))
    assert call.returncode == 1 and json.loads(call.stdout)["error"]["code"] == "NOT_FOUND"
    works = _pgcode("run", str(script), env=_env(PGCODE_DATABASE_URL=dsn))  # positive control
    assert works.returncode == 0 and json.loads(works.stdout) == 1



@pytest.fixture
def served_off(dsn: str, tmp_path: Path) -> Iterator[str]:
    with serving(_env(PGCODE_DATABASE_URL=dsn, PGCODE_CODEMODE="off"), tmp_path / "serve.log") as base:
        yield base


def test_serve_with_code_mode_off_over_a_real_socket(served_off: str) -> None:
    assert httpx2.get(f"{served_off}/healthz").json()["codeMode"] == "off"
    execute = httpx2.post(f"{served_off}/v1/execute", json={"code": "return 1"})
    assert execute.status_code == 404 and execute.json()["error"]["code"] == "NOT_FOUND"
    names = {t["name"] for t in httpx2.get(f"{served_off}/v1/tools").json()["tools"]}
    assert not names & CODE_MODE_TOOLS and "pg_read_query" in names
