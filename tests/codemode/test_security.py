"""The sandbox under attack: each attempt is refused with the right code, and the server keeps serving."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from pgcode.codemode.engine import engine
from pgcode.core.runtime import Runtime
from tests.codemode._helpers import failed, ok
from tests.codemode.conftest import Run

pytestmark = pytest.mark.anyio

SECRET_ENV = "PGCODE_TEST_SANDBOX_SECRET"
FORGE = ("Array.prototype.toJSON = function () {{ return this.length === 3 && typeof this[0] === 'number' "
         "? {forged} : Array.from(this) }};\n")

# (id, code, expected error code, timeout in ms). Each is a separate execution on the same pool.
ATTEMPTS: list[tuple[str, str, str, int]] = [
    # constructor chains to Function: sync, async, generator, async generator
    ("function-ctor", "return (function () {}).constructor('return 1')()", "SECURITY_ERROR", 2000),
    ("array-ctor-ctor", "return [].constructor.constructor('return globalThis')()", "SECURITY_ERROR", 2000),
    ("arrow-ctor", "return (() => 0).constructor('return 1')()", "SECURITY_ERROR", 2000),
    ("async-ctor", "return Object.getPrototypeOf(async function () {}).constructor('return 1')", "SECURITY_ERROR",
     2000),
    ("generator-ctor", "return Object.getPrototypeOf(function* () {}).constructor('yield 1')", "SECURITY_ERROR", 2000),
    ("async-generator-ctor", "return Object.getPrototypeOf(async function* () {}).constructor('yield 1')",
     "SECURITY_ERROR", 2000),
    ("eval", "return eval('1 + 1')", "SECURITY_ERROR", 2000),
    ("indirect-eval", "return (0, eval)('1 + 1')", "SECURITY_ERROR", 2000),
    ("function-global", "return Function('return this')()", "SECURITY_ERROR", 2000),
    ("new-function", "return new Function('return 1')()", "SECURITY_ERROR", 2000),
    ("string-ctor-chain", "return 'x'.constructor.constructor('return 1')()", "SECURITY_ERROR", 2000),
    # Reflect / Proxy tricks
    ("reflect-construct", "return Reflect.construct((() => 0).constructor, ['return 1'])()", "SECURITY_ERROR", 2000),
    ("reflect-apply", "return Reflect.apply(Function.prototype.constructor, null, ['return 1'])()", "SECURITY_ERROR",
     2000),
    ("reflect-get-ctor", "return Reflect.get(Object.getPrototypeOf(() => 0), 'constructor')('return 1')()",
     "SECURITY_ERROR", 2000),
    ("proxy-function-ctor", "const p = new Proxy(function () {}, {}); return p.constructor('return 1')()",
     "SECURITY_ERROR", 2000),
    ("proxy-trap-ctor", "const p = new Proxy({}, {get: (t, k) => k}); return p.x.constructor.constructor('return 1')()",
     "SECURITY_ERROR", 2000),
    ("redefine-ctor", "Object.defineProperty(Function.prototype, 'constructor', {value: function () {}}); return 1",
     "RUNTIME_ERROR", 2000),
    # modules, process, environment, host globals
    ("dynamic-import", "return await import('fs')", "SECURITY_ERROR", 2000),
    ("dynamic-import-path", "return await import('/etc/passwd')", "SECURITY_ERROR", 2000),
    ("require", "return require('fs').readFileSync('/etc/passwd', 'utf8')", "SECURITY_ERROR", 2000),
    ("process-env", f"return process.env.{SECRET_ENV}", "SECURITY_ERROR", 2000),
    ("std-getenv", f"return std.getenv('{SECRET_ENV}')", "SECURITY_ERROR", 2000),
    ("os-exec", "return os.exec(['id'])", "SECURITY_ERROR", 2000),
    ("call-python", "return call_python('help')", "SECURITY_ERROR", 2000),
    ("dukpy-vars", "return dukpy.r", "SECURITY_ERROR", 2000),
    ("timers", "await new Promise(r => setTimeout(r, 10)); return 1", "SECURITY_ERROR", 2000),
    ("fetch", "return await fetch('http://example.com')", "SECURITY_ERROR", 2000),
    ("webassembly", "return new WebAssembly.Module(new Uint8Array([0, 97, 115, 109]))", "SECURITY_ERROR", 2000),
    ("atomics-wait", "return Atomics.wait(new Int32Array(4), 0, 0, 1000)", "SECURITY_ERROR", 2000),
    ("bridge-start-again", "__pgcode_start(); return 1", "SECURITY_ERROR", 2000),
    # forged host-call messages and unlisted tools
    ("forge-code-mode-tool", FORGE.format(forged="[this[0], 'pg_execute_code', '{\"code\": \"1\"}']")
     + "return await pg.core.listTables()", "SECURITY_ERROR", 2000),
    ("forge-bad-name-type", FORGE.format(forged="[this[0], 42, '{}']") + "return await pg.core.listTables()",
     "SECURITY_ERROR", 2000),
    ("forge-bad-id", FORGE.format(forged="['x', 'pg_list_tables', '{}']") + "return await pg.core.listTables()",
     "SECURITY_ERROR", 2000),
    ("forge-state", "Object.prototype.toJSON = function () { return {calls: 'everything'} };\n"
                    "return await pg.core.listTables()", "SECURITY_ERROR", 2000),
    ("unlisted-tool", "return await pg.call('os.system', {cmd: 'id'})", "NOT_FOUND", 2000),
    ("unknown-tool", "return await pg.call('pg_no_such_tool', {})", "NOT_FOUND", 2000),
    ("recursion-execute", "return await pg.call('pg_execute_code', {code: 'return 1'})", "SECURITY_ERROR", 2000),
    ("recursion-script", "return await pg.call('pg_script_run', {name: 'x'})", "SECURITY_ERROR", 2000),
    ("recursion-method", "return await pg.codemode.executeCode({code: 'return 1'})", "RUNTIME_ERROR", 2000),
    # prototype pollution of pg objects
    ("pg-method-overwrite", "'use strict'; pg.core.listTables = () => 'hijacked'; return 1", "RUNTIME_ERROR", 2000),
    ("pg-group-overwrite", "'use strict'; pg.core = {}; return 1", "RUNTIME_ERROR", 2000),
    ("pg-add-method", "'use strict'; pg.core.evil = () => 1; return 1", "RUNTIME_ERROR", 2000),
    ("pg-setprototype", "Object.setPrototypeOf(pg.core, {listTables: () => 'x'}); return 1", "RUNTIME_ERROR", 2000),
    ("pg-delete", "'use strict'; delete pg.call; return 1", "RUNTIME_ERROR", 2000),
    ("pg-redefine-global", "Object.defineProperty(globalThis, 'pg', {value: {}}); return 1", "RUNTIME_ERROR", 2000),
    # time: runaway loops and attempts to survive the timer
    ("while-true", "while (true) {}", "TIMEOUT", 400),
    ("catch-loop", "for (;;) { try { while (true) {} } catch (e) {} }", "TIMEOUT", 400),
    ("finally-loop", "try { while (true) {} } finally { while (true) {} }", "TIMEOUT", 400),
    ("await-loop", "while (true) { await null }", "TIMEOUT", 400),
    ("microtask-flood", "(function loop() { queueMicrotask(loop) })(); await new Promise(() => {})", "TIMEOUT", 400),
    ("catch-loop-tool-calls", "for (;;) { try { await pg.core.readQuery({sql: 'select pg_sleep(1)'}) } catch (e) {} }",
     "TIMEOUT", 400),
    ("catastrophic-regex", "return /(a+)+$/.test('a'.repeat(40) + 'b')", "TIMEOUT", 400),
    # CPU only: a 3e6 array also ran out of memory first on some runs, which is a different refusal.
    ("huge-sort", "const a = Array.from({length: 2e5}, (_, i) => i); for (;;) a.sort((x, y) => y - x);",
     "TIMEOUT", 150),
    # memory, stack, sizes
    ("memory-filled-arrays", "const a = []; while (true) a.push(new Array(1e6).fill(0))", "MEMORY_LIMIT", 20000),
    ("memory-holey-arrays", "const a = []; while (true) a.push(new Array(1e6))", "MEMORY_LIMIT", 20000),
    ("memory-buffers", "const a = []; while (true) a.push(new ArrayBuffer(1 << 24))", "MEMORY_LIMIT", 20000),
    ("string-doubling", "let s = 'x'; while (true) s += s", "MEMORY_LIMIT", 20000),
    ("deep-recursion", "function f() { return f() + 1 } return f()", "RUNTIME_ERROR", 5000),
    ("deep-result", "const a = []; let x = a; for (let i = 0; i < 1e5; i++) { x[0] = []; x = x[0] } return a",
     "RUNTIME_ERROR", 5000),
    ("huge-result", "return 'x'.repeat(12_000_000)", "RESULT_TOO_LARGE", 10000),
    ("huge-array-result", "return Array.from({length: 3e6}, (_, i) => i)", "RESULT_TOO_LARGE", 10000),
    ("huge-arguments", "return await pg.core.readQuery({sql: 'x'.repeat(9_000_000)})", "RUNTIME_ERROR", 10000),
    ("call-flood-batch", "await Promise.all(Array.from({length: 20000}, () => pg.call('pg_nope').catch(() => 0)))",
     "EXECUTION_FAILED", 20000),
]


@pytest.fixture(autouse=True)
def _secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(SECRET_ENV, "hunter2")


@pytest.mark.parametrize(("code", "expected", "limit_ms"), [a[1:] for a in ATTEMPTS], ids=[a[0] for a in ATTEMPTS])
async def test_attempt_is_refused(run: Run, code: str, expected: str, limit_ms: int) -> None:
    out = await run(code, timeout=limit_ms)
    failed(out, expected)
    assert "hunter2" not in str(out)
    if expected == "TIMEOUT":
        assert out["metrics"]["durationMs"] < limit_ms + 250, out["metrics"]


def test_corpus_has_forty_attempts() -> None:
    assert len(ATTEMPTS) >= 40
    assert len({a[0] for a in ATTEMPTS}) == len(ATTEMPTS)


async def test_probing_finds_no_bridge_and_no_environment(run: Run) -> None:
    names = ok(await run("return Object.getOwnPropertyNames(globalThis)"))
    assert not [n for n in names if any(w in n.lower() for w in ("python", "dukpy", "env", "process", "require"))]
    assert {"pg", "console", "input", "args"} <= set(names)
    found = ok(await run("""
