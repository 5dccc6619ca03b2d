"""The health report's wall time with tables held in ACCESS EXCLUSIVE by another session, against none locked.

    TEST_DATABASE_URL=postgresql://... python -m bench.report_locked [--runs 5]

Builds the health test conditions in schema bench_report_locked, times the whole report (every check and
section) unlocked and then with four of its tables locked, prints one line and writes
bench/results/report_locked.json. The schema is dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import time
from pathlib import Path

import psycopg
from psycopg import sql

from pgcode.core.runtime import Runtime
from pgcode.report import collect
from pgcode.settings import Settings
from pgcode.types import LOCAL_PRINCIPAL
from tests._health_conditions import make_conditions

SCHEMA = "bench_report_locked"
LOCKED = ("fk_child", "dup_t", "unused_t", "dead_t")


async def _times(dsn: str, runs: int) -> tuple[list[float], int, int]:
    samples = []
    unknown = unavailable = 0
    async with Runtime(Settings(database_url=dsn)) as rt:
        await collect(rt, LOCAL_PRINCIPAL)  # warm-up: pool, capabilities
        for _ in range(runs):
            t0 = time.perf_counter()
            report = await collect(rt, LOCAL_PRINCIPAL)
            samples.append((time.perf_counter() - t0) * 1000)
            unknown = max(unknown, report["summary"]["unknown"])
            unavailable = max(unavailable, len(set(report["unavailable"]) - {"top_queries"}))
    return samples, unknown, unavailable


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    dsn = os.environ["TEST_DATABASE_URL"]
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(sql.SQL("DROP SCHEMA IF EXISTS {0} CASCADE; CREATE SCHEMA {0}").format(sql.Identifier(SCHEMA)))
    make_conditions(dsn, SCHEMA)
    try:
        free, _, _ = asyncio.run(_times(dsn, args.runs))
        with psycopg.connect(dsn) as holder:
            for t in LOCKED:
                holder.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(SCHEMA, t)))
            locked, unknown, unavailable = asyncio.run(_times(dsn, args.runs))
            holder.rollback()
    finally:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(SCHEMA)))
    out = {"runs": args.runs, "unlocked_median_ms": round(statistics.median(free), 1),
           "locked_median_ms": round(statistics.median(locked), 1), "locked_max_ms": round(max(locked), 1),
           "locked_tables": len(LOCKED), "unknown_checks_when_locked": unknown,
           "sections_lost_when_locked": unavailable}
    path = Path(__file__).parent / "results" / "report_locked.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    print(f"report: {out['unlocked_median_ms']} ms unlocked, {out['locked_median_ms']} ms (max "
          f"{out['locked_max_ms']} ms) with {len(LOCKED)} tables locked; {unknown} unknown checks, "
          f"{unavailable} sections lost")


if __name__ == "__main__":
    main()
