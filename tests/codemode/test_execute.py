"""pg_execute_code end to end: results, input, logs, the pg API, errors with lines, metrics, limits."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
from typing import Any

import psycopg
import pytest

from pgcode.codemode.engine import CodeMode, ExecRequest, engine
from pgcode.codemode.settings import CodeModeSettings
from pgcode.core.registry import Registry
from pgcode.core.runtime import Runtime
from pgcode.settings import Settings
from pgcode.types import LOCAL_PRINCIPAL, Principal, Scope
from tests.codemode._helpers import failed, ok
from tests.codemode.conftest import Run
from tests.fix_db import assert_tool_error

pytestmark = pytest.mark.anyio


async def test_execute_code_returns_the_output_object(run: Run) -> None:
    out = await run("return 1 + 1")
    assert set(out) >= {"success", "result", "logs", "error", "metrics"}
    assert ok(out) == 2 and out["logs"] == [] and out["language"] == "javascript"
    assert set(out["metrics"]) == {"durationMs", "toolCalls", "resultBytes", "memoryLimitMB", "peakMemoryMB"}
    assert out["metrics"]["toolCalls"] == 0 and out["metrics"]["resultBytes"] == 1
    assert 0 < out["metrics"]["durationMs"] < 5_000


@pytest.mark.parametrize(("code", "expected"), [
    ("return {a: [1, 'x', null, true], b: {c: 1.5}}", {"a": [1, "x", None, True], "b": {"c": 1.5}}),
    ("return 'héllo ✓ 日本'", "héllo ✓ 日本"),
    ("const x = 1", None),
    ("return undefined", None),
    ("return [undefined, () => 1]", [None, None]),
    ("return new Date(0)", "1970-01-01T00:00:00.000Z"),
    ("return await Promise.resolve(7)", 7),
    ("const m = new Map([[1, 2]]); return [...m.entries()]", [[1, 2]]),
])
async def test_execute_code_result_values(run: Run, code: str, expected: Any) -> None:
    assert ok(await run(code)) == expected


async def test_execute_code_input_is_visible_and_read_only(run: Run) -> None:
    assert ok(await run("return input.items.map(x => x * 2)", input={"items": [1, 2, 3]})) == [2, 4, 6]
    assert ok(await run("return input")) is None
    assert ok(await run("return [typeof input, input]", input="text")) == ["string", "text"]
    failed(await run("'use strict'; input = 5"), "RUNTIME_ERROR", "TypeError")


async def test_execute_code_console_is_captured_with_levels(run: Run) -> None:
    out = await run("console.log('a', 1, {b: [2]}); console.info('i'); console.warn('w'); console.error('e');"
                    "console.debug('d', 5n, null, undefined); return 0")
    assert out["logs"] == [
        {"level": "log", "message": 'a 1 {"b":[2]}'}, {"level": "info", "message": "i"},
        {"level": "warn", "message": "w"}, {"level": "error", "message": "e"},
        {"level": "debug", "message": "d 5n null undefined"}]


async def test_execute_code_logs_are_kept_when_the_code_fails(run: Run) -> None:
    out = await run("console.log('before'); await pg.core.readQuery({sql: 'select 1'}); console.log('after');"
                    "throw new Error('boom')")
    failed(out, "RUNTIME_ERROR", "boom")
    assert [e["message"] for e in out["logs"]] == ["before", "after"]


async def test_execute_code_logs_are_capped(run: Run) -> None:
    out = await run("for (let i = 0; i < 5000; i++) console.log('line ' + i); console.log('x'.repeat(20000));"
                    "return 1")
    assert ok(out) == 1
    assert len(out["logs"]) == 1001
    assert out["logs"][-1]["level"] == "warn" and "dropped" in out["logs"][-1]["message"]


async def test_execute_code_calls_tools_by_method_and_by_name(run: Run) -> None:
    out = await run("""
