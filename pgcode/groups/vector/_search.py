"""The nearest-neighbour query the search tools share, and the per-call index settings it runs with."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from psycopg import sql
from pydantic import Field

from pgcode.core.context import ToolContext
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._tabular import where_clause
from pgcode.groups.vector._base import Metric, VecColumn, pgvector_version


class IterativeScan(StrEnum):
    OFF = "off"
    STRICT_ORDER = "strict_order"
    RELAXED_ORDER = "relaxed_order"


def ef_search_field() -> Any:
    return Field(None, ge=1, le=1000)


def probes_field() -> Any:
    return Field(None, ge=1, le=32_768)


def iterative_scan_field() -> Any:
    return Field(None)


async def apply_settings(ctx: ToolContext, *, ef_search: int | None = None, probes: int | None = None,
                         iterative_scan: IterativeScan | None = None) -> dict[str, Any]:
    """Set the index search parameters for this transaction only (set_config(..., true)); return what was set."""
    wanted: dict[str, str] = {}
    if ef_search is not None:
        wanted["hnsw.ef_search"] = str(ef_search)
    if probes is not None:
        wanted["ivfflat.probes"] = str(probes)
    if iterative_scan is not None:
        if pgvector_version(ctx) < (0, 8):
            raise ToolError(ErrorCode.UNSUPPORTED_VERSION, "iterativeScan needs pgvector 0.8 or later; this database "
                            f"has {ctx.caps.installed.get('vector')}", details={"needed": "0.8"})
        wanted["hnsw.iterative_scan"] = iterative_scan.value
        # IVFFlat knows only relaxed_order: results in list order, re-sorted by the query's ORDER BY.
        wanted["ivfflat.iterative_scan"] = "off" if iterative_scan is IterativeScan.OFF else "relaxed_order"
    if wanted:
        await set_local(ctx, wanted)
    return wanted


async def set_local(ctx: ToolContext, settings: dict[str, str]) -> None:
    """SET LOCAL for each name: undone when the call's transaction ends, never left on the pooled connection."""
    calls = sql.SQL(", ").join(sql.SQL("set_config({}, {}, true)").format(sql.Literal(k), sql.Placeholder())
                               for k in settings)
    await ctx.execute(sql.SQL("SELECT {}").format(calls), list(settings.values()))


EXACT = {"enable_indexscan": "off", "enable_indexonlyscan": "off", "enable_bitmapscan": "off"}
INDEXED = {"enable_indexscan": "on", "enable_indexonlyscan": "on", "enable_bitmapscan": "on"}


def nearest_query(col: VecColumn, metric: Metric, select: list[sql.Composable], limit: int,
                  where: str | None = None) -> sql.Composed:
    """`SELECT <select>, distance FROM t ... ORDER BY col <op> q LIMIT n`, the shape an HNSW/IVFFlat index serves.

    The query vector is the parameter `q` (pgvector's text form); run it with a parameter mapping.
    """
    dist = sql.SQL("t.{} {} {}").format(col.ident, col.op(metric), col.cast(sql.Placeholder("q")))
    targets = [*select, sql.SQL("{} AS {}").format(dist, sql.Identifier("distance"))]
    return sql.SQL("SELECT {targets} FROM {table} AS t{where} ORDER BY {dist} LIMIT {limit}").format(
        targets=sql.SQL(", ").join(targets), table=col.table.ident, dist=dist, limit=sql.Literal(limit),
        where=where_clause(where, sql.SQL("t.{} IS NOT NULL").format(col.ident)))


def similarity(metric: Metric, distance: float) -> float | None:
    """The score a caller reads as "more alike is larger": 1 - cosine distance, or the inner product itself."""
    if metric is Metric.COSINE:
        return 1.0 - distance
    if metric is Metric.INNER_PRODUCT:
        return -distance  # pgvector's <#> is the negative inner product, so that ascending order is best first
    return None
