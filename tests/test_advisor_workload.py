"""The index advisor on a small pgbench-like workload: realistic $n values (never NULL for LIMIT), a DBA's
multi-column indexes, the user's statements only (pgcode's own left out), no duplicate of an existing index,
drop advice for the index a new one makes redundant, and a size estimate near the built index's size."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pgcode.advisor.sizing import btree_size
from pgcode.advisor.workload import user_workload
from pgcode.core.runtime import Runtime
from pgcode.types import Principal, Scope
from tests.fix_db import Call

pytestmark = pytest.mark.anyio

READER = Principal.with_scope("reader", Scope.READ)
ACCOUNTS = "SELECT * FROM {s}.accounts WHERE bid = $1 AND abalance > $2"
HISTORY_AID = "SELECT count(*) FROM {s}.history WHERE aid = $1"
HISTORY_TID = "SELECT * FROM {s}.history WHERE tid = $1 ORDER BY mtime DESC LIMIT $2"


@pytest.fixture(scope="module")
def bench(dsn: str, schema: str) -> Iterator[str]:
    """pgbench's tables at a small scale (100k accounts in 10 branches, 200k history rows over 100 tellers),
    balances spread over -5000..5000, an index on history(aid) and one on accounts(bid) already there; then the
    workload: 20 calls of each of the three statements, run with server-side parameters as an application does."""
    s = schema
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"""
            CREATE TABLE {s}.branches (bid int PRIMARY KEY, bbalance int NOT NULL, filler char(88));
            CREATE TABLE {s}.tellers (tid int PRIMARY KEY, bid int NOT NULL, tbalance int NOT NULL, filler char(84));
            CREATE TABLE {s}.accounts (aid int PRIMARY KEY, bid int NOT NULL, abalance int NOT NULL, filler char(84))
                WITH (fillfactor = 100);
            CREATE TABLE {s}.history (tid int, bid int, aid int, delta int, mtime timestamp, filler char(22));
            INSERT INTO {s}.branches SELECT g, 0, '' FROM generate_series(1, 10) g;
            INSERT INTO {s}.tellers SELECT g, 1 + (g - 1) / 10, 0, '' FROM generate_series(1, 100) g;
            INSERT INTO {s}.accounts SELECT g, 1 + (g - 1) / 10000, (g * 7919) % 10001 - 5000, ''
                FROM generate_series(1, 100000) g;
            INSERT INTO {s}.history
            SELECT 1 + g % 100, 1 + g % 10, 1 + (g::bigint * 48271 % 100000)::int, g % 1000 - 500,
                   timestamp '2024-01-01' + g * interval '13 seconds', ''
                FROM generate_series(1, 200000) g;
            CREATE INDEX history_aid ON {s}.history (aid);
            CREATE INDEX accounts_bid ON {s}.accounts (bid);
        """)
        c.execute(f"VACUUM ANALYZE {s}.branches, {s}.tellers, {s}.accounts, {s}.history")
        for i in range(20):
            # about 27 rows a call: the top 0.27% of the balances of one branch
            c.execute(ACCOUNTS.format(s=s).replace("$1", "%s").replace("$2", "%s"), (1 + i % 10, 4972 + i % 3))
            c.execute(HISTORY_AID.format(s=s).replace("$1", "%s"), (1 + i * 4999,))
            c.execute(HISTORY_TID.format(s=s).replace("$1", "%s").replace("$2", "%s"), (1 + i * 5, 10))
    yield s


def by_table(out: dict[str, Any]) -> dict[str, list[tuple[str, ...]]]:
    found: dict[str, list[tuple[str, ...]]] = {}
    for r in out["recommendations"]:
        found.setdefault(r["table"], []).append(tuple(r["columns"]))
    return found


async def test_workload_gets_a_dbas_indexes(call: Call, rt: Runtime, bench: str) -> None:
    # pgcode's own statements on the same tables: a read tool and a query plan; neither is the user's workload
    for _ in range(3):
        await call("pg_read_query", {"sql": f"SELECT * FROM {bench}.history WHERE delta = 7"}, READER)
    await call("pg_analyze_query_indexes", {"sql": f"SELECT * FROM {bench}.accounts WHERE filler = 'x'"})
    out = await call("pg_analyze_workload_indexes", {"search": f"{bench}.", "includePlans": True})
    texts = {q["query"] for q in out["queries"]}
    assert texts == {t.format(s=bench) for t in (ACCOUNTS, HISTORY_AID, HISTORY_TID)}
    assert out["workload"]["excluded"]["pgcode"] >= 1 and "pgcode" in out["workload"]["why"]
    if not rt.db.caps.has_extension("hypopg"):
        return
    found = by_table(out)
    assert ("bid", "abalance") in found["accounts"]
    assert ("tid", "mtime") in found["history"]
    assert ("aid",) not in found.get("history", [])  # history_aid exists
    assert all("delta" not in cols and "filler" not in cols for cols in found["history"] + found["accounts"])
    accounts = next(r for r in out["recommendations"] if r["columns"] == ["bid", "abalance"])
    assert [d["index"] for d in accounts["makes_redundant"]] == [f"{bench}.accounts_bid"]
    assert f"DROP INDEX CONCURRENTLY \"{bench}\".\"accounts_bid\"" in [d["ddl"] for d in out["drop"]]
    assert accounts["write_cost"]["indexes_after"] == 3


async def test_workload_parameters_are_realistic(call: Call, rt: Runtime, bench: str) -> None:
    out = await call("pg_analyze_workload_indexes", {"search": f"{bench}."})
    queries = {q["query"]: q for q in out["queries"]}
    limited = queries[HISTORY_TID.format(s=bench)]
    assert limited["params"][1] == 10 and limited["rows_per_call"] == 10  # LIMIT: the rows a call returned
    assert "LIMIT" in limited["param_values"][1]["why"]
    accounts = queries[ACCOUNTS.format(s=bench)]
    bid, balance = accounts["params"]
    assert 1 <= int(bid) <= 10 and int(balance) > 4800  # the top of the balances, as the calls asked
    assert accounts["param_values"][1]["column"] == "accounts.abalance"
    assert 5 <= accounts["estimated_rows"] <= 150  # the planner expects about the 27 rows a call returned
    if rt.db.caps.has_extension("hypopg"):
        for q in out["queries"]:  # per-query ratios and per-index ratios tell the same story
            assert q["cost_after"] < q["cost_before"] / 5 or (q["indexes"] == [] and "aid" in q["query"])
        for r in out["recommendations"]:
            if len(r["queries"]) == 1:
                q = out["queries"][r["queries"][0]]
                assert r["gain_ratio"] == pytest.approx(q["gain_ratio"], abs=1e-3)


async def test_size_estimate_is_near_the_built_size(call: Call, rt: Runtime, bench: str,
                                                    conn: psycopg.Connection[Any]) -> None:
    if not rt.db.caps.has_extension("hypopg"):
        pytest.skip("needs hypopg, which this server lacks")
    out = await call("pg_analyze_workload_indexes", {"search": f"{bench}."})
    assert out["recommendations"]
    for r in out["recommendations"]:
        ddl = r["ddl"].replace("CONCURRENTLY ", "")
        name = f"probe_{'_'.join(r['columns'])}"
        conn.execute(ddl.replace("CREATE INDEX ON", f"CREATE INDEX {name} ON"))
        try:
            built = conn.execute(f"SELECT pg_relation_size('{bench}.{name}')").fetchone()[0]
        finally:
            conn.execute(f"DROP INDEX {bench}.{name}")
        assert abs(r["estimated_size_bytes"] - built) <= 0.3 * built, (r["ddl"], r["estimated_size_bytes"], built)


async def test_index_recommendations_is_the_same_engine(call: Call, rt: Runtime, bench: str) -> None:
    workload = await call("pg_analyze_workload_indexes", {"search": f"{bench}."})
    per_index = await call("pg_index_recommendations", {"schema": bench})
    assert per_index["source"] == "workload" and per_index["method"] == workload["method"]
    assert by_table(per_index) == by_table(workload)
    for r in per_index["recommendations"]:
        assert r["statements"] and r["ddl"] in {w["ddl"] for w in workload["recommendations"]}
        assert all(s["params"] is not None and None not in s["params"] for s in r["statements"])


def test_workload_keeps_only_the_users_statements() -> None:
    rows = [{"queryid": str(i), "query": q, "username": u, "calls": c, "rows": c, "total_ms": 10.0 * c}
            for i, (q, u, c) in enumerate([
                ("SELECT * FROM app.orders WHERE id = $1", "app", 50),
                ("SELECT * FROM app.orders WHERE id = $1", "pgcode_read", 500),
                ("SELECT * FROM app.orders WHERE status = $1", "app", 1),
                ("EXPLAIN (FORMAT JSON) SELECT * FROM app.orders", "app", 9),
                ("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace", "app", 9),
                ("SELECT * FROM pg_stat_statements", "app", 9),
                ("SELECT hypopg_reset()", "app", 9),
                ("CREATE TABLE app.t (id int)", "app", 9),
                ("INSERT INTO app.orders VALUES ($1)", "app", 9),
                ("SELECT * FROM app.orders WHERE", "app", 9),
            ])]
    kept, excluded = user_workload(rows, own_roles={"pgcode_read", "pgcode_write"}, min_calls=2, min_mean_ms=0,
                                   top=10)
    assert [(s.text, s.calls) for s in kept] == [("SELECT * FROM app.orders WHERE id = $1", 50)]
    assert dict(excluded) == {"pgcode": 1, "below_min_calls": 1, "explain": 1, "catalog": 3, "utility": 1,
                              "insert": 1, "unparsable": 1}
    slow_only, excluded = user_workload(rows[:1], own_roles=set(), min_calls=1, min_mean_ms=11, top=10)
    assert slow_only == [] and dict(excluded) == {"below_min_mean_ms": 1}


def test_size_estimate_counts_deduplication_and_fill_factor() -> None:
    unique = {"avg_width": 4, "n_distinct": -1, "typname": "int4"}
    few = {"avg_width": 4, "n_distinct": 10, "typname": "int4"}
    # 1M unique int4 keys: 16-byte tuples + 4-byte pointers at 90% of 8152 bytes: about 2,725 leaf pages
    assert 2700 * 8192 < btree_size(1_000_000, [unique]) < 2800 * 8192
    # 10 values: posting lists hold 6 bytes per row, the index is about a third of the unique one
    assert btree_size(1_000_000, [few]) < btree_size(1_000_000, [unique]) / 2.5
    assert btree_size(1_000_000, [few], fillfactor=100) < btree_size(1_000_000, [few])
    numeric = {"avg_width": 5, "n_distinct": 10, "typname": "numeric"}  # numeric cannot be deduplicated
    assert btree_size(1_000_000, [numeric]) >= btree_size(1_000_000, [unique])


async def test_covering_candidate_when_pages_are_all_visible(call: Call, rt: Runtime, bench: str,
                                                              conn: psycopg.Connection[Any]) -> None:
    """tid's 2,000 rows lie on every page: only an index-only scan beats the sequential scan, and the planner
    counts on one only for pages VACUUM marked all-visible (it cannot while another session holds an older
    snapshot, as on a busy shared server): then the index carries delta as an INCLUDE column."""
    if not rt.db.caps.has_extension("hypopg"):
        pytest.skip("needs hypopg, which this server lacks")
    conn.execute(f"VACUUM {bench}.history")
    visible = conn.execute("SELECT relallvisible::float / greatest(relpages, 1) FROM pg_class WHERE oid = %s::regclass",
                           (f"{bench}.history",)).fetchone()
    out = await call("pg_analyze_query_indexes", {"sql": f"SELECT delta FROM {bench}.history WHERE tid = 7"})
    top = out["recommendations"][0]
    assert top["columns"] == ["tid"] and top["gain_ratio"] > 0.1
    if visible is not None and visible[0] > 0.9:
        assert top["include"] == ["delta"] and top["ddl"].endswith('("tid") INCLUDE ("delta")')
    else:  # no index-only scan to gain: the smaller, deduplicated plain index
        assert top["include"] == [] and top["ddl"].endswith('("tid")')


async def test_partial_candidate_for_a_constant_condition(call: Call, rt: Runtime, bench: str) -> None:
    """A condition no row meets today (a work queue: rows waiting for a value) gives a small partial index."""
    if not rt.db.caps.has_extension("hypopg"):
        pytest.skip("needs hypopg, which this server lacks")
    out = await call("pg_analyze_query_indexes",
                     {"sql": f"SELECT * FROM {bench}.history WHERE delta IS NULL AND tid = $1"})
    top = out["recommendations"][0]
    assert top["where"] == '"delta" IS NULL' and top["columns"] == ["tid"]
    assert top["ddl"].endswith('("tid") WHERE "delta" IS NULL')
    assert top["estimated_size_bytes"] < 64 * 1024
