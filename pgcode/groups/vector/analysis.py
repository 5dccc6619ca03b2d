"""vector: k-means clustering and random-projection dimension reduction, computed here on bounded samples."""

from __future__ import annotations

import asyncio
import math
from enum import StrEnum
from typing import Any, Self

from psycopg import sql
from pydantic import Field, model_validator

from pgcode.core import arguments
from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import IDENT_MAX, TableRef
from pgcode.groups._tabular import ColumnName, column_field, return_columns_field, where_clause, where_field
from pgcode.groups.vector._base import MAX_DIMS, VecColumn, Vector, VectorColumnIn, as_floats, vector_column
from pgcode.groups.vector._kmeans import dot, kmeans, project, projection, unit
from pgcode.types import Effect

VECTOR = ("vector",)
# Bounds on work done in this process (pure Python, no numpy): numbers held in memory, and multiply-adds.
MAX_NUMBERS = 1_000_000
MAX_KMEANS_WORK = 60_000_000
MAX_PROJECTION_WORK = 50_000_000


class ClusterMetric(StrEnum):
    L2 = "l2"
    COSINE = "cosine"


class ClusterIn(VectorColumnIn):
    k: int = Field(5, ge=2, le=64)
    sample_size: int = Field(2000, ge=10, le=20_000)
    iterations: int = Field(20, ge=1, le=100)
    seed: int = Field(42, ge=0, le=2**31 - 1)
    metric: ClusterMetric = ClusterMetric.L2
    where: str | None = where_field()
    include_centroids: bool = True


@tool(group="vector", effect=Effect.READ, extensions=VECTOR)
async def vector_cluster(ctx: ToolContext, args: ClusterIn) -> dict[str, Any]:
    """k-means clusters of a vector column: each cluster's size, share and centroid.

    k clusters, at most `iterations` k-means iterations, over a reproducible sample; seed fixes the sample and the
    k-means++ start. metric cosine scales the vectors to unit length first. includeCentroids returns each cluster's
    centroid vector. Computed in bounded memory on at most `sampleSize` rows (fewer for wide vectors: the result says
    how many); the same seed and data give the same clusters.
    """
    col = await vector_column(ctx, args, args.column)
    dims = col.dims or await _first_dims(ctx, col)
    n = min(args.sample_size, MAX_NUMBERS // max(dims, 1), MAX_KMEANS_WORK // max(dims * args.k * args.iterations, 1))
    if n < args.k:
        raise ToolError(ErrorCode.INVALID_INPUT, f"{dims} dimensions x k {args.k} x {args.iterations} iterations "
                        "leave too few rows within the work bound; lower k or iterations")
    data = await _sample(ctx, col, n, args.seed, args.where)
    if len(data) < args.k:
        raise ToolError(ErrorCode.INVALID_INPUT, f"only {len(data)} vectors to cluster into k = {args.k}")
    if args.metric is ClusterMetric.COSINE:
        data = [unit(v) for v in data]
    res = await asyncio.to_thread(kmeans, data, args.k, iterations=args.iterations, seed=args.seed)
    clusters = []
    for i, (centroid, size) in enumerate(zip(res.centroids, res.sizes, strict=True)):
        c = unit(centroid) if args.metric is ClusterMetric.COSINE else centroid
        item: dict[str, Any] = {"cluster": i, "size": size, "share": round(size / len(data), 4)}
        if args.include_centroids:
            item["centroid"] = [round(x, 6) for x in c]
        clusters.append(item)
    return {"table": col.table.name, "schema": col.table.schema, "column": col.name, "k": len(clusters),
            "metric": args.metric.value, "sampled": len(data), "sampleBounded": n < args.sample_size,
            "dimensions": dims, "iterations": res.iterations, "converged": res.converged,
            "inertia": round(res.inertia, 6), "clusters": clusters}


async def _first_dims(ctx: ToolContext, col: VecColumn) -> int:
    dims = await ctx.fetchval(sql.SQL("SELECT {}(t.{}) FROM {} AS t WHERE t.{} IS NOT NULL LIMIT 1").format(
        col.func("vector_dims"), col.ident, col.table.ident, col.ident))
    if not dims:
        raise ToolError(ErrorCode.INVALID_INPUT, f"column {col.label} has no vectors")
    return int(dims)


async def _sample(ctx: ToolContext, col: VecColumn, n: int, seed: int, where: str | None) -> list[list[float]]:
    """n stored vectors in an order fixed by the seed (top-n by a hash: bounded memory on the server too)."""
    rows = await ctx.fetch(sql.SQL("SELECT t.{c} AS v FROM {t} AS t{w} ORDER BY md5(t.ctid::text || %(seed)s) "
                                   "LIMIT {n}").format(
        c=col.ident, t=col.table.ident, n=sql.Literal(n),
        w=where_clause(where, sql.SQL("t.{} IS NOT NULL").format(col.ident))), {"seed": str(seed)})
    return [as_floats(r["v"]) for r in rows]


class DimensionReduceIn(ToolInput):
    target_dimensions: int = Field(ge=1, le=MAX_DIMS, description="Dimensions of the reduced vectors")
    vectors: list[Vector] | None = Field(None, max_length=10_000, description="Vectors, or give table and column")
    table: str | None = Field(None, max_length=2 * IDENT_MAX + 1, description=arguments.TABLE)
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX, description=arguments.SCHEMA)
    column: str | None = column_field("Vector column (with table)", None)
    where: str | None = where_field()
    return_columns: list[ColumnName] | None = return_columns_field()
    limit: int = Field(100, ge=1, le=10_000)
    seed: int = Field(42, ge=0, le=2**31 - 1)

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.vectors is None) == (self.table is None):
            raise ValueError("give either vectors or table and column")
        if self.table is not None and self.column is None:
            raise ValueError("column is required with table")
        return self


