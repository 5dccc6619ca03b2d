"""performance group: every tool against conditions made for real (unused, duplicate and dead-tuple-heavy
tables, sequential scans, a blocking lock, a real statement workload), its refusals and its scope rule."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import psycopg
import pytest

from pgcode.core.runtime import Runtime
from pgcode.errors import ToolError
from pgcode.settings import Settings
from pgcode.types import LOCAL_PRINCIPAL, Principal, Scope
from tests.fix_db import Call, assert_tool_error

pytestmark = pytest.mark.anyio

READER = Principal.with_scope("reader", Scope.READ)
WRITER = Principal.with_scope("writer", Scope.WRITE)
NOBODY = Principal("nobody", frozenset())
MB = 1024 * 1024
EXAMPLES = Path(__file__).resolve().parents[1] / "codemode" / "examples"  # copies of shared/examples, kept identical


def one(conn: psycopg.Connection[Any], query: Any, *params: Any) -> Any:
    row = conn.execute(query, params or None).fetchone()
    assert row is not None
    return row[0]


def wait_for(conn: psycopg.Connection[Any], query: str, ok: Callable[[Any], bool], *params: Any) -> Any:
    """Poll until the statistics show what a test made happen (they are flushed asynchronously)."""
    deadline = time.monotonic() + 10
    while True:
        value = one(conn, query, *params)
        if ok(value) or time.monotonic() > deadline:
            return value
        time.sleep(0.1)


@pytest.fixture(scope="module")
def perf(dsn: str, schema: str) -> Iterator[str]:
    """The conditions the tools look for, made for real in the module's schema."""
    s = schema
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"""
            -- 50k rows and an index over 1 MB that nothing ever scans
            CREATE TABLE {s}.big (id int PRIMARY KEY, code text NOT NULL);
            INSERT INTO {s}.big SELECT g, md5(g::text) FROM generate_series(1, 50000) g;
            CREATE INDEX big_code_idx ON {s}.big (code);
            -- an exact duplicate and an index whose column leads another's
            CREATE TABLE {s}.dup (id serial PRIMARY KEY, a int, b int, c int);
            INSERT INTO {s}.dup (a, b, c) SELECT g % 100, g % 7, g FROM generate_series(1, 2000) g;
            CREATE INDEX dup_a_idx ON {s}.dup (a);
            CREATE INDEX dup_a_copy ON {s}.dup (a);
            CREATE INDEX dup_b_idx ON {s}.dup (b);
            CREATE INDEX dup_b_c_idx ON {s}.dup (b, c);
            -- many dead tuples; autovacuum kept off so they stay
            CREATE TABLE {s}.dead (id int PRIMARY KEY, note text) WITH (autovacuum_enabled = false);
            INSERT INTO {s}.dead SELECT g, repeat('x', 60) FROM generate_series(1, 10000) g;
            DELETE FROM {s}.dead WHERE id <= 6000;
            -- read only by sequential scans on a selective column
            CREATE TABLE {s}.scanned (id int PRIMARY KEY, code int NOT NULL, category int NOT NULL, note text);
            INSERT INTO {s}.scanned SELECT g, g * 7, g % 10, 'n' || g FROM generate_series(1, 20000) g;
            -- rows to lock, a time series to partition, a view to count
            CREATE TABLE {s}.locked (id int PRIMARY KEY, v int);
            INSERT INTO {s}.locked VALUES (1, 0), (2, 0);
            CREATE TABLE {s}.series (id bigserial PRIMARY KEY, created_at timestamptz NOT NULL,
                                     region text NOT NULL, amount numeric NOT NULL);
            INSERT INTO {s}.series (created_at, region, amount)
            SELECT timestamptz '2024-01-01' + g * interval '1 hour',
                   (ARRAY['eu', 'us', 'apac', 'latam', 'mea'])[1 + g % 5], g % 100 FROM generate_series(1, 17000) g;
            CREATE VIEW {s}.big_view AS SELECT id FROM {s}.big WHERE id <= 1234;
            CREATE FUNCTION {s}.probe_sleep(float8) RETURNS void LANGUAGE sql AS $$ SELECT pg_sleep($1) $$;
            CREATE FUNCTION {s}.sneaky() RETURNS int LANGUAGE sql AS
                $$ INSERT INTO {s}.locked VALUES (99, 99) RETURNING 1 $$;
            ANALYZE {s}.big, {s}.dup, {s}.dead, {s}.scanned, {s}.locked, {s}.series;
        """)
        for code in range(15):
            c.execute(f"SELECT count(*) FROM {s}.scanned WHERE code = %s", (code * 7,))
        for category in range(6):
            c.execute(f"SELECT count(*) FROM {s}.scanned WHERE category = %s", (category,))
        c.execute("SELECT pg_stat_force_next_flush()")  # PostgreSQL 15+: flush this session's counters now
        c.execute("SELECT 1")
        wait_for(c, "SELECT seq_scan FROM pg_stat_user_tables WHERE relid = %s::regclass", lambda n: n >= 15,
                 f"{s}.scanned")
        wait_for(c, "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = %s::regclass", lambda n: n >= 5000,
                 f"{s}.dead")
    yield s


@pytest.fixture
def pgss(rt: Runtime) -> None:
    if not rt.db.caps.has_extension("pg_stat_statements"):
        pytest.skip("needs pg_stat_statements, which this server lacks")


async def forbidden(call: Call, name: str, args: dict[str, Any], principal: Principal = NOBODY) -> None:
    with pytest.raises(ToolError) as exc:
        await call(name, args, principal=principal)
    assert_tool_error(exc, "FORBIDDEN")