const a = await pg.core.readQuery({sql: 'SELECT $1::int * 2 AS n', params: [21]});
const b = await pg.call('pg_read_query', {sql: 'SELECT 1 AS one'});
return [a.rows[0].n, b.rows[0].one];""")
    assert ok(out) == [42, 1]
    assert out["metrics"]["toolCalls"] == 2


async def test_execute_code_snake_and_camel_case_arguments(run: Run) -> None:
    assert ok(await run("return (await pg.core.readQuery({sql: 'select 1 as x', limit: 1})).rows")) == [{"x": 1}]


async def test_execute_code_aliases_are_methods(settings: Settings) -> None:
    from pgcode.core.registry import load_registry

    base = load_registry()
    specs = {s.name: s for s in base}
    specs["pg_read_query"] = dataclasses.replace(specs["pg_read_query"], aliases=("runSelect",))
    async with Runtime(settings, registry=Registry(specs)) as rt2:
        out = await rt2.invoke("pg_execute_code", {"code": "return (await pg.core.runSelect({sql: 'select 3 as n'}))"
                                                           ".rows[0].n"}, LOCAL_PRINCIPAL)
        assert ok(out) == 3
        help_out = await rt2.invoke("pg_execute_code", {"code": "return pg.core.help()"}, LOCAL_PRINCIPAL)
        entries = {m["name"]: m for m in ok(help_out)["methods"] if m["tool"] == "pg_read_query"}
        assert entries["readQuery"]["aliases"] == ["pg.core.runSelect"]
        assert entries["runSelect"]["aliases"] == ["pg.core.readQuery"]
    specs["pg_read_query"] = dataclasses.replace(specs["pg_read_query"], aliases=("stats.runSql",))
    async with Runtime(settings, registry=Registry(specs)) as rt3:
        out = await rt3.invoke("pg_execute_code", {"code": "return (await pg.stats.runSql({sql: 'select 4 as n'}))"
                                                           ".rows[0].n"}, LOCAL_PRINCIPAL)
        assert ok(out) == 4


async def test_execute_code_pg_exposes_every_tool_but_code_mode(run: Run, rt: Runtime) -> None:
    listed = ok(await run("return Object.fromEntries(Object.keys(pg).filter(g => typeof pg[g] === 'object')"
                          ".map(g => [g, Object.keys(pg[g])]))"))
    expected: dict[str, set[str]] = {}
    for spec in rt.registry:
        if spec.group != "codemode":
            for group, method in spec.method_paths:
                expected.setdefault(group, set()).add(method)
    assert {g: set(m) - {"help"} for g, m in listed.items()} == expected
    assert "codemode" not in listed
    assert sorted(k for k in ok(await run("return Object.keys(pg)")) if k not in expected) == ["call", "help"]


async def test_execute_code_help_lists_groups_and_argument_schemas(run: Run) -> None:
    index = ok(await run("return pg.help()"))
    assert "core" in index["groups"] and "listTables" in index["groups"]["core"]["methods"]
    assert "codemode" not in index["groups"] and "await pg" in index["usage"]
    core = ok(await run("return pg.core.help()"))
    read = next(m for m in core["methods"] if m["name"] == "readQuery")
    assert read["tool"] == "pg_read_query" and read["effect"] == "read"
    assert read["inputSchema"]["properties"]["sql"]["type"] == "string"
    assert any(a["name"] == "sql" and a["required"] for a in read["arguments"])
    # help is read on demand: it carries a tool's whole description, not only the catalog's summary line
    admin = ok(await run("return pg.admin.help()"))
    end = next(m for m in admin["methods"] if m["tool"] == "pg_terminate_backend")
    assert "\n\n" in end["description"] and "superuser" in end["description"]
    assert "error" in ok(await run("return pg.help('nope')"))
    assert ok(await run("return pg.help('core').group")) == "core"


async def test_execute_code_tool_error_is_a_catchable_error(run: Run) -> None:
    out = await run("""
