"""Code-mode latency and throughput: invoke() and REST, tool-call overhead, Promise.all, timeouts, executions/s.

Usage: TEST_DATABASE_URL=... .venv/bin/python bench/codemode.py [--runs N]
Prints one line per measure (medians) and writes bench/results/codemode.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx2
from _timing import free_port, median_ms
from mcp import Client

from pgcode.codemode.engine import engine
from pgcode.core.callctx import IN_CODE_EXECUTION
from pgcode.core.runtime import Runtime
from pgcode.settings import Settings
from pgcode.types import LOCAL_PRINCIPAL

UNLIMITED = "100000000/minute"
SELECT1 = {"sql": "SELECT 1"}
SEQ10 = "for (let i = 0; i < 10; i++) await pg.core.readQuery({sql: 'SELECT 1'}); return 1"
ALL4 = "return (await Promise.all([1, 2, 3, 4].map(() => pg.core.readQuery({sql: 'SELECT 1'})))).length"
SEQ20 = "const out = []; for (let i = 0; i < 20; i++) out.push((await pg.core.readQuery({sql: 'SELECT ' + i})).rows);" \
        " return out.length"
ALL20 = "return (await Promise.all(Array.from({length: 20}, (_, i) => pg.core.readQuery({sql: 'SELECT ' + i}))))" \
        ".length"




async def in_process(dsn: str, runs: int) -> dict[str, Any]:
    settings = Settings(database_url=dsn, rate_limit_read=UNLIMITED, rate_limit_write=UNLIMITED,
                        rate_limit_admin=UNLIMITED, rate_limit_code=UNLIMITED, pool_max_size=20)
    r: dict[str, Any] = {}
    async with Runtime(settings) as rt:

        def execute(code: str, **kw: Any) -> Callable[[], Awaitable[object]]:
            async def go() -> object:
                out = await rt.invoke("pg_execute_code", {"code": code, **kw}, LOCAL_PRINCIPAL)
                assert out["success"], out
                return out
            return go

        async def read_query() -> object:
            return await rt.invoke("pg_read_query", SELECT1, LOCAL_PRINCIPAL)

        r["workers"] = engine(rt).settings.workers
        r["trivial_invoke_ms"] = await median_ms(execute("return 1+1"), runs)
        r["trivial_invoke_paced_ms"] = await median_ms(execute("return 1+1"), min(runs, 500), pause_s=0.005)
        r["read_query_invoke_ms"] = await median_ms(read_query, runs)
        # "minus the tools' own time": time each host call's invoke() inside the execution and subtract it.
        tool_s = [0.0]
        invoke = rt.invoke

        async def timed_invoke(name: str, args: Any, principal: Any, *, read_only: bool = False) -> Any:
            t0 = time.perf_counter()
            try:
                return await invoke(name, args, principal, read_only=read_only)
            finally:
                if IN_CODE_EXECUTION.get():
                    tool_s[0] += time.perf_counter() - t0

        rt.invoke = timed_invoke  # type: ignore[method-assign]
        seq10, overhead = [], []
        for i in range(max(80, runs // 5)):
            tool_s[0] = 0.0
            t0 = time.perf_counter()
            await execute(SEQ10)()
            if i >= 20:
                seq10.append((time.perf_counter() - t0) * 1000)
                overhead.append(seq10[-1] - tool_s[0] * 1000)
        rt.invoke = invoke  # type: ignore[method-assign]
        r["seq10_ms"] = statistics.median(seq10)
        r["seq10_minus_tools_ms"] = statistics.median(overhead)
        r["seq10_per_call_overhead_ms"] = (r["seq10_minus_tools_ms"] - r["trivial_invoke_ms"]) / 10
        r["all4_ms"] = await median_ms(execute(ALL4), max(50, runs // 5))

        # Hard-timeout precision: how far past the deadline each kind of stuck execution ends.
        async def overshoot(code: str, timeout_ms: int, n: int, freeze: bool = False) -> list[float]:
            pool = await engine(rt).pool()
            out = []
            for _ in range(n):
                t0 = time.perf_counter()
                task = asyncio.ensure_future(rt.invoke("pg_execute_code", {"code": code, "timeout": timeout_ms},
                                                       LOCAL_PRINCIPAL))
                if freeze:
                    for _ in range(1000):  # until the execution holds a worker
                        if pool.busy:
                            break
                        await asyncio.sleep(0.001)
                    for w in list(pool.busy):
                        os.kill(w.pid, signal.SIGSTOP)
                res = await task
                assert res["error"]["code"] == "TIMEOUT", res
                out.append((time.perf_counter() - t0) * 1000 - timeout_ms)
                await asyncio.sleep(0.05)
            return out

        loop_over = await overshoot("while (true) {}", 200, 20)
        hung_over = await overshoot("await pg.core.readQuery({sql: 'SELECT pg_sleep(5)'})", 200, 10)
        frozen_over = await overshoot("while (true) {}", 200, 10, freeze=True)
        for name, vals in (("loop", loop_over), ("hung_call", hung_over), ("frozen_worker", frozen_over)):
            r[f"timeout_{name}_overshoot_median_ms"] = statistics.median(vals)
            r[f"timeout_{name}_overshoot_max_ms"] = max(vals)

        # Throughput: as many trivial executions as the default pool completes, 16 callers at once.
        async def caller(stop: float, counter: list[int]) -> None:
            while time.perf_counter() < stop:
                await rt.invoke("pg_execute_code", {"code": "return 1+1"}, LOCAL_PRINCIPAL)
                counter[0] += 1

        counter = [0]
        t0 = time.perf_counter()
        await asyncio.gather(*(caller(t0 + 3.0, counter) for _ in range(16)))
        r["executions_per_second"] = counter[0] / (time.perf_counter() - t0)
    return r


async def over_http(dsn: str, runs: int) -> dict[str, Any]:
    port = free_port()
    env = {**os.environ, "PGCODE_DATABASE_URL": dsn, "PGCODE_RATE_LIMIT_READ": UNLIMITED,
           "PGCODE_RATE_LIMIT_CODE": UNLIMITED, "PGCODE_RATE_LIMIT_ADMIN": UNLIMITED}
    # Started once, before any timing: a blocking Popen is fine here.
    server = subprocess.Popen([sys.executable, "-m", "pgcode", "serve", "--port", str(port)], env=env,  # noqa: ASYNC220
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    r: dict[str, Any] = {}
    try:
        async with httpx2.AsyncClient(base_url=base) as http:
            for _ in range(300):
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx2.HTTPError:
                    await asyncio.sleep(0.1)

            def post(path: str, body: dict[str, Any]) -> Callable[[], Awaitable[object]]:
                async def go() -> object:
                    resp = await http.post(path, json=body)
                    resp.raise_for_status()
                    data = resp.json()
                    assert not isinstance(data, dict) or data.get("success", True), data
                    return data
                return go

            r["rest_read_query_ms"] = await median_ms(post("/v1/tools/pg_read_query", SELECT1), runs)
            r["rest_execute_trivial_ms"] = await median_ms(post("/v1/execute", {"code": "return 1+1"}), runs)
            r["rest_execute_vs_read_query"] = r["rest_execute_trivial_ms"] / r["rest_read_query_ms"]
            r["rest_execute_seq20_ms"] = await median_ms(post("/v1/execute", {"code": SEQ20}), max(30, runs // 10))
            r["rest_execute_all20_ms"] = await median_ms(post("/v1/execute", {"code": ALL20}), max(30, runs // 10))
        async with Client(f"{base}/mcp") as client:

            async def mcp20() -> object:
                for i in range(20):
                    res = await client.call_tool("pg_read_query", {"sql": f"SELECT {i}"})
                    assert not res.is_error
                return None

            def mcp_call(name: str, args: dict[str, Any]) -> Callable[[], Awaitable[object]]:
                async def go() -> object:
                    res = await client.call_tool(name, args)
                    assert not res.is_error, res
                    return res
                return go

            # Side by side over MCP, interleaved so that the machine's drift hits every row alike.
            rows = {"mcp_read_query_ms": mcp_call("pg_read_query", SELECT1),
                    "mcp_execute_trivial_ms": mcp_call("pg_execute_code", {"code": "return 1+1"}),
                    "mcp_20_calls_ms": mcp20,
                    "mcp_execute_seq20_ms": mcp_call("pg_execute_code", {"code": SEQ20}),
                    "mcp_execute_all20_ms": mcp_call("pg_execute_code", {"code": ALL20})}
            samples: dict[str, list[float]] = {k: [] for k in rows}
            for i in range(max(30, runs // 5) + 10):
                for key, fn in rows.items():
                    t0 = time.perf_counter()
                    await fn()
                    if i >= 10:  # warm-up
                        samples[key].append((time.perf_counter() - t0) * 1000)
            r.update({k: statistics.median(v) for k, v in samples.items()})
        r["speedup_seq20_vs_mcp"] = r["mcp_20_calls_ms"] / r["mcp_execute_seq20_ms"]
        r["speedup_all20_vs_mcp"] = r["mcp_20_calls_ms"] / r["mcp_execute_all20_ms"]
        r["mcp_execute_vs_read_query"] = r["mcp_execute_trivial_ms"] / r["mcp_read_query_ms"]
        r["read_in_code_ms"] = (r["mcp_execute_seq20_ms"] - r["mcp_execute_trivial_ms"]) / 20
    finally:
        server.terminate()
        server.wait(timeout=10)
    return r


LINES = [
    ("trivial_invoke_ms", "trivial `return 1+1` through invoke(), back to back (target <= 1 ms)"),
    ("trivial_invoke_paced_ms", "trivial through invoke(), 5 ms apart (a worker ready)"),
    ("rest_execute_trivial_ms", "trivial over REST POST /v1/execute"),
    ("rest_read_query_ms", "plain REST pg_read_query SELECT 1, same run"),
    ("rest_execute_vs_read_query", "REST execute / REST read_query (target <= 1.5)"),
    ("seq10_ms", "10 sequential pg_read_query calls in one execution"),
    ("seq10_minus_tools_ms", "... minus the tools' own time (their invoke() calls, timed inside)"),
    ("seq10_per_call_overhead_ms", "... bridge overhead per sequential call (beyond a trivial execution)"),
    ("all4_ms", "Promise.all of 4 pg_read_query calls"),
    ("timeout_loop_overshoot_median_ms", "runaway loop, ms past a 200 ms deadline (median)"),
    ("timeout_loop_overshoot_max_ms", "runaway loop, ms past the deadline (max)"),
    ("timeout_hung_call_overshoot_median_ms", "hung tool call, ms past the deadline (median)"),
    ("timeout_hung_call_overshoot_max_ms", "hung tool call, ms past the deadline (max)"),
    ("timeout_frozen_worker_overshoot_median_ms", "frozen worker (hard kill), ms past the deadline (median)"),
    ("timeout_frozen_worker_overshoot_max_ms", "frozen worker (hard kill), ms past the deadline (max)"),
    ("executions_per_second", "trivial executions per second, default pool, 16 callers"),
    ("rest_execute_seq20_ms", "20 pg_read_query calls as one execution over REST (sequential awaits)"),
    ("rest_execute_all20_ms", "... the same with Promise.all"),
    ("mcp_read_query_ms", "MCP tools/call pg_read_query SELECT 1 (interleaved side by side)"),
    ("mcp_execute_trivial_ms", "MCP pg_execute_code `return 1+1`"),
    ("mcp_execute_vs_read_query", "... trivial execution / plain call (target <= 1.5)"),
    ("mcp_20_calls_ms", "20 reads as 20 MCP tools/calls"),
    ("mcp_execute_seq20_ms", "one MCP pg_execute_code, 20 sequential reads"),
    ("mcp_execute_all20_ms", "one MCP pg_execute_code, 20 reads with Promise.all"),
    ("speedup_seq20_vs_mcp", "speed-up, sequential execution vs 20 MCP calls (target >= 7)"),
    ("speedup_all20_vs_mcp", "speed-up, Promise.all execution vs 20 MCP calls (target >= 10)"),
    ("read_in_code_ms", "one read inside code mode (seq20 - trivial) / 20"),
    ("direct_query_ms", "the bare query on a pooled connection, same run"),
]


async def main(runs: int) -> dict[str, Any]:
    dsn = os.environ.get("PGCODE_DATABASE_URL") or os.environ["TEST_DATABASE_URL"]
    results = await in_process(dsn, runs)
    async with Runtime(Settings(database_url=dsn)) as rt:

        async def direct() -> object:
            async with rt.db.pool.connection() as conn:
                cur = await conn.execute("SELECT 1")
                return await cur.fetchall()

        results["direct_query_ms"] = await median_ms(direct, runs, warmup=50)
    results.update(await over_http(dsn, runs))
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=1000)
    ns = parser.parse_args()
    res = asyncio.run(main(ns.runs))
    for key, label in LINES:
        print(f"{label:<78} {res[key]:9.3f}")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "codemode.json").write_text(json.dumps({**res, "runs": ns.runs, "cpus": os.cpu_count()}, indent=2))