async def invalid(call: Call, name: str, args: dict[str, Any], code: str = "INVALID_INPUT", *words: str) -> None:
    with pytest.raises(ToolError) as exc:
        await call(name, args)
    assert_tool_error(exc, code, *words)


def rows(conn: psycopg.Connection[Any], query: str) -> list[tuple[Any, ...]]:
    return conn.execute(query).fetchall()


# ---------------------------------------------------------------- pg_explain


async def test_explain_json_plan_of_a_read(call: Call, perf: str) -> None:
    out = await call("pg_explain", {"sql": f"SELECT * FROM {perf}.big WHERE id = 5"})
    assert out["format"] == "json" and out["executed"] is False and out["statement_kind"] == "read"
    assert out["plan"]["Plan"]["Index Name"] == "big_pkey"
    assert "Index Scan" in out["node_types"] and out["estimated_rows"] == 1 and out["total_cost"] > 0


async def test_explain_text_format(call: Call, perf: str) -> None:
    out = await call("pg_explain", {"sql": f"SELECT * FROM {perf}.scanned WHERE code = 70", "format": "text"})
    assert "Seq Scan on scanned" in out["plan"] and out["total_cost"] > 0 and out["estimated_rows"] >= 1


async def test_explain_plans_a_write_without_running_it(call: Call, perf: str, conn: Any) -> None:
    out = await call("pg_explain", {"sql": f"DELETE FROM {perf}.locked"})
    assert out["statement_kind"] == "write" and out["plan"]["Plan"]["Node Type"] == "ModifyTable"
    assert one(conn, f"SELECT count(*) FROM {perf}.locked") == 2


async def test_explain_binds_params(call: Call, perf: str) -> None:
    out = await call("pg_explain", {"sql": f"SELECT * FROM {perf}.big WHERE id = $1", "params": [7]})
    assert out["generic_plan"] is False and "7" in out["plan"]["Plan"]["Index Cond"]


@pytest.mark.pg(">= 16")
async def test_explain_generic_plan_for_placeholders(call: Call, perf: str) -> None:
    out = await call("pg_explain", {"sql": f"SELECT * FROM {perf}.big WHERE id = $1"})
    assert out["generic_plan"] is True and "$1" in out["plan"]["Plan"]["Index Cond"]


@pytest.mark.pg("< 16")
async def test_explain_placeholders_need_params_before_16(call: Call, perf: str) -> None:
    await invalid(call, "pg_explain", {"sql": f"SELECT * FROM {perf}.big WHERE id = $1"}, "UNSUPPORTED_VERSION",
                  "GENERIC_PLAN")


@pytest.mark.parametrize(("text", "words"), [
    ("EXPLAIN SELECT 1", ("without EXPLAIN",)),
    ("SELECT 1; SELECT 2", ("one SQL statement",)),
    ("VACUUM", ("cannot plan",)),
    ("SELECT pg_terminate_backend(1)", ("pg_terminate_backend",)),
    ("SELEC 1", ("syntax",)),
    ("SELECT $1::int", ("parameter",)),
])
async def test_explain_refuses(call: Call, text: str, words: tuple[str, ...]) -> None:
    args: dict[str, Any] = {"sql": text}
    if "$1" in text:
        args["params"] = [1, 2]
    await invalid(call, "pg_explain", args, "INVALID_INPUT", *words)


async def test_explain_scope(call: Call) -> None:
    await forbidden(call, "pg_explain", {"sql": "SELECT 1"})
    assert (await call("pg_explain", {"sql": "SELECT 1"}, principal=READER))["total_cost"] is not None


# ---------------------------------------------------------------- pg_explain_analyze


async def test_explain_analyze_reports_actual_rows_and_time(call: Call, perf: str) -> None:
    out = await call("pg_explain_analyze", {"sql": f"SELECT * FROM {perf}.scanned WHERE category = 3"},
                     principal=READER)
    assert out["executed"] is True and out["actual_rows"] == 2000
    assert out["execution_time_ms"] > 0 and out["planning_time_ms"] is not None


async def test_explain_analyze_of_a_delete_leaves_the_rows(call: Call, perf: str, conn: Any) -> None:
    out = await call("pg_explain_analyze", {"sql": f"DELETE FROM {perf}.big WHERE id <= 100"}, principal=WRITER)
    assert out["statement_kind"] == "write" and out["rolled_back"] is True
    assert out["plan"]["Plan"]["Node Type"] == "ModifyTable"
    assert out["plan"]["Plan"]["Plans"][0]["Actual Rows"] == 100  # the DELETE really ran ...
    assert one(conn, f"SELECT count(*) FROM {perf}.big") == 50000  # ... and was rolled back
    out = await call("pg_explain_analyze", {"sql": f"UPDATE {perf}.locked SET v = v + $1", "params": [5],
                                            "format": "text"}, principal=WRITER)
    assert "Update on locked" in out["plan"]
    assert rows(conn, f"SELECT id, v FROM {perf}.locked ORDER BY id") == [(1, 0), (2, 0)]


async def test_explain_analyze_of_ddl_needs_admin_and_is_rolled_back(call: Call, perf: str, conn: Any) -> None:
    text = f"CREATE TABLE {perf}.made AS SELECT * FROM {perf}.locked"
    await forbidden(call, "pg_explain_analyze", {"sql": text}, WRITER)
    out = await call("pg_explain_analyze", {"sql": text})
    assert out["statement_kind"] == "ddl"
    assert one(conn, "SELECT to_regclass(%s)", f"{perf}.made") is None


