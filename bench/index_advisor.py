"""Transactions per second of a pgbench reporting workload with no indexes, with the index advisor's set built for
real, and with a hand-picked reference set.

Usage: TEST_DATABASE_URL=... .venv/bin/python bench/index_advisor.py [--scale 5] [--history 1000000] [--seconds 15]
Builds pgbench's tables (pgbench -i) in a schema of its own (bench_advisor, dropped afterwards unless --keep),
adds history rows and spreads the balances, runs the workload once without indexes so pg_stat_statements sees it,
asks pg_analyze_workload_indexes, then runs `pgbench -T` per index set, the sets alternating for --rounds
rounds (the best round of each kept: on a shared machine a busy neighbour only ever slows a round down).
Prints one line and writes bench/results/index_advisor.json.
Target: the advised set reaches at least 80% of the reference set's TPS.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg

from pgcode.core.runtime import Runtime
from pgcode.settings import Settings
from pgcode.types import LOCAL_PRINCIPAL

SCHEMA = "bench_advisor"
PGBENCH = shutil.which("pgbench") or "/usr/lib/postgresql/15/bin/pgbench"
WORKLOAD = f"""\\set bid random(1, :scale)
\\set thr random(4972, 4975)
\\set aid random(1, 100000 * :scale)
\\set tid random(1, 10 * :scale)
SELECT * FROM {SCHEMA}.pgbench_accounts WHERE bid = :bid AND abalance > :thr;
SELECT count(*) FROM {SCHEMA}.pgbench_history WHERE aid = :aid;
SELECT * FROM {SCHEMA}.pgbench_history WHERE tid = :tid ORDER BY mtime DESC LIMIT 10;
SELECT aid, delta, mtime FROM {SCHEMA}.pgbench_history WHERE aid = :aid ORDER BY mtime DESC LIMIT 5;
SELECT aid, abalance FROM {SCHEMA}.pgbench_accounts WHERE bid = :bid ORDER BY abalance DESC LIMIT 10;
"""
# What a DBA picks for these five statements: one index per access path, sort keys after the equality column.
REFERENCE = [f"CREATE INDEX ON {SCHEMA}.pgbench_accounts (bid, abalance)",
             f"CREATE INDEX ON {SCHEMA}.pgbench_history (aid, mtime)",
             f"CREATE INDEX ON {SCHEMA}.pgbench_history (tid, mtime)"]


def pgbench(dsn: str, *args: str) -> str:
    env = {**os.environ, "PGOPTIONS": f"-c search_path={SCHEMA}"}
    done = subprocess.run([PGBENCH, *args, dsn], env=env, capture_output=True, text=True, check=True)
    return done.stdout + done.stderr


def build(dsn: str, scale: int, history: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
        c.execute(f"CREATE SCHEMA {SCHEMA}")
    pgbench(dsn, "-i", "-q", "-s", str(scale))
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("SELECT setseed(0.42)")
        c.execute(f"UPDATE {SCHEMA}.pgbench_accounts SET abalance = (random() * 10000)::int - 5000")
        c.execute(f"""INSERT INTO {SCHEMA}.pgbench_history (tid, bid, aid, delta, mtime)
                      SELECT 1 + (random() * (10 * {scale} - 1))::int, 1 + (random() * ({scale} - 1))::int,
                             1 + (random() * (100000 * {scale} - 1))::int, (random() * 10000)::int - 5000,
                             now() - random() * interval '30 days'
                      FROM generate_series(1, %s)""", (history,))
        c.execute(f"VACUUM (FREEZE, ANALYZE) {SCHEMA}.pgbench_accounts, {SCHEMA}.pgbench_history")


def secondary_indexes(dsn: str) -> list[str]:
    with psycopg.connect(dsn, autocommit=True) as c:
        rows = c.execute("SELECT indexrelid::regclass::text FROM pg_index i JOIN pg_class t ON t.oid = i.indrelid "
                         "JOIN pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = %s AND NOT i.indisprimary",
                         (SCHEMA,)).fetchall()
    return [r[0] for r in rows]


def use_indexes(dsn: str, ddl: list[str]) -> list[int]:
    """Drop every secondary index of the schema, build these, and return their built sizes in order."""
    with psycopg.connect(dsn, autocommit=True) as c:
        for name in secondary_indexes(dsn):
            c.execute(f"DROP INDEX {name}")
        sizes = []
        for i, statement in enumerate(ddl):
            name = f"bench_index_{i}"
            c.execute(statement.replace("CREATE INDEX ON", f"CREATE INDEX {name} ON", 1))
            row = c.execute("SELECT pg_relation_size(%s::regclass)", (f"{SCHEMA}.{name}",)).fetchone()
            sizes.append(int(row[0]) if row else 0)
        c.execute(f"VACUUM ANALYZE {SCHEMA}.pgbench_accounts, {SCHEMA}.pgbench_history")
    return sizes


def tps(dsn: str, script: str, scale: int, seconds: int) -> float:
    out = pgbench(dsn, "-n", "-M", "prepared", "-c", "2", "-j", "2", "-T", str(seconds), "-D", f"scale={scale}",
                  "-f", script)
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", out)
    assert match, out
    return float(match.group(1))


async def advise(dsn: str) -> tuple[dict[str, Any], float]:
    settings = Settings(database_url=dsn, statement_timeout_ms=600_000)
    async with Runtime(settings) as rt:
        started = time.perf_counter()
        out = await rt.invoke("pg_analyze_workload_indexes", {"search": f"{SCHEMA}.", "maxIndexes": 8},
                              LOCAL_PRINCIPAL)
        return out, time.perf_counter() - started


def main(scale: int, history: int, seconds: int, rounds: int, keep: bool) -> dict[str, Any]:
    dsn = os.environ.get("PGCODE_DATABASE_URL") or os.environ["TEST_DATABASE_URL"]
    build(dsn, scale, history)
    with tempfile.NamedTemporaryFile("w", suffix=".sql", delete=False) as f:
        f.write(WORKLOAD)
        script = f.name
    try:
        with psycopg.connect(dsn, autocommit=True) as c:  # this database's statements only: others are not ours
            c.execute("SELECT pg_stat_statements_reset(0, (SELECT oid FROM pg_database "
                      "WHERE datname = current_database()), 0)")
        none = tps(dsn, script, scale, seconds)
        advice, advise_s = asyncio.run(advise(dsn))
        advised_ddl = [r["ddl"].replace("CONCURRENTLY ", "") for r in advice["recommendations"]]
        advised = reference = 0.0
        built: list[int] = []
        for _ in range(rounds):  # alternate the sets: a busy neighbour slows one round, not one set
            built = use_indexes(dsn, advised_ddl)
            advised = max(advised, tps(dsn, script, scale, seconds))
            use_indexes(dsn, REFERENCE)
            reference = max(reference, tps(dsn, script, scale, seconds))
    finally:
        os.unlink(script)
        if not keep:
            with psycopg.connect(dsn, autocommit=True) as c:
                c.execute(f"DROP SCHEMA IF EXISTS {SCHEMA} CASCADE")
    sizes = [{"ddl": r["ddl"], "estimated_bytes": r["estimated_size_bytes"], "built_bytes": size,
              "error": round(r["estimated_size_bytes"] / size - 1, 3)}
             for r, size in zip(advice["recommendations"], built, strict=True)]
    result = {"scale": scale, "history_rows": history, "seconds": seconds, "rounds": rounds,
              "tps_none": none, "tps_advised": advised, "tps_reference": reference,
              "speedup_vs_none": round(advised / none, 1) if none else None,
              "share_of_reference": round(advised / reference, 3) if reference else None,
              "advised": advised_ddl, "reference": REFERENCE, "drop": [d["ddl"] for d in advice["drop"]],
              "sizes": sizes, "advisor_seconds": round(advise_s, 2),
              "params": {q["query"]: q["params"] for q in advice["queries"]}}
    out_dir = Path(__file__).parent / "results"
    out_dir.mkdir(exist_ok=True)
    (out_dir / "index_advisor.json").write_text(json.dumps(result, indent=2, default=str))
    return result


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--scale", type=int, default=5)
    parser.add_argument("--history", type=int, default=1_000_000)
    parser.add_argument("--seconds", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3, help="rounds per index set, best kept")
    parser.add_argument("--keep", action="store_true", help="keep the bench_advisor schema")
    a = parser.parse_args()
    r = main(a.scale, a.history, a.seconds, a.rounds, a.keep)
    worst = max((abs(s["error"]) for s in r["sizes"]), default=0.0)
    print(f"index_advisor: scale {r['scale']} + {r['history_rows']} history rows: none {r['tps_none']:.1f} tps, "
          f"advised {r['tps_advised']:.1f} tps ({r['speedup_vs_none']}x), reference {r['tps_reference']:.1f} tps; "
          f"advised = {r['share_of_reference']:.0%} of reference; size estimates within {worst:.0%}; "
          f"advisor {r['advisor_seconds']} s")
