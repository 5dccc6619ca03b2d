"""partman group: partition sets made, maintained, checked, moved and undone by the real pg_partman."""

from __future__ import annotations

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

WRITER = Principal.with_scope("writer", Scope.WRITE)
NOBODY = Principal("nobody", frozenset())
ADMIN_TOOLS = ["pg_partman_create_extension", "pg_partman_create_parent", "pg_partman_run_maintenance",
               "pg_partman_partition_data", "pg_partman_set_retention", "pg_partman_undo_partition"]
READ_TOOLS = ["pg_partman_show_partitions", "pg_partman_show_config", "pg_partman_check_default",
              "pg_partman_analyze_partition_health"]


def one(conn: psycopg.Connection[Any], query: Any, *params: Any) -> Any:
    row = conn.execute(query, params or None).fetchone()
    assert row is not None
    return row[0]


def partman_schema(conn: psycopg.Connection[Any]) -> str | None:
    row = conn.execute("SELECT extnamespace::regnamespace::text FROM pg_extension WHERE extname = 'pg_partman'"
                       ).fetchone()
    return None if row is None else str(row[0])


def children(conn: psycopg.Connection[Any], schema: str, table: str) -> list[str]:
    rows = conn.execute("SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
                        "WHERE i.inhparent = %s::regclass ORDER BY 1", (f"{schema}.{table}",)).fetchall()
    return [r[0] for r in rows]


def part_config(conn: psycopg.Connection[Any], pm: str, parent: str) -> dict[str, Any] | None:
    cur = conn.execute(sql.SQL("SELECT * FROM {} WHERE parent_table = %s").format(
        sql.Identifier(pm, "part_config")), (parent,))
    row = cur.fetchone()
    return None if row is None else dict(zip([d.name for d in cur.description or ()], row, strict=True))


@pytest.fixture(scope="module")
def pm(dsn: str, schema: str) -> Iterator[str]:
    """pg_partman's schema; skips where the server lacks it. This module's partition sets are removed after."""
    with psycopg.connect(dsn, autocommit=True) as c:
        found = partman_schema(c)
        if found is None:
            pytest.skip("pg_partman is not installed on this server (test_create_extension_or_missing covers that)")
    yield found
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(sql.SQL("DELETE FROM {} WHERE parent_table LIKE %s").format(
            sql.Identifier(found, "part_config")), (schema + ".%",))
        for (name,) in c.execute("SELECT relname FROM pg_class WHERE relnamespace = %s::regnamespace "
                                 "AND relname LIKE %s", (found, f"template_{schema}_%")).fetchall():
            c.execute(sql.SQL("DROP TABLE IF EXISTS {}").format(sql.Identifier(found, name)))


def make_table(conn: psycopg.Connection[Any], schema: str, name: str, partitioned: bool = True) -> str:
    conn.execute(sql.SQL("CREATE TABLE {} (id bigint, ts timestamptz NOT NULL, v text) {}").format(
        sql.Identifier(schema, name), sql.SQL("PARTITION BY RANGE (ts)" if partitioned else "")))
    return f"{schema}.{name}"


async def new_set(call: Call, conn: psycopg.Connection[Any], schema: str, name: str, **extra: Any) -> dict[str, Any]:
    make_table(conn, schema, name)
    out: dict[str, Any] = await call("pg_partman_create_parent", {"table": f"{schema}.{name}", "control": "ts",
                                                                  "interval": "1 day", "premake": 3, **extra})
    return out


# ---------------------------------------------------------------- create extension / without pg_partman


async def test_create_extension_or_missing(call: Call, conn: psycopg.Connection[Any], rt: Runtime) -> None:
    """Where pg_partman is installed, creating it again is a no-op; elsewhere every tool says it is missing."""
    found = partman_schema(conn)
    if found is not None:
        out = await call("pg_partman_create_extension", {})
        assert out["created"] is False and out["schema"] == found
        return
    with pytest.raises(ToolError) as exc:
        await call("pg_partman_create_extension", {})
    assert_tool_error(exc, "EXTENSION_MISSING", "pg_partman")
    args = {"table": "t", "control": "ts", "interval": "1 day", "retention": None, "targetTable": "u"}
    needs = {"pg_partman_create_parent": ["table", "control", "interval"], "pg_partman_show_partitions": ["table"],
             "pg_partman_partition_data": ["table"], "pg_partman_set_retention": ["table", "retention"],
             "pg_partman_undo_partition": ["table", "targetTable"]}
    for name in [*ADMIN_TOOLS[1:], *READ_TOOLS]:
        with pytest.raises(ToolError) as exc:
            await call(name, {k: args[k] for k in needs.get(name, [])})
        err = assert_tool_error(exc, "EXTENSION_MISSING", "pg_partman")
        assert err.details["extension"] == "pg_partman"
    assert not rt.db.caps.has_extension("pg_partman")


