"""performance: table and index bloat estimates, and a bloat-risk score per table."""

from __future__ import annotations

import math
from typing import Any

from pydantic import Field

from pgcode.core import arguments
from pgcode.core.context import Row, ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.db.queries import SYSTEM_SCHEMAS, load_query
from pgcode.groups._common import IDENT_MAX
from pgcode.groups.performance._shared import cut, resolve_table
from pgcode.types import Effect

BLOAT_METHOD = ("estimate: expected pages from pg_stats (average column widths, null fractions) and reltuples "
                "against the pages on disk (the ioguix/pgsql-bloat-estimation method); needs fresh ANALYZE "
                "statistics and is approximate; pgstattuple measures exactly")


class BloatCheckIn(ToolInput):
    table: str | None = Field(None, max_length=2 * IDENT_MAX + 1, description=arguments.TABLE)
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX, description=arguments.SCHEMA_FILTER)
    min_size_bytes: int = Field(1024 * 1024, ge=0)
    min_bloat_ratio: float = Field(0.0, ge=0, le=1)
    include_indexes: bool = True
    limit: int = Field(50, ge=1, le=10_000)


@tool(group="performance", effect=Effect.READ)
async def bloat_check(ctx: ToolContext, args: BloatCheckIn) -> dict[str, Any]:
    """Estimated table and B-tree index bloat: size, wasted bytes and ratio.

    Most wasted first, with the method stated. minSizeBytes (default 1 MB) and minBloatRatio (share of wasted space,
    0-1) keep the larger cases; includeIndexes (default true) adds B-tree index bloat; limit caps the tables and the
    indexes listed.

    An estimate from planner statistics, not a scan: tables never analyzed are left out, and a fresh ANALYZE
    makes it better. Reclaim space with VACUUM FULL, pg_repack or REINDEX CONCURRENTLY.
    """
    schema, table = args.schema_, args.table
    if table is not None:
        schema, table = await resolve_table(ctx, table, schema)
    params = {"schema": schema, "table": table, "system": SYSTEM_SCHEMAS, "min_size": args.min_size_bytes,
              "min_ratio": args.min_bloat_ratio, "limit": args.limit + 1}
    tables, truncated = cut(await ctx.fetch(load_query("bloat_check_tables"), params), args.limit)
    out: dict[str, Any] = {"method": BLOAT_METHOD, "tables": tables, "truncated": truncated}
    if args.include_indexes:
        out["indexes"], index_truncated = cut(await ctx.fetch(load_query("bloat_check_indexes"), params), args.limit)
        out["truncated"] = truncated or index_truncated
    out["total_bloat_bytes"] = sum(r["bloat_bytes"] for r in tables) + sum(
        r["bloat_bytes"] for r in out.get("indexes", []))
    return out


class DetectBloatRiskIn(ToolInput):
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX, description=arguments.SCHEMA_FILTER)
    min_rows: int = Field(1000, ge=0)
    min_score: float = Field(0, ge=0, le=100)
    stale_days: float = Field(7, gt=0, le=3650)
    limit: int = Field(20, ge=1, le=1000)


# Points per factor; they add up to 100.
WEIGHTS = {"dead_tuple_ratio": 35, "vacuum_staleness": 25, "table_size": 15, "autovacuum": 15, "update_churn": 10}


@tool(group="performance", effect=Effect.READ)
async def detect_bloat_risk(ctx: ToolContext, args: DetectBloatRiskIn) -> dict[str, Any]:
    """Tables scored 0-100 by bloat risk, with each factor, risk level and advice.

    Highest score first. minRows keeps tables with at least that many live + dead tuples; minScore those scoring at
    least that; staleDays is how many days without vacuum, on a table with writes, count as fully stale.

    Factors (points): dead-tuple ratio (35, full at 20 % dead), vacuum staleness (25, days since the last
    vacuum on a table with updates or deletes, full at stale_days), table size (15, full at 1 GB), autovacuum
    disabled or a scale factor above 0.2 (15), update/delete churn with few HOT updates (10).
    Levels: critical ≥ 70, high ≥ 40, medium ≥ 20, else low.
    """
    rows = await ctx.fetch(load_query("detect_bloat_risk"), {"schema": args.schema_, "min_rows": args.min_rows,
                                                             "system": SYSTEM_SCHEMAS})
    scored = [s for s in (_score(r, args.stale_days) for r in rows) if s["score"] >= args.min_score]
    scored.sort(key=lambda s: (-s["score"], s["schema"], s["table"]))
    tables, truncated = cut(scored, args.limit)
    return {"weights": WEIGHTS, "tables": tables, "count": len(tables), "truncated": truncated}


def _score(r: Row, stale_days: float) -> dict[str, Any]:
    live, dead = r["live_tuples"] or 0, r["dead_tuples"] or 0
    dead_ratio = dead / (live + dead) if live + dead else 0.0
    writes = r["updates_and_deletes"] or 0
    days = float(r["days_since_vacuum"]) if r["days_since_vacuum"] is not None else None
    staleness = 0.0 if not writes else (1.0 if days is None else min(days / stale_days, 1.0))
    size_mb = max(r["size_bytes"] / 1024 / 1024, 1.0)
    size_part = min(math.log10(size_mb) / 3, 1.0)  # 1 MB → 0, 1 GB → full
    scale = float(r["vacuum_scale_factor"])
    av_part = 1.0 if not r["autovacuum_enabled"] else (0.5 if scale > 0.2 else 0.0)
    hot = (r["hot_updates"] or 0) / r["updates"] if r["updates"] else 1.0
    churn_part = min(writes / max(live, 1), 1.0) * (1 - hot) if writes else 0.0
    parts = {"dead_tuple_ratio": (round(dead_ratio, 4), min(dead_ratio / 0.2, 1.0)),
             "vacuum_staleness": (None if days is None else round(days, 2), staleness),
             "table_size": (r["size_bytes"], size_part),
             "autovacuum": ({"enabled": r["autovacuum_enabled"], "vacuum_scale_factor": scale}, av_part),
             "update_churn": ({"writes_per_live_row": round(writes / max(live, 1), 3), "hot_ratio": round(hot, 3)},
                              churn_part)}
    factors = {name: {"value": value, "points": round(share * WEIGHTS[name], 1), "max": WEIGHTS[name]}
               for name, (value, share) in parts.items()}
    score = round(sum(f["points"] for f in factors.values()), 1)
    risk = "critical" if score >= 70 else "high" if score >= 40 else "medium" if score >= 20 else "low"
    return {"schema": r["schema"], "table": r["table"], "score": score, "risk": risk, "factors": factors,
            "dead_tuples": dead, "live_tuples": live, "last_vacuum": r["last_vacuum"],
            "advice": _advice(dead_ratio, staleness, av_part)}


def _advice(dead_ratio: float, staleness: float, av_part: float) -> str:
    if av_part >= 1:
        return "autovacuum is off for this table: turn it back on, or schedule VACUUM (pg_vacuum)"
    if dead_ratio >= 0.2:
        return "VACUUM (ANALYZE) now, and lower autovacuum_vacuum_scale_factor for this table"
    if staleness >= 1:
        return "not vacuumed for a long time despite writes: check autovacuum workers and long transactions"
    if av_part:
        return "lower autovacuum_vacuum_scale_factor (e.g. 0.05) so large tables are vacuumed sooner"
    return "no action needed"
