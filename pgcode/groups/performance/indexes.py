"""performance: missing, unused and duplicate indexes (hypopg, when installed, to weigh candidates)."""

from __future__ import annotations

from typing import Any

from psycopg import sql
from pydantic import Field

from pgcode.advisor.engine import hypothetical_indexes
from pgcode.core.context import Row, ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.db.queries import SYSTEM_SCHEMAS, load_query
from pgcode.groups._common import IDENT_MAX
from pgcode.groups.performance._shared import cut, resolve_table
from pgcode.health.probes import stats_window
from pgcode.types import Effect

_LAST_IDX_SCAN = 160000  # pg_stat_*_indexes.last_idx_scan arrived in PostgreSQL 16


class IndexRecommendationsIn(ToolInput):
    table: str | None = Field(None, max_length=2 * IDENT_MAX + 1, description="Only this table (schema.table ok)")
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX, description="Only this schema")
    min_seq_scans: int = Field(10, ge=0, description="Only tables sequentially scanned at least this often")
    min_rows: int = Field(1000, ge=0, description="Only tables with at least this many live rows")
    min_distinct: int = Field(100, ge=2, description="Only columns with at least this many distinct values")
    per_table: int = Field(3, ge=1, le=20, description="Most candidate columns per table")
    evaluate: bool = Field(True, description="Weigh each candidate with a hypothetical index (hypopg) when the "
                                             "extension is installed")
    limit: int = Field(20, ge=1, le=500, description="Most recommendations to return")


@tool(group="performance", effect=Effect.READ, extensions=())
async def index_recommendations(ctx: ToolContext, args: IndexRecommendationsIn) -> dict[str, Any]:
    """Suggested indexes for sequentially scanned tables, with DDL, reasons and (hypopg) estimated cost gain.

    Candidates are selective, btree-friendly columns (pg_stats) of tables read mostly by sequential scans
    (pg_stat_user_tables), not already leading an index. With hypopg installed each candidate is tried as a
    hypothetical index on an equality lookup of a typical value: cost before and after, whether the planner
    uses it, and its estimated size; candidates that gain nothing are listed as rejected. Without hypopg
    the result is the heuristic alone and says so. For one query's needs, use pg_analyze_query_indexes.
    """
    schema, table = args.schema_, args.table
    if table is not None:
        schema, table = await resolve_table(ctx, table, schema)
    rows = await ctx.fetch(load_query("index_recommendations"), {
        "min_seq_scans": args.min_seq_scans, "min_rows": args.min_rows, "schema": schema, "table": table,
        "min_distinct": args.min_distinct})
    per_table: dict[tuple[str, str], int] = {}
    candidates = []
    for row in rows:
        key = (row["schema"], row["table"])
        per_table[key] = per_table.get(key, 0) + 1
        if per_table[key] <= args.per_table:
            candidates.append(row)
    candidates, truncated = cut(candidates, args.limit)
    conn = await ctx.conn()
    for c in candidates:
        ident = sql.Identifier(c["schema"], c["table"])
        c["ddl"] = sql.SQL("CREATE INDEX CONCURRENTLY ON {} ({})").format(
            ident, sql.Identifier(c["column"])).as_string(conn)
        c["reason"] = (f"{c['seq_scan']} sequential scans read {c['seq_tup_read']} rows; {c['column']} has about "
                       f"{c['distinct_values']} distinct values ({c['rows_per_value']} rows per value)")
    hypopg = ctx.caps.has_extension("hypopg")
    out: dict[str, Any] = {"method": "heuristic", "hypopg": hypopg, "truncated": truncated}
    if hypopg and args.evaluate and candidates:
        out["method"] = "hypopg"
        await _evaluate(ctx, candidates)
        kept = [c for c in candidates if c["evaluation"] and c["evaluation"]["cost_gain"] > 0]
        out["rejected"] = [c for c in candidates if c not in kept]
        candidates = sorted(kept, key=lambda c: c["evaluation"]["cost_gain"], reverse=True)
    elif not hypopg:
        out["note"] = ("hypopg is not installed: candidates come from statistics alone, without a cost estimate; "
                       "CREATE EXTENSION hypopg to weigh them")
    for c in candidates + out.get("rejected", []):
        c.pop("sample_value", None)
    out["recommendations"] = candidates
    out["count"] = len(candidates)
    return out