# ---------------------------------------------------------------- create parent, show partitions and config


async def test_create_parent_makes_premade_partitions(call: Call, conn: psycopg.Connection[Any], schema: str,
                                                      pm: str) -> None:
    out = await new_set(call, conn, schema, "events")
    parent = f"{schema}.events"
    assert out["parentTable"] == parent and out["controlType"] == "time" and out["premake"] == 3
    major = int(one(conn, "SELECT split_part(extversion, '.', 1) FROM pg_extension WHERE extname = 'pg_partman'"))
    assert ("p_type => 'native'" if major < 5 else "p_type => 'range'") in out["api"]
    kids = children(conn, schema, "events")
    assert len(kids) == 3 + 1 + 3 + 1  # 3 back, the current day, 3 ahead, and the default
    assert sorted(p.split(".")[1] for p in out["partitions"]) == sorted(k for k in kids if k != "events_default")
    assert out["defaultPartition"] == f"{schema}.events_default"
    cfg = part_config(conn, pm, parent)
    assert cfg is not None and cfg["control"] == "ts" and cfg["premake"] == 3
    with pytest.raises(ToolError) as exc:
        await call("pg_partman_create_parent", {"table": parent, "control": "ts", "interval": "1 day"})
    assert_tool_error(exc, "ALREADY_EXISTS", parent)


async def test_create_parent_bad_input_changes_nothing(call: Call, conn: psycopg.Connection[Any], schema: str,
                                                       pm: str) -> None:
    make_table(conn, schema, "plain", partitioned=False)
    make_table(conn, schema, "pbad")
    cases = [({"table": f"{schema}.plain"}, "INVALID_INPUT", "PARTITION BY RANGE"),
             ({"table": f"{schema}.pbad", "control": "id"}, "INVALID_INPUT", "PARTITION BY RANGE"),
             ({"table": f"{schema}.pbad", "interval": "fortnightly"}, "INVALID_INPUT", "interval"),
             ({"table": f"{schema}.pbad", "interval": "-1 day"}, "INVALID_INPUT", "positive"),
             ({"table": f"{schema}.nope"}, "NOT_FOUND", "does not exist"),
             ({"table": f"{schema}.pbad", "premake": 0}, "INVALID_INPUT", "premake")]
    for args, code, fragment in cases:
        with pytest.raises(ToolError) as exc:
            await call("pg_partman_create_parent", {"control": "ts", "interval": "1 day", **args})
        assert_tool_error(exc, code, fragment)
    assert part_config(conn, pm, f"{schema}.pbad") is None and children(conn, schema, "pbad") == []


async def test_show_partitions_and_config(call: Call, conn: psycopg.Connection[Any], schema: str, pm: str) -> None:
    await new_set(call, conn, schema, "shown")
    out = await call("pg_partman_show_partitions", {"table": "shown", "schema": schema})
    assert out["count"] == 7 and out["truncated"] is False and out["defaultPartition"] == f"{schema}.shown_default"
    starts = [p["start_time"] for p in out["partitions"]]
    assert starts == sorted(starts) and all(p["bound"].startswith("FOR VALUES FROM") for p in out["partitions"])
    assert [p["end_time"] for p in out["partitions"][:-1]] == starts[1:]
    newest = await call("pg_partman_show_partitions", {"table": f"{schema}.shown", "order": "desc", "limit": 2})
    assert newest["truncated"] is True and [p["start_time"] for p in newest["partitions"]] == starts[::-1][:2]
    cfg = await call("pg_partman_show_config", {"table": f"{schema}.shown"}, principal=Principal.with_scope(
        "reader", Scope.READ))
    assert cfg["count"] == 1 and cfg["configs"][0]["parent_table"] == f"{schema}.shown" and cfg["partmanSchema"] == pm
    every = await call("pg_partman_show_config", {})
    assert f"{schema}.shown" in [c["parent_table"] for c in every["configs"]]
    for name in ("pg_partman_show_partitions", "pg_partman_show_config"):
        with pytest.raises(ToolError) as exc:
            await call(name, {"table": f"{schema}.not_managed"})
        assert_tool_error(exc, "NOT_FOUND", "does not manage")


