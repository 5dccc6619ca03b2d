"""The index advisor (pgcode.advisor.engine) and its tools: pg_analyze_query_indexes and pg_analyze_workload_indexes
propose the index a seq-scan heavy query needs, with a positive cost gain (hypopg on PG 15, heuristics on the
embedded PG 18, which lacks hypopg), and leave no hypothetical index on the pooled connection."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pgcode.advisor.querycols import Use, levels, param_count
from pgcode.core.runtime import Runtime
from pgcode.settings import Settings
from pgcode.types import LOCAL_PRINCIPAL, Principal, Scope
from tests.fix_db import Call, assert_tool_error

pytestmark = pytest.mark.anyio

NOBODY = Principal("nobody", frozenset())


@pytest.fixture(scope="module")
def adv(dsn: str, schema: str) -> Iterator[str]:
    """100k rows queried by an unindexed, selective column; a child table joined on an unindexed key."""
    s = schema
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"""
            CREATE TABLE {s}.big (id int PRIMARY KEY, code int NOT NULL, cat int NOT NULL, note text);
            INSERT INTO {s}.big SELECT g, g * 7, g % 10, 'n' || g FROM generate_series(1, 100000) g;
            CREATE TABLE {s}.child (id int PRIMARY KEY, big_id int NOT NULL, v int NOT NULL);
            INSERT INTO {s}.child SELECT g, 1 + g % 1000, g % 50 FROM generate_series(1, 50000) g;
            ANALYZE {s}.big;
            ANALYZE {s}.child;
        """)
    yield s


def hypopg(rt: Runtime) -> bool:
    return rt.db.caps.has_extension("hypopg")


def check_method(out: dict[str, Any], rt: Runtime) -> None:
    if hypopg(rt):
        assert out["method"] == "hypopg" and "note" not in out
    else:  # the embedded PostgreSQL 18 has no hypopg
        assert out["method"] == "heuristic" and "hypopg is not installed" in out["note"]


async def test_query_indexes_proposes_the_missing_index(call: Call, rt: Runtime, adv: str) -> None:
    out = await call("pg_analyze_query_indexes", {"sql": f"SELECT * FROM {adv}.big WHERE code = 4242"})
    check_method(out, rt)
    top = out["recommendations"][0]
    assert (top["schema"], top["table"], top["columns"]) == (adv, "big", ["code"])
    assert top["ddl"] == f'CREATE INDEX CONCURRENTLY ON "{adv}"."big" ("code")'
    assert top["cost_gain"] > 0 and 0 < top["gain_ratio"] <= 1 and top["estimated_size_bytes"] > 1024 * 1024
    q = out["query"]
    assert q["cost_after"] < q["cost_before"] and q["indexes"] == [f"hypothetical index on {adv}.big (code)"]
    assert q["plan_before"][0]["node_type"] == "Seq Scan"
    if hypopg(rt):
        assert any(n["index"] == f"hypothetical index on {adv}.big (code)" for n in q["plan_after"])
    else:
        assert q["plan_after"] is None


async def test_query_indexes_fill_placeholders(call: Call, rt: Runtime, adv: str) -> None:
    """$n without values: a value of typical frequency from pg_stats, on every version, with the reason."""
    out = await call("pg_analyze_query_indexes", {"sql": f"SELECT * FROM {adv}.big WHERE code = $1"})
    assert out["recommendations"][0]["columns"] == ["code"] and out["recommendations"][0]["cost_gain"] > 0
    params = out["query"]["params"]
    assert len(params) == 1 and int(params[0]) % 7 == 0  # sampled from the column's statistics
    assert out["query"]["param_values"][0]["column"] == "big.code" and out["query"]["param_values"][0]["why"]
    given = await call("pg_analyze_query_indexes", {"sql": f"SELECT * FROM {adv}.big WHERE code = $1",
                                                    "params": [14]})
    assert given["query"]["params"] == [14] and given["recommendations"][0]["columns"] == ["code"]


async def test_query_indexes_join_filter_and_sort(call: Call, rt: Runtime, adv: str) -> None:
    out = await call("pg_analyze_query_indexes", {
        "sql": f"SELECT b.note FROM {adv}.big b JOIN {adv}.child c ON c.big_id = b.id "
               f"WHERE c.v = 7 AND b.cat = 3 ORDER BY b.code LIMIT 20"})
    check_method(out, rt)
    assert out["candidates_considered"] >= 4  # child(v), child(big_id), big(cat), big(code) ...
    recommended = {(r["table"], tuple(r["columns"])) for r in out["recommendations"]}
    assert recommended and all(table in ("big", "child") for table, _ in recommended)
    assert all(r["cost_gain"] > 0 for r in out["recommendations"])


async def test_query_indexes_with_analyze_runs_a_read(call: Call, adv: str) -> None:
    out = await call("pg_analyze_query_indexes", {"sql": f"SELECT * FROM {adv}.big WHERE code = 4242",
                                                  "analyze": True})
    assert out["actual"]["actual_rows"] == 1 and out["actual"]["execution_time_ms"] > 0
    assert out["actual"]["plan"][0]["node_type"] == "Seq Scan"


async def test_query_indexes_plan_an_update_without_running_it(call: Call, adv: str,
                                                               conn: psycopg.Connection[Any]) -> None:
    out = await call("pg_analyze_query_indexes", {"sql": f"UPDATE {adv}.big SET note = 'changed' WHERE code = 70"})
    assert out["recommendations"][0]["columns"] == ["code"]
    assert conn.execute(f"SELECT note FROM {adv}.big WHERE id = 10").fetchone() == ("n10",)


async def test_query_indexes_refusals(call: Call, adv: str, conn: psycopg.Connection[Any]) -> None:
    cases = [
        ({"sql": f"UPDATE {adv}.big SET note = 'x' WHERE code = 7", "analyze": True}, "only reads"),
        ({"sql": f"INSERT INTO {adv}.big VALUES (0, 0, 0, 'x')"}, "SELECT, UPDATE or DELETE"),
        ({"sql": f"SELECT 1; DELETE FROM {adv}.big"}, "one SQL statement"),
        ({"sql": "SELECT pg_terminate_backend(1)"}, "pg_terminate_backend"),
        ({"sql": f"SELECT * FROM {adv}.big WHERE code = $1", "params": [1, 2]}, "parameter"),
        ({"sql": f"SELECT * FROM {adv}.big WHERE code = $1", "analyze": True}, "params"),
        ({"sql": "SELEC 1"}, "syntax"),
        ({"sql": f"SELECT * FROM {adv}.big", "maxIndexes": 0}, "maxIndexes"),
    ]
    for args, fragment in cases:
        with pytest.raises(Exception) as exc:
            await call("pg_analyze_query_indexes", args)
        assert_tool_error(exc, "INVALID_INPUT", fragment)
    assert conn.execute(f"SELECT count(*) FROM {adv}.big").fetchone() == (100000,)


async def test_workload_indexes_from_pg_stat_statements(call: Call, rt: Runtime, dsn: str, adv: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:  # server-side parameters: recorded as code = $1
        for i in range(25):
            c.execute(f"SELECT * FROM {adv}.big WHERE code = %s", (i * 7,))
            c.execute(f"SELECT count(*) FROM {adv}.child WHERE v = %s", (i % 50,))
    out = await call("pg_analyze_workload_indexes", {"search": f"{adv}.", "includePlans": True})
    check_method(out, rt)
    code = next(r for r in out["recommendations"] if r["table"] == "big")
    assert code["columns"] == ["code"] and code["cost_gain"] > 0
    q = out["queries"][code["queries"][0]]
    assert q["query"] == f"SELECT * FROM {adv}.big WHERE code = $1" and q["calls"] >= 25
    assert q["cost_after"] < q["cost_before"] and q["plan_before"]
    assert out["total_cost_after"] < out["total_cost_before"]


async def test_workload_skips_what_it_cannot_advise(call: Call, dsn: str, adv: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"CREATE TABLE {adv}.scratch AS SELECT 1 AS x")
        c.execute(f"DROP TABLE {adv}.scratch")
    out = await call("pg_analyze_workload_indexes", {"search": f"{adv}.scratch", "topQueries": 50})
    assert out["recommendations"] == [] and out["statements_analyzed"] == 0
    assert all(s["reason"] for s in out["skipped"])  # CREATE TABLE AS, DROP TABLE (when utilities are tracked)


async def test_no_hypothetical_index_is_left_on_the_connection(settings: Settings, adv: str) -> None:
    """hypopg's indexes live in the backend, outside transactions, and DISCARD ALL keeps them."""
    async with Runtime(settings.model_copy(update={"pool_min_size": 1, "pool_max_size": 1})) as single:
        if not single.db.caps.has_extension("hypopg"):
            pytest.skip("needs hypopg, which this server lacks")
        out = await single.invoke("pg_analyze_query_indexes", {"sql": f"SELECT * FROM {adv}.big WHERE code = 1"},
                                  LOCAL_PRINCIPAL)
        assert out["recommendations"]
        out = await single.invoke("pg_read_query", {"sql": "SELECT count(*) AS n FROM hypopg_list_indexes"},
                                  LOCAL_PRINCIPAL)
        assert out["rows"] == [{"n": 0}]