@tool(group="vector", effect=Effect.READ, extensions=VECTOR)
async def vector_dimension_reduce(ctx: ToolContext, args: DimensionReduceIn) -> dict[str, Any]:
    """Vectors reduced to fewer dimensions by a seeded random projection.

    The projection roughly keeps their distances. limit: most rows to reduce (with table). seed: the same seed gives the
    same projection, so vectors reduced in separate calls stay comparable. Works on given vectors or on rows of a table
    (with their columns); `distanceRatio` shows how well pairwise distances survived (1.0 is perfect). Bounded: rows x
    dimensions x target dimensions is capped.
    """
    rows: list[dict[str, Any]] | None = None
    if args.vectors is not None:
        vectors = args.vectors
    else:
        col = await vector_column(ctx, TableRef.model_validate({"table": args.table, "schema": args.schema_}),
                                  args.column or "")
        rows = await _rows(ctx, col, args)
        vectors = [as_floats(r.pop("_v")) for r in rows]
    if not vectors:
        return {"fromDimensions": None, "toDimensions": args.target_dimensions, "vectors": [], "rows": rows}
    dims = len(vectors[0])
    for i, v in enumerate(vectors):
        if len(v) != dims:
            raise ToolError(ErrorCode.INVALID_INPUT, f"vector {i} has {len(v)} dimensions but vector 0 has {dims}")
    if args.target_dimensions >= dims:
        raise ToolError(ErrorCode.INVALID_INPUT, f"targetDimensions ({args.target_dimensions}) must be below the "
                        f"vectors' {dims} dimensions")
    if len(vectors) * dims * args.target_dimensions > MAX_PROJECTION_WORK:
        raise ToolError(ErrorCode.INVALID_INPUT, f"{len(vectors)} vectors x {dims} x {args.target_dimensions} "
                        f"exceeds the bound of {MAX_PROJECTION_WORK:,} multiply-adds; use fewer rows or dimensions")
    reduced = await asyncio.to_thread(_reduce, vectors, dims, args.target_dimensions, args.seed)
    out: dict[str, Any] = {"method": "sparse random projection (Achlioptas), seeded", "seed": args.seed,
                           "fromDimensions": dims, "toDimensions": args.target_dimensions,
                           "distanceRatio": _distance_ratio(vectors[:20], reduced[:20])}
    if rows is None:
        out["vectors"] = reduced
    else:
        for row, vec in zip(rows, reduced, strict=True):
            row["vector"] = vec
        out.update(rows=rows, truncated=len(rows) >= args.limit)
    return out


async def _rows(ctx: ToolContext, col: VecColumn, args: DimensionReduceIn) -> list[dict[str, Any]]:
    table = col.table
    names = [c.name for c in table.all(args.return_columns)] if args.return_columns else [
        n for n in table.columns if n != col.name]
    select = [*(sql.Identifier("t", n) for n in names), sql.SQL("t.{} AS {}").format(col.ident, sql.Identifier("_v"))]
    return await ctx.fetch(sql.SQL("SELECT {} FROM {} AS t{} LIMIT {}").format(
        sql.SQL(", ").join(select), table.ident, where_clause(args.where, sql.SQL("t.{} IS NOT NULL").format(
            col.ident)), sql.Literal(args.limit)), {})


def _reduce(vectors: list[list[float]], dims: int, target: int, seed: int) -> list[list[float]]:
    matrix = projection(dims, target, seed)
    return [[round(x, 6) for x in project(v, matrix)] for v in vectors]


def _distance_ratio(before: list[list[float]], after: list[list[float]]) -> dict[str, float] | None:
    ratios = []
    for i in range(len(before)):
        for j in range(i + 1, len(before)):
            d0 = math.sqrt(max(_sqdist(before[i], before[j]), 0.0))
            if d0 > 0:
                ratios.append(math.sqrt(max(_sqdist(after[i], after[j]), 0.0)) / d0)
    if not ratios:
        return None
    return {"mean": round(sum(ratios) / len(ratios), 4), "min": round(min(ratios), 4), "max": round(max(ratios), 4)}


def _sqdist(a: list[float], b: list[float]) -> float:
    return dot(a, a) + dot(b, b) - 2 * dot(a, b)