try {
  await pg.core.readQuery({sql: 'SELECT * FROM no_such_table_anywhere'});
} catch (e) {
  return {isError: e instanceof Error, code: e.code, message: e.message, tool: e.tool};
}""")
    assert ok(out) == {"isError": True, "code": "NOT_FOUND", "tool": "pg_read_query",
                       "message": 'relation "no_such_table_anywhere" does not exist'}


async def test_execute_code_uncaught_tool_error_fails_with_its_line(run: Run) -> None:
    out = await run("const a = 1;\nconst b = 2;\nawait pg.core.readQuery({sql: 'SELECT * FROM nope_nope'});\nreturn 1")
    err = failed(out, "NOT_FOUND", "nope_nope")
    assert err["line"] == 3 and err["tool"] == "pg_read_query"
    bad_args = failed(await run("\nawait pg.core.readQuery({sql: 'select 1', bogus: 1})"), "INVALID_INPUT", "bogus")
    assert bad_args["line"] == 2


async def test_execute_code_tool_error_keeps_its_details(run: Run) -> None:
    """The details a face shows (sqlstate, a transaction id, a retry delay) reach the code, and the output when
    the code does not catch the error."""
    caught = await run("""
try { await pg.core.readQuery({sql: 'SELECT 1/0'}); }
catch (e) { return {code: e.code, sqlstate: e.details.sqlstate}; }""")
    assert ok(caught) == {"code": "INVALID_INPUT", "sqlstate": "22012"}
    err = failed(await run("await pg.core.readQuery({sql: 'SELECT 1/0'})"), "INVALID_INPUT", "division by zero")
    assert err["details"]["sqlstate"] == "22012"
    # what the code puts in details is data from the sandbox: kept only when it is a small object
    forged = failed(await run("const e = new Error('x'); e.code = 'SQL_ERROR'; e.details = 'not an object'; "
                              "await pg.core.readQuery({sql: 'SELECT 1/0'}).catch((t) => { t.details = "
                              "{huge: 'x'.repeat(10000)}; throw t; })"), "INVALID_INPUT")
    assert "details" not in forged


async def test_execute_code_runtime_errors_have_lines(run: Run) -> None:
    err = failed(await run("let x = 1;\n\nthrow new RangeError('out of range');"), "RUNTIME_ERROR",
                 "RangeError: out of range")
    assert err["line"] == 3
    err = failed(await run("function f() {\n  throw new Error('deep');\n}\nf();"), "RUNTIME_ERROR", "deep")
    assert err["line"] == 2
    failed(await run("throw 'a string'"), "RUNTIME_ERROR", "a string")
    failed(await run("return pg.core.noSuchMethod()"), "RUNTIME_ERROR", "TypeError")


async def test_execute_code_syntax_error_runs_nothing(run: Run, conn: psycopg.Connection[Any]) -> None:
    out = await run("console.log('never');\nreturn 1 +* 2;")
    err = failed(out, "SYNTAX_ERROR", "SyntaxError")
    assert err["line"] == 2 and out["logs"] == [] and out["metrics"]["toolCalls"] == 0
    assert failed(await run("if (true) {\n  return 1;\n"), "SYNTAX_ERROR")["line"] is not None


async def test_execute_code_promise_all_runs_concurrently_up_to_the_cap(run: Run) -> None:
    one = "pg.core.readQuery({sql: 'SELECT pg_sleep(0.3)'})"
    t0 = time.perf_counter()
    ok(await run(f"return (await Promise.all([{', '.join([one] * 4)}])).length"))
    four = time.perf_counter() - t0
    t0 = time.perf_counter()
    ok(await run(f"return (await Promise.all([{', '.join([one] * 8)}])).length"))
    eight = time.perf_counter() - t0
    assert four < 0.9, four  # 4 x 0.3 s at once, not 1.2 s one after another
    assert 0.6 <= eight < 1.5, eight  # the cap (4 at once) makes 8 calls take two rounds


async def test_execute_code_unawaited_calls_do_not_run_and_are_reported(run: Run, schema: str,
                                                                         conn: psycopg.Connection[Any]) -> None:
    conn.execute(f'CREATE TABLE "{schema}".unawaited (id int)')
    out = await run(f"pg.core.writeQuery({{sql: 'INSERT INTO \"{schema}\".unawaited VALUES (1)'}}); return 'done'")
    assert ok(out) == "done"
    assert any("not awaited" in e["message"] for e in out["logs"])
    assert conn.execute(f'SELECT count(*) FROM "{schema}".unawaited').fetchone() == (0,)


async def test_calls_made_together_travel_together(run: Run, monkeypatch: pytest.MonkeyPatch) -> None:
    from pgcode.codemode.bridge import HostBridge

    batches: list[list[str]] = []
    dispatch = HostBridge.dispatch

    async def spy(self: HostBridge, calls: Any, deadline: float) -> bytes:
        batches.append([json.loads(args)["sql"] for _, _, args in calls])
        return await dispatch(self, calls, deadline)

    monkeypatch.setattr(HostBridge, "dispatch", spy)
    out = await run("""
        const q = (sql) => pg.core.readQuery({sql});
        const later = async () => { await null; await null; return q('SELECT 2'); };
        const first = await Promise.all([q('SELECT 1'), later(), q('SELECT 3')]);
        const second = await q('SELECT 4');
        const third = await q('SELECT 5');
        return [...first, second, third].map((r) => Object.values(r.rows[0])[0])""")
    assert ok(out) == [1, 2, 3, 4, 5]
    # The call queued two turns after the others still goes with them; each awaited call then goes alone.
    assert batches == [["SELECT 1", "SELECT 3", "SELECT 2"], ["SELECT 4"], ["SELECT 5"]]


async def test_a_call_made_alone_leaves_the_callers_context_as_it_was(rt: Runtime) -> None:
    """An awaited call runs in the execution's own task: the execution's connection and the in-code mark are set
    for that call only, so the caller's next call is an ordinary one (rate-limited, on a pooled connection)."""
    from pgcode.core.callctx import IN_CODE_EXECUTION
    from pgcode.core.context import EXECUTION_CONNECTION

    code = "const a = await pg.core.readQuery({sql: 'SELECT pg_backend_pid() AS p'});" \
           "const b = await pg.core.readQuery({sql: 'SELECT pg_backend_pid() AS p'}); return [a.rows[0].p, b.rows[0].p]"
    out = await rt.invoke("pg_execute_code", {"code": code}, LOCAL_PRINCIPAL)
    first, second = ok(out)
    assert first == second  # the sequential calls shared the execution's connection
    assert EXECUTION_CONNECTION.get() is None and IN_CODE_EXECUTION.get() is False


