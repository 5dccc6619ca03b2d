"""Rows per second loading random 384-dimension vectors through pg_vector_batch_insert (binary COPY).

Usage: TEST_DATABASE_URL=... .venv/bin/python bench/vector_load.py [--rows N] [--dims D] [--batch B]
Loads into a table of its own (schema bench_vector, dropped afterwards), prints one line, and writes
bench/results/vector_load.json. Only the tool calls are timed, not generating the random numbers; each batch
goes through the whole invoke(), as a caller's would (validation, scope, role, the COPY, the audit row).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time
from pathlib import Path
from typing import Any

from pgcode.core.runtime import Runtime
from pgcode.settings import Settings
from pgcode.types import LOCAL_PRINCIPAL

SCHEMA = "bench_vector"
UNLIMITED = "100000000/minute"


async def main(rows: int, dims: int, batch: int) -> dict[str, Any]:
    dsn = os.environ.get("PGCODE_DATABASE_URL") or os.environ["TEST_DATABASE_URL"]
    settings = Settings(database_url=dsn, rate_limit_write=UNLIMITED, rate_limit_admin=UNLIMITED,
                        statement_timeout_ms=600_000)
    rng = random.Random(42)
    async with Runtime(settings) as rt:

        async with rt.db.pool.connection() as conn:
            await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
            await conn.execute(f"CREATE SCHEMA {SCHEMA}")
            await conn.execute(f"CREATE TABLE {SCHEMA}.items (id int, embedding vector({dims}))")
        elapsed, done, fmt = 0.0, 0, None

        def batch_args(n: int) -> dict[str, Any]:
            vectors = [[rng.random() for _ in range(dims)] for _ in range(n)]
            return {"table": f"{SCHEMA}.items", "column": "embedding", "vectors": vectors,
                    "data": [{"id": done + i} for i in range(n)]}

        try:
            while done < rows:
                args = batch_args(min(batch, rows - done))
                t0 = time.perf_counter()
                out = await rt.invoke("pg_vector_batch_insert", args, LOCAL_PRINCIPAL)
                elapsed += time.perf_counter() - t0
                done += out["inserted"]
                fmt = out["format"]
            async with rt.db.pool.connection() as conn:
                cur = await conn.execute(f"SELECT count(*) FROM {SCHEMA}.items")
                stored = (await cur.fetchone() or (0,))[0]
        finally:
            async with rt.db.pool.connection() as conn:
                await conn.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    return {"rows": done, "stored": stored, "dims": dims, "batch": batch, "format": fmt,
            "seconds": round(elapsed, 3), "rows_per_s": round(done / elapsed, 1),
            "mb_per_s": round(done * dims * 4 / elapsed / 2**20, 1)}


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--dims", type=int, default=384)
    parser.add_argument("--batch", type=int, default=10_000)
    ns = parser.parse_args()
    res = asyncio.run(main(ns.rows, ns.dims, ns.batch))
    print(f"pg_vector_batch_insert: {res['rows']} x {res['dims']} dims in {res['seconds']} s = "
          f"{res['rows_per_s']:.0f} rows/s ({res['mb_per_s']} MB/s of float4, {res['format']} COPY, "
          f"batches of {res['batch']}, through invoke())")
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "vector_load.json").write_text(json.dumps(res, indent=2))