async def test_explain_analyze_reader_may_analyze_only_reads(call: Call, perf: str, conn: Any) -> None:
    await forbidden(call, "pg_explain_analyze", {"sql": f"DELETE FROM {perf}.locked"}, READER)
    await forbidden(call, "pg_explain_analyze", {"sql": f"SELECT * FROM {perf}.locked FOR UPDATE"}, READER)
    await forbidden(call, "pg_explain_analyze", {"sql": "SELECT 1"}, NOBODY)
    with pytest.raises(ToolError) as exc:
        await call("pg_explain_analyze", {"sql": f"DELETE FROM {perf}.locked"}, read_only=True)
    assert_tool_error(exc, "READ_ONLY", "only reads")
    assert (await call("pg_explain_analyze", {"sql": "SELECT 1"}, read_only=True))["actual_rows"] == 1
    assert one(conn, f"SELECT count(*) FROM {perf}.locked") == 2


async def test_explain_analyze_read_runs_read_only(call: Call, perf: str, conn: Any) -> None:
    """A 'read' that calls a function which writes is stopped by the database itself."""
    with pytest.raises(ToolError) as exc:
        await call("pg_explain_analyze", {"sql": f"SELECT {perf}.sneaky()"}, principal=READER)
    assert_tool_error(exc, "READ_ONLY")
    assert one(conn, f"SELECT count(*) FROM {perf}.locked") == 2


async def test_explain_analyze_bad_input(call: Call, perf: str) -> None:
    await invalid(call, "pg_explain_analyze", {"sql": f"SELECT * FROM {perf}.big WHERE id = $1"}, "INVALID_INPUT",
                  "params")
    await invalid(call, "pg_explain_analyze", {"sql": "SELECT * FROM no_such_table_here"}, "NOT_FOUND")
    await invalid(call, "pg_explain_analyze", {"sql": "SELECT 1", "format": "yaml"})


# ---------------------------------------------------------------- pg_explain_buffers


async def test_explain_buffers_counts_blocks(call: Call, perf: str) -> None:
    out = await call("pg_explain_buffers", {"sql": f"SELECT count(*) FROM {perf}.big"}, principal=READER)
    buffers = out["buffers"]
    assert buffers["shared_hit"] + buffers["shared_read"] > 0 and 0 <= buffers["hit_ratio"] <= 1
    text = await call("pg_explain_buffers", {"sql": f"SELECT count(*) FROM {perf}.big", "format": "text"})
    assert "Buffers: shared" in text["plan"]
    assert text["buffers"]["shared_hit"] + text["buffers"]["shared_read"] > 0


async def test_explain_buffers_write_rolled_back_and_scoped(call: Call, perf: str, conn: Any) -> None:
    await forbidden(call, "pg_explain_buffers", {"sql": f"UPDATE {perf}.big SET code = 'x' WHERE id = 1"}, READER)
    await forbidden(call, "pg_explain_buffers", {"sql": "SELECT 1"}, NOBODY)
    out = await call("pg_explain_buffers", {"sql": f"UPDATE {perf}.big SET code = 'x' WHERE id = 1"},
                     principal=WRITER)
    assert out["buffers"]["shared_hit"] + out["buffers"]["shared_read"] > 0
    assert one(conn, f"SELECT code FROM {perf}.big WHERE id = 1") == one(conn, "SELECT md5('1')")
    await invalid(call, "pg_explain_buffers", {"sql": "DO $$ BEGIN END $$"}, "INVALID_INPUT", "DO")


# ---------------------------------------------------------------- pg_index_stats (indexUsage)


async def test_index_stats_shape_and_the_unused_index_filter(call: Call, perf: str, rt: Runtime) -> None:
    assert rt.registry.by_method("performance", "indexUsage") is rt.registry.get("pg_index_stats")
    usage = await call("pg_index_stats", {"schema": perf})
    assert isinstance(usage, list)
    assert {"name", "table", "schema", "scans", "size_bytes", "definition"} <= set(usage[0])
    # shared/examples/02-unused-indexes.js: scans === 0 && size_bytes > 1 MB
    unused = [i["name"] for i in usage if i["scans"] == 0 and i["size_bytes"] > MB]
    assert "big_code_idx" in unused and "big_pkey" not in unused
    everywhere = await call("pg_index_stats", {})
    assert "big_code_idx" in [i["name"] for i in everywhere if i["scans"] == 0 and i["size_bytes"] > MB]
    one_table = await call("pg_index_stats", {"table": f"{perf}.dup", "orderBy": "name"})
    assert [i["name"] for i in one_table] == ["dup_a_copy", "dup_a_idx", "dup_b_c_idx", "dup_b_idx", "dup_pkey"]


async def test_index_stats_bad_input_and_scope(call: Call, perf: str) -> None:
    await invalid(call, "pg_index_stats", {"table": f"{perf}.nope"}, "NOT_FOUND", "nope")
    await invalid(call, "pg_index_stats", {"limit": 0}, "INVALID_INPUT", "limit")
    await forbidden(call, "pg_index_stats", {})


# ---------------------------------------------------------------- pg_table_stats (tableStats)


async def test_table_stats_one_table_counts_exactly(call: Call, perf: str) -> None:
    out = await call("pg_table_stats", {"table": "big", "schema": perf})
    assert isinstance(out, dict)
    assert out["row_count"] == 50000 and out["row_count_method"] == "exact"
    assert out["size_bytes"] > 3 * MB and out["index_bytes"] > MB and out["kind"] == "table"
    assert {"seq_scan", "idx_scan", "live_tuples", "dead_tuples", "last_vacuum", "last_analyze"} <= set(out)


async def test_table_stats_estimates_large_tables(call: Call, perf: str) -> None:
    out = await call("pg_table_stats", {"table": f"{perf}.big", "exactCountBelow": 1000})
    assert out["row_count_method"] == "estimate" and out["row_count"] == out["estimated_rows"] == 50000