# ---------------------------------------------------------------- default partition and partition_data


async def test_rows_in_default_are_found_and_moved(call: Call, conn: psycopg.Connection[Any], schema: str,
                                                   pm: str) -> None:
    await new_set(call, conn, schema, "moved")
    parent = f"{schema}.moved"
    conn.execute(sql.SQL("INSERT INTO {} (id, ts, v) VALUES (1, now() - interval '20 days', 'old'), "
                         "(2, now() + interval '30 days', 'new'), (3, now(), 'today')").format(
        sql.Identifier(schema, "moved")))
    assert one(conn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "moved_default"))) == 2
    check = await call("pg_partman_check_default", {"table": parent})
    assert check["defaults"] == [{"parentTable": parent, "defaultPartition": f"{schema}.moved_default", "rows": 2}]
    assert check["hasData"] is True and check["totalRows"] == 2
    cheap = await call("pg_partman_check_default", {"table": parent, "exact": False})
    assert cheap["defaults"][0]["rows"] == 1
    out = await call("pg_partman_partition_data", {"table": parent})
    assert out["function"] == "partition_data_time" and out["rowsMoved"] == 2
    assert out["defaultRowsBefore"] == 2 and out["defaultRowsAfter"] == 0 and len(out["partitionsCreated"]) == 2
    kids = children(conn, schema, "moved")
    assert all(p.split(".")[1] in kids for p in out["partitionsCreated"])
    assert one(conn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "moved"))) == 3
    assert one(conn, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "moved_default"))) == 0
    assert (await call("pg_partman_check_default", {"table": parent}))["hasData"] is False
    with pytest.raises(ToolError) as exc:
        await call("pg_partman_partition_data", {"table": f"{schema}.not_managed"})
    assert_tool_error(exc, "NOT_FOUND")


# ---------------------------------------------------------------- retention, maintenance, health


async def test_set_retention_shows_in_config(call: Call, conn: psycopg.Connection[Any], schema: str, pm: str) -> None:
    await new_set(call, conn, schema, "kept")
    parent = f"{schema}.kept"
    out = await call("pg_partman_set_retention", {"table": parent, "retention": "30 days", "keepTable": False})
    assert out["before"]["retention"] is None and out["after"] == {
        "retention": "30 days", "retention_keep_table": False, "retention_keep_index": True}
    cfg = part_config(conn, pm, parent)
    assert cfg is not None and cfg["retention"] == "30 days" and cfg["retention_keep_table"] is False
    shown = await call("pg_partman_show_config", {"table": parent})
    assert shown["configs"][0]["retention"] == "30 days"
    for args, code in (({"retention": "a while"}, "INVALID_INPUT"), ({"retention": "-3 days"}, "INVALID_INPUT"),
                       ({"retention": "1 day", "table": f"{schema}.not_managed"}, "NOT_FOUND")):
        with pytest.raises(ToolError) as exc:
            await call("pg_partman_set_retention", {"table": parent, **args})
        assert_tool_error(exc, code)
    assert part_config(conn, pm, parent)["retention"] == "30 days"  # type: ignore[index]
    await call("pg_partman_set_retention", {"table": parent, "retention": None})
    assert part_config(conn, pm, parent)["retention"] is None  # type: ignore[index]


