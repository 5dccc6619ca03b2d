"""partitioning group: real range, list and hash partitioned tables, rows routed, bounds refused, attach and detach."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from pgcode.core.runtime import Runtime
from pgcode.errors import ToolError
from pgcode.types import LOCAL_PRINCIPAL, Principal, Scope
from tests.fix_db import Call, assert_tool_error

pytestmark = pytest.mark.anyio

READER = Principal.with_scope("reader", Scope.READ)
WRITER = Principal.with_scope("writer", Scope.WRITE)
ADMIN_TOOLS = ["pg_create_partitioned_table", "pg_create_partition", "pg_attach_partition", "pg_detach_partition"]

EVENTS = [{"name": "id", "type": "bigint", "nullable": False}, {"name": "at", "type": "date", "nullable": False},
          {"name": "note", "type": "text"}]


def rows(conn: psycopg.Connection[Any], query: str, *params: Any) -> list[tuple[Any, ...]]:
    return conn.execute(query, params or None).fetchall()


def one(conn: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    row = conn.execute(query, params or None).fetchone()
    assert row is not None
    return row[0]


def partitions_of(conn: psycopg.Connection[Any], schema: str, table: str) -> dict[str, str]:
    return dict(rows(conn, "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid) FROM pg_inherits i "
                           "JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = %s::regclass",
                     f'"{schema}"."{table}"'))


def routed(conn: psycopg.Connection[Any], schema: str, table: str) -> dict[str, int]:
    """Rows per partition, read from tableoid: where PostgreSQL really put each row."""
    return dict(rows(conn, f'SELECT tableoid::regclass::text, count(*) FROM "{schema}"."{table}" GROUP BY 1'))


async def test_range_partitioned_table_routes_rows(call: Call, conn: psycopg.Connection[Any], schema: str) -> None:
    out = await call("pg_create_partitioned_table", {
        "table": "events", "schema": schema, "columns": EVENTS, "partitionBy": "range", "partitionKey": ["at"],
        "partitions": [{"name": "events_2024_01", "from": ["2024-01-01"], "to": ["2024-02-01"]},
                       {"name": "events_2024_02", "from": ["2024-02-01"], "to": ["2024-03-01"]}],
        "defaultPartition": True})
    assert out["strategy"] == "range" and out["partition_key"] == ["at"]
    assert [p["name"] for p in out["partitions"]] == ["events_2024_01", "events_2024_02", "events_default"]
    assert out["partitions"][0]["bounds"] == "FOR VALUES FROM ('2024-01-01') TO ('2024-02-01')"
    assert one(conn, "SELECT pg_get_partkeydef(%s::regclass)", f"{schema}.events") == "RANGE (at)"
    conn.execute(f"INSERT INTO {schema}.events VALUES (1, '2024-01-05'), (2, '2024-02-10'), (3, '2024-02-28'), "
                 f"(4, '2025-06-01'), (5, '2023-12-31')")
    assert routed(conn, schema, "events") == {f"{schema}.events_2024_01": 1, f"{schema}.events_2024_02": 2,
                                              f"{schema}.events_default": 2}

    out = await call("pg_create_partition", {"table": f"{schema}.events", "partition": "events_2024_03",
                                             "from": ["2024-03-01"], "to": ["2024-04-01"]})
    assert out["bounds"] == "FOR VALUES FROM ('2024-03-01') TO ('2024-04-01')" and out["schema"] == schema
    conn.execute(f"INSERT INTO {schema}.events VALUES (6, '2024-03-15')")
    assert routed(conn, schema, "events")[f"{schema}.events_2024_03"] == 1

    info = await call("pg_partition_info", {"table": "events", "schema": schema}, READER)
    assert info["strategy"] == "range" and info["partition_key"] == "RANGE (at)" and info["key_columns"] == ["at"]
    assert info["partition_count"] == 4 and info["leaf_partitions"] == 4 and not info["truncated"]
    assert info["default_partition"] == {"name": "events_default", "schema": schema, "rows": 2, "rows_capped": False}
    assert info["default_rows"] == 2
    by_name = {p["name"]: p for p in info["partitions"]}
    assert by_name["events_default"]["is_default"] and by_name["events_default"]["bounds"] == "DEFAULT"
    assert by_name["events_2024_02"]["bounds"] == "FOR VALUES FROM ('2024-02-01') TO ('2024-03-01')"
    assert all(p["size_bytes"] > 0 for p in info["partitions"])
    assert info["partitions"][-1]["name"] == "events_default"
    capped = await call("pg_partition_info", {"table": "events", "schema": schema, "defaultRowCap": 1})
    assert capped["default_partition"]["rows"] == 1 and capped["default_partition"]["rows_capped"] is True

    conn.execute(f"ANALYZE {schema}.events")
    info = await call("pg_partition_info", {"table": "events", "schema": schema})
    assert {p["name"]: p["row_estimate"] for p in info["partitions"]}["events_2024_02"] == 2
    assert info["total_row_estimate"] == 6

    listed = await call("pg_list_partitions", {"table": f"{schema}.events", "limit": 2}, READER)
    assert listed["count"] == 2 and listed["total"] == 4 and listed["truncated"] is True
    assert all(p["parent"] == "events" and p["level"] == 1 and p["is_leaf"] for p in listed["partitions"])


async def test_overlap_refused_with_postgres_reason(call: Call, conn: psycopg.Connection[Any], schema: str) -> None:
    await call("pg_create_partitioned_table", {
        "table": "ranges", "schema": schema, "columns": [{"name": "n", "type": "integer"}], "partitionBy": "range",
        "partitionKey": ["n"], "partitions": [{"name": "ranges_low", "from": [0], "to": [100]}]})
    before = partitions_of(conn, schema, "ranges")
    with pytest.raises(ToolError) as exc:
        await call("pg_create_partition", {"table": "ranges", "schema": schema, "partition": "ranges_mid",
                                           "from": [50], "to": [150]})
    err = assert_tool_error(exc, "SQL_ERROR", 'partition "ranges_mid" would overlap partition "ranges_low"')
    assert err.details["sqlstate"] == "42P17"
    assert partitions_of(conn, schema, "ranges") == before
    assert one(conn, "SELECT to_regclass(%s)", f"{schema}.ranges_mid") is None

    conn.execute(f"CREATE TABLE {schema}.ranges_loose (n integer)")
    with pytest.raises(ToolError) as exc:
        await call("pg_attach_partition", {"table": "ranges", "schema": schema, "partition": "ranges_loose",
                                           "from": [99], "to": [200]})
    assert_tool_error(exc, "SQL_ERROR", "would overlap partition")
    assert partitions_of(conn, schema, "ranges") == before

    # A whole create with one bad partition leaves nothing behind.
    with pytest.raises(ToolError) as exc:
        await call("pg_create_partitioned_table", {
            "table": "half", "schema": schema, "columns": [{"name": "n", "type": "integer"}], "partitionBy": "range",
            "partitionKey": ["n"], "partitions": [{"name": "half_a", "from": [0], "to": [10]},
                                                  {"name": "half_b", "from": [5], "to": [20]}]})
    assert_tool_error(exc, "SQL_ERROR", "would overlap")
    assert one(conn, "SELECT to_regclass(%s)", f"{schema}.half") is None


async def test_bound_values_are_literals(call: Call, conn: psycopg.Connection[Any], schema: str) -> None:
    await call("pg_create_partitioned_table", {
        "table": "tagged", "schema": schema, "columns": [{"name": "tag", "type": "text"}], "partitionBy": "list",
        "partitionKey": ["tag"]})
    evil = "x'); DROP TABLE tagged; --"
    out = await call("pg_create_partition", {"table": "tagged", "schema": schema, "partition": "tagged_odd",
                                             "values": [evil, "o'brien", None]})
    assert "o''brien" in out["bounds"] and "NULL" in out["bounds"]
    conn.execute(f"INSERT INTO {schema}.tagged VALUES (%s), ('o''brien'), (NULL)", (evil,))
    assert routed(conn, schema, "tagged") == {f"{schema}.tagged_odd": 3}


async def test_list_and_hash_partitioning(call: Call, conn: psycopg.Connection[Any], schema: str) -> None:
    await call("pg_create_partitioned_table", {
        "table": "by_region", "schema": schema, "partitionBy": "list", "partitionKey": ["region"],
        "columns": [{"name": "id", "type": "integer"}, {"name": "region", "type": "text"}],
        "partitions": [{"name": "by_region_eu", "values": ["de", "fr"]}, {"name": "by_region_us", "values": ["us"]}],
        "defaultPartition": True})
    conn.execute(f"INSERT INTO {schema}.by_region VALUES (1, 'de'), (2, 'fr'), (3, 'us'), (4, 'jp')")
    assert routed(conn, schema, "by_region") == {f"{schema}.by_region_eu": 2, f"{schema}.by_region_us": 1,
                                                 f"{schema}.by_region_default": 1}
    assert partitions_of(conn, schema, "by_region")["by_region_eu"] == "FOR VALUES IN ('de', 'fr')"
    # A partition for 'jp' would strand the row sitting in the default partition: PostgreSQL refuses.
    with pytest.raises(ToolError) as exc:
        await call("pg_create_partition", {"table": "by_region", "schema": schema, "partition": "by_region_jp",
                                           "values": ["jp"]})
    assert_tool_error(exc, "INVALID_INPUT", "default partition", "would be violated")
    info = await call("pg_partition_info", {"table": "by_region", "schema": schema})
    assert info["strategy"] == "list" and info["default_rows"] == 1

    await call("pg_create_partitioned_table", {
        "table": "hashed", "schema": schema, "partitionBy": "hash", "partitionKey": ["id"],
        "columns": [{"name": "id", "type": "integer", "primaryKey": True}],
        "partitions": [{"name": f"hashed_{r}", "modulus": 3, "remainder": r} for r in range(3)]})
    conn.execute(f"INSERT INTO {schema}.hashed SELECT generate_series(1, 300)")
    spread = routed(conn, schema, "hashed")
    assert len(spread) == 3 and sum(spread.values()) == 300 and min(spread.values()) > 50
    expected = {r[0]: r[1] for r in rows(conn, f"SELECT 'hashed_' || r, count(*) FROM generate_series(1, 300) g, "
                                               f"generate_series(0, 2) r WHERE satisfies_hash_partition("
                                               f"'{schema}.hashed'::regclass, 3, r, g) GROUP BY r")}
    assert {k.split(".")[1]: v for k, v in spread.items()} == expected
    info = await call("pg_partition_info", {"table": "hashed", "schema": schema})
    assert info["strategy"] == "hash" and info["default_partition"] is None and info["default_rows"] is None
    assert {p["bounds"] for p in info["partitions"]} == {
        f"FOR VALUES WITH (modulus 3, remainder {r})" for r in range(3)}


async def test_bad_input_changes_nothing(call: Call, conn: psycopg.Connection[Any], schema: str) -> None:
    await call("pg_create_partitioned_table", {
        "table": "bad", "schema": schema, "columns": [{"name": "n", "type": "integer"}], "partitionBy": "hash",
        "partitionKey": ["n"]})
    cases: list[tuple[str, dict[str, Any], str, str]] = [
        ("pg_create_partition", {"table": "bad", "schema": schema, "partition": "b1", "from": [1], "to": [2]},
         "INVALID_INPUT", "partitioned by hash"),
        ("pg_create_partition", {"table": "bad", "schema": schema, "partition": "b1", "default": True},
         "INVALID_INPUT", "cannot have a default partition"),
        ("pg_create_partition", {"table": "bad", "schema": schema, "partition": "b1", "modulus": 2,
                                 "remainder": 2}, "INVALID_INPUT", "remainder must be less than modulus"),
        ("pg_create_partition", {"table": "bad", "schema": schema, "partition": "b1", "values": [1],
                                 "modulus": 2, "remainder": 0}, "INVALID_INPUT", "exactly one kind of bounds"),
        ("pg_create_partition", {"table": "nope", "schema": schema, "partition": "b1", "default": True},
         "NOT_FOUND", "does not exist"),
        ("pg_list_partitions", {"table": "ranges_loose_x", "schema": schema}, "NOT_FOUND", "does not exist"),
        ("pg_create_partitioned_table", {"table": "bad2", "schema": schema, "columns": [{"name": "n",
         "type": "integer"}], "partitionBy": "range", "partitionKey": ["m"]}, "INVALID_INPUT", "not among"),
        ("pg_create_partitioned_table", {"table": "bad", "schema": schema, "columns": [{"name": "n",
         "type": "integer"}], "partitionBy": "list", "partitionKey": ["n"]}, "ALREADY_EXISTS", "already exists"),
        ("pg_create_partitioned_table", {"table": "bad3", "schema": schema, "columns": [{"name": "n",
         "type": "integer"}], "partitionBy": "hash", "partitionKey": ["n"], "defaultPartition": True},
         "INVALID_INPUT", "default partition"),
    ]
    for name, args, code, fragment in cases:
        with pytest.raises(ToolError) as exc:
            await call(name, args)
        assert_tool_error(exc, code, fragment)
    assert partitions_of(conn, schema, "bad") == {}
    assert one(conn, "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                     "WHERE n.nspname = %s AND c.relname IN ('b1', 'bad2', 'bad3')", schema) == 0
    conn.execute(f"CREATE TABLE {schema}.plain (n integer)")
    with pytest.raises(ToolError) as exc:
        await call("pg_partition_info", {"table": "plain", "schema": schema})
    assert_tool_error(exc, "INVALID_INPUT", "is not a partitioned table")


async def test_attach_and_detach(call: Call, conn: psycopg.Connection[Any], schema: str) -> None:
    await call("pg_create_partitioned_table", {
        "table": "readings", "schema": schema, "partitionBy": "range", "partitionKey": ["n"],
        "columns": [{"name": "n", "type": "integer"}, {"name": "v", "type": "text"}],
        "partitions": [{"name": "readings_0", "from": [{"unbounded": "minvalue"}], "to": [100]}]})
    assert partitions_of(conn, schema, "readings") == {"readings_0": "FOR VALUES FROM (MINVALUE) TO (100)"}
    conn.execute(f"CREATE TABLE {schema}.readings_1 (n integer, v text); "
                 f"INSERT INTO {schema}.readings_1 VALUES (150, 'a'), (199, 'b')")
    conn.execute(f"CREATE TABLE {schema}.readings_wrong (n integer, v text); "
                 f"INSERT INTO {schema}.readings_wrong VALUES (999, 'x')")

    # Rows outside the bounds: refused with PostgreSQL's reason, nothing attached.
    with pytest.raises(ToolError) as exc:
        await call("pg_attach_partition", {"table": "readings", "schema": schema, "partition": "readings_wrong",
                                           "from": [200], "to": [300]})
    assert_tool_error(exc, "INVALID_INPUT", "partition constraint", "violated")
    assert "readings_wrong" not in partitions_of(conn, schema, "readings")

    out = await call("pg_attach_partition", {"table": "readings", "schema": schema,
                                             "partition": f"{schema}.readings_1", "from": [100], "to": [200]})
    assert out["attached"] and out["bounds"] == "FOR VALUES FROM (100) TO (200)"
    assert one(conn, f"SELECT count(*) FROM {schema}.readings WHERE n >= 100") == 2
    assert partitions_of(conn, schema, "readings")["readings_1"] == "FOR VALUES FROM (100) TO (200)"

    out = await call("pg_detach_partition", {"table": "readings", "schema": schema, "partition": "readings_1"})
    snapshot = out.pop("snapshot_id")  # the detached partition's DDL and rows, kept before it left
    assert one(conn, "SELECT data_rows FROM pgcode.snapshots WHERE id = %s", snapshot) == 2
    assert out == {"partition": "readings_1", "schema": schema, "table": "readings", "table_schema": schema,
                   "detached": True, "mode": "plain", "bounds_before": "FOR VALUES FROM (100) TO (200)"}
    assert "readings_1" not in partitions_of(conn, schema, "readings")
    assert one(conn, "SELECT relispartition FROM pg_class WHERE oid = %s::regclass", f"{schema}.readings_1") is False
    assert one(conn, f"SELECT count(*) FROM {schema}.readings_1") == 2
    assert one(conn, f"SELECT count(*) FROM {schema}.readings WHERE n >= 100") == 0

    with pytest.raises(ToolError) as exc:
        await call("pg_detach_partition", {"table": "readings", "schema": schema, "partition": "readings_1"})
    assert_tool_error(exc, "NOT_FOUND", "is not a partition of")
    with pytest.raises(ToolError) as exc:
        await call("pg_detach_partition", {"table": "readings", "schema": schema, "partition": "readings_0",
                                           "finalize": True})
    assert_tool_error(exc, "INVALID_INPUT", "no interrupted concurrent detach")
    assert "readings_0" in partitions_of(conn, schema, "readings")


@pytest.mark.pg(">= 14")
async def test_detach_concurrently(call: Call, conn: psycopg.Connection[Any], schema: str) -> None:
    await call("pg_create_partitioned_table", {
        "table": "logs", "schema": schema, "partitionBy": "list", "partitionKey": ["kind"],
        "columns": [{"name": "kind", "type": "text"}],
        "partitions": [{"name": "logs_a", "values": ["a"]}, {"name": "logs_b", "values": ["b"]}]})
    conn.execute(f"INSERT INTO {schema}.logs VALUES ('a'), ('b'), ('b')")
    out = await call("pg_detach_partition", {"table": "logs", "schema": schema, "partition": "logs_b",
                                             "concurrently": True})
    assert out["mode"] == "concurrently" and out["bounds_before"] == "FOR VALUES IN ('b')"
    assert partitions_of(conn, schema, "logs") == {"logs_a": "FOR VALUES IN ('a')"}
    assert one(conn, "SELECT count(*) FROM pg_inherits WHERE inhrelid = %s::regclass", f"{schema}.logs_b") == 0
    assert one(conn, f"SELECT count(*) FROM {schema}.logs_b") == 2
    # With a default partition PostgreSQL cannot detach concurrently, and says so; nothing changes.
    await call("pg_create_partition", {"table": "logs", "schema": schema, "partition": "logs_rest", "default": True})
    with pytest.raises(ToolError) as exc:
        await call("pg_detach_partition", {"table": "logs", "schema": schema, "partition": "logs_a",
                                           "concurrently": True})
    assert_tool_error(exc, "SQL_ERROR", "default partition")
    assert set(partitions_of(conn, schema, "logs")) == {"logs_a", "logs_rest"}


async def test_scopes(call: Call, conn: psycopg.Connection[Any], schema: str) -> None:
    for name in ADMIN_TOOLS:
        with pytest.raises(ToolError) as exc:
            await call(name, {"table": "readings", "schema": schema, "partition": "readings_0", "default": True},
                       WRITER)
        assert_tool_error(exc, "FORBIDDEN", "admin")
    with pytest.raises(ToolError) as exc:
        await call("pg_create_partitioned_table", {"table": "x", "schema": schema, "columns": EVENTS,
                                                   "partitionBy": "range", "partitionKey": ["at"]}, WRITER)
    assert_tool_error(exc, "FORBIDDEN")
    assert one(conn, "SELECT to_regclass(%s)", f"{schema}.x") is None


async def test_code_mode_creates_a_partitioned_table(rt: Runtime, conn: psycopg.Connection[Any],
                                                     schema: str) -> None:
    code = f"""
    const made = await pg.partitioning.createPartitionedTable({{
      table: "cm_orders", schema: "{schema}", partitionBy: "range", partitionKey: ["id"],
      columns: [{{name: "id", type: "integer"}}],
      partitions: [{{name: "cm_orders_1", from: [1], to: [1000]}}], defaultPartition: true}});
    const listed = await pg.partitioning.listPartitions({{table: "cm_orders", schema: "{schema}"}});
    return {{made: made.partitions.map(p => p.name), listed: listed.partitions.map(p => p.name)}};
    """
    out = await rt.invoke("pg_execute_code", {"code": code, "readonly": False}, LOCAL_PRINCIPAL)
    assert out["success"], out
    assert out["result"] == {"made": ["cm_orders_1", "cm_orders_default"], "listed": ["cm_orders_1",
                                                                                      "cm_orders_default"]}
    assert set(partitions_of(conn, schema, "cm_orders")) == {"cm_orders_1", "cm_orders_default"}