async def test_execute_code_never_settling_promise_is_reported(run: Run) -> None:
    failed(await run("await new Promise(() => {}); return 1"), "RUNTIME_ERROR", "never settles")


async def test_execute_code_result_bytes_and_size_limit(run: Run) -> None:
    out = await run("return 'x'.repeat(1000)")
    assert out["metrics"]["resultBytes"] == len(json.dumps("x" * 1000))
    failed(await run("return 'x'.repeat(10_500_000)"), "RESULT_TOO_LARGE")
    failed(await run("const a = []; a.push(a); return a"), "RUNTIME_ERROR", "cannot be turned into JSON")
    failed(await run("return 10n"), "RUNTIME_ERROR", "BigInt")


async def test_execute_code_input_checks(run: Run, rt: Runtime) -> None:
    failed(await run(""), "MISSING_CODE")
    failed(await run("   \n  "), "MISSING_CODE")
    failed(await run("return 1;" + " " * 60_000), "INVALID_INPUT", "bytes")
    failed(await run("return 1", input="x" * (5 * 1024 * 1024)), "INVALID_INPUT", "input")
    with pytest.raises(Exception) as exc:
        await rt.invoke("pg_execute_code", {"code": "return 1", "timeout": "soon"}, LOCAL_PRINCIPAL)
    assert_tool_error(exc, "INVALID_INPUT", "timeout")
    with pytest.raises(Exception) as exc:
        await rt.invoke("pg_execute_code", {"code": "return 1", "bogus": 1}, LOCAL_PRINCIPAL)
    assert_tool_error(exc, "INVALID_INPUT", "bogus")
    with pytest.raises(Exception) as exc:
        await rt.invoke("pg_execute_code", {"code": "return 1", "timeout": 300_001}, LOCAL_PRINCIPAL)
    assert_tool_error(exc, "INVALID_INPUT", "timeout")


