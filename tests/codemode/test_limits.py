"""Per-run limits of code mode: a heap limit (memoryLimit) and a tool allow-list (tools)."""

from __future__ import annotations

import uuid

import pytest

from pgcode.codemode.engine import engine
from pgcode.core.runtime import Runtime
from pgcode.errors import ErrorCode, ToolError
from pgcode.types import Principal, Scope
from tests.codemode._helpers import failed, ok
from tests.codemode.conftest import Run

pytestmark = pytest.mark.anyio

OBJECTS = "const a = []; for (let i = 0; i < {n}; i++) a.push({{i, s: 'row ' + i}}); return a.length"
"""About 190 bytes of heap per element: 200000 take about 37 MB."""
BUFFERS = "const a = []; for (let i = 0; i < 10; i++) a.push(new ArrayBuffer(15 << 20)); return a.length"
"""150 MiB in ten buffers: more than the default 128 MB."""


# -- memoryLimit ---------------------------------------------------------------------------------------

async def test_memory_limit_stops_the_run_and_replaces_its_worker(rt: Runtime, run: Run) -> None:
    pool = await engine(rt).pool()
    killed = pool.killed
    out = await run(OBJECTS.format(n=200_000), memoryLimit=16)
    err = failed(out, "MEMORY_LIMIT", "memory limit of 16 MB")
    assert "memoryLimit" in err["message"]
    assert out["metrics"]["memoryLimitMB"] == 16 and out["metrics"]["peakMemoryMB"] == 16
    assert pool.killed == killed + 1  # the worker that ran out is not reused
    again = await run(OBJECTS.format(n=200_000))  # same code, default limit (128 MB): the next run is unaffected
    assert ok(again) == 200_000
    assert again["metrics"]["memoryLimitMB"] == 128
    assert 20 < again["metrics"]["peakMemoryMB"] < 128, again["metrics"]


async def test_memory_limit_can_be_raised_up_to_the_server_maximum(run: Run) -> None:
    failed(await run(BUFFERS), "MEMORY_LIMIT", "128 MB")
    assert ok(await run(BUFFERS, memoryLimit=256)) == 10


async def test_a_request_above_the_maximum_is_lowered_and_says_so(run: Run) -> None:
    out = await run("return 1", memoryLimit=4096)
    assert ok(out) == 1
    assert out["metrics"]["memoryLimitMB"] == 512 and out["metrics"]["memoryLimitRequestedMB"] == 4096
    plain = await run("return 1", memoryLimit=64)
    assert plain["metrics"]["memoryLimitMB"] == 64 and "memoryLimitRequestedMB" not in plain["metrics"]


async def test_code_that_catches_running_out_of_memory_carries_on(run: Run) -> None:
    """Like any error, running out of memory can be caught; the peak shows how close the code came.

    QuickJS throws null instead of an Error when it runs out while building the error object.
    """
    code = ("function fill() { const a = []; for (let i = 0; i < 400000; i++) a.push({i, s: 'row ' + i}); "
            "return a.length }\n"
            "try { return fill() } catch (e) { return 'caught: ' + (e === null ? null : e.message) }")
    for _ in range(3):
        out = await run(code, memoryLimit=8)
        assert ok(out) in ("caught: out of memory", "caught: null")
        assert 7 <= out["metrics"]["peakMemoryMB"] <= 8


async def test_memory_limit_out_of_range_is_invalid_input(run: Run) -> None:
    for bad in (0, -5, 16_385, "lots"):
        with pytest.raises(ToolError) as refused:
            await run("return 1", memoryLimit=bad)
        assert refused.value.code is ErrorCode.INVALID_INPUT and "memoryLimit" in refused.value.message


# -- tools (allow-list) ---------------------------------------------------------------------------------

async def test_allow_list_hides_other_groups(run: Run) -> None:
    out = ok(await run("return {keys: Object.keys(pg), perf: typeof pg.performance, core: typeof pg.core, "
                       "help: pg.help(), perfHelp: pg.help('performance')}", tools=["core"]))
    assert out["keys"] == ["core", "call", "help"]
    assert out["perf"] == "undefined" and out["core"] == "object"
    assert list(out["help"]["groups"]) == ["core"] and out["help"]["allowList"] == ["core"]
    assert "there is no group" in out["perfHelp"]["error"]
    # positive control: without an allow-list, the same code sees performance
    full = ok(await run("return {perf: typeof pg.performance, n: Object.keys(pg.help().groups).length}"))
    assert full["perf"] == "object" and full["n"] > 10


async def test_allow_list_refuses_calls_outside_it(run: Run) -> None:
    direct = await run("return await pg.call('pg_table_stats', {})", tools=["core"])
    err = failed(direct, "FORBIDDEN", "pg_table_stats", "allow-list", "core")
    assert err["line"] == 1 and err["tool"] == "pg_table_stats"
    caught = ok(await run("try { await pg.call('pg_cache_hit_ratio', {}) } catch (e) { return [e.code, e.message] }\n"
                          "return 'ran'", tools=["core"]))
    assert caught[0] == "FORBIDDEN" and "tools: core" in caught[1]
    inside = ok(await run("const r = await pg.core.readQuery({sql: 'SELECT 6 * 7 AS n'}); return r.rows[0].n",
                          tools=["core"]))
    assert inside == 42