async def test_scope_read_is_needed(call: Call, adv: str) -> None:
    for name, args in (("pg_analyze_query_indexes", {"sql": "SELECT 1"}), ("pg_analyze_workload_indexes", {})):
        with pytest.raises(Exception) as exc:
            await call(name, args, NOBODY)
        assert_tool_error(exc, "FORBIDDEN")
    out = await call("pg_analyze_query_indexes", {"sql": f"SELECT * FROM {adv}.big WHERE code = 7"},
                     Principal.with_scope("r", Scope.READ))
    assert out["recommendations"][0]["columns"] == ["code"]


def test_parse_conditions_joins_sorts_and_parameters() -> None:
    [level] = levels("SELECT * FROM s.t a JOIN u ON u.id = a.uid WHERE a.v = $1 AND w BETWEEN 1 AND $2 "
                     "AND x IN (1, 2) AND lower(y) = 'a' AND z IS NULL ORDER BY a.k DESC")
    assert level.relations == {"a": ("s", "t"), "u": (None, "u")}
    assert set(level.uses) == {(("u", "id"), Use.JOIN), (("a", "uid"), Use.JOIN), (("a", "v"), Use.EQ),
                               ((None, "w"), Use.RANGE), ((None, "x"), Use.EQ), ((None, "z"), Use.EQ),
                               (("a", "k"), Use.ORDER)}
    assert level.params == {1: ("a", "v"), 2: (None, "w")} and param_count("SELECT $3, $1") == 3
    levels_ = levels("DELETE FROM t WHERE id IN (SELECT t_id FROM u WHERE flag = true)")
    assert sorted(next(iter(lv.relations.values())) for lv in levels_) == [(None, "t"), (None, "u")]