async def test_table_stats_lists_without_a_table(call: Call, perf: str) -> None:
    out = await call("pg_table_stats", {"schema": perf})
    assert isinstance(out, list)
    by_name = {t["table"]: t for t in out}
    assert by_name["dead"]["row_count"] == 4000 and by_name["dead"]["row_count_method"] == "exact"
    assert by_name["dead"]["dead_tuples"] >= 5000 and by_name["dead"]["dead_tuple_ratio"] > 0.5
    assert by_name["big_view"]["kind"] == "view" and by_name["big_view"]["row_count"] == 1234
    assert [t["size_bytes"] for t in out] == sorted((t["size_bytes"] for t in out), reverse=True)


async def test_table_stats_bad_input_and_scope(call: Call, perf: str) -> None:
    await invalid(call, "pg_table_stats", {"table": "no_such_table_anywhere"}, "NOT_FOUND")
    await invalid(call, "pg_table_stats", {"table": "big", "schema": perf, "exactCountBelow": -1})
    await forbidden(call, "pg_table_stats", {"table": "big", "schema": perf})


# ---------------------------------------------------------------- pg_stat_statements


async def test_stat_statements_after_a_workload(call: Call, perf: str, pgss: None) -> None:
    out = await call("pg_stat_statements", {"search": f"count(*) FROM {perf}.scanned WHERE category",
                                           "orderBy": "calls"})
    assert out["count"] >= 1 and out["extension_version"]
    # the index advisor plans the workload's statements: their EXPLAINs are statements of their own
    top = next(s for s in out["statements"] if not s["query"].startswith("EXPLAIN"))
    assert top["calls"] >= 6 and top["total_exec_time_ms"] > 0 and top["rows"] >= 6
    assert "category" in top["query"] and isinstance(top["queryid"], str)
    cut = await call("pg_stat_statements", {"limit": 1})
    assert cut["count"] == 1 and cut["truncated"] is True


async def test_stat_statements_bad_input_and_scope(call: Call, pgss: None) -> None:
    await invalid(call, "pg_stat_statements", {"orderBy": "fastest"})
    await forbidden(call, "pg_stat_statements", {})


# ---------------------------------------------------------------- pg_stat_activity


async def test_stat_activity_shows_another_session(call: Call, dsn: str) -> None:
    with psycopg.connect(dsn, application_name="perf-activity") as other:
        other.execute("SELECT 1")  # now idle in transaction
        pid = other.info.backend_pid
        out = await call("pg_stat_activity", {"applicationName": "perf-activity"})
        assert [s["pid"] for s in out["sessions"]] == [pid]
        session = out["sessions"][0]
        assert session["state"] == "idle in transaction" and session["query"] == "SELECT 1"
        assert session["duration_seconds"] >= 0 and session["is_self"] is False
        idle = await call("pg_stat_activity", {"state": "idle in transaction", "applicationName": "perf-activity"})
        assert idle["count"] == 1 and out["by_state"]["idle in transaction"] >= 1


async def test_stat_activity_bad_input_and_scope(call: Call) -> None:
    await invalid(call, "pg_stat_activity", {"state": "sleeping"})
    await forbidden(call, "pg_stat_activity", {})


# ---------------------------------------------------------------- pg_locks (locks)


async def test_locks_marks_a_blocking_pair(call: Call, perf: str, dsn: str) -> None:
    holder = psycopg.connect(dsn)
    waiter = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    try:
        holder.execute(f"UPDATE {perf}.locked SET v = v + 1 WHERE id = 1")  # holds the row lock, open transaction
        await waiter.execute("SET lock_timeout = '20s'")
        waiter_pid, holder_pid = waiter.info.backend_pid, holder.info.backend_pid
        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter.execute, f"UPDATE {perf}.locked SET v = v + 10 WHERE id = 1")
            with anyio.fail_after(10):
                while True:
                    locks = await call("pg_locks", {"blockingOnly": True})
                    if any(lk["pid"] == waiter_pid and not lk["granted"] for lk in locks):
                        break
                    await anyio.sleep(0.05)
            waiting = [lk for lk in locks if lk["pid"] == waiter_pid and not lk["granted"]]
            held = [lk for lk in locks if lk["pid"] == holder_pid and lk["granted"]]
            assert waiting[0]["blocked_by"] == [holder_pid] and waiting[0]["waiting_seconds"] is not None
            assert held and waiter_pid in held[0]["blocking"]
            every = await call("pg_locks", {"relation": "locked"})
            assert {lk["pid"] for lk in every} >= {holder_pid, waiter_pid}
            assert any(lk["mode"] == "RowExclusiveLock" and lk["schema"] == perf for lk in every)
            holder.rollback()
    finally:
        holder.close()
        await waiter.close()


async def test_locks_bad_input_and_scope(call: Call) -> None:
    assert await call("pg_locks", {"blockingOnly": True, "relation": "nothing_locked_here"}) == []
    await invalid(call, "pg_locks", {"limit": 0})
    await forbidden(call, "pg_locks", {})


# ---------------------------------------------------------------- pg_bloat_check


async def test_bloat_check_finds_the_emptied_table(call: Call, perf: str, conn: Any) -> None:
    conn.execute(f"ANALYZE {perf}.dead")  # fresh row estimate: 4000 rows in pages that held 10000
    out = await call("pg_bloat_check", {"schema": perf, "minSizeBytes": 0})
    assert "estimate" in out["method"]
    dead = next(t for t in out["tables"] if t["table"] == "dead")
    assert dead["bloat_ratio"] >= 0.4 and dead["bloat_bytes"] > 0
    assert {i["index"] for i in out["indexes"]} >= {"big_code_idx", "dead_pkey"}
    only = await call("pg_bloat_check", {"table": f"{perf}.dead", "minSizeBytes": 0, "minBloatRatio": 0.4,
                                         "includeIndexes": False})
    assert [t["table"] for t in only["tables"]] == ["dead"] and "indexes" not in only