async def _evaluate(ctx: ToolContext, candidates: list[Row]) -> None:
    """Try each candidate as a hypothetical index on an equality lookup of a typical value (pgcode.advisor.engine)."""

    conn = await ctx.conn()
    async with hypothetical_indexes(ctx) as hypo:
        for c in candidates:
            c["evaluation"] = None
            if c["sample_value"] is None:
                continue
            table, column = sql.Identifier(c["schema"], c["table"]), sql.Identifier(c["column"])
            probe = sql.SQL("SELECT * FROM {} WHERE {} = {}").format(table, column, sql.Literal(c["sample_value"]))
            ddl = sql.SQL("CREATE INDEX ON {} ({})").format(table, column).as_string(conn)
            c["evaluation"] = await hypo.evaluate(probe, ddl)


class UnusedIndexesIn(ToolInput):
    table: str | None = Field(None, max_length=2 * IDENT_MAX + 1, description="Only this table (schema.table ok)")
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX, description="Only this schema")
    min_size_bytes: int = Field(0, ge=0, description="Only indexes at least this large")
    include_unique: bool = Field(False, description="Also list unused unique, primary-key and constraint indexes "
                                                    "(they enforce rules even when never scanned)")
    min_observed_days: int = Field(7, ge=0, le=3650, description="Below this many days of statistics the result "
                                                                 "is marked low-confidence")
    limit: int = Field(100, ge=1, le=10_000, description="Most indexes to return, largest first")


@tool(group="performance", effect=Effect.READ)
async def unused_indexes(ctx: ToolContext, args: UnusedIndexesIn) -> dict[str, Any]:
    """Indexes never scanned (idx_scan = 0) since statistics began, largest first, with the space they take.

    Unique and primary-key indexes are left out (they enforce constraints). The result says since when the
    counters run (stats_reset) and marks a short window low-confidence; scans on replicas are not counted.
    """
    schema, table = args.schema_, args.table
    if table is not None:
        schema, table = await resolve_table(ctx, table, schema)
    last_scan = "s.last_idx_scan" if ctx.server_version >= _LAST_IDX_SCAN else "NULL::timestamptz"
    rows = await ctx.fetch(load_query("unused_indexes").format(last_scan=sql.SQL(last_scan)), {
        "include_unique": args.include_unique, "min_size": args.min_size_bytes, "schema": schema, "table": table,
        "system": SYSTEM_SCHEMAS, "limit": args.limit + 1})
    indexes, truncated = cut(rows, args.limit)
    window = await stats_window(ctx)
    days = window["observed_days"]
    confident = days is None or days >= args.min_observed_days
    out = {"indexes": indexes, "count": len(indexes), "truncated": truncated,
           "total_size_bytes": sum(i["size_bytes"] for i in indexes), **window,
           "confidence": "ok" if confident else "low"}
    if not confident:
        out["note"] = (f"statistics cover only {days:.1f} days (since {window['observed_since']}); an index used "
                       "by weekly or monthly jobs may look unused")
    return out


class DuplicateIndexesIn(ToolInput):
    table: str | None = Field(None, max_length=2 * IDENT_MAX + 1, description="Only this table (schema.table ok)")
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX, description="Only this schema")
    limit: int = Field(100, ge=1, le=10_000, description="Most redundant indexes to return, largest first")


@tool(group="performance", effect=Effect.READ)
async def duplicate_indexes(ctx: ToolContext, args: DuplicateIndexesIn) -> dict[str, Any]:
    """Redundant indexes: exact duplicates, and btree indexes whose columns lead another index; with DROP DDL.

    kind "duplicate": same method, columns, operator classes, expressions and predicate as redundant_with.
    kind "overlapping": its key columns are a leading prefix of redundant_with's. The index kept is the one
    backing a constraint, the unique one, or the older one; unique indexes are never reported as overlapping.
    """
    schema, table = args.schema_, args.table
    if table is not None:
        schema, table = await resolve_table(ctx, table, schema)
    rows = await ctx.fetch(load_query("duplicate_indexes"), {"schema": schema, "table": table,
                                                             "system": SYSTEM_SCHEMAS, "limit": args.limit + 1})
    found, truncated = cut(rows, args.limit)
    conn = await ctx.conn()
    for r in found:
        r["drop_statement"] = sql.SQL("DROP INDEX CONCURRENTLY {}").format(
            sql.Identifier(r["schema"], r["index"])).as_string(conn)
    return {"indexes": found, "count": len(found), "truncated": truncated,
            "reclaimable_bytes": sum(r["size_bytes"] for r in found)}
