"""partman: rows in the default partition, and moving them into child partitions."""

from __future__ import annotations

from typing import Any

from psycopg import sql
from pydantic import Field

from pgcode.core.context import ToolContext
from pgcode.core.registry import tool
from pgcode.groups.partman._base import (
    PARTMAN,
    OptionalParentIn,
    ParentIn,
    children,
    config,
    configs,
    control_type,
    count_rows,
    default_partition,
    parent_name,
    partman,
)
from pgcode.types import Effect


class CheckDefaultIn(OptionalParentIn):
    exact: bool = True
    limit: int = Field(1000, ge=1, le=100_000)


@tool(group="partman", effect=Effect.READ, extensions=PARTMAN)
async def partman_check_default(ctx: ToolContext, args: CheckDefaultIn) -> dict[str, Any]:
    """Rows in the default partition of one pg_partman set (or of every set).

    Rows there belong in a child partition (pg_partman_partition_data moves them). exact: count every row
    (true) or only say whether there is any (false, cheap); limit: most partition sets to check.
    """
    pm = await partman(ctx)
    out = []
    for cfg in await configs(ctx, pm, args.parent(), args.limit):
        default = await default_partition(ctx, cfg["parent_table"])
        rows = (await count_rows(ctx, default, None if args.exact else 1)) if default else 0
        out.append({"parentTable": cfg["parent_table"], "defaultPartition": default, "rows": rows})
    total = sum(d["rows"] for d in out)
    return {"defaults": out, "totalRows": total, "hasData": total > 0, "exact": args.exact}


class PartitionDataIn(ParentIn):
    batches: int = Field(1000, ge=1, le=1_000_000)


@tool(group="partman", effect=Effect.ADMIN, extensions=PARTMAN)
async def partman_partition_data(ctx: ToolContext, args: PartitionDataIn) -> dict[str, Any]:
    """Move rows from the default partition into child partitions, creating them.

    batches: most batches to move, one partition interval each (the rest stays in the default).

    Uses partition_data_time or partition_data_id in this call's one transaction (partition_data_proc commits
    per batch, so it cannot run inside a transaction block); a big move holds its locks until the end.
    """
    pm = await partman(ctx)
    parent = parent_name(args)
    cfg = await config(ctx, pm, parent)
    default = await default_partition(ctx, parent)
    if default is None:
        return {"parentTable": parent, "rowsMoved": 0, "note": "the set has no default partition"}
    kind = await control_type(ctx, pm, parent, cfg["control"])
    function = "partition_data_time" if kind == "time" else "partition_data_id"
    before_rows = await count_rows(ctx, default)
    before = {f"{p['schema']}.{p['table']}" for p in await children(ctx, pm, parent)}
    moved = await ctx.fetchval(sql.SQL("SELECT {}(p_parent_table := %s, p_batch_count := %s)").format(
        pm.fn(function)), (parent, args.batches))
    after = {f"{p['schema']}.{p['table']}" for p in await children(ctx, pm, parent)}
    return {"parentTable": parent, "function": function, "rowsMoved": int(moved or 0),
            "defaultRowsBefore": before_rows, "defaultRowsAfter": await count_rows(ctx, default),
            "partitionsCreated": sorted(after - before), "defaultPartition": default}