async def test_allow_list_of_single_tools(run: Run) -> None:
    out = ok(await run("const s = await pg.performance.tableStats({limit: 1});\n"
                       "return {groups: Object.keys(pg), methods: Object.keys(pg.performance), "
                       "help: pg.help('performance').methods.map(m => m.name), rows: Array.isArray(s)}",
                       tools=["pg_table_stats"]))
    assert out["groups"] == ["performance", "call", "help"]
    assert out["methods"] == ["tableStats", "help"] and out["help"] == ["tableStats"] and out["rows"] is True
    failed(await run("return await pg.call('pg_read_query', {sql: 'SELECT 1'})", tools=["pg_table_stats"]),
           "FORBIDDEN")
    nothing = ok(await run("return Object.keys(pg)", tools=[]))
    assert nothing == ["call", "help"]


async def test_allow_list_entries_are_checked(run: Run) -> None:
    typo = failed(await run("return 1", tools=["core", "perfomance"]), "INVALID_INPUT", "perfomance",
                  "did you mean performance")
    assert typo["line"] is None
    failed(await run("return 1", tools=["pg_execute_code"]), "INVALID_INPUT", "cannot be called from code mode")


async def test_allow_list_never_widens_readonly_or_scopes(rt: Runtime, run: Run, schema: str) -> None:
    write = f"await pg.core.writeQuery({{sql: 'CREATE TABLE \"{schema}\".allow_made (id int)'}}); return 1"
    failed(await run(write, readonly=True, tools=["core"]), "READ_ONLY")
    writer = Principal.with_scope("allow-list-writer", Scope.WRITE)
    with pytest.raises(ToolError) as refused:
        await rt.invoke("pg_execute_code", {"code": "return 1", "tools": ["core"]}, writer)
    assert refused.value.code is ErrorCode.FORBIDDEN  # code mode itself still needs admin, allow-list or not
    assert ok(await run(write, tools=["core"])) == 1  # positive control: the same write, not readonly
    async with rt.db.pool.connection() as conn:
        cur = await conn.execute("SELECT to_regclass(%s) IS NOT NULL", (f'"{schema}".allow_made',))
        assert (await cur.fetchone()) == (True,)


async def test_allow_list_holds_in_concurrent_calls(run: Run) -> None:
    out = ok(await run("const r = await Promise.allSettled([pg.core.readQuery({sql: 'SELECT 1 AS n'}), "
                       "pg.call('pg_table_stats', {}), pg.call('pg_cache_hit_ratio', {})]);\n"
                       "return r.map(x => x.status === 'fulfilled' ? 'ok' : x.reason.code)", tools=["core"]))
    assert out == ["ok", "FORBIDDEN", "FORBIDDEN"]



# -- saved scripts: default allow-list and heap limit -----------------------------------------------------

async def test_saved_script_keeps_its_allow_list_and_memory_limit(rt: Runtime) -> None:
    me = Principal.with_scope(f"limits-{uuid.uuid4().hex[:8]}", Scope.ADMIN)
    code = ("const a = []; for (let i = 0; i < args.n; i++) a.push({i, s: 'row ' + i});\n"
            "return {groups: Object.keys(pg), n: a.length}")
    saved = await rt.invoke("pg_script_save", {"name": "narrow", "code": code, "tools": ["core", "pg_table_stats"],
                                               "memoryLimit": 16}, me)
    assert saved["tools"] == ["core", "pg_table_stats"] and saved["memory_limit_mb"] == 16
    run = await rt.invoke("pg_script_run", {"name": "narrow", "args": {"n": 10}}, me)
    assert ok(run)["groups"] == ["core", "performance", "call", "help"] and run["metrics"]["memoryLimitMB"] == 16
    big = await rt.invoke("pg_script_run", {"name": "narrow", "args": {"n": 200_000}}, me)
    failed(big, "MEMORY_LIMIT", "16 MB")
    wider = await rt.invoke("pg_script_run", {"name": "narrow", "args": {"n": 200_000}, "memoryLimit": 128,
                                              "tools": ["monitoring"]}, me)
    assert ok(wider) == {"groups": ["monitoring", "call", "help"], "n": 200_000}
    cleared = await rt.invoke("pg_script_update", {"name": "narrow", "clear": ["tools", "memoryLimit"]}, me)
    assert cleared["tools"] is None and cleared["memory_limit_mb"] is None
    everything = ok(await rt.invoke("pg_script_run", {"name": "narrow", "args": {"n": 1}}, me))
    assert "performance" in everything["groups"] and "admin" in everything["groups"]


async def test_saved_script_allow_list_is_checked(rt: Runtime) -> None:
    me = Principal.with_scope(f"limits-{uuid.uuid4().hex[:8]}", Scope.ADMIN)
    with pytest.raises(ToolError) as bad:
        await rt.invoke("pg_script_save", {"name": "typo", "code": "return 1", "tools": ["cor"]}, me)
    assert bad.value.code is ErrorCode.INVALID_INPUT and "did you mean core" in bad.value.message
    assert (await rt.invoke("pg_script_list", {}, me))["total"] == 0  # nothing was saved
    await rt.invoke("pg_script_save", {"name": "ok", "code": "return 1", "tools": ["core"]}, me)
    with pytest.raises(ToolError) as both:
        await rt.invoke("pg_script_update", {"name": "ok", "tools": ["core"], "clear": ["tools"]}, me)
    assert both.value.code is ErrorCode.INVALID_INPUT
    with pytest.raises(ToolError) as codemode:
        await rt.invoke("pg_script_update", {"name": "ok", "tools": ["pg_script_run"]}, me)
    assert "cannot be called from code mode" in codemode.value.message
    assert (await rt.invoke("pg_script_get", {"name": "ok"}, me))["tools"] == ["core"]
