"""performance: missing, unused and duplicate indexes (hypopg, when installed, to weigh candidates)."""

from __future__ import annotations

from typing import Any

from psycopg import sql
from pydantic import Field

from pgcode.advisor.engine import Query, advise, prepare
from pgcode.core import arguments
from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.db.queries import SYSTEM_SCHEMAS, load_query
from pgcode.groups._common import IDENT_MAX
from pgcode.groups.performance._shared import cut, resolve_table
from pgcode.groups.performance._workload import workload_queries
from pgcode.health.locks import locked_relations, skipped
from pgcode.health.probes import stats_window
from pgcode.types import Effect

_LAST_IDX_SCAN = 160000  # pg_stat_*_indexes.last_idx_scan arrived in PostgreSQL 16


class IndexRecommendationsIn(ToolInput):
    table: str | None = Field(None, max_length=2 * IDENT_MAX + 1, description=arguments.TABLE)
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX, description=arguments.SCHEMA_FILTER)
    top_queries: int = Field(50, ge=1, le=200)
    min_calls: int = Field(2, ge=1)
    min_mean_ms: float = Field(0.0, ge=0)
    min_seq_scans: int = Field(10, ge=0)
    min_rows: int = Field(1000, ge=0)
    min_distinct: int = Field(100, ge=2)
    per_table: int = Field(3, ge=1, le=20)
    evaluate: bool = True
    limit: int = Field(20, ge=1, le=500)


@tool(group="performance", effect=Effect.READ, extensions=())
async def index_recommendations(ctx: ToolContext, args: IndexRecommendationsIn) -> dict[str, Any]:
    """Suggested indexes with DDL, the statements served, gain, size and write cost.

    One row per index, with what it replaces. topQueries is how many of the user's statements to weigh, by total
    execution time; minCalls and minMeanMs (ms) skip the rarely called and the fast. Without a workload,
    minSeqScans, minRows and minDistinct pick the sequentially scanned tables and selective columns. perTable and
    limit cap the recommendations; evaluate (default true) weighs each candidate with a hypothetical index when
    hypopg is installed.

    The same engine as pg_analyze_workload_indexes (its per-index view): the user's statements from
    pg_stat_statements (pgcode's own, catalog and utility statements left out) with realistic parameter
    values, multi-column candidates weighed as hypothetical indexes (hypopg) and chosen greedily by gain per
    byte. Without pg_stat_statements, or no statement on the tables asked for, the workload is an equality
    lookup per selective column of the sequentially scanned tables (source "statistics"). Without hypopg the
    gains are estimated from pg_stats and method is "heuristic".
    """
    schema, table = args.schema_, args.table
    if table is not None:
        schema, table = await resolve_table(ctx, table, schema)
    queries: list[Query] = []
    workload: dict[str, Any] | None = None
    if ctx.caps.has_extension("pg_stat_statements"):
        queries, workload = await workload_queries(ctx, top=args.top_queries, min_calls=args.min_calls,
                                                   min_mean_ms=args.min_mean_ms, search=table)
        queries = [q for q in queries if _names(q, schema, table)]
    source = "workload"
    if not queries:
        source = "statistics"
        queries = await _lookups(ctx, args, schema, table)
    out = await advise(ctx, queries, max_indexes=min(args.limit, 20), min_improvement=0.01, include_plans=False,
                       hypothetical=args.evaluate)
    per_table: dict[tuple[str, str], int] = {}
    rows = []
    for r in out["recommendations"]:
        key = (r["schema"], r["table"])
        if (schema and r["schema"] != schema) or (table and r["table"] != table):
            continue
        per_table[key] = per_table.get(key, 0) + 1
        if per_table[key] > args.per_table:
            continue
        served = [out["queries"][i] for i in r["queries"]]
        r["column"] = r["columns"][0]
        r["statements"] = [{"query": q["query"], "calls": int(q["weight"]), "cost_before": q["cost_before"],
                            "cost_after": q["cost_after"], "params": q["params"]} for q in served]
        r["reason"] = (f"serves {len(served)} statement(s) called {sum(int(q['weight']) for q in served)} times; "
                       f"their cost falls by {r['gain_ratio']:.0%}")
        r["evaluation"] = {"cost_gain": r["cost_gain"], "gain_ratio": r["gain_ratio"], "index_used": True,
                           "estimated_size_bytes": r["estimated_size_bytes"]} if out["method"] == "hypopg" else None
        rows.append(r)
    recommendations, truncated = cut(rows, args.limit)
    result = {"method": out["method"], "hypopg": ctx.caps.has_extension("hypopg"), "source": source,
              "recommendations": recommendations, "count": len(recommendations), "truncated": truncated,
              "drop": [d for r in recommendations for d in r["makes_redundant"]],
              "statements_analyzed": len(out["queries"]), "skipped": out["skipped"],
              "size_estimate": out["size_estimate"]}
    if workload is not None:
        result["workload"] = workload
    if "note" in out:
        result["note"] = out["note"]
    return result


