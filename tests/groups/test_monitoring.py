"""monitoring group: sizes, sessions, replication, settings, server state and health, on real conditions."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgcode.core.runtime import Runtime
from pgcode.errors import ToolError
from pgcode.settings import Settings
from pgcode.types import LOCAL_PRINCIPAL, Principal, Scope
from tests.fix_db import Call, assert_tool_error
from tests.groups._sessions import blocked, eventually, idle_session, sleeper

pytestmark = pytest.mark.anyio

READER = Principal.with_scope("reader", Scope.READ)
NOBODY = Principal("nobody", frozenset())
APP = "t_monitoring"

TOOLS = ["pg_database_size", "pg_table_sizes", "pg_connection_stats", "pg_replication_status", "pg_server_version",
         "pg_show_settings", "pg_uptime", "pg_recovery_status", "pg_capacity_planning", "pg_system_health",
         "pg_alert_threshold_set"]


def one(conn: psycopg.Connection[Any], query: Any, *params: Any) -> Any:
    row = conn.execute(query, params or None).fetchone()
    assert row is not None
    return row[0]


@pytest.fixture(scope="module")
def data(dsn: str, schema: str) -> Iterator[str]:
    """big (rows, an index, out-of-line TOAST), small, and a partitioned table with two partitions."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(sql.SQL("""
            CREATE TABLE {s}.big (id integer PRIMARY KEY, v text, body text);
            ALTER TABLE {s}.big ALTER COLUMN body SET STORAGE EXTERNAL;
            INSERT INTO {s}.big SELECT g, md5(g::text), repeat(md5(g::text), 100) FROM generate_series(1, 3000) g;
            CREATE INDEX big_v_idx ON {s}.big (v);
            CREATE TABLE {s}.small (id integer);
            INSERT INTO {s}.small VALUES (1);
            CREATE TABLE {s}.locked (id integer);
            INSERT INTO {s}.locked VALUES (1);
            CREATE TABLE {s}.parted (id integer, at date) PARTITION BY RANGE (at);
            CREATE TABLE {s}.parted_2024 PARTITION OF {s}.parted FOR VALUES FROM ('2024-01-01') TO ('2025-01-01');
            CREATE TABLE {s}.parted_2025 PARTITION OF {s}.parted FOR VALUES FROM ('2025-01-01') TO ('2026-01-01');
            INSERT INTO {s}.parted SELECT g, date '2024-06-01' + (g % 400) FROM generate_series(1, 2000) g;
            ANALYZE {s}.big, {s}.small, {s}.parted;
        """).format(s=sql.Identifier(schema)))
    yield schema


# ---------------------------------------------------------------- pg_database_size


async def test_database_size_current_and_all(call: Call, conn: psycopg.Connection[Any]) -> None:
    out = await call("pg_database_size", {})
    name = one(conn, "SELECT current_database()")
    assert out["database"] == name and out["is_current"] is True
    assert out["size_bytes"] > 1_000_000 and out["size_pretty"].endswith(("MB", "kB", "GB"))
    assert "databases" not in out
    listed = await call("pg_database_size", {"allDatabases": True})
    names = [d["database"] for d in listed["databases"]]
    assert name in names and "template0" not in names  # datallowconn is false there
    sizes = [d["size_bytes"] for d in listed["databases"]]
    assert sizes == sorted(sizes, reverse=True)


async def test_database_size_of_another_database(call: Call, conn: psycopg.Connection[Any]) -> None:
    out = await call("pg_database_size", {"database": "template1"})
    assert out["database"] == "template1" and out["is_current"] is False
    assert out["size_bytes"] == one(conn, "SELECT pg_database_size('template1')")


async def test_database_size_unknown_database(call: Call) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_database_size", {"database": "t_monitoring_no_such_db"})
    assert_tool_error(exc, "NOT_FOUND", "t_monitoring_no_such_db")


# ---------------------------------------------------------------- pg_table_sizes


async def test_table_sizes_largest_first_with_parts(call: Call, conn: psycopg.Connection[Any], data: str) -> None:
    out = await call("pg_table_sizes", {"schema": data})
    by_name = {t["table"]: t for t in out}
    assert set(by_name) == {"big", "small", "locked", "parted", "parted_2024", "parted_2025"}
    assert [t["size_bytes"] for t in out] == sorted((t["size_bytes"] for t in out), reverse=True)
    big = by_name["big"]
    assert set(big) >= {"table", "schema", "size_bytes", "table_bytes", "index_bytes", "toast_bytes"}
    assert big["schema"] == data and big["kind"] == "table" and big["row_estimate"] == 3000
    ident = f'"{data}".big'
    assert big["size_bytes"] == one(conn, "SELECT pg_total_relation_size(%s::regclass)", ident)
    assert big["index_bytes"] == one(conn, "SELECT pg_indexes_size(%s::regclass)", ident)
    assert big["toast_bytes"] == one(conn, "SELECT pg_total_relation_size(reltoastrelid) FROM pg_class "
                                           "WHERE oid = %s::regclass", ident)
    assert big["toast_bytes"] > 3000 * 3200  # 3000 bodies of 3.2 kB stored out of line, uncompressed
    assert big["size_bytes"] == big["table_bytes"] + big["index_bytes"] + big["toast_bytes"]
    assert out[0]["table"] == "big"
    parted = by_name["parted"]
    assert parted["kind"] == "partitioned_table" and parted["is_partition"] is False
    assert parted["size_bytes"] == by_name["parted_2024"]["size_bytes"] + by_name["parted_2025"]["size_bytes"]
    assert by_name["parted_2024"]["is_partition"] is True


async def test_table_sizes_limit_and_min_bytes(call: Call, data: str) -> None:
    top = await call("pg_table_sizes", {"schema": data, "limit": 1})
    assert [t["table"] for t in top] == ["big"]
    everything = await call("pg_table_sizes", {"schema": data})
    small = next(t for t in everything if t["table"] == "small")
    bigger = await call("pg_table_sizes", {"schema": data, "minBytes": small["size_bytes"] + 1})
    assert "small" not in [t["table"] for t in bigger] and "big" in [t["table"] for t in bigger]
    assert await call("pg_table_sizes", {"schema": "t_monitoring_no_such_schema"}) == []


async def test_table_sizes_default_leaves_out_system_tables(call: Call, data: str) -> None:
    out = await call("pg_table_sizes", {})
    assert not any(t["schema"] in ("pg_catalog", "information_schema") for t in out)
    assert any(t["schema"] == data for t in out)
    with_system = await call("pg_table_sizes", {"includeSystem": True, "schema": "pg_catalog", "limit": 5})
    assert len(with_system) == 5 and all(t["schema"] == "pg_catalog" for t in with_system)


async def test_table_sizes_bad_input(call: Call) -> None:
    for args in ({"limit": 0}, {"limit": 10_001}, {"minBytes": -1}, {"schema": "x" * 64}, {"tables": "big"}):
        with pytest.raises(ToolError) as exc:
            await call("pg_table_sizes", args)
        assert_tool_error(exc, "INVALID_INPUT")


# ---------------------------------------------------------------- pg_connection_stats / activeConnections


async def test_connection_stats_lists_idle_and_active_sessions(call: Call, dsn: str) -> None:
    with idle_session(dsn, f"{APP}_idle") as idle, sleeper(dsn, f"{APP}_sleep", 30) as sleep:
        out = await call("pg_connection_stats", {"queryMaxLength": 12})
        mine = {s["application_name"]: s for s in out if s["application_name"].startswith(APP)}
        assert set(mine) == {f"{APP}_idle", f"{APP}_sleep"}
        active = mine[f"{APP}_sleep"]
        assert active["pid"] == sleep.pid and active["state"] == "active"
        assert active["query"] == "SELECT pg_sl" and active["query_truncated"] is True
        assert active["duration"] >= 0 and active["usename"] and active["datname"]
        assert active["backend_type"] == "client backend"
        assert mine[f"{APP}_idle"]["pid"] == idle.info.backend_pid and mine[f"{APP}_idle"]["state"] == "idle"
        only_active = await call("pg_connection_stats", {"state": "active", "application": f"{APP}_sleep"})
        assert [s["pid"] for s in only_active] == [sleep.pid]
        assert await call("pg_connection_stats", {"state": "idle", "application": f"{APP}_sleep"}) == []


async def test_connection_stats_leaves_out_background_by_default(call: Call) -> None:
    out = await call("pg_connection_stats", {"includeBackground": True, "limit": 10_000})
    assert any(s["backend_type"] != "client backend" for s in out)
    default = await call("pg_connection_stats", {"limit": 10_000})
    assert all(s["backend_type"] == "client backend" for s in default)


async def test_connection_stats_leaves_out_its_own_session(settings: Settings) -> None:
    """With a one-connection pool the answering session is known: listed only with includeSelf."""
    async with Runtime(settings.model_copy(update={"pool_min_size": 1, "pool_max_size": 1})) as solo:
        own = (await solo.invoke("pg_read_query", {"sql": "SELECT pg_backend_pid() AS pid"}, LOCAL_PRINCIPAL)
               )["rows"][0]["pid"]
        listed = await solo.invoke("pg_connection_stats", {"includeSelf": True}, LOCAL_PRINCIPAL)
        mine = next(s for s in listed if s["pid"] == own)
        assert mine["state"] == "active" and mine["application_name"] == "pgcode"
        default = await solo.invoke("pg_connection_stats", {}, LOCAL_PRINCIPAL)
        assert own not in [s["pid"] for s in default]


async def test_active_connections_is_the_session_list(call: Call, rt: Runtime, dsn: str) -> None:
    spec = rt.registry.by_method("monitoring", "activeConnections")
    assert spec is not None and spec.name == "pg_connection_stats"
    with idle_session(dsn, f"{APP}_alias"):
        out = await call(spec.name, {})
    assert isinstance(out, list)
    mine = [s for s in out if s["application_name"] == f"{APP}_alias"]
    assert len(mine) == 1
    assert {"state", "pid", "usename", "application_name", "query", "duration"} <= set(mine[0])


async def test_connection_stats_group_by(call: Call, dsn: str) -> None:
    with idle_session(dsn, f"{APP}_grp"), idle_session(dsn, f"{APP}_grp"), \
            idle_session(dsn, f"{APP}_grp", in_transaction=True):
        by_state = await call("pg_connection_stats", {"groupBy": "state", "application": f"{APP}_grp"})
        counts = {g["state"]: g["total"] for g in by_state}
        assert counts == {"idle": 2, "idle in transaction": 1}
        assert by_state[0]["state"] == "idle" and by_state[0]["idle"] == 2
        by_app = await call("pg_connection_stats", {"groupBy": "application", "application": f"{APP}_grp"})
        assert by_app == [{"application": f"{APP}_grp", "total": 3, "active": 0, "idle": 2,
                           "idle_in_transaction": 1, "waiting_on_locks": 0,
                           "longest_duration": by_app[0]["longest_duration"],
                           "oldest_transaction": by_app[0]["oldest_transaction"]}]
        assert by_app[0]["oldest_transaction"] is not None


async def test_connection_stats_marks_who_blocks_whom(call: Call, dsn: str, data: str) -> None:
    with blocked(dsn, sql.Identifier(data, "locked"), f"{APP}_lock") as (holder, waiter):
        out = await call("pg_connection_stats", {"application": f"{APP}_lock_waiter"})
        assert len(out) == 1
        assert out[0]["wait_event_type"] == "Lock" and out[0]["blocked_by"] == [holder.info.backend_pid]
        grouped = await call("pg_connection_stats", {"groupBy": "wait_event", "application": f"{APP}_lock_waiter"})
        assert grouped[0]["wait_event"].startswith("Lock:") and grouped[0]["waiting_on_locks"] == 1
        holder_row = await call("pg_connection_stats", {"application": f"{APP}_lock_holder"})
        assert holder_row[0]["state"] == "idle in transaction" and holder_row[0]["blocked_by"] is None
    assert waiter.error is None and waiter.result == [(1,)]


async def test_connection_stats_bad_input(call: Call) -> None:
    for args in ({"state": "sleeping"}, {"groupBy": "host"}, {"queryMaxLength": -1}, {"limit": 0},
                 {"user": "x" * 64}):
        with pytest.raises(ToolError) as exc:
            await call("pg_connection_stats", args)
        assert_tool_error(exc, "INVALID_INPUT")


# ---------------------------------------------------------------- pg_replication_status


async def test_replication_status_reports_an_inactive_slot(call: Call, conn: psycopg.Connection[Any]) -> None:
    before = await call("pg_replication_status", {})
    assert before["role"] == "primary" and before["in_recovery"] is False and before["replicas"] == []
    assert before["wal_receiver"] is None and before["standby_lag"] is None
    if not before["slots"]:
        assert "standalone" in before["note"]
    conn.execute("SELECT pg_create_physical_replication_slot('t_monitoring_slot', true)")
    try:
        conn.execute("SELECT pg_current_xact_id()")  # some WAL after the slot's restart point
        conn.execute("SELECT pg_switch_wal()")
        out = await call("pg_replication_status", {})
        slot = next(s for s in out["slots"] if s["slot_name"] == "t_monitoring_slot")
        assert slot["active"] is False and slot["slot_type"] == "physical" and slot["wal_status"] == "reserved"
        assert slot["retained_wal_bytes"] > 0 and slot["restart_lsn"]
        assert out["inactive_slots"] >= 1 and "note" not in out
        if int(one(conn, "SHOW server_version_num")) >= 170000:
            assert slot["inactive_since"] is not None
    finally:
        conn.execute("SELECT pg_drop_replication_slot('t_monitoring_slot')")


# ---------------------------------------------------------------- server version, settings, uptime, recovery


async def test_server_version(call: Call, conn: psycopg.Connection[Any]) -> None:
    out = await call("pg_server_version", {})
    num = int(one(conn, "SHOW server_version_num"))
    assert out["server_version_num"] == num and out["major"] == num // 10000 and out["minor"] == num % 10000
    assert out["version"].startswith("PostgreSQL ") and out["server_version"] == one(conn, "SHOW server_version")
    assert out["installed_extensions"]["plpgsql"] == "1.0"


async def test_show_settings_by_pattern_names_and_category(call: Call, conn: psycopg.Connection[Any]) -> None:
    mem = await call("pg_show_settings", {"pattern": "WORK_MEM"})
    names = {s["name"] for s in mem}
    assert {"work_mem", "maintenance_work_mem"} <= names and all("work_mem" in n for n in names)
    work_mem = next(s for s in mem if s["name"] == "work_mem")
    assert work_mem["unit"] == "kB" and work_mem["value"] == one(conn, "SHOW work_mem")
    assert {"source", "pending_restart", "context", "category", "boot_val"} <= set(work_mem)
    wild = await call("pg_show_settings", {"pattern": "autovacuum*scale"})
    assert {"autovacuum_vacuum_scale_factor", "autovacuum_analyze_scale_factor"} <= {s["name"] for s in wild}
    exact = await call("pg_show_settings", {"names": ["max_connections", "shared_buffers"]})
    assert sorted(s["name"] for s in exact) == ["max_connections", "shared_buffers"]
    assert next(s for s in exact if s["name"] == "shared_buffers")["context"] == "postmaster"
    vacuum = await call("pg_show_settings", {"category": "VACUUM"})  # PG 18 renamed "Autovacuum"
    assert vacuum and all("vacuum" in s["category"].lower() for s in vacuum)
    assert "autovacuum_naptime" in {s["name"] for s in vacuum}


async def test_show_settings_filters_changed_and_pending(call: Call) -> None:
    changed = await call("pg_show_settings", {"changedOnly": True})
    assert changed and all(s["source"] not in ("default", "override") for s in changed)
    pending = await call("pg_show_settings", {"pendingRestartOnly": True})
    assert all(s["pending_restart"] for s in pending)
    assert await call("pg_show_settings", {"pattern": "t_monitoring_nothing_like_this"}) == []
    assert len(await call("pg_show_settings", {"limit": 3})) == 3


async def test_show_settings_pattern_is_not_sql(call: Call) -> None:
    out = await call("pg_show_settings", {"pattern": "'; DROP TABLE x; --"})
    assert out == []
    underscore = await call("pg_show_settings", {"pattern": "_"})
    assert all("_" in s["name"] for s in underscore)  # _ is a literal underscore, not LIKE's any-character


async def test_uptime(call: Call, conn: psycopg.Connection[Any]) -> None:
    out = await call("pg_uptime", {})
    started = one(conn, "SELECT pg_postmaster_start_time()")
    assert out["started_at"] == started.isoformat()
    assert out["uptime_seconds"] > 0 and out["uptime"]
    assert out["config_loaded_at"] is not None


async def test_recovery_status_on_a_primary(call: Call) -> None:
    out = await call("pg_recovery_status", {})
    assert out["in_recovery"] is False and out["role"] == "primary" and "not in recovery" in out["note"]


# ---------------------------------------------------------------- capacity, health, thresholds


async def test_capacity_planning_forecasts_from_counters(call: Call, data: str) -> None:
    out = await call("pg_capacity_planning", {"schema": data, "horizonDays": 45, "limit": 2})
    assert out["estimate"] is True and out["caveats"]
    assert [f["days"] for f in out["forecast"]] == [30, 45, 90, 365]
    assert out["size_bytes"] > 0 and out["window_basis"] in ("stats_reset", "server start")
    assert out["confidence"] in ("low", "medium", "high")
    assert len(out["tables"]) == 2 and all(t["schema"] == data for t in out["tables"])
    assert out["tables"][0]["bytes_per_day"] >= out["tables"][1]["bytes_per_day"]
    assert out["growth"]["transactions_per_day"] > 0 and out["xid"]["age"] > 0


async def test_capacity_planning_sees_inserted_rows(call: Call, data: str, dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:  # the backend flushes its counters when it exits
        c.execute(sql.SQL("INSERT INTO {} SELECT g FROM generate_series(1, 500) g").format(
            sql.Identifier(data, "small")))

    async def grown() -> Any:
        out = await call("pg_capacity_planning", {"schema": data, "limit": 1000})
        return next((t for t in out["tables"] if t["table"] == "small" and t["rows_per_day"] > 0), None)

    small = await eventually(grown, what="the inserts to show in the counters")
    assert small["projected_size_bytes"] >= small["size_bytes"] and small["live_rows"] >= 0


async def test_system_health_sections_and_real_conditions(call: Call, dsn: str, data: str,
                                                          conn: psycopg.Connection[Any]) -> None:
    with idle_session(dsn, f"{APP}_health_tx", in_transaction=True), \
            blocked(dsn, sql.Identifier(data, "locked"), f"{APP}_health"):
        out = await call("pg_system_health", {})
    assert out["status"] in ("ok", "warning", "critical")
    for section in ("connections", "cache", "temp", "deadlocks", "checkpoints", "wraparound"):
        assert out[section]["status"] in ("ok", "warning", "critical"), section
    c = out["connections"]
    assert c["max_connections"] == int(one(conn, "SHOW max_connections"))
    assert c["total"] >= 4 and c["idle_in_transaction"] >= 2 and c["waiting_on_locks"] >= 1
    assert 0 < c["used_ratio"] < 1
    assert 0 <= out["cache"]["hit_ratio"] <= 1
    version = int(one(conn, "SHOW server_version_num"))
    assert out["checkpoints"]["source"] == ("pg_stat_checkpointer" if version >= 170000 else "pg_stat_bgwriter")
    assert out["checkpoints"]["timed"] >= 0 and out["checkpoints"]["requested"] >= 0
    w = out["wraparound"]
    assert w["xid_age"] > 0 and w["autovacuum_freeze_max_age"] == int(one(conn, "SHOW autovacuum_freeze_max_age"))
    assert w["status"] == "ok"
    assert ("pg_stat_io" in out["io"]) == (version >= 160000)
    has_kcache = one(conn, "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_kcache'") == 1
    assert out["cpu"]["available"] is has_kcache
    assert out["findings"] == [{"section": k, "status": v["status"]} for k, v in out.items()
                               if isinstance(v, dict) and v.get("status") in ("warning", "critical")]


async def test_alert_thresholds_come_from_settings(call: Call, conn: psycopg.Connection[Any]) -> None:
    out = await call("pg_alert_threshold_set", {})
    th = {t["metric"]: t for t in out["thresholds"]}
    assert {"connection_usage_ratio", "cache_hit_ratio", "xid_age", "long_running_query_seconds",
            "replication_lag_bytes", "slot_retained_wal_bytes", "checkpoint_requested_ratio"} <= set(th)
    fma = int(one(conn, "SHOW autovacuum_freeze_max_age"))
    assert th["xid_age"]["warning"] == min(1.5 * fma, 1.2e9) and th["xid_age"]["critical"] == 1_500_000_000
    assert th["cache_hit_ratio"]["direction"] == "below"
    assert th["cache_hit_ratio"]["warning"] > th["cache_hit_ratio"]["critical"]
    assert "max_connections" in th["connection_usage_ratio"]["basis"]
    assert out["settings"]["max_connections"] == int(one(conn, "SHOW max_connections"))
    max_wal = one(conn, "SELECT setting::bigint * 1024 * 1024 FROM pg_settings WHERE name = 'max_wal_size'")
    slot_keep = one(conn, "SELECT setting::bigint FROM pg_settings WHERE name = 'max_slot_wal_keep_size'")
    if slot_keep < 0 and one(conn, "SELECT setting::bigint FROM pg_settings WHERE name = 'wal_keep_size'") == 0:
        assert th["replication_lag_bytes"]["warning"] == max_wal // 2
    for t in th.values():
        assert set(t) == {"metric", "warning", "critical", "direction", "unit", "basis"}
    picked = await call("pg_alert_threshold_set", {"metrics": ["xid_age"]})
    assert [t["metric"] for t in picked["thresholds"]] == ["xid_age"]


async def test_alert_thresholds_unknown_metric(call: Call) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_alert_threshold_set", {"metrics": ["cpu_load"]})
    err = assert_tool_error(exc, "INVALID_INPUT", "cpu_load")
    assert "xid_age" in err.details["metrics"]


# ---------------------------------------------------------------- scope and read-only


@pytest.mark.parametrize("name", TOOLS)
async def test_monitoring_needs_read_scope(call: Call, name: str) -> None:
    with pytest.raises(ToolError) as exc:
        await call(name, {}, principal=NOBODY)
    assert_tool_error(exc, "FORBIDDEN")


async def test_monitoring_runs_for_a_reader_in_a_read_only_call(call: Call) -> None:
    for name in TOOLS:
        assert await call(name, {}, principal=READER, read_only=True) is not None, name