async def test_bloat_check_bad_input_and_scope(call: Call) -> None:
    await invalid(call, "pg_bloat_check", {"minBloatRatio": 2})
    await forbidden(call, "pg_bloat_check", {})


# ---------------------------------------------------------------- pg_cache_hit_ratio


async def test_cache_hit_ratio(call: Call, perf: str) -> None:
    out = await call("pg_cache_hit_ratio", {"schema": perf})
    for key in ("database_hit_ratio", "table_hit_ratio", "index_hit_ratio"):
        assert 0 <= out[key] <= 1
    scanned = next(t for t in out["tables"] if t["table"] == "scanned")
    assert 0 <= scanned["table_hit_ratio"] <= 1 and scanned["heap_blks_hit"] > 0


async def test_cache_hit_ratio_bad_input_and_scope(call: Call) -> None:
    await invalid(call, "pg_cache_hit_ratio", {"limit": -1})
    await forbidden(call, "pg_cache_hit_ratio", {})


# ---------------------------------------------------------------- pg_seq_scan_tables


async def test_seq_scan_tables_finds_the_scanned_table(call: Call, perf: str) -> None:
    out = await call("pg_seq_scan_tables", {"schema": perf})
    scanned = next(t for t in out["tables"] if t["table"] == "scanned")
    assert scanned["seq_scan"] >= 21 and scanned["seq_scan_ratio"] == 1 and scanned["live_rows"] == 20000
    assert "index" in scanned["suggestion"]
    assert all(t["table"] != "locked" for t in out["tables"])  # two rows: rightly scanned


async def test_seq_scan_tables_bad_input_and_scope(call: Call) -> None:
    await invalid(call, "pg_seq_scan_tables", {"minSeqScans": -1})
    await forbidden(call, "pg_seq_scan_tables", {})


# ---------------------------------------------------------------- pg_index_recommendations


async def test_index_recommendations_for_the_scanned_table(call: Call, perf: str, rt: Runtime) -> None:
    out = await call("pg_index_recommendations", {"table": f"{perf}.scanned"})
    columns = [r["column"] for r in out["recommendations"]]
    assert columns and columns[0] == "code"
    top = out["recommendations"][0]
    assert top["ddl"] == f'CREATE INDEX CONCURRENTLY ON "{perf}"."scanned" ("code")'
    if rt.db.caps.has_extension("hypopg"):
        assert out["method"] == "hypopg"
        assert top["evaluation"]["cost_gain"] > 0 and top["evaluation"]["index_used"] is True
        assert top["evaluation"]["estimated_size_bytes"] > 0
    else:
        assert out["method"] == "heuristic" and "hypopg" in out["note"]


async def test_index_recommendations_leave_no_hypothetical_index(settings: Settings, perf: str) -> None:
    """hypopg's indexes live in the backend, outside transactions: the tool resets them on its connection."""
    async with Runtime(settings.model_copy(update={"pool_min_size": 1, "pool_max_size": 1})) as single:
        if not single.db.caps.has_extension("hypopg"):
            pytest.skip("needs hypopg, which this server lacks")
        await single.invoke("pg_index_recommendations", {"table": f"{perf}.scanned"}, LOCAL_PRINCIPAL)
        out = await single.invoke("pg_read_query", {"sql": "SELECT count(*) AS n FROM hypopg_list_indexes"},
                                  LOCAL_PRINCIPAL)
        assert out["rows"] == [{"n": 0}]


async def test_index_recommendations_bad_input_and_scope(call: Call, perf: str) -> None:
    await invalid(call, "pg_index_recommendations", {"table": f"{perf}.nope"}, "NOT_FOUND")
    await invalid(call, "pg_index_recommendations", {"perTable": 0})
    await forbidden(call, "pg_index_recommendations", {})


# ---------------------------------------------------------------- pg_query_plan_compare


async def test_query_plan_compare_finds_the_index_scan(call: Call, perf: str) -> None:
    out = await call("pg_query_plan_compare", {"query1": f"SELECT * FROM {perf}.scanned WHERE code = 70",
                                               "query2": f"SELECT * FROM {perf}.scanned WHERE id = 10"})
    assert out["cheaper"] == "query2" and out["cost_delta"] < 0 and out["cost_ratio"] < 1
    assert "Seq Scan on scanned" in out["nodes_removed"]
    assert "Index Scan using scanned_pkey on scanned" in out["nodes_added"]
    assert "time_delta_ms" not in out
    timed = await call("pg_query_plan_compare", {"query1": f"SELECT * FROM {perf}.scanned WHERE code = 70",
                                                 "query2": f"SELECT * FROM {perf}.scanned WHERE id = 10",
                                                 "analyze": True, "includePlans": True}, principal=READER)
    assert timed["time_delta_ms"] is not None and timed["faster"] in ("query1", "query2", "equal")
    assert timed["query1"]["actual_rows"] == 1 and set(timed["plans"]) == {"query1", "query2"}


