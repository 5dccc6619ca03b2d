"""README's table of /v1/execute outcomes, row by row, over HTTP: what is an HTTP error and what is success: false."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest

from pgcode.core.runtime import Runtime
from pgcode.server.app import create_app
from pgcode.settings import Settings

pytestmark = pytest.mark.anyio


async def _run(http: httpx2.AsyncClient, body: Any, path: str = "/v1/execute") -> tuple[int, dict[str, Any]]:
    resp = await http.post(path, json=body)
    return resp.status_code, resp.json()


async def test_code_that_ran_is_200_whatever_it_did(http: httpx2.AsyncClient) -> None:
    status, out = await _run(http, {"code": "return (await pg.core.readQuery({sql: 'SELECT 41 + 1 AS n'})).rows"})
    assert status == 200 and out["success"] is True and out["result"] == [{"n": 42}]
    failures = {
        "RUNTIME_ERROR": {"code": "throw new Error('boom')"},
        "SYNTAX_ERROR": {"code": "return (("},
        "TIMEOUT": {"code": "while (true) {}", "timeout": 300},
        "READ_ONLY": {"code": "await pg.core.writeQuery({sql: 'CREATE TABLE t_never (i int)'})", "readonly": True},
    }
    for code, body in failures.items():
        status, out = await _run(http, body)
        assert status == 200 and out["success"] is False and out["error"]["code"] == code, (code, out)
        assert out["error"]["message"]


async def test_a_run_refused_before_it_starts_is_400_with_the_run_shape(http: httpx2.AsyncClient) -> None:
    status, out = await _run(http, {"code": "   "})
    assert status == 400 and out["success"] is False and out["error"]["code"] == "MISSING_CODE"
    status, out = await _run(http, {"code": "//" + "x" * (50 * 1024)})
    assert status == 400 and out["success"] is False and out["error"]["code"] == "INVALID_INPUT"
    assert "51202 bytes" in out["error"]["message"]


async def test_a_malformed_request_is_400_invalid_input(http: httpx2.AsyncClient) -> None:
    for body in ([1, 2], {"code": "return 1", "nope": True}, {"code": "return 1", "timeout": 300_001},
                 {"code": "return 1", "timeout": 0}, {"code": 5}):
        status, out = await _run(http, body)
        assert status == 400 and out["error"]["code"] == "INVALID_INPUT" and "success" not in out, (body, out)
    resp = await http.post("/v1/execute", content=b"{not json", headers={"content-type": "application/json"})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "INVALID_INPUT"


async def test_saved_script_runs_follow_the_same_table(http: httpx2.AsyncClient) -> None:
    await http.delete("/v1/scripts/t_newcomer_table")
    saved = await http.post("/v1/scripts", json={"name": "t_newcomer_table", "code": "return args.n * 2"})
    assert saved.status_code == 201
    try:
        status, out = await _run(http, {"args": {"n": 21}}, "/v1/scripts/t_newcomer_table/run")
        assert status == 200 and out["success"] is True and out["result"] == 42
        status, out = await _run(http, {"args": {"n": "x"}, "timeout": 300_001}, "/v1/scripts/t_newcomer_table/run")
        assert status == 400 and out["error"]["code"] == "INVALID_INPUT"
        status, out = await _run(http, {}, "/v1/scripts/t_newcomer_nosuch/run")
        assert status == 404 and out["error"]["code"] == "NOT_FOUND"
    finally:
        await http.delete("/v1/scripts/t_newcomer_table")


@pytest.fixture
async def read_only_http(dsn: str, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[httpx2.AsyncClient]:
    """A read-only server whose code-mode maximum time limit is 300 ms and that allows 2 runs a minute."""
    monkeypatch.setenv("PGCODE_CODEMODE_MAX_TIMEOUT_MS", "300")
    settings = Settings(database_url=dsn, read_only=True, rate_limit_code="2/minute", pool_max_size=4)
    async with Runtime(settings) as rt:
        app = create_app(rt)
        async with app.router.lifespan_context(app), httpx2.AsyncClient(
                transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1") as client:
            yield client


async def test_read_only_server_lowered_timeout_and_rate_limit(read_only_http: httpx2.AsyncClient) -> None:
    status, out = await _run(read_only_http, {"code": "return 1"})
    assert status == 403 and out["error"]["code"] == "READ_ONLY"
    assert "readonly: true" in out["error"]["hint"] and "changes the database" not in out["error"]["message"]

    status, out = await _run(read_only_http, {"code": "while (true) {}", "readonly": True, "timeout": 5000})
    assert status == 200 and out["success"] is False and out["error"]["code"] == "TIMEOUT"
    assert "300 ms" in out["error"]["message"]  # 5000 asked, lowered to the server's maximum

    status, out = await _run(read_only_http, {"code": "return (await pg.core.readQuery({sql: 'SELECT 1 AS one'}))"
                                                      ".rows", "readonly": True})
    assert status == 200 and out["success"] is True and out["result"] == [{"one": 1}]

    resp = await read_only_http.post("/v1/execute", json={"code": "return 1", "readonly": True})
    assert resp.status_code == 429 and resp.json()["error"]["code"] == "RATE_LIMITED"
    assert int(resp.headers["Retry-After"]) >= 1

    listed = await read_only_http.get("/v1/tools")
    names = {t["name"] for t in listed.json()["tools"]}
    assert "pg_execute_code" in names and "pg_write_query" not in names
