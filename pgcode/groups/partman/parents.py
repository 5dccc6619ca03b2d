"""partman: creating the extension and partition sets, maintenance, retention, and undoing a set."""

from __future__ import annotations

from typing import Any

from psycopg import sql
from pydantic import Field

from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import IDENT_MAX, TableRef, relation_kind, split_name
from pgcode.groups._extensions import create_extension
from pgcode.groups._snapshots import snapshot_before
from pgcode.groups.partman._base import (
    PARTMAN,
    OptionalParentIn,
    Partman,
    children,
    config,
    configs,
    control_type,
    count_rows,
    default_partition,
    parent_name,
    parse_value,
    partman,
    qualified,
)
from pgcode.types import Effect

# pg_partman 4.x took these words for p_interval; 5.x takes only interval values.
_KEYWORDS = {"yearly": "1 year", "quarterly": "3 months", "monthly": "1 month", "weekly": "1 week",
             "daily": "1 day", "hourly": "1 hour", "half-hour": "30 minutes", "quarter-hour": "15 minutes"}


class CreateExtensionIn(ToolInput):
    schema_: str = Field("partman", alias="schema", min_length=1, max_length=IDENT_MAX)


@tool(group="partman", effect=Effect.ADMIN)
async def partman_create_extension(ctx: ToolContext, args: CreateExtensionIn) -> dict[str, Any]:
    """Create the pg_partman extension in its own schema (partman by default).

    Says whether it was already there; the schema is created if missing.
    """
    ctx.use_autocommit()
    existing = await ctx.fetchval("SELECT n.nspname FROM pg_extension e JOIN pg_namespace n "
                                  "ON n.oid = e.extnamespace WHERE e.extname = 'pg_partman'")
    return await create_extension(ctx, "pg_partman", package="the server package (e.g. postgresql-15-partman)",
                                  schema=existing or args.schema_, create_schema=existing is None)


class CreateParentIn(TableRef):
    control: str = Field(min_length=1, max_length=IDENT_MAX, description="RANGE key column (time or integer)")
    interval: str = Field(min_length=1, max_length=100, description="'1 day', '1 month', or an integer for ids")
    premake: int = Field(4, ge=1, le=1000)
    start_partition: str | None = Field(None, min_length=1, max_length=100)
    automatic_maintenance: bool = True


@tool(group="partman", effect=Effect.ADMIN, extensions=PARTMAN, aliases=("createPartitionConfig",))
async def partman_create_parent(ctx: ToolContext, args: CreateParentIn) -> dict[str, Any]:
    """Put a RANGE-partitioned table under pg_partman (creates partitions and config).

    Creates its child partitions, its default partition and its configuration.

    The table must already be declared PARTITION BY RANGE (control). Works with pg_partman 4.x
    (p_type => 'native') and 5.x (p_type => 'range', interval values only); `api` says which call was made.
    pg.partman.createPartitionConfig is this tool.

    Arguments: control: the partition key column, a time or integer column, the table's RANGE key; interval:
    the width of each partition, an interval for time ('1 day', '1 month'; the 4.x words daily, weekly,
    monthly, ... are accepted too) or an integer for ids; premake: partitions to keep made ahead of the current
    one; startPartition: the first partition's start (time or id; default: premake partitions before the
    current one); automaticMaintenance: include this set in run_maintenance() without a table.
    """
    pm = await partman(ctx)
    parent = parent_name(args)
    await _check_partitioned(ctx, args, parent)
    if await ctx.fetchval(sql.SQL("SELECT 1 FROM {} WHERE parent_table = %s").format(
            sql.Identifier(pm.schema, "part_config")), (parent,)):
        raise ToolError(ErrorCode.ALREADY_EXISTS, f"pg_partman already manages {parent}",
                        hint="pg_partman_show_config shows its configuration")
    kind = await control_type(ctx, pm, parent, args.control)
    interval = _KEYWORDS.get(args.interval.lower()) if kind == "time" else None
    if interval is None:
        interval = await parse_value(ctx, args.interval, kind, "interval")
    if pm.major >= 5:
        api = "pg_partman 5.x: create_parent(p_interval, p_type => 'range', p_default_table => true)"
        call = sql.SQL("SELECT {}(p_parent_table := %(parent)s, p_control := %(control)s, p_interval := %(interval)s, "
                       "p_type := 'range', p_premake := %(premake)s, p_start_partition := %(start)s, "
                       "p_automatic_maintenance := %(auto)s, p_default_table := true)")
    else:
        if kind == "time" and args.interval.lower() in _KEYWORDS:
            interval = args.interval.lower()
        api = "pg_partman 4.x: create_parent(p_type => 'native', p_interval)"
        call = sql.SQL("SELECT {}(p_parent_table := %(parent)s, p_control := %(control)s, p_type := 'native', "
                       "p_interval := %(interval)s, p_premake := %(premake)s, p_start_partition := %(start)s, "
                       "p_automatic_maintenance := %(auto)s)")
    await ctx.execute(call.format(pm.fn("create_parent")), {
        "parent": parent, "control": args.control, "interval": interval, "premake": args.premake,
        "start": args.start_partition, "auto": "on" if args.automatic_maintenance else "off"})
    cfg = await config(ctx, pm, parent)
    parts = await children(ctx, pm, parent)
    return {"parentTable": parent, "control": args.control, "controlType": kind,
            "interval": cfg["partition_interval"], "premake": cfg["premake"], "api": api, "partmanVersion": pm.version,
            "partitions": [f"{p['schema']}.{p['table']}" for p in parts],
            "defaultPartition": await default_partition(ctx, parent)}


