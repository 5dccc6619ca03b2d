"""partman: what a partition set looks like (partitions, config) and whether it is healthy."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from itertools import pairwise
from typing import Any

from psycopg import sql
from pydantic import Field

from pgcode.core import arguments
from pgcode.core.context import ToolContext
from pgcode.core.registry import tool
from pgcode.groups.partman._base import (
    PARTMAN,
    OptionalParentIn,
    ParentIn,
    Partman,
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

DEFAULT_ROWS_CAP = 1_000_000  # counting stops here: the health check only needs to know there are rows


class Order(StrEnum):
    ASC = "asc"
    DESC = "desc"


class ShowPartitionsIn(ParentIn):
    order: Order = Order.ASC
    limit: int = Field(1000, ge=1, le=100_000, description=arguments.LIMIT)


@tool(group="partman", effect=Effect.READ, extensions=PARTMAN)
async def partman_show_partitions(ctx: ToolContext, args: ShowPartitionsIn) -> dict[str, Any]:
    """A pg_partman set's child partitions (bounds, row estimates) and default partition.

    order: oldest (asc) or newest (desc) first.
    """
    pm = await partman(ctx)
    parent = parent_name(args)
    await config(ctx, pm, parent)
    rows = await children(ctx, pm, parent, args.order.value.upper())
    return {"parentTable": parent, "partitions": rows[:args.limit], "count": len(rows),
            "truncated": len(rows) > args.limit, "defaultPartition": await default_partition(ctx, parent)}


class ShowConfigIn(OptionalParentIn):
    limit: int = Field(1000, ge=1, le=100_000, description=arguments.LIMIT)


@tool(group="partman", effect=Effect.READ, extensions=PARTMAN)
async def partman_show_config(ctx: ToolContext, args: ShowConfigIn) -> dict[str, Any]:
    """pg_partman's configuration (part_config) of one partition set, or of every set."""
    pm = await partman(ctx)
    rows = await configs(ctx, pm, args.parent(), args.limit + 1)
    return {"configs": rows[:args.limit], "count": min(len(rows), args.limit), "truncated": len(rows) > args.limit,
            "partmanSchema": pm.schema, "partmanVersion": pm.version}


class HealthIn(OptionalParentIn):
    limit: int = Field(100, ge=1, le=10_000, description=arguments.LIMIT)


@tool(group="partman", effect=Effect.READ, extensions=PARTMAN)
async def partman_analyze_partition_health(ctx: ToolContext, args: HealthIn) -> dict[str, Any]:
    """Health of pg_partman sets: missing premade partitions, gaps, default rows, retention.

    Future partitions are counted from now() (time) or from the largest id in the table (id); fewer than
    premake means maintenance is not keeping up. Partitions older than the retention that still exist mean
    retention has not run. Rows in the default partition belong in child partitions (pg_partman_partition_data).
    """
    pm = await partman(ctx)
    rows = await configs(ctx, pm, args.parent(), args.limit + 1)
    sets = [await _health(ctx, pm, cfg) for cfg in rows[:args.limit]]
    issues = sum(len(s["issues"]) for s in sets)
    return {"sets": sets, "count": len(sets), "truncated": len(rows) > args.limit, "issueCount": issues,
            "healthy": issues == 0}


async def _health(ctx: ToolContext, pm: Partman, cfg: dict[str, Any]) -> dict[str, Any]:
    parent = cfg["parent_table"]
    schema, table = parent.split(".", 1)
    issues: list[dict[str, Any]] = []
    out: dict[str, Any] = {"parentTable": parent, "premake": cfg["premake"], "retention": cfg["retention"],
                           "issues": issues}
    if not await ctx.fetchval("SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = "
                              "c.relnamespace WHERE n.nspname = %s AND c.relname = %s)", (schema, table)):
        issues.append(_issue("error", "missing_parent", f"{parent} is configured but does not exist"))
        return {**out, "healthy": False}
    kind = await control_type(ctx, pm, parent, cfg["control"])
    parts = await children(ctx, pm, parent)
    start, end = ("start_time", "end_time") if kind == "time" else ("start_id", "end_id")
    now = await _current(ctx, kind, schema, table, cfg["control"])
    future = [p for p in parts if now is not None and p[start] > now]
    missing = max(0, cfg["premake"] - len(future))
    out.update(controlType=kind, partitions=len(parts), current=now, futurePartitions=len(future),
               missingPremade=missing)
    if missing:
        issues.append(_issue("warning", "missing_premade", f"{len(future)} future partitions, premake is "
                             f"{cfg['premake']}: run pg_partman_run_maintenance (time sets get partitions ahead of "
                             "their newest data unless infinite_time_partitions is on)"))
    gaps = [{"after": f"{a['schema']}.{a['table']}", "before": f"{b['schema']}.{b['table']}", "from": a[end],
             "to": b[start]} for a, b in pairwise(parts) if a[end] != b[start]]
    out["gaps"] = gaps
    if gaps:
        issues.append(_issue("warning", "gaps", f"{len(gaps)} gap(s) between partitions: rows there go to the "
                             "default partition"))
    default = await default_partition(ctx, parent)
    rows = await count_rows(ctx, default, DEFAULT_ROWS_CAP) if default else 0
    out.update(defaultPartition=default, defaultRows=rows)
    if rows:
        issues.append(_issue("warning", "default_rows", f"{rows}{'+' if rows >= DEFAULT_ROWS_CAP else ''} row(s) "
                             f"in {default}: move them with pg_partman_partition_data"))
    expired = await _expired(ctx, kind, cfg["retention"], parts, now) if cfg["retention"] else []
    out["expiredPartitions"] = expired
    if expired:
        issues.append(_issue("warning", "retention_drift", f"{len(expired)} partition(s) older than the retention "
                             f"{cfg['retention']} still attached: run pg_partman_run_maintenance"))
    if cfg.get("automatic_maintenance") == "off":
        issues.append(_issue("info", "maintenance_off", "automatic maintenance is off: run_maintenance() without a "
                             "table skips this set"))
    return {**out, "healthy": not issues}


def _issue(severity: str, kind: str, message: str) -> dict[str, str]:
    return {"severity": severity, "kind": kind, "message": message}


async def _current(ctx: ToolContext, kind: str, schema: str, table: str, control: str) -> Any:
    if kind == "time":
        now: datetime = await ctx.fetchval("SELECT now()")
        return now
    return await ctx.fetchval(sql.SQL("SELECT coalesce(max({}), 0) FROM {}").format(
        sql.Identifier(control), sql.Identifier(schema, table)))


async def _expired(ctx: ToolContext, kind: str, retention: str, parts: list[dict[str, Any]], now: Any) -> list[str]:
    if kind == "time":
        cutoff = await ctx.fetchval("SELECT now() - %s::interval", (retention,))
        return [f"{p['schema']}.{p['table']}" for p in parts if p["end_time"] <= cutoff]
    limit = int(now) - int(retention)
    return [f"{p['schema']}.{p['table']}" for p in parts if p["end_id"] <= limit]
