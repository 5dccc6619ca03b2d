"""pg_validate_code compiles and never runs: code that closes its wrapper gets a syntax verdict in milliseconds,
and no check takes a sandbox worker (REST, MCP, saved scripts)."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx2
import pytest

from pgcode.codemode.engine import engine
from pgcode.core.runtime import Runtime
from pgcode.types import LOCAL_PRINCIPAL, Principal, Scope
from tests.codemode._helpers import ok
from tests.fix_db import assert_tool_error

pytestmark = pytest.mark.anyio

BUSY = "}); const t0 = Date.now(); while (Date.now() - t0 < 5000) {} (async () => {"
"""Closes the wrapper an execution puts around the code and busy-loops for 5 s if anything evaluates it."""


def _syntax_error(out: dict[str, Any]) -> None:
    assert out["valid"] is False and out["errors"][0]["code"] == "SYNTAX_ERROR", out
    assert out["errors"][0]["line"] == 1


async def test_rest_validate_of_wrapper_escape_is_a_quick_syntax_error_and_executions_go_on(
        http: httpx2.AsyncClient) -> None:
    assert (await http.post("/v1/execute", json={"code": "return 0"})).status_code == 200  # pool started
    started = time.monotonic()

    async def execute() -> tuple[float, Any]:
        resp = await http.post("/v1/execute", json={"code": "return 41 + 1"})
        return time.monotonic() - started, resp.json()

    validations = [http.post("/v1/validate", json={"code": BUSY}) for _ in range(4)]
    *answers, (executed_after, executed) = await asyncio.gather(*validations, execute())
    elapsed = time.monotonic() - started
    for resp in answers:
        assert resp.status_code == 200
        _syntax_error(resp.json())
    assert ok(executed) == 42
    assert executed_after < 2.5 and elapsed < 3.0, (executed_after, elapsed)  # a run would take 5 s each
    good = (await http.post("/v1/validate", json={"code": "const t = await pg.core.listTables();\nreturn t"})).json()
    assert good["valid"] is True and good["language"] == "javascript"


async def test_validate_takes_no_worker_even_when_all_are_busy(rt: Runtime) -> None:
    cm = engine(rt)
    pool = await cm.pool()
    busy_code = "const t0 = Date.now(); while (Date.now() - t0 < 2500) {} return 'done'"
    # one admin per worker: a single principal may hold only workers - 1 of them (its fair share)
    admins = [Principal.with_scope(f"admin-{i}", Scope.ADMIN) for i in range(cm.settings.workers)]
    runs = [asyncio.ensure_future(rt.invoke("pg_execute_code", {"code": busy_code, "timeout": 20_000}, admin))
            for admin in admins]
    try:
        for _ in range(200):
            if len(pool.busy) == cm.settings.workers:
                break
            await asyncio.sleep(0.01)
        assert len(pool.busy) == cm.settings.workers and pool.idle == 0
        started = time.monotonic()
        bad = await rt.invoke("pg_validate_code", {"code": BUSY}, LOCAL_PRINCIPAL)
        good = await rt.invoke("pg_validate_code", {"code": "const x: number = 1; return x"}, LOCAL_PRINCIPAL)
        took = time.monotonic() - started
        assert len(pool.busy) == cm.settings.workers  # the executions still hold every worker
    finally:
        outs = await asyncio.gather(*runs)
    _syntax_error(bad)
    assert good["valid"] is True and good["language"] == "typescript"
    assert took < 1.5, took
    assert [ok(o) for o in outs] == ["done"] * cm.settings.workers


async def test_mcp_validate_of_wrapper_escape_is_a_syntax_error(mcp_client: Any) -> None:
    started = time.monotonic()
    bad = await mcp_client.call_tool("pg_validate_code", {"code": BUSY})
    assert time.monotonic() - started < 2.0
    assert bad.is_error is False
    _syntax_error(bad.structured_content)
    good = await mcp_client.call_tool("pg_validate_code", {"code": "return 1"})
    assert good.structured_content["valid"] is True


async def test_saving_a_script_that_escapes_its_wrapper_is_refused_quickly(rt: Runtime) -> None:
    started = time.monotonic()
    with pytest.raises(Exception) as exc:
        await rt.invoke("pg_script_save", {"name": "escape", "code": BUSY}, LOCAL_PRINCIPAL)
    assert time.monotonic() - started < 2.0
    assert_tool_error(exc, "INVALID_INPUT", "does not parse")
    saved = await rt.invoke("pg_script_save", {"name": "validate_safety_ok", "code": "return 7"}, LOCAL_PRINCIPAL)
    try:
        assert ok(await rt.invoke("pg_script_run", {"name": "validate_safety_ok"}, LOCAL_PRINCIPAL)) == 7
    finally:
        await rt.invoke("pg_script_delete", {"id": saved["id"]}, LOCAL_PRINCIPAL)


@pytest.mark.parametrize("code", [
    BUSY,
    "}, async () => {",
    "})\n(async () => {",
    "}\n})(); (async () => {",
    "}}); globalThis.x = 1; ({ a: async () => {{",
    "return 1 }); (() => { while (true) {} })(); (async () => {",
])
async def test_code_that_closes_its_wrapper_never_validates(rt: Runtime, code: str) -> None:
    out = await rt.invoke("pg_validate_code", {"code": code}, LOCAL_PRINCIPAL)
    assert out["valid"] is False and out["errors"][0]["code"] == "SYNTAX_ERROR", out


@pytest.mark.parametrize("code", [
    "return 1",
    "return 1 // a comment on the last line",
    "var x = 1; function x() {} return x",
    "const o = {a: {b: '}'}}; return `${'})'}` + o.a.b",
    "const re = /}\\)/; return re.test('})')",
    "label: { break label; } return arguments.length",
    "for await (const x of [1, 2]) {} return [1, 2].map(async (n) => await n)",
])
async def test_function_bodies_still_validate(rt: Runtime, code: str) -> None:
    out = await rt.invoke("pg_validate_code", {"code": code}, LOCAL_PRINCIPAL)
    assert out["valid"] is True and out["language"] == "javascript", out


async def test_a_large_body_validates_in_milliseconds(rt: Runtime) -> None:
    code = "\n".join(f"const v{i} = await pg.core.listTables({{ schema: 's{i}' }});" for i in range(800))
    code += "\nreturn 1"
    assert 40_000 < len(code) < 50_000
    await rt.invoke("pg_validate_code", {"code": "return 1"}, LOCAL_PRINCIPAL)  # the checker threads started
    started = time.monotonic()
    out = await rt.invoke("pg_validate_code", {"code": code}, LOCAL_PRINCIPAL)
    took = time.monotonic() - started
    assert out["valid"] is True and out["toolCalls"] == ["pg.core.listTables"]
    assert took < 0.5, took


async def test_typescript_past_its_budget_is_a_timeout_and_the_next_check_works(
        rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    from pgcode.codemode import syntax

    program = "\n".join(f"const v{i}: Array<number> = [{i}];" for i in range(300)) + "\nreturn v1"
    monkeypatch.setattr(syntax, "TS_BUDGET_S", 1e-6)
    late = await rt.invoke("pg_validate_code", {"code": program}, LOCAL_PRINCIPAL)
    assert late["valid"] is False and late["errors"][0]["code"] == "TIMEOUT", late
    monkeypatch.undo()
    again = await rt.invoke("pg_validate_code", {"code": program}, LOCAL_PRINCIPAL)
    assert again["valid"] is True and again["language"] == "typescript", again
