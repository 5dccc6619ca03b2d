"""performance: index, table, cache, sequential-scan and vacuum statistics."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import psycopg
from psycopg import sql
from pydantic import Field

from pgcode.core import arguments
from pgcode.core.context import Row, ToolContext, savepoint
from pgcode.core.registry import ToolInput, tool
from pgcode.db.queries import SYSTEM_SCHEMAS, load_query
from pgcode.groups._common import IDENT_MAX
from pgcode.groups.performance._shared import cut, resolve_table
from pgcode.health.probes import hit_ratio, ratio
from pgcode.types import Effect

_LAST_SCANS = 160000  # PostgreSQL 16 added last_seq_scan / last_idx_scan to the table and index statistics


class IndexOrder(StrEnum):
    SIZE = "size"
    SCANS = "scans"
    NAME = "name"


_INDEX_ORDER = {
    IndexOrder.SIZE: "size_bytes DESC, n.nspname, t.relname, i.relname",
    IndexOrder.SCANS: "scans DESC, n.nspname, t.relname, i.relname",
    IndexOrder.NAME: "n.nspname, t.relname, i.relname",
}


class IndexStatsIn(ToolInput):
    table: str | None = Field(None, max_length=2 * IDENT_MAX + 1, description=arguments.TABLE)
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX, description=arguments.SCHEMA_FILTER)
    min_size_bytes: int = Field(0, ge=0)
    order_by: IndexOrder = IndexOrder.SIZE
    limit: int = Field(1000, ge=1, le=10_000)


@tool(group="performance", effect=Effect.READ, aliases=("indexUsage",))
async def index_stats(ctx: ToolContext, args: IndexStatsIn) -> list[dict[str, Any]]:
    """List indexes with their usage: scans, size, tuples read, last scan.

    Each has name, table, schema, scans, size_bytes, definition, tuples read and last scan; schema defaults to every
    user schema. minSizeBytes keeps the larger ones; orderBy is size (largest first), scans (most first) or name.

    scans counts index scans since the statistics were last reset; last_scan needs PostgreSQL 16+.
    """
    schema, table = args.schema_, args.table
    if table is not None:
        schema, table = await resolve_table(ctx, table, schema)
    last_scan = "s.last_idx_scan" if ctx.server_version >= _LAST_SCANS else "NULL::timestamptz"
    query = load_query("index_stats").format(last_scan=sql.SQL(last_scan),
                                             order=sql.SQL(_INDEX_ORDER[args.order_by]))
    return await ctx.fetch(query, {"schema": schema, "table": table, "system": SYSTEM_SCHEMAS,
                                   "min_size": args.min_size_bytes, "limit": args.limit})


class TableStatsIn(ToolInput):
    table: str | None = Field(None, max_length=2 * IDENT_MAX + 1, description="One table (an object); omit for a list")
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX, description=arguments.SCHEMA)
    exact_count_below: int = Field(100_000, ge=0, le=10_000_000)
    limit: int = Field(100, ge=1, le=10_000)


_EXACT_MAX_BYTES = 256 * 1024 * 1024  # never count(*) more than this much heap, whatever the estimate says
_UNANALYZED_MAX_BYTES = 16 * 1024 * 1024  # without an estimate, count only small tables
_VIEW_COUNT_MS = 1000  # a view's count(*) gets this long before the count is given up


@tool(group="performance", effect=Effect.READ)
async def table_stats(ctx: ToolContext, args: TableStatsIn) -> dict[str, Any] | list[dict[str, Any]]:
    """Table statistics: row count, size, scans, tuples, dead tuples, vacuum/analyze times.

    exactCountBelow: rows are counted exactly (count(*)) when the estimate is below it; 0 always uses the estimate.
    schema names the table's schema, or the only schema to list.

    With `table`, one object; without, a list (largest first). row_count is exact (count(*)) for small tables
    and the planner's estimate for large ones; row_count_method says which ("exact" or "estimate"). A view is
    counted with a one-second limit.
    """
    schema, table = args.schema_, None
    if args.table is not None:
        schema, table = await resolve_table(ctx, args.table, args.schema_)
    if ctx.server_version >= _LAST_SCANS:
        last = "max(t.last_seq_scan) AS last_seq_scan, max(t.last_idx_scan) AS last_idx_scan"
    else:
        last = "NULL::timestamptz AS last_seq_scan, NULL::timestamptz AS last_idx_scan"
    query = load_query("table_stats").format(last_scans=sql.SQL(last))
    rows = await ctx.fetch(query, {"schema": schema, "table": table, "system": SYSTEM_SCHEMAS,
                                   "limit": 1 if table else args.limit})
    for row in rows:
        await _row_count(ctx, row, args.exact_count_below)
    return rows[0] if table else rows


async def _row_count(ctx: ToolContext, row: Row, exact_below: int) -> None:
    estimate, size = row["estimated_rows"], row["size_bytes"]
    if row["kind"] in ("view", "foreign_table"):
        exact = exact_below > 0
    elif estimate is not None:
        exact = estimate < exact_below and size <= _EXACT_MAX_BYTES
    else:
        exact = exact_below > 0 and size <= _UNANALYZED_MAX_BYTES
    readable = row.pop("readable")
    count = await _count(ctx, row) if exact and readable else None
    if count is not None:
        row["row_count"], row["row_count_method"] = count, "exact"
    else:
        fallback = estimate if estimate is not None else row["live_tuples"]
        row["row_count"] = fallback
        row["row_count_method"] = "estimate" if fallback is not None else "unavailable"
    row["dead_tuple_ratio"] = ratio(row["dead_tuples"], (row["live_tuples"] or 0) + (row["dead_tuples"] or 0))


async def _count(ctx: ToolContext, row: Row) -> int | None:
    ident = sql.Identifier(row["schema"], row["table"])
    if row["kind"] not in ("view", "foreign_table"):
        value: int = await ctx.fetchval(sql.SQL("SELECT count(*) FROM {}").format(ident))
        return value
    try:  # a view may be arbitrarily expensive: a short local timeout, undone with the savepoint
        async with savepoint(ctx, "pgcode_count"):
            await ctx.execute(sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(f"{_VIEW_COUNT_MS}ms")))
            value = await ctx.fetchval(sql.SQL("SELECT count(*) FROM {}").format(ident))
            await ctx.execute("ROLLBACK TO SAVEPOINT pgcode_count")
    except psycopg.Error:
        return None
    return value


class CacheHitRatioIn(ToolInput):
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX, description=arguments.SCHEMA_FILTER)
    limit: int = Field(20, ge=0, le=1000)


@tool(group="performance", effect=Effect.READ)
async def cache_hit_ratio(ctx: ToolContext, args: CacheHitRatioIn) -> dict[str, Any]:
    """Buffer cache hit ratios (0-1) of the database, tables, indexes and TOAST.

    Plus the tables reading most blocks from disk, most first, at most limit.

    A ratio is hits / (hits + reads) since the statistics were reset; null when nothing was read yet.
    OLTP databases usually sit above 0.99.
    """
    totals = await ctx.fetchone(
        "SELECT sum(heap_blks_hit) AS heap_hit, sum(heap_blks_read) AS heap_read, sum(idx_blks_hit) AS idx_hit, "
        "sum(idx_blks_read) AS idx_read, sum(toast_blks_hit) AS toast_hit, sum(toast_blks_read) AS toast_read "
        "FROM pg_statio_user_tables WHERE (%(schema)s::text IS NULL OR schemaname = %(schema)s)",
        {"schema": args.schema_})
    db = await ctx.fetchone("SELECT blks_hit, blks_read, stats_reset FROM pg_stat_database "
                            "WHERE datname = current_database()")
    assert totals is not None and db is not None
    rows = await ctx.fetch(
        "SELECT schemaname AS schema, relname AS table, heap_blks_hit, heap_blks_read, idx_blks_hit, idx_blks_read "
        "FROM pg_statio_user_tables WHERE (%(schema)s::text IS NULL OR schemaname = %(schema)s) "
        "AND heap_blks_hit + heap_blks_read + coalesce(idx_blks_hit, 0) + coalesce(idx_blks_read, 0) > 0 "
        "ORDER BY heap_blks_read + coalesce(idx_blks_read, 0) DESC, schemaname, relname LIMIT %(limit)s",
        {"schema": args.schema_, "limit": args.limit + 1})
    tables, truncated = cut(rows, args.limit)
    for t in tables:
        t["table_hit_ratio"] = hit_ratio(t["heap_blks_hit"], t["heap_blks_read"])
        t["index_hit_ratio"] = hit_ratio(t["idx_blks_hit"], t["idx_blks_read"])
    shared_buffers = await ctx.fetchval("SELECT pg_size_bytes(current_setting('shared_buffers'))")
    return {
        "database_hit_ratio": hit_ratio(db["blks_hit"], db["blks_read"]),
        "table_hit_ratio": hit_ratio(totals["heap_hit"], totals["heap_read"]),
        "index_hit_ratio": hit_ratio(totals["idx_hit"], totals["idx_read"]),
        "toast_hit_ratio": hit_ratio(totals["toast_hit"], totals["toast_read"]),
        "table_blocks": {"hit": totals["heap_hit"] or 0, "read": totals["heap_read"] or 0},
        "index_blocks": {"hit": totals["idx_hit"] or 0, "read": totals["idx_read"] or 0},
        "shared_buffers_bytes": shared_buffers, "stats_reset": db["stats_reset"],
        "tables": tables, "truncated": truncated,
    }


class SeqScanTablesIn(ToolInput):
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX, description=arguments.SCHEMA_FILTER)
    min_seq_scans: int = Field(10, ge=0)
    min_rows: int = Field(1000, ge=0)
    limit: int = Field(50, ge=1, le=1000)


@tool(group="performance", effect=Effect.READ)
async def seq_scan_tables(ctx: ToolContext, args: SeqScanTablesIn) -> dict[str, Any]:
    """Tables read mostly by sequential scans (missing index candidates), with counts.

    Most rows read by seq scans first. minSeqScans keeps tables scanned sequentially at least that often; minRows
    those with at least that many live rows (small tables are rightly scanned sequentially).

    seq_scan_ratio is seq scans / all scans; avg_rows_per_seq_scan shows how much each scan reads.
    """
    last = "s.last_seq_scan" if ctx.server_version >= _LAST_SCANS else "NULL::timestamptz"
    rows = await ctx.fetch(sql.SQL(
        "SELECT s.schemaname AS schema, s.relname AS table, s.seq_scan, s.seq_tup_read, "
        "coalesce(s.idx_scan, 0) AS idx_scan, s.n_live_tup AS live_rows, pg_relation_size(s.relid) AS size_bytes, "
        "{last} AS last_seq_scan, s.seq_tup_read / nullif(s.seq_scan, 0) AS avg_rows_per_seq_scan, "
        "round(s.seq_scan::numeric / nullif(s.seq_scan + coalesce(s.idx_scan, 0), 0), 4) AS seq_scan_ratio "
        "FROM pg_stat_user_tables s WHERE s.seq_scan >= %(min_scans)s AND s.n_live_tup >= %(min_rows)s "
        "AND (%(schema)s::text IS NULL OR s.schemaname = %(schema)s) "
        "ORDER BY s.seq_tup_read DESC, s.seq_scan DESC LIMIT %(limit)s").format(last=sql.SQL(last)),
        {"min_scans": args.min_seq_scans, "min_rows": args.min_rows, "schema": args.schema_,
         "limit": args.limit + 1})
    tables, truncated = cut(rows, args.limit)
    for t in tables:
        heavy = (t["seq_scan_ratio"] or 0) >= 0.5
        t["suggestion"] = ("find the filtered columns (pg_index_recommendations, pg_stat_statements) and index them"
                           if heavy else "mostly index scans; sequential scans are occasional")
    return {"tables": tables, "count": len(tables), "truncated": truncated}


class VacuumOrder(StrEnum):
    DEAD_TUPLES = "dead_tuples"
    WRAPAROUND = "wraparound"
    LAST_VACUUM = "last_vacuum"


_VACUUM_ORDER = {
    VacuumOrder.DEAD_TUPLES: "t.n_dead_tup DESC, t.schema, t.table",
    VacuumOrder.WRAPAROUND: "t.xid_age DESC, t.schema, t.table",
    VacuumOrder.LAST_VACUUM: "greatest(t.last_vacuum, t.last_autovacuum) ASC NULLS FIRST, t.schema, t.table",
}


class VacuumStatsIn(ToolInput):
    table: str | None = Field(None, max_length=2 * IDENT_MAX + 1, description=arguments.TABLE)
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX, description=arguments.SCHEMA_FILTER)
    order_by: VacuumOrder = VacuumOrder.DEAD_TUPLES
    limit: int = Field(50, ge=1, le=10_000)


@tool(group="performance", effect=Effect.READ)
async def vacuum_stats(ctx: ToolContext, args: VacuumStatsIn) -> dict[str, Any]:
    """Vacuum statistics per table: dead tuples, last (auto)vacuum/analyze, wraparound risk.

    Also the autovacuum thresholds. orderBy is dead_tuples (most first), wraparound (oldest XID first) or
    last_vacuum (longest ago first).

    wraparound_ratio is the table's transaction-ID age over autovacuum_freeze_max_age (1.0 = a forced
    anti-wraparound vacuum is due); the database row does the same for datfrozenxid. Vacuums running now
    come from pg_stat_progress_vacuum.
    """
    schema, table = args.schema_, args.table
    if table is not None:
        schema, table = await resolve_table(ctx, table, schema)
    query = load_query("vacuum_stats").format(order=sql.SQL(_VACUUM_ORDER[args.order_by]))
    rows = await ctx.fetch(query, {"schema": schema, "table": table, "system": SYSTEM_SCHEMAS,
                                   "limit": args.limit + 1})
    tables, truncated = cut(rows, args.limit)
    return {"database": await database_wraparound(ctx), "tables": tables, "truncated": truncated,
            "running": await ctx.fetch(
                "SELECT p.pid, p.relid::regclass::text AS relation, p.phase, p.heap_blks_total, p.heap_blks_scanned, "
                "round(100.0 * p.heap_blks_scanned / nullif(p.heap_blks_total, 0), 1) AS percent_scanned, "
                "a.query_start FROM pg_stat_progress_vacuum p LEFT JOIN pg_stat_activity a ON a.pid = p.pid "
                "WHERE p.datname = current_database()"),
            "settings": await ctx.fetchone(
                "SELECT current_setting('autovacuum') AS autovacuum, "
                "current_setting('autovacuum_vacuum_threshold')::int AS autovacuum_vacuum_threshold, "
                "current_setting('autovacuum_vacuum_scale_factor')::float8 AS autovacuum_vacuum_scale_factor, "
                "current_setting('autovacuum_freeze_max_age')::bigint AS autovacuum_freeze_max_age, "
                "current_setting('autovacuum_multixact_freeze_max_age')::bigint "
                "AS autovacuum_multixact_freeze_max_age, current_setting('autovacuum_naptime') AS autovacuum_naptime, "
                "current_setting('autovacuum_max_workers')::int AS autovacuum_max_workers")}


async def database_wraparound(ctx: ToolContext) -> Row | None:
    """The current database's transaction-ID and multixact age against the freeze limits."""
    return await ctx.fetchone(
        "SELECT datname AS database, age(datfrozenxid) AS xid_age, mxid_age(datminmxid) AS mxid_age, "
        "current_setting('autovacuum_freeze_max_age')::bigint AS freeze_max_age, "
        "round(age(datfrozenxid) / current_setting('autovacuum_freeze_max_age')::numeric, 4) AS wraparound_ratio, "
        "round(mxid_age(datminmxid) / current_setting('autovacuum_multixact_freeze_max_age')::numeric, 4) "
        "AS mxid_wraparound_ratio, round(age(datfrozenxid) / 2147483647.0, 4) AS xid_space_used "
        "FROM pg_database WHERE datname = current_database()")