async def _check_partitioned(ctx: ToolContext, args: CreateParentIn, parent: str) -> None:
    kind = await relation_kind(ctx, args.schema_name, args.table_name)
    if kind is None:
        raise ToolError(ErrorCode.NOT_FOUND, f"table {parent} does not exist")
    key = await ctx.fetchone(
        "SELECT pt.partstrat AS strategy, array_length(pt.partattrs::int2[], 1) AS columns, "
        "(SELECT a.attname FROM pg_attribute a WHERE a.attrelid = pt.partrelid AND a.attnum = pt.partattrs[0]) "
        "AS column FROM pg_partitioned_table pt JOIN pg_class c ON c.oid = pt.partrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
        (args.schema_name, args.table_name))
    if key is None or key["strategy"] != "r" or key["columns"] != 1 or key["column"] != args.control:
        raise ToolError(ErrorCode.INVALID_INPUT, f"{parent} must be declared PARTITION BY RANGE ({args.control}) "
                        "for pg_partman to manage it", hint="create the table with PARTITION BY RANGE on the control "
                        "column (a plain table can be moved into a new partitioned one with INSERT ... SELECT)",
                        details={"partitionKey": key})


class RunMaintenanceIn(OptionalParentIn):
    analyze: bool = False


@tool(group="partman", effect=Effect.ADMIN, extensions=PARTMAN)
async def partman_run_maintenance(ctx: ToolContext, args: RunMaintenanceIn) -> dict[str, Any]:
    """Run pg_partman maintenance for one partition set, or every set.

    Without table: every set with automatic maintenance. Makes the premade partitions that are due and applies
    retention (drops or detaches old partitions); returns the partitions created and removed. analyze: ANALYZE
    the parent afterwards (can be slow on big sets).
    """
    pm = await partman(ctx)
    parent = args.parent()
    sets = [c["parent_table"] for c in await configs(ctx, pm, parent, 100_000)]
    before = {s: {f"{p['schema']}.{p['table']}" for p in await children(ctx, pm, s)} for s in sets}
    await ctx.execute(sql.SQL("SELECT {}(p_parent_table := %s, p_analyze := %s)").format(
        pm.fn("run_maintenance")), (parent, args.analyze))
    out = []
    for s in sets:
        after = {f"{p['schema']}.{p['table']}" for p in await children(ctx, pm, s)}
        out.append({"parentTable": s, "created": sorted(after - before[s]), "removed": sorted(before[s] - after),
                    "partitions": len(after)})
    return {"sets": out, "scope": parent or "every set with automatic_maintenance on"}


class SetRetentionIn(TableRef):
    retention: str | None = Field(description="'30 days' or an id count; null removes it")
    keep_table: bool = True
    keep_index: bool = True