async def test_query_plan_compare_rolls_back_and_checks_scope(call: Call, perf: str, conn: Any) -> None:
    args = {"query1": f"DELETE FROM {perf}.locked WHERE id = 1", "query2": f"DELETE FROM {perf}.locked",
            "analyze": True}
    await forbidden(call, "pg_query_plan_compare", args, READER)
    out = await call("pg_query_plan_compare", args, principal=WRITER)
    assert out["query2"]["nodes"][0]["node_type"] == "ModifyTable"
    assert one(conn, f"SELECT count(*) FROM {perf}.locked") == 2
    await forbidden(call, "pg_query_plan_compare", {"query1": "SELECT 1", "query2": "SELECT 2"})
    await invalid(call, "pg_query_plan_compare", {"query1": "SELECT 1", "query2": "SELEC 2"}, "INVALID_INPUT",
                  "syntax")


# ---------------------------------------------------------------- pg_performance_baseline (databaseStats)


async def test_performance_baseline_is_the_database_stats_object(call: Call, rt: Runtime) -> None:
    assert rt.registry.by_method("performance", "databaseStats") is rt.registry.get("pg_performance_baseline")
    out = await call("pg_performance_baseline", {})
    assert 0 <= out["cache_hit_ratio"] <= 1
    assert out["commits"] == out["xact_commit"] > 0 and out["rollbacks"] == out["xact_rollback"] >= 0
    assert out["deadlocks"] >= 0 and out["temp_bytes"] >= 0 and out["database_size_bytes"] > MB
    assert out["connections"]["max_connections"] > 0
    assert {"checkpoints_timed", "checkpoints_requested", "buffers_checkpoint"} <= set(out["checkpoints"])
    assert (out["io"] is not None) == (rt.db.caps.server_version_num >= 160000)
    later = await call("pg_performance_baseline", {"previous": out, "topStatements": 0})
    delta = later["since_previous"]
    # counters of other sessions reach pg_stat_database within about a second: the delta may still be 0
    assert delta["elapsed_seconds"] > 0 and delta["xact_commit"] >= 0 and "xact_commit_per_second" in delta


async def test_performance_baseline_bad_input_and_scope(call: Call) -> None:
    await invalid(call, "pg_performance_baseline", {"previous": [1, 2]})
    await forbidden(call, "pg_performance_baseline", {})


# ---------------------------------------------------------------- pg_connection_pool_optimize


async def test_connection_pool_optimize(call: Call, dsn: str) -> None:
    with psycopg.connect(dsn, application_name="perf-pool") as other:
        other.execute("SELECT 1")  # idle in transaction
        out = await call("pg_connection_pool_optimize", {"cpuCores": 4})
    assert out["suggested_pool_size"]["size"] == 9
    assert out["connections"]["idle_in_transaction"] >= 1
    assert any("idle in transaction" in f["finding"] for f in out["findings"])
    assert out["by_application"] and out["long_idle"] >= 0


async def test_connection_pool_optimize_bad_input_and_scope(call: Call) -> None:
    await invalid(call, "pg_connection_pool_optimize", {"cpuCores": 0})
    await forbidden(call, "pg_connection_pool_optimize", {})


# ---------------------------------------------------------------- pg_partition_strategy_suggest


async def test_partition_strategy_suggests_range_on_time(call: Call, perf: str) -> None:
    out = await call("pg_partition_strategy_suggest", {"table": f"{perf}.series"})
    assert out["recommended"] is False and "below" in out["reason"]
    best = out["suggestion"]
    assert best["method"] == "range" and best["column"] == "created_at" and best["interval"] in (
        "day", "week", "month", "quarter", "year")
    assert "PARTITION BY RANGE" in best["ddl"] and "primary key" in best["caveat"]
    assert any(a["method"] == "list" and a["column"] == "region" for a in out["alternatives"])
    big = await call("pg_partition_strategy_suggest", {"table": "series", "schema": perf, "minTableBytes": 0})
    assert big["recommended"] is True


async def test_partition_strategy_bad_input_and_scope(call: Call, perf: str) -> None:
    await invalid(call, "pg_partition_strategy_suggest", {"table": f"{perf}.nope"}, "NOT_FOUND")
    await invalid(call, "pg_partition_strategy_suggest", {})
    await forbidden(call, "pg_partition_strategy_suggest", {"table": f"{perf}.series"})


# ---------------------------------------------------------------- pg_unused_indexes


async def test_unused_indexes_finds_the_big_unused_index(call: Call, perf: str) -> None:
    out = await call("pg_unused_indexes", {"schema": perf, "minSizeBytes": MB})
    names = [i["name"] for i in out["indexes"]]
    assert "big_code_idx" in names
    idx = out["indexes"][names.index("big_code_idx")]
    assert idx["size_bytes"] > MB and idx["scans"] == 0 and "big_code_idx" in idx["definition"]
    assert out["total_size_bytes"] >= idx["size_bytes"] and out["confidence"] in ("ok", "low")
    assert "stats_reset" in out and "observed_since" in out
    every = await call("pg_unused_indexes", {"schema": perf})
    assert not any(i["is_unique"] for i in every["indexes"])  # primary keys enforce rules: left out
    with_unique = await call("pg_unused_indexes", {"schema": perf, "includeUnique": True})
    assert any(i["is_unique"] for i in with_unique["indexes"])


async def test_unused_indexes_bad_input_and_scope(call: Call) -> None:
    await invalid(call, "pg_unused_indexes", {"minObservedDays": -1})
    await forbidden(call, "pg_unused_indexes", {})


# ---------------------------------------------------------------- pg_duplicate_indexes