def _names(q: Query, schema: str | None, table: str | None) -> bool:
    """Whether the statement reads the table (or a table of the schema) asked for; any statement without a filter."""
    if table is None and schema is None:
        return True
    for level in q.levels:
        for rel_schema, rel in level.relations.values():
            if (table is None or rel == table) and (schema is None or rel_schema in (None, schema)):
                return True
    return False


async def _lookups(ctx: ToolContext, args: IndexRecommendationsIn, schema: str | None,
                   table: str | None) -> list[Query]:
    """Without a workload: an equality lookup on each selective column of the sequentially scanned tables,
    weighted by the table's sequential scans (the columns from index_recommendations.sql)."""
    rows = await ctx.fetch(load_query("index_recommendations"), {
        "min_seq_scans": args.min_seq_scans, "min_rows": args.min_rows, "schema": schema, "table": table,
        "min_distinct": args.min_distinct})
    conn = await ctx.conn()
    per_table: dict[tuple[str, str], int] = {}
    queries = []
    for row in rows:
        key = (row["schema"], row["table"])
        per_table[key] = per_table.get(key, 0) + 1
        if per_table[key] > args.per_table:
            continue
        text = sql.SQL("SELECT * FROM {} WHERE {} = $1").format(
            sql.Identifier(row["schema"], row["table"]), sql.Identifier(row["column"])).as_string(conn)
        q = Query(text, weight=float(max(row["seq_scan"], 1)), label=text)
        await prepare(ctx, q)
        queries.append(q)
    return queries


class UnusedIndexesIn(ToolInput):
    table: str | None = Field(None, max_length=2 * IDENT_MAX + 1, description=arguments.TABLE)
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX, description=arguments.SCHEMA_FILTER)
    min_size_bytes: int = Field(0, ge=0)
    include_unique: bool = False
    min_observed_days: int = Field(7, ge=0, le=3650)
    limit: int = Field(100, ge=1, le=10_000)


@tool(group="performance", effect=Effect.READ)
async def unused_indexes(ctx: ToolContext, args: UnusedIndexesIn) -> dict[str, Any]:
    """Indexes never scanned since statistics began, largest first, with their size.

    Never scanned means idx_scan = 0. minSizeBytes keeps the larger ones; includeUnique adds unused unique,
    primary-key and constraint indexes (they enforce rules even when never scanned); below minObservedDays of
    statistics the result is marked low-confidence.

    Unique and primary-key indexes are left out (they enforce constraints). The result says since when the
    counters run (stats_reset) and marks a short window low-confidence; scans on replicas are not counted.
    """
    schema, table = args.schema_, args.table
    if table is not None:
        schema, table = await resolve_table(ctx, table, schema)
    last_scan = "s.last_idx_scan" if ctx.server_version >= _LAST_IDX_SCAN else "NULL::timestamptz"
    locks = await locked_relations(ctx)  # their sizes are estimated and definitions left out: no lock wait
    rows = await ctx.fetch(load_query("unused_indexes").format(last_scan=sql.SQL(last_scan)), {
        "include_unique": args.include_unique, "min_size": args.min_size_bytes, "schema": schema, "table": table,
        "system": SYSTEM_SCHEMAS, "limit": args.limit + 1, "locked": locks.oids})
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
    if locks.oids:
        out["skipped"] = skipped(locks.user_relations("rpiI"), "definition; size estimated from relpages")
    return out


class DuplicateIndexesIn(ToolInput):
    table: str | None = Field(None, max_length=2 * IDENT_MAX + 1, description=arguments.TABLE)
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX, description=arguments.SCHEMA_FILTER)
    limit: int = Field(100, ge=1, le=10_000)


@tool(group="performance", effect=Effect.READ)
async def duplicate_indexes(ctx: ToolContext, args: DuplicateIndexesIn) -> dict[str, Any]:
    """Redundant indexes: exact duplicates and btree prefixes of another, with DROP DDL.

    Largest first.

    kind "duplicate": same method, columns, operator classes, expressions and predicate as redundant_with.
    kind "overlapping": its key columns are a leading prefix of redundant_with's. The index kept is the one
    backing a constraint, the unique one, or the older one; unique indexes are never reported as overlapping.
    """
    schema, table = args.schema_, args.table
    if table is not None:
        schema, table = await resolve_table(ctx, table, schema)
    locks = await locked_relations(ctx)  # comparing their definitions would wait on the lock: left out
    rows = await ctx.fetch(load_query("duplicate_indexes"), {"schema": schema, "table": table,
                                                             "system": SYSTEM_SCHEMAS, "limit": args.limit + 1,
                                                             "locked": locks.oids})
    found, truncated = cut(rows, args.limit)
    conn = await ctx.conn()
    for r in found:
        r["drop_statement"] = sql.SQL("DROP INDEX CONCURRENTLY {}").format(
            sql.Identifier(r["schema"], r["index"])).as_string(conn)
    out = {"indexes": found, "count": len(found), "truncated": truncated,
           "reclaimable_bytes": sum(r["size_bytes"] for r in found)}
    if locks.oids:
        out["skipped"] = skipped(locks.user_relations("rpiI"))
    return out