async def test_health_finds_problems_and_maintenance_fixes_premade(call: Call, conn: psycopg.Connection[Any],
                                                                   schema: str, pm: str) -> None:
    made = await new_set(call, conn, schema, "ill")
    parent = f"{schema}.ill"
    healthy = await call("pg_partman_analyze_partition_health", {"table": parent})
    assert healthy["healthy"] is True and healthy["sets"][0]["futurePartitions"] == 3
    newest = made["partitions"][-1]
    conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(*newest.split("."))))
    conn.execute(sql.SQL("INSERT INTO {} (ts) VALUES (now() - interval '60 days'), (now())").format(
        sql.Identifier(schema, "ill")))
    conn.execute(sql.SQL("UPDATE {} SET retention = '1 day' WHERE parent_table = %s").format(
        sql.Identifier(pm, "part_config")), (parent,))
    out = await call("pg_partman_analyze_partition_health", {"table": parent})
    s = out["sets"][0]
    assert out["healthy"] is False and s["missingPremade"] == 1 and s["futurePartitions"] == 2
    assert s["defaultRows"] == 1 and len(s["expiredPartitions"]) == 2  # the partitions of 3 and 2 days ago
    assert {i["kind"] for i in s["issues"]} == {"missing_premade", "default_rows", "retention_drift"}
    run = await call("pg_partman_run_maintenance", {"table": parent})
    assert run["sets"][0]["created"] == [newest] and len(run["sets"][0]["removed"]) == 2
    assert newest.split(".")[1] in children(conn, schema, "ill")
    after = (await call("pg_partman_analyze_partition_health", {"table": parent}))["sets"][0]
    assert after["missingPremade"] == 0 and after["expiredPartitions"] == []
    assert [i["kind"] for i in after["issues"]] == ["default_rows"]
    every = await call("pg_partman_analyze_partition_health", {})
    assert parent in [x["parentTable"] for x in every["sets"]]


# ---------------------------------------------------------------- undo


async def test_undo_partition_moves_rows_to_a_target(call: Call, conn: psycopg.Connection[Any], schema: str,
                                                     pm: str) -> None:
    await new_set(call, conn, schema, "undone")
    parent = f"{schema}.undone"
    conn.execute(sql.SQL("INSERT INTO {} (id, ts) SELECT g, now() - g * interval '1 hour' FROM "
                         "generate_series(1, 50) g").format(sql.Identifier(schema, "undone")))
    with pytest.raises(ToolError) as exc:
        await call("pg_partman_undo_partition", {"table": parent, "targetTable": "flat", "createTarget": False})
    assert_tool_error(exc, "NOT_FOUND", "flat")
    assert part_config(conn, pm, parent) is not None
    out = await call("pg_partman_undo_partition", {"table": parent, "targetTable": "flat", "keepTable": False})
    assert out["targetTable"] == f"{schema}.flat" and out["targetCreated"] is True and out["rowsUndone"] == 50
    assert out["rowsInTarget"] == 50 and out["remainingPartitions"] == 0 and out["configRemoved"] is True
    assert children(conn, schema, "undone") == [] and part_config(conn, pm, parent) is None
    assert one(conn, "SELECT relkind FROM pg_class WHERE oid = %s::regclass", f"{schema}.flat") == "r"
    with pytest.raises(ToolError) as exc:
        await call("pg_partman_undo_partition", {"table": parent, "targetTable": "flat"})
    assert_tool_error(exc, "NOT_FOUND", "does not manage")


# ---------------------------------------------------------------- scopes and code mode


@pytest.mark.parametrize("name", ADMIN_TOOLS)
async def test_admin_tools_are_forbidden_to_a_write_token(call: Call, conn: psycopg.Connection[Any], schema: str,
                                                          pm: str, name: str) -> None:
    args = {"table": f"{schema}.events", "control": "ts", "interval": "1 day", "retention": "1 day",
            "targetTable": "x"}
    with pytest.raises(ToolError) as exc:
        await call(name, args, principal=WRITER)
    assert_tool_error(exc, "FORBIDDEN", "admin")


@pytest.mark.parametrize("name", READ_TOOLS)
async def test_read_tools_need_read_scope(call: Call, pm: str, name: str) -> None:
    with pytest.raises(ToolError) as exc:
        await call(name, {"table": "x"}, principal=NOBODY)
    assert_tool_error(exc, "FORBIDDEN")


async def test_code_mode_create_partition_config(call: Call, conn: psycopg.Connection[Any], schema: str,
                                                 pm: str) -> None:
    make_table(conn, schema, "coded")
    code = (f"const out = await pg.partman.createPartitionConfig({{table: '{schema}.coded', control: 'ts', "
            "interval: 'daily', premake: 2});\n"
            f"const shown = await pg.partman.showPartitions({{table: '{schema}.coded'}});\n"
            "return {api: out.api, made: out.partitions.length, shown: shown.count};")
    out = await call("pg_execute_code", {"code": code, "readonly": False})
    assert out["success"] is True, out
    assert out["result"]["made"] == 5 and out["result"]["shown"] == 5
    assert part_config(conn, pm, f"{schema}.coded") is not None