async def test_duplicate_indexes(call: Call, perf: str) -> None:
    out = await call("pg_duplicate_indexes", {"table": f"{perf}.dup"})
    found = {i["index"]: i for i in out["indexes"]}
    assert set(found) == {"dup_a_copy", "dup_b_idx"}
    assert found["dup_a_copy"]["kind"] == "duplicate" and found["dup_a_copy"]["redundant_with"] == "dup_a_idx"
    assert found["dup_b_idx"]["kind"] == "overlapping" and found["dup_b_idx"]["redundant_with"] == "dup_b_c_idx"
    assert found["dup_a_copy"]["drop_statement"] == f'DROP INDEX CONCURRENTLY "{perf}"."dup_a_copy"'
    assert out["reclaimable_bytes"] == sum(i["size_bytes"] for i in out["indexes"]) > 0


async def test_duplicate_indexes_bad_input_and_scope(call: Call, perf: str) -> None:
    await invalid(call, "pg_duplicate_indexes", {"table": f"{perf}.nope"}, "NOT_FOUND")
    await forbidden(call, "pg_duplicate_indexes", {})


# ---------------------------------------------------------------- pg_vacuum_stats


async def test_vacuum_stats_dead_tuples_and_wraparound(call: Call, perf: str, conn: Any) -> None:
    out = await call("pg_vacuum_stats", {"schema": perf})
    dead = next(t for t in out["tables"] if t["table"] == "dead")
    assert dead["dead_tuples"] >= 5000 and dead["dead_tuple_ratio"] > 0.5
    assert dead["autovacuum_enabled"] is False and dead["vacuum_due"] is True and dead["last_any_vacuum"] is None
    assert dead["freeze_max_age"] == int(one(conn, "SHOW autovacuum_freeze_max_age"))
    assert 0 <= dead["wraparound_ratio"] < 1 and dead["xid_age"] > 0
    assert out["tables"][0]["table"] == "dead"  # most dead tuples first
    assert 0 <= out["database"]["wraparound_ratio"] < 1 and out["settings"]["autovacuum_freeze_max_age"] > 0
    oldest = await call("pg_vacuum_stats", {"table": "dead", "schema": perf, "orderBy": "wraparound"})
    assert [t["table"] for t in oldest["tables"]] == ["dead"]


async def test_vacuum_stats_bad_input_and_scope(call: Call) -> None:
    await invalid(call, "pg_vacuum_stats", {"orderBy": "size"})
    await forbidden(call, "pg_vacuum_stats", {})


# ---------------------------------------------------------------- pg_query_plan_stats


async def test_query_plan_stats(call: Call, perf: str, pgss: None, conn: Any) -> None:
    out = await call("pg_query_plan_stats", {"orderBy": "plan_share", "limit": 5})
    assert out["count"] >= 1 and all("plan_share" in s for s in out["statements"])
    tracking = one(conn, "SELECT current_setting('pg_stat_statements.track_planning', true)") == "on"
    assert out["track_planning"] is tracking
    assert ("note" in out) is (not tracking)
    if not tracking:
        assert "track_planning" in out["note"]


async def test_query_plan_stats_bad_input_and_scope(call: Call, pgss: None) -> None:
    await invalid(call, "pg_query_plan_stats", {"orderBy": "calls"})
    await forbidden(call, "pg_query_plan_stats", {})


# ---------------------------------------------------------------- pg_diagnose_database_performance


async def test_diagnose_database_performance(call: Call, perf: str, dsn: str) -> None:
    with psycopg.connect(dsn, application_name="perf-diagnose") as other:
        other.execute("SELECT 1")  # idle in transaction from now on
        await anyio.sleep(0.3)
        out = await call("pg_diagnose_database_performance", {"idleInTransactionSeconds": 0.1,
                                                              "deadTupleRatio": 0.5})
    by_area = {f["area"]: f for f in out["findings"]}
    assert by_area["idle_in_transaction"]["status"] == "warning" and by_area["idle_in_transaction"]["value"] >= 1
    assert by_area["vacuum"]["status"] == "warning"
    assert any(t["table"] == "dead" for t in by_area["vacuum"]["details"])
    assert 0 <= by_area["cache"]["value"] <= 1 and "wraparound" in by_area
    ranks = {"critical": 3, "warning": 2, "unknown": 1, "ok": 0}
    assert [ranks[f["status"]] for f in out["findings"]] == sorted((ranks[f["status"]] for f in out["findings"]),
                                                                   reverse=True)
    assert out["status"] == out["findings"][0]["status"]


async def test_diagnose_bad_input_and_scope(call: Call) -> None:
    await invalid(call, "pg_diagnose_database_performance", {"cacheHitWarning": 2})
    await forbidden(call, "pg_diagnose_database_performance", {})


# ---------------------------------------------------------------- pg_detect_query_anomalies


async def test_detect_query_anomalies(call: Call, perf: str, pgss: None, conn: Any) -> None:
    # A function of our own gives the statement a query id no other test shares (aliases are not part of it).
    for _ in range(30):
        conn.execute(f"SELECT {perf}.probe_sleep(0.002)")
    conn.execute(f"SELECT {perf}.probe_sleep(0.08)")
    out = await call("pg_detect_query_anomalies", {"limit": 1000})
    probe = next(a for a in out["anomalies"] if f"{perf}.probe_sleep" in a["query"])
    assert probe["z_score"] >= 3 and probe["calls"] >= 31 and probe["max_exec_time_ms"] >= 80
    assert probe["severity"] in ("warning", "critical") and "stddev" in out["method"]
    assert isinstance(out["running"], list)


async def test_detect_query_anomalies_bad_input_and_scope(call: Call, pgss: None) -> None:
    await invalid(call, "pg_detect_query_anomalies", {"zThreshold": 0})
    await forbidden(call, "pg_detect_query_anomalies", {})


# ---------------------------------------------------------------- pg_detect_bloat_risk