async def test_execute_code_needs_the_admin_scope(rt: Runtime) -> None:
    writer = Principal.with_scope("writer", Scope.WRITE)
    with pytest.raises(Exception) as exc:
        await rt.invoke("pg_execute_code", {"code": "return 1"}, writer)
    assert_tool_error(exc, "FORBIDDEN", "admin")


async def test_execute_code_runs_tools_as_the_caller(rt: Runtime) -> None:
    """The host calls carry the caller's principal: its held transactions are its own."""
    me = Principal.with_scope("code-owner", Scope.ADMIN)
    tx = await rt.invoke("pg_transaction_begin", {}, me)
    code = f"return (await pg.transactions.transactionStatus({{transactionId: '{tx['transactionId']}'}}))"
    out = await rt.invoke("pg_execute_code", {"code": code + ".transactionId"}, me)
    assert ok(out) == tx["transactionId"]
    other = await rt.invoke("pg_execute_code", {"code": code}, LOCAL_PRINCIPAL)
    failed(other, "NOT_FOUND")
    await rt.invoke("pg_transaction_rollback", {"transactionId": tx["transactionId"]}, me)


async def test_execute_code_rolls_back_transactions_it_left_open(run: Run, rt: Runtime, schema: str,
                                                                  conn: psycopg.Connection[Any]) -> None:
    conn.execute(f'CREATE TABLE "{schema}".left_open (id int)')
    out = await run(f"""
const tx = await pg.transactions.transactionBegin();
await pg.core.writeQuery({{sql: 'INSERT INTO "{schema}".left_open VALUES (1)', transactionId: tx.transactionId}});
return tx.transactionId;""")
    tx_id = ok(out)
    status = await rt.invoke("pg_transaction_status", {}, LOCAL_PRINCIPAL)
    assert tx_id not in {t["transactionId"] for t in status}
    assert conn.execute(f'SELECT count(*) FROM "{schema}".left_open').fetchone() == (0,)


async def test_execute_code_executions_run_in_parallel_on_the_pool(run: Run, rt: Runtime) -> None:
    size = engine(rt).settings.workers
    outs = await asyncio.gather(*(run(f"return {i}") for i in range(4 * size)))
    assert [ok(o) for o in outs] == list(range(4 * size))


async def test_execute_code_survives_a_killed_worker(run: Run, rt: Runtime) -> None:
    import os
    import signal

    pool = await engine(rt).pool()
    task = asyncio.ensure_future(run("while (true) {}", timeout=5000))
    for _ in range(100):
        await asyncio.sleep(0.02)
        if pool.busy:
            break
    for worker in list(pool.busy):
        os.kill(worker.pid, signal.SIGKILL)
    failed(await task, "EXECUTION_FAILED", "replaced")
    assert ok(await run("return 'still serving'")) == "still serving"


async def test_execute_code_timeout_is_capped_by_configuration(rt: Runtime) -> None:
    cm = CodeMode(rt, CodeModeSettings(workers=1, max_timeout_ms=300))
    try:
        t0 = time.perf_counter()
        out = await cm.execute(ExecRequest(code="while (true) {}", timeout_ms=60_000), LOCAL_PRINCIPAL)
        failed(out, "TIMEOUT", "300 ms")
        assert time.perf_counter() - t0 < 2
    finally:
        await cm.close()


async def test_executions_are_rate_limited_per_principal_but_their_calls_are_not(settings: Settings) -> None:
    limited = settings.model_copy(update={"rate_limit_code": "2/minute", "rate_limit_read": "3/minute"})
    async with Runtime(limited) as rt2:
        me = Principal.with_scope("limited-coder", Scope.ADMIN)
        code = "for (let i = 0; i < 5; i++) await pg.core.readQuery({sql: 'select 1'}); return 'five reads'"
        for _ in range(2):
            assert ok(await rt2.invoke("pg_execute_code", {"code": code}, me)) == "five reads"
        with pytest.raises(Exception) as exc:
            await rt2.invoke("pg_execute_code", {"code": "return 1"}, me)
        err = assert_tool_error(exc, "RATE_LIMITED")
        assert err.details["class"] == "code"
        other = Principal.with_scope("another-coder", Scope.ADMIN)
        assert ok(await rt2.invoke("pg_execute_code", {"code": "return 1"}, other)) == 1
