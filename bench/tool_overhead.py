"""Median latency of pg_read_query `SELECT 1`: direct psycopg, invoke(), REST over HTTP, MCP over HTTP.

The direct query and invoke() are timed in turn, call by call, in one process on the server's event loop, and the
work a call leaves for after its answer finishes untimed before the next call: their difference is the target's
figure. The same pair back to back (each call timed with what the one before left behind) is printed beside it.

Usage: TEST_DATABASE_URL=... .venv/bin/python bench/tool_overhead.py [--calls N]
Prints one line per path with its ratio to the direct query, and writes bench/results/tool_overhead.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import httpx2
import uvloop
from _timing import free_port, interleaved_medians_ms, median_ms
from mcp import Client

from pgcode.core.runtime import Runtime
from pgcode.settings import Settings
from pgcode.types import LOCAL_PRINCIPAL

ARGS = {"sql": "SELECT 1"}
UNLIMITED = "100000000/minute"




async def main(calls: int) -> dict[str, float]:
    dsn = os.environ.get("PGCODE_DATABASE_URL") or os.environ["TEST_DATABASE_URL"]
    results: dict[str, float] = {}
    # Rate limits would stop a benchmark long before it ends; their cost (a few µs) is still paid.
    async with Runtime(Settings(database_url=dsn, rate_limit_read=UNLIMITED)) as rt:

        async def direct() -> object:
            async with rt.db.pool.connection() as conn:
                cur = await conn.execute("SELECT 1")
                return await cur.fetchall()

        async def via_invoke() -> object:
            return await rt.invoke("pg_read_query", ARGS, LOCAL_PRINCIPAL)

        # Each call's leftover work (a read's connection going back to the pool, the pool's reset of a returned
        # connection) finishes untimed before the next call: neither path is timed with the other's.
        medians = await interleaved_medians_ms({"a_direct_psycopg_ms": direct, "b_invoke_ms": via_invoke}, calls,
                                               warmup=50, between=rt.db.settle)
        results.update(medians)
        # The same calls back to back: the leftover work of one lands in the next, whichever path it is.
        back_to_back = await interleaved_medians_ms({"direct": direct, "invoke": via_invoke}, calls, warmup=50)
        results["invoke_overhead_back_to_back_ms"] = back_to_back["invoke"] - back_to_back["direct"]

    port = free_port()
    env = {**os.environ, "PGCODE_DATABASE_URL": dsn, "PGCODE_RATE_LIMIT_READ": UNLIMITED}
    # Started once, before any timing: a blocking Popen is fine here.
    server = subprocess.Popen([sys.executable, "-m", "pgcode", "serve", "--port", str(port)], env=env,  # noqa: ASYNC220
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    base = f"http://127.0.0.1:{port}"
    try:
        async with httpx2.AsyncClient(base_url=base) as http:
            for _ in range(300):
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx2.HTTPError:
                    await asyncio.sleep(0.1)

            async def via_rest() -> object:
                resp = await http.post("/v1/tools/pg_read_query", json=ARGS)
                resp.raise_for_status()
                return resp.json()

            results["c_rest_http_ms"] = await median_ms(via_rest, calls, warmup=50)
        async with Client(f"{base}/mcp") as client:

            async def via_mcp() -> object:
                return await client.call_tool("pg_read_query", ARGS)

            results["d_mcp_http_ms"] = await median_ms(via_mcp, calls, warmup=50)
    finally:
        server.terminate()
        server.wait(timeout=10)
    return results


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1000)
    ns = parser.parse_args()
    # On the event loop `pgcode serve` runs on.
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        res = runner.run(main(ns.calls))
    base = res["a_direct_psycopg_ms"]
    for key in ("a_direct_psycopg_ms", "b_invoke_ms", "c_rest_http_ms", "d_mcp_http_ms"):
        print(f"{key:<22} {res[key]:7.3f} ms  x{res[key] / base:5.2f}")
    res["invoke_overhead_ms"] = res["b_invoke_ms"] - base
    print(f"invoke() overhead over a direct pooled query: {res['invoke_overhead_ms']:.3f} ms (target <= 0.15); "
          f"calls back to back: {res['invoke_overhead_back_to_back_ms']:.3f} ms")
    print(f"REST over loopback HTTP: {res['c_rest_http_ms']:.3f} ms (target <= 1.5)")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "tool_overhead.json").write_text(json.dumps({**res, "calls": ns.calls}, indent=2))