@tool(group="partman", effect=Effect.ADMIN, extensions=PARTMAN)
async def partman_set_retention(ctx: ToolContext, args: SetRetentionIn) -> dict[str, Any]:
    """Set or remove a partition set's retention (applied by the next maintenance).

    retention: keep partitions newer than this, an interval for time sets ('30 days'), an integer for id sets;
    null removes the policy. keepTable: detach expired partitions and keep them as tables (true) or drop them
    (false); keepIndex: keep the indexes of detached partitions.
    """
    pm = await partman(ctx)
    parent = parent_name(args)
    before = await config(ctx, pm, parent)
    retention = None
    if args.retention is not None:
        kind = await control_type(ctx, pm, parent, before["control"])
        retention = await parse_value(ctx, args.retention, kind, "retention")
    await ctx.execute(sql.SQL("UPDATE {} SET retention = %s, retention_keep_table = %s, retention_keep_index = %s "
                              "WHERE parent_table = %s").format(sql.Identifier(pm.schema, "part_config")),
                      (retention, args.keep_table, args.keep_index, parent))
    after = await config(ctx, pm, parent)
    keys = ("retention", "retention_keep_table", "retention_keep_index")
    return {"parentTable": parent, "before": {k: before[k] for k in keys}, "after": {k: after[k] for k in keys},
            "note": "pg_partman_run_maintenance (or the scheduled maintenance) applies it"}


class UndoPartitionIn(TableRef):
    target_table: str = Field(min_length=1, max_length=2 * IDENT_MAX + 1, description="Table to receive every row")
    create_target: bool = True
    keep_table: bool = True
    batches: int = Field(10_000, ge=1, le=1_000_000)


@tool(group="partman", effect=Effect.DESTRUCTIVE, extensions=PARTMAN)
async def partman_undo_partition(ctx: ToolContext, args: UndoPartitionIn) -> dict[str, Any]:
    """Undo a partition set: move every row into a regular table, remove its config.

    targetTable: `schema.table` accepted (default schema: the parent's); createTarget: create it (LIKE the parent) if it
    does not exist; keepTable: keep the emptied child partitions as detached tables (true) or drop them (false);
    batches: most partitions to undo in this call. The parent stays, empty, as a partitioned table without children.
    """
    pm = await partman(ctx)
    parent = parent_name(args)
    await config(ctx, pm, parent)
    tschema, ttable = split_name(args.target_table, None, args.schema_name)
    target = qualified(tschema, ttable)
    if target == parent:
        raise ToolError(ErrorCode.INVALID_INPUT, "the target table must not be the parent itself")
    snapshot = await snapshot_before(ctx, "pg_partman_undo_partition", "table", args.schema_name, args.table_name)
    created = await _target(ctx, args, tschema, ttable)
    rows = await _undo(ctx, pm, parent, target, args)
    left = await ctx.fetchval(sql.SQL("SELECT count(*) FROM {} WHERE parent_table = %s").format(
        sql.Identifier(pm.schema, "part_config")), (parent,))
    return {"snapshotId": snapshot, "parentTable": parent, "targetTable": target, "targetCreated": created,
            "partitionsUndone": rows["partitions_undone"], "rowsUndone": rows["rows_undone"],
            "rowsInTarget": await count_rows(ctx, target), "remainingPartitions": len(await _children_of(ctx, parent)),
            "configRemoved": not left, "keepTable": args.keep_table}


async def _target(ctx: ToolContext, args: UndoPartitionIn, schema: str, table: str) -> bool:
    kind = await relation_kind(ctx, schema, table)
    if kind == "r":
        return False
    if kind is not None:
        raise ToolError(ErrorCode.INVALID_INPUT, f"the target {schema}.{table} exists but is not a regular table")
    if not args.create_target:
        raise ToolError(ErrorCode.NOT_FOUND, f"the target table {schema}.{table} does not exist",
                        hint="create it, or pass createTarget: true")
    await ctx.execute(sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").format(
        sql.Identifier(schema, table), args.ident))
    return True


async def _undo(ctx: ToolContext, pm: Partman, parent: str, target: str, args: UndoPartitionIn) -> dict[str, Any]:
    # 5.x renamed p_batch_count to p_loop_count
    count = "p_loop_count" if pm.major >= 5 else "p_batch_count"
    row = await ctx.fetchone(sql.SQL(
        "SELECT * FROM {}(p_parent_table := %s, p_target_table := %s, p_keep_table := %s, {} := %s)").format(
        pm.fn("undo_partition"), sql.Identifier(count)), (parent, target, args.keep_table, args.batches))
    assert row is not None
    return row


async def _children_of(ctx: ToolContext, parent: str) -> list[str]:
    schema, table = parent.split(".", 1)
    rows = await ctx.fetch(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = "
        "(SELECT p.oid FROM pg_class p JOIN pg_namespace n ON n.oid = p.relnamespace "
        "WHERE n.nspname = %s AND p.relname = %s)", (schema, table))
    return [r["relname"] for r in rows]