async def test_detect_bloat_risk_scores_the_dead_table(call: Call, perf: str) -> None:
    out = await call("pg_detect_bloat_risk", {"schema": perf})
    assert sum(out["weights"].values()) == 100
    dead = out["tables"][0]
    assert dead["table"] == "dead" and dead["risk"] == "critical" and dead["score"] >= 70
    factors = dead["factors"]
    assert factors["dead_tuple_ratio"]["points"] == 35 and factors["autovacuum"]["points"] == 15
    assert factors["vacuum_staleness"]["points"] == 25 and "autovacuum" in dead["advice"]
    assert all(t["score"] >= 70 for t in (await call("pg_detect_bloat_risk", {"schema": perf,
                                                                              "minScore": 70}))["tables"])


async def test_detect_bloat_risk_bad_input_and_scope(call: Call) -> None:
    await invalid(call, "pg_detect_bloat_risk", {"minScore": 101})
    await forbidden(call, "pg_detect_bloat_risk", {})


# ---------------------------------------------------------------- pg_detect_connection_spike


async def test_detect_connection_spike(call: Call, dsn: str) -> None:
    others = [psycopg.connect(dsn, application_name="perf-spike") for _ in range(6)]
    try:
        out = await call("pg_detect_connection_spike", {"minConnections": 5, "concentrationThreshold": 0.01,
                                                          "limit": 100})
    finally:
        for c in others:
            c.close()
    apps = {g["key"]: g["count"] for g in out["by"]["application"]}
    assert apps["perf-spike"] == 6
    assert any(f["dimension"] == "application" and f["key"] == "perf-spike" for f in out["findings"])
    assert out["spike_detected"] is True and out["recent_connections"]["count"] >= 6


async def test_detect_connection_spike_bad_input_and_scope(call: Call) -> None:
    await invalid(call, "pg_detect_connection_spike", {"concentrationThreshold": 0})
    await forbidden(call, "pg_detect_connection_spike", {})


# ---------------------------------------------------------------- the code-mode examples


@pytest.mark.parametrize("example", ["01-tables-by-rows.js", "02-unused-indexes.js"])
async def test_examples_through_code_mode(call: Call, rt: Runtime, perf: str, example: str) -> None:
    if rt.registry.get("pg_execute_code") is None:
        pytest.skip("code mode (pg_execute_code) is not built yet")
    if rt.db.caps.database != "pgcode_demo":
        pytest.skip("the examples are written for the demo database (PGCODE_TEST_SERVER=embedded)")
    out = await call("pg_execute_code", {"code": (EXAMPLES / example).read_text()})
    assert out["success"] is True, out
    if example.startswith("01"):
        assert all(isinstance(t["rows"], int | float) for t in out["result"])
    else:
        assert "events_payload_idx" in [i["index"] for i in out["result"]]


async def test_example_shapes_without_code_mode(call: Call, perf: str) -> None:
    """The calls examples 01-03 make, through invoke(): the fields they read are there, with numbers."""
    stats = await call("pg_table_stats", {"table": "series", "schema": perf})
    assert isinstance(stats["row_count"], int) and isinstance(stats["size_bytes"], int)
    locks = await call("pg_locks", {})
    assert isinstance(locks, list)
    database = await call("pg_performance_baseline", {})
    assert 0 <= database["cache_hit_ratio"] <= 1


async def test_stat_statements_leaves_out_pgcode_own_calls(call: Call, perf: str, pgss: None,
                                                           conn: psycopg.Connection[Any]) -> None:
    marker = f"pgcode_self_{uuid.uuid4().hex[:8]}"
    for _ in range(10):  # calls enough that a nearly full pg_stat_statements keeps the entry
        await call("pg_read_query", {"sql": f"SELECT 1 AS {marker}"})  # runs as pgcode_read
    kept = conn.execute("SELECT count(*) FROM pg_stat_statements WHERE strpos(query, %s) > 0", (marker,)).fetchone()
    if not kept or not kept[0]:
        pytest.skip("pg_stat_statements is full and evicted the entry before it could be listed")
    hidden = await call("pg_stat_statements", {"search": marker})
    shown = await call("pg_stat_statements", {"search": marker, "includeSelf": True})
    assert hidden["count"] == 0
    assert shown["count"] == 1 and shown["statements"][0]["username"] == "pgcode_read"


async def test_index_tools_work_around_a_locked_table(call: Call, dsn: str, conn: psycopg.Connection[Any],
                                                      perf: str) -> None:
    conn.execute(f"CREATE TABLE IF NOT EXISTS {perf}.migrating (a int, b int)")
    conn.execute(f"CREATE INDEX IF NOT EXISTS migrating_a ON {perf}.migrating (a)")
    conn.execute(f"CREATE INDEX IF NOT EXISTS migrating_a_b ON {perf}.migrating (a, b)")
    with psycopg.connect(dsn) as holder:
        holder.execute(f"LOCK TABLE {perf}.migrating IN ACCESS EXCLUSIVE MODE")
        dupes = await call("pg_duplicate_indexes", {"schema": perf})
        unused = await call("pg_unused_indexes", {"schema": perf, "minSizeBytes": 0})
        holder.rollback()
    assert f"{perf}.migrating" in {s["object"] for s in dupes["skipped"]}
    assert "migrating_a" not in {r["index"] for r in dupes["indexes"]}  # its definition could not be read
    assert "locked by pid" in dupes["skipped"][0]["reason"]
    locked = [r for r in unused["indexes"] if r["table"] == "migrating"]
    assert locked and all(r["definition"] is None for r in locked)
    # positive control: unlocked, the redundant index is found
    after = await call("pg_duplicate_indexes", {"schema": perf})
    assert "migrating_a" in {r["index"] for r in after["indexes"]}