const seen = [];
for (const k of Object.getOwnPropertyNames(globalThis)) {
  try { const v = globalThis[k]; if (typeof v === 'string' && v.includes('hunter2')) seen.push(k); } catch (e) {}
}
return [seen, typeof call_python, typeof dukpy, typeof require, typeof process, typeof setTimeout];"""))
    assert found == [[], "undefined", "undefined", "undefined", "undefined", "undefined"]


async def test_pollution_stays_inside_one_execution(run: Run) -> None:
    ok(await run("Object.prototype.polluted = 'yes'; Array.prototype.map = () => 'broken'; return 1"))
    assert ok(await run("return [({}).polluted, [1, 2].map(x => x * 2)]")) == [None, [2, 4]]


async def test_sequential_call_flood_stops_at_the_call_cap(run: Run, rt: Runtime) -> None:
    from pgcode.codemode.engine import CodeMode, ExecRequest
    from pgcode.codemode.settings import CodeModeSettings
    from pgcode.types import LOCAL_PRINCIPAL

    cm = CodeMode(rt, CodeModeSettings(workers=1, max_host_calls=300))
    try:
        out = await cm.execute(ExecRequest(code="for (let i = 0; i < 1e6; i++) await pg.call('pg_nope').catch(() => 0)",
                                           timeout_ms=20_000), LOCAL_PRINCIPAL)
        failed(out, "EXECUTION_FAILED", "300 tool calls")
        assert out["metrics"]["toolCalls"] == 301
    finally:
        await cm.close()


async def test_worker_environment_and_limits(rt: Runtime) -> None:
    """A worker has no environment, no file descriptors beyond its socket, and a bounded address space."""
    import resource

    pool = await engine(rt).pool()
    worker = await pool.acquire()
    try:
        proc = Path(f"/proc/{worker.pid}")
        assert (proc / "environ").read_bytes() == b""
        fds = os.listdir(proc / "fd")
        assert len(fds) <= 4, fds  # stdin/out/err on /dev/null and the socket
        limits = (proc / "limits").read_text()
        as_line = next(line for line in limits.splitlines() if line.startswith("Max address space"))
        assert "unlimited" not in as_line, as_line
        status = (proc / "status").read_text()
        assert "\nPPid:" in status and f"\nPPid:\t{os.getpid()}\n" not in status  # forked by the zygote
    finally:
        pool.release(worker)
    assert resource.getrlimit(resource.RLIMIT_AS)[0] == resource.RLIM_INFINITY  # the server itself is untouched


async def test_server_stays_healthy_after_the_corpus(run: Run, rt: Runtime, http: Any) -> None:
    assert ok(await run("return (await pg.core.readQuery({sql: 'select 1 as one'})).rows[0].one")) == 1
    pool = await engine(rt).pool()
    assert pool.live == pool.size and pool.spawned - pool.killed >= pool.size - 1  # replacements keep it full
    assert pool.killed > 0  # the corpus did get workers killed (hard deadlines, crashes)
    resp = await http.get("/healthz")
    assert resp.status_code == 200 and resp.json()["status"] == "ok"


async def test_a_forged_call_with_arguments_that_are_not_json_is_refused_and_audited(rt: Runtime, conn: Any) -> None:
    """A call the code forged past the prelude is still a call: refused as INVALID_INPUT, and in the audit log
    beside the execution, like every other call the code made."""
    from pgcode.types import Principal, Scope

    me = Principal.with_scope(f"forger-{os.getpid()}-{id(conn)}", Scope.ADMIN)
    code = FORGE.format(forged="[this[0], 'pg_list_tables', '{password: hunter2']") + \
        "return await pg.core.listTables()"
    out = await rt.invoke("pg_execute_code", {"code": code}, me)
    failed(out, "INVALID_INPUT", "not JSON")
    assert out["metrics"]["toolCalls"] == 1
    await rt.audit.flush()
    rows = conn.execute("SELECT tool, outcome, error_code, arguments FROM pgcode.audit_log WHERE principal = %s "
                        "ORDER BY at", (me.subject,)).fetchall()
    assert [r[:3] for r in rows] == [("pg_list_tables", "error", "INVALID_INPUT"), ("pg_execute_code", "ok", None)]
    assert rows[0][3] == {"_notJson": True, "_chars": 18}  # not the text: it may hold anything
