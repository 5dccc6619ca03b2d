"""kcache group: OS-level CPU and I/O per statement after a real workload, and what happens without the extension."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgcode.core.runtime import Runtime
from pgcode.errors import ToolError
from pgcode.types import Principal, Scope
from tests.fix_db import Call, assert_tool_error

pytestmark = pytest.mark.anyio

READER = Principal.with_scope("reader", Scope.READ)
WRITER = Principal.with_scope("writer", Scope.WRITE)
NOBODY = Principal("nobody", frozenset())
READ_TOOLS = ["pg_kcache_query_stats", "pg_kcache_top_cpu", "pg_kcache_top_io", "pg_kcache_database_stats",
              "pg_kcache_resource_analysis"]
ADMIN_TOOLS = ["pg_kcache_create_extension", "pg_kcache_reset"]


def one(conn: psycopg.Connection[Any], query: Any, *params: Any) -> Any:
    row = conn.execute(query, params or None).fetchone()
    assert row is not None
    return row[0]


def installed(conn: psycopg.Connection[Any]) -> bool:
    return bool(one(conn, "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_kcache'"))


@pytest.fixture(scope="module")
def workload(dsn: str, schema: str) -> Iterator[dict[str, str]]:
    """A few distinct statements run for real: CPU-heavy, sorting, writing, and sleeping.

    The table names carry a fresh suffix, so each statement's text is this run's own.
    """
    with psycopg.connect(dsn, autocommit=True, application_name="t_kcache_workload") as c:
        if not installed(c):
            pytest.skip("the kcache tools need pg_stat_kcache, which this server lacks")
        suffix = uuid.uuid4().hex[:8]
        big, sink = sql.Identifier(schema, f"big_{suffix}"), sql.Identifier(schema, f"sink_{suffix}")
        c.execute(sql.SQL("CREATE TABLE {} (id integer, v text)").format(big))
        c.execute(sql.SQL("CREATE TABLE {} (id integer, v text)").format(sink))
        c.execute(sql.SQL("INSERT INTO {} SELECT g, md5(g::text) FROM generate_series(1, 100000) g").format(big))
        queries = {
            "cpu": sql.SQL("SELECT count(*) FROM {} WHERE md5(v || id::text) LIKE '%abc%'").format(big),
            "sort": sql.SQL("SELECT v FROM {} ORDER BY md5(v) LIMIT 5").format(big),
            "write": sql.SQL("INSERT INTO {} SELECT g, repeat(md5(g::text), 10) FROM generate_series(1, 20000) g"
                             ).format(sink),
            "sleep": sql.SQL("SELECT pg_sleep(0.3) FROM {} LIMIT 1").format(big),
        }
        runs = {"cpu": 3, "sort": 2, "write": 2, "sleep": 2}
        for key, query in queries.items():
            for _ in range(runs[key]):
                c.execute(query)
        yield {key: f"sink_{suffix}" if key == "write" else f"big_{suffix}" for key in queries}


def find(rows: list[dict[str, Any]], fragment: str, words: str) -> dict[str, Any] | None:
    return next((r for r in rows if fragment in r["query"] and words in r["query"]), None)


# ---------------------------------------------------------------- without the extension / create


async def test_create_extension_or_missing(call: Call, conn: psycopg.Connection[Any], rt: Runtime) -> None:
    """Where pg_stat_kcache is installed, creating it again is a no-op; elsewhere every tool says it is missing."""
    if installed(conn):
        out = await call("pg_kcache_create_extension", {})
        assert out["created"] is False and out["version"] == one(
            conn, "SELECT extversion FROM pg_extension WHERE extname = 'pg_stat_kcache'")
        assert "pg_stat_kcache" in out["shared_preload_libraries"]
        assert rt.db.caps.has_extension("pg_stat_kcache")
        return
    with pytest.raises(ToolError) as exc:
        await call("pg_kcache_create_extension", {})
    assert_tool_error(exc, "EXTENSION_MISSING", "does not ship pg_stat_kcache")
    for name in [*READ_TOOLS, "pg_kcache_reset"]:
        with pytest.raises(ToolError) as exc:
            await call(name, {})
        err = assert_tool_error(exc, "EXTENSION_MISSING", "pg_stat_kcache")
        assert err.details["extension"] == "pg_stat_kcache"
    assert not installed(conn)


# ---------------------------------------------------------------- query stats, top cpu, top io


async def test_query_stats_after_a_workload(call: Call, conn: psycopg.Connection[Any],
                                            workload: dict[str, str]) -> None:
    rows = await call("pg_kcache_query_stats", {"limit": 1000})
    cpu = find(rows, workload["cpu"], "md5(v || id::text)")
    assert cpu is not None, "the CPU-heavy statement is not among the top 1000"
    assert cpu["calls"] == 3 and cpu["rows"] == 3 and cpu["exec_time_ms"] > 0
    assert cpu["cpu_time_s"] > 0 and cpu["cpu_time_s"] == pytest.approx(cpu["user_time_s"] + cpu["system_time_s"])
    assert 0 < cpu["cpu_share"] <= 1 and cpu["cpu_ms_per_call"] > 0
    assert cpu["database"] == one(conn, "SELECT current_database()") and cpu["user"] == one(conn, "SELECT current_user")
    assert cpu["queryid"].lstrip("-").isdigit() and cpu["toplevel"] is True
    assert [r["cpu_time_s"] for r in rows] == sorted((r["cpu_time_s"] for r in rows), reverse=True)
    by_calls = await call("pg_kcache_query_stats", {"orderBy": "calls", "limit": 20})
    assert len(by_calls) == 20 and [r["calls"] for r in by_calls] == sorted((r["calls"] for r in by_calls),
                                                                             reverse=True)
    few = await call("pg_kcache_query_stats", {"minCalls": 3, "queryMaxLength": 10, "limit": 50})
    assert all(r["calls"] >= 3 and len(r["query"]) <= 10 for r in few)


async def test_top_cpu_ranks_by_cpu_time(call: Call, rt: Runtime, workload: dict[str, str]) -> None:
    spec = rt.registry.by_method("kcache", "topQueries")
    assert spec is not None and spec.name == "pg_kcache_top_cpu"
    default = await call("pg_kcache_top_cpu", {})
    assert 0 < len(default) <= 10
    rows = await call("pg_kcache_top_cpu", {"limit": 1000})
    assert all(r["cpu_time_s"] > 0 for r in rows)
    assert [r["cpu_time_s"] for r in rows] == sorted((r["cpu_time_s"] for r in rows), reverse=True)
    assert 0 < sum(r["pct_of_total_cpu"] for r in rows) <= 100.5
    cpu = find(rows, workload["cpu"], "md5(v || id::text)")
    assert cpu is not None and cpu["pct_of_total_cpu"] > 0


async def test_top_io_ranks_by_bytes(call: Call, workload: dict[str, str]) -> None:
    for kind, column in (("both", "io_bytes"), ("reads", "reads_bytes"), ("writes", "writes_bytes")):
        rows = await call("pg_kcache_top_io", {"kind": kind, "limit": 1000})
        assert all(r[column] > 0 for r in rows), kind
        assert [r[column] for r in rows] == sorted((r[column] for r in rows), reverse=True), kind
        assert all(0 <= r["pct_of_total_io"] <= 100 for r in rows)  # rounded to 2 places: tiny ones show 0
    writes = await call("pg_kcache_top_io", {"kind": "writes", "limit": 1000})
    assert writes, "the workload's INSERTs wrote WAL: some statement must have written"


async def test_query_stats_bad_input(call: Call, workload: dict[str, str]) -> None:
    for name, args in (("pg_kcache_query_stats", {"orderBy": "memory"}), ("pg_kcache_query_stats", {"limit": 0}),
                       ("pg_kcache_top_io", {"kind": "network"}), ("pg_kcache_top_cpu", {"minCalls": 0}),
                       ("pg_kcache_query_stats", {"orderBy": "calls; DROP TABLE x"})):
        with pytest.raises(ToolError) as exc:
            await call(name, args)
        assert_tool_error(exc, "INVALID_INPUT")


# ---------------------------------------------------------------- database stats, resource analysis


async def test_database_stats(call: Call, conn: psycopg.Connection[Any], workload: dict[str, str]) -> None:
    name = one(conn, "SELECT current_database()")
    out = await call("pg_kcache_database_stats", {})
    assert out["database"] == name and out["statements"] >= 4 and out["calls"] >= 9
    assert out["cpu_time_s"] > 0 and out["cpu_time_s"] == pytest.approx(out["user_time_s"] + out["system_time_s"],
                                                                        abs=1e-5)
    assert 0 < out["cpu_share"] <= 1 and "databases" not in out
    both = await call("pg_kcache_database_stats", {"allDatabases": True})
    assert name in [d["database"] for d in both["databases"]]
    other = await call("pg_kcache_database_stats", {"database": "template1"})
    assert other["database"] == "template1" and other["calls"] >= 0
    with pytest.raises(ToolError) as exc:
        await call("pg_kcache_database_stats", {"database": "t_kcache_no_such_db"})
    assert_tool_error(exc, "NOT_FOUND")


async def test_resource_analysis_classifies_by_the_stated_rule(call: Call, workload: dict[str, str]) -> None:
    out = await call("pg_kcache_resource_analysis", {"limit": 1000})
    assert "cpu_share >= 0.7" in out["rule"] and "cpu_share <= 0.3" in out["rule"]
    assert sum(out["summary"].values()) == len(out["queries"])
    for q in out["queries"]:
        share = q["cpu_share"]
        if share is not None and share >= 0.7:
            assert q["classification"] == "cpu_bound"
        elif share is not None and share <= 0.3 and (q["io_bytes"] or q["shared_blks_read"] or q["temp_blks_written"]):
            assert q["classification"] == "io_bound"
        else:
            assert q["classification"] == "balanced"
    sleep = find(out["queries"], workload["sleep"], "pg_sleep")
    assert sleep is not None and sleep["classification"] == "balanced" and "waits" in sleep["reason"]
    assert sleep["exec_time_ms"] >= 500 and sleep["cpu_share"] < 0.3
    loose = await call("pg_kcache_resource_analysis", {"limit": 1000, "cpuBoundShare": 0.05, "ioBoundShare": 0.01})
    cpu = find(loose["queries"], workload["cpu"], "md5(v || id::text)")
    assert cpu is not None and cpu["classification"] == "cpu_bound"


async def test_resource_analysis_bad_thresholds(call: Call, workload: dict[str, str]) -> None:
    for args in ({"cpuBoundShare": 0.3, "ioBoundShare": 0.5}, {"cpuBoundShare": 0}, {"ioBoundShare": 1}):
        with pytest.raises(ToolError) as exc:
            await call("pg_kcache_resource_analysis", args)
        assert_tool_error(exc, "INVALID_INPUT")


# ---------------------------------------------------------------- scope and read-only


@pytest.mark.parametrize("name", READ_TOOLS)
async def test_read_tools_need_read_scope(call: Call, name: str) -> None:
    with pytest.raises(ToolError) as exc:
        await call(name, {}, principal=NOBODY)
    assert_tool_error(exc, "FORBIDDEN")


@pytest.mark.parametrize("name", ADMIN_TOOLS)
async def test_admin_tools_need_admin_scope(call: Call, name: str) -> None:
    with pytest.raises(ToolError) as exc:
        await call(name, {}, principal=WRITER)
    assert_tool_error(exc, "FORBIDDEN")
    with pytest.raises(ToolError) as exc:
        await call(name, {}, read_only=True)
    assert_tool_error(exc, "READ_ONLY")


# ---------------------------------------------------------------- reset (last: it empties the counters)


async def test_reset_empties_kcache_but_not_statements(call: Call, dsn: str, schema: str,
                                                       workload: dict[str, str]) -> None:
    before = await call("pg_kcache_query_stats", {"limit": 1000}, principal=READER)
    assert find(before, workload["cpu"], "md5(v || id::text)") is not None
    out = await call("pg_kcache_reset", {})
    assert out["reset"] == "pg_stat_kcache" and out["pg_stat_statements_reset"] is False
    after = await call("pg_kcache_query_stats", {"limit": 1000})
    assert find(after, workload["cpu"], "md5(v || id::text)") is None
    with psycopg.connect(dsn, autocommit=True) as c:
        assert one(c, "SELECT calls FROM pg_stat_statements WHERE query LIKE %s",
                   f"%{workload['cpu']}%md5(v || id::text)%") == 3
        c.execute(sql.SQL("SELECT count(*) FROM {} WHERE md5(v || id::text) LIKE '%abc%'").format(
            sql.Identifier(schema, workload["cpu"])))
    again = find(await call("pg_kcache_query_stats", {"limit": 1000}), workload["cpu"], "md5(v || id::text)")
    assert again is not None and again["calls"] == 4  # calls come from pg_stat_statements, CPU starts over
