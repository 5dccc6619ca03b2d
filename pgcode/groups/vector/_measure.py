"""Recall and latency of a vector index, measured against an exact scan of the same queries."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any

from psycopg import sql

from pgcode.core.context import ToolContext
from pgcode.db.queries import load_query
from pgcode.groups._tabular import where_clause
from pgcode.groups.vector._base import OPCLASS_SUFFIX, Metric, VecColumn, as_floats, vector_text
from pgcode.groups.vector._search import EXACT, INDEXED, nearest_query, set_local


async def vector_indexes(ctx: ToolContext, col: VecColumn) -> list[dict[str, Any]]:
    """The HNSW and IVFFlat indexes on the column, with their operator class, options and size."""
    rows = await ctx.fetch(load_query("vector_indexes"),
                           {"schema": col.table.schema, "table": col.table.name, "column": col.name})
    for row in rows:
        row["metric"] = next((m.value for m, suffix in OPCLASS_SUFFIX.items() if row["opclass"].endswith(suffix)),
                             None)
        row["options"] = dict(o.split("=", 1) for o in row["options"])
    return rows


async def sample_vectors(ctx: ToolContext, col: VecColumn, n: int, where: str | None) -> list[list[float]]:
    """Up to n stored vectors, a different sample each call, as query vectors."""
    rows = await ctx.fetch(sql.SQL("SELECT t.{c} AS v FROM {t} AS t{w} ORDER BY random() LIMIT {n}").format(
        c=col.ident, t=col.table.ident, n=sql.Literal(n),
        w=where_clause(where, sql.SQL("t.{} IS NOT NULL").format(col.ident))), {})
    return [as_floats(r["v"]) for r in rows]


@dataclass
class Measurement:
    recalls: list[float]
    index_ms: list[float]
    exact_ms: list[float]

    def summary(self) -> dict[str, Any]:
        return {"recall": {"mean": round(statistics.fmean(self.recalls), 4), "min": round(min(self.recalls), 4)},
                "latencyMs": {"index": _latency(self.index_ms), "exact": _latency(self.exact_ms)},
                "speedup": round(statistics.median(self.exact_ms) / max(statistics.median(self.index_ms), 1e-6), 2)}


def _latency(ms: list[float]) -> dict[str, float]:
    ordered = sorted(ms)
    return {"mean": round(statistics.fmean(ms), 3), "p50": round(statistics.median(ms), 3),
            "max": round(ordered[-1], 3)}


async def measure(ctx: ToolContext, col: VecColumn, metric: Metric, queries: list[list[float]], k: int,
                  where: str | None) -> Measurement:
    """recall@k of the index path against the exact answer, per query, with both latencies.

    The index path runs with sequential scans off, so the index is what gets measured even on a small table;
    the exact path runs with index scans off. Both are SET LOCAL: nothing outlives the call's transaction.
    """
    query = nearest_query(col, metric, [sql.SQL("t.ctid::text AS {}").format(sql.Identifier("_id"))], k, where)
    m = Measurement([], [], [])
    for vec in queries:
        params = {"q": vector_text(vec)}
        await set_local(ctx, {**INDEXED, "enable_seqscan": "off"})
        approx, ms = await _timed(ctx, query, params)
        m.index_ms.append(ms)
        await set_local(ctx, {**EXACT, "enable_seqscan": "on"})
        exact, ms = await _timed(ctx, query, params)
        m.exact_ms.append(ms)
        truth = {r["_id"] for r in exact}
        m.recalls.append(len(truth & {r["_id"] for r in approx}) / len(truth) if truth else 1.0)
    await set_local(ctx, {**INDEXED, "enable_seqscan": "on"})
    return m


async def _timed(ctx: ToolContext, query: sql.Composed, params: dict[str, Any]) -> tuple[list[dict[str, Any]], float]:
    t0 = time.perf_counter()
    rows = await ctx.fetch(query, params)
    return rows, (time.perf_counter() - t0) * 1000


async def plan_index(ctx: ToolContext, col: VecColumn, metric: Metric, vector: list[float], k: int,
                     where: str | None) -> str | None:
    """The index the planner picks for the nearest-k query (index scans preferred), or None."""
    query = nearest_query(col, metric, [], k, where)
    await set_local(ctx, {**INDEXED, "enable_seqscan": "off"})
    plan = await ctx.fetchval(sql.SQL("EXPLAIN (FORMAT JSON) {}").format(query), {"q": vector_text(vector)})
    await set_local(ctx, {"enable_seqscan": "on"})
    return _find_index(plan[0]["Plan"] if isinstance(plan, list) else None)


def _find_index(node: dict[str, Any] | None) -> str | None:
    if not node:
        return None
    if node.get("Index Name"):
        return str(node["Index Name"])
    for child in node.get("Plans", ()):
        found = _find_index(child)
        if found:
            return found
    return None
