"""vector: HNSW and IVFFlat indexes: creating them, measuring their recall and latency, tuning their parameters."""

from __future__ import annotations

import math
from enum import StrEnum
from typing import Any, Self

import psycopg
from psycopg import sql
from pydantic import Field, model_validator

from pgcode.core.context import ToolContext
from pgcode.core.registry import tool
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._tabular import column_field, where_field
from pgcode.groups.vector._base import (
    OPCLASS_SUFFIX,
    Metric,
    VecColumn,
    Vector,
    VectorColumnIn,
    metric_field,
    vector_column,
)
from pgcode.groups.vector._measure import measure, plan_index, sample_vectors, vector_indexes
from pgcode.groups.vector._search import apply_settings, ef_search_field, probes_field
from pgcode.types import Effect

VECTOR = ("vector",)
# pgvector's limits on indexed dimensions (vector and halfvec store 4 and 2 bytes per element in an 8 kB page).
MAX_INDEX_DIMS = {"vector": 2000, "halfvec": 4000}


class IndexMethod(StrEnum):
    HNSW = "hnsw"
    IVFFLAT = "ivfflat"


class CreateIndexIn(VectorColumnIn):
    method: IndexMethod = IndexMethod.HNSW
    metric: Metric = metric_field()
    m: int | None = Field(None, ge=2, le=100)
    ef_construction: int | None = Field(None, ge=4, le=1000)
    lists: int | None = Field(None, ge=1, le=32_768)
    name: str | None = column_field("Index name", None)
    concurrently: bool = False
    if_not_exists: bool = False

    @model_validator(mode="after")
    def _parameters(self) -> Self:
        if self.method is IndexMethod.HNSW and self.lists is not None:
            raise ValueError("lists is an IVFFlat parameter; HNSW takes m and efConstruction")
        if self.method is IndexMethod.IVFFLAT and (self.m is not None or self.ef_construction is not None):
            raise ValueError("m and efConstruction are HNSW parameters; IVFFlat takes lists")
        if self.method is IndexMethod.IVFFLAT and self.metric is Metric.L1:
            raise ValueError("IVFFlat has no l1 operator class; use hnsw")
        if self.ef_construction is not None and self.ef_construction < 2 * (self.m or 16):
            raise ValueError(f"efConstruction must be at least 2 x m ({2 * (self.m or 16)})")
        return self


def ivfflat_lists(rows: int) -> int:
    """pgvector's advice: rows / 1000 up to a million rows, sqrt(rows) above."""
    return max(1, rows // 1000 if rows <= 1_000_000 else int(math.sqrt(rows)))


@tool(group="vector", effect=Effect.ADMIN, extensions=VECTOR)
async def vector_create_index(ctx: ToolContext, args: CreateIndexIn) -> dict[str, Any]:
    """Create an HNSW or IVFFlat index for one distance metric; returns its definition.

    The result also gives its parameters. method: hnsw (better speed/recall, slower build, more memory) or ivfflat (fast
    build; build it after the data is loaded). metric: l2 (Euclidean, <->), cosine (<=>), inner_product (<#>, ordered by
    largest dot product) or l1 (taxicab, <+>). HNSW: m, the links per node (default 16; more improves recall on large or
    high-dimensional data, costs memory and build time), and efConstruction, the candidate list size while building
    (default 64, at least 2 x m). IVFFlat: lists (default: rows / 1000, or sqrt(rows) above a million rows). name
    defaults to <table>_<column>_<method>_<metric>_idx; ifNotExists does nothing when an index of that name exists. The
    operator class follows from the column type and metric (vector_cosine_ops, halfvec_l2_ops, ...); a search uses the
    index only with the same metric. With concurrently the build runs outside a transaction and does not block writes.
    """
    if args.concurrently:
        ctx.use_autocommit()
    col = await vector_column(ctx, args, args.column)
    _check_indexable(col, args)
    options: dict[str, int] = {}
    if args.method is IndexMethod.HNSW:
        options.update({k: v for k, v in (("m", args.m), ("ef_construction", args.ef_construction)) if v})
    else:
        rows = await ctx.fetchval(sql.SQL("SELECT count(*) FROM {} AS t WHERE t.{} IS NOT NULL").format(
            col.table.ident, col.ident))
        options["lists"] = args.lists or ivfflat_lists(rows)
    name = args.name or _index_name(col, args)
    with_ = (sql.SQL(" WITH ({})").format(sql.SQL(", ").join(
        sql.SQL("{} = {}").format(sql.Identifier(k), sql.Literal(v)) for k, v in options.items()))
        if options else sql.SQL(""))
    opclass = sql.Identifier(col.ext_schema, f"{col.type_name}_{OPCLASS_SUFFIX[args.metric]}")
    stmt = sql.SQL("CREATE INDEX {conc}{ine}{name} ON {table} USING {method} ({col} {opclass}){with_}").format(
        conc=sql.SQL("CONCURRENTLY ") if args.concurrently else sql.SQL(""),
        ine=sql.SQL("IF NOT EXISTS ") if args.if_not_exists else sql.SQL(""), name=sql.Identifier(name),
        table=col.table.ident, method=sql.SQL(args.method.value), col=col.ident, opclass=opclass, with_=with_)
    existed = {i["name"] for i in await vector_indexes(ctx, col)}
    try:
        await ctx.execute(stmt)
    except psycopg.Error:
        if args.concurrently and name not in existed:  # a failed concurrent build leaves an INVALID index
            await ctx.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
                sql.Identifier(col.table.schema, name)))
        raise
    index = next((i for i in await vector_indexes(ctx, col) if i["name"] == name), None)
    if index is None:
        raise ToolError(ErrorCode.CONFLICT, f'"{name}" exists but is not a vector index on {col.label}')
    return {**index, "table": col.table.name, "schema": col.table.schema, "column": col.name,
            "created": name not in existed}


def _check_indexable(col: VecColumn, args: CreateIndexIn) -> None:
    limit = MAX_INDEX_DIMS.get(col.type_name)
    if col.dims is None and col.type_name != "sparsevec":
        raise ToolError(ErrorCode.INVALID_INPUT, f"column {col.label} has no declared dimensions; pgvector indexes "
                        "need them", hint=f"ALTER TABLE ... ALTER COLUMN ... TYPE {col.type_name}(n)")
    if limit is not None and col.dims is not None and col.dims > limit:
        raise ToolError(ErrorCode.INVALID_INPUT, f"{col.type_name} columns of more than {limit} dimensions cannot "
                        f"be indexed; column {col.label} has {col.dims}",
                        hint="store it as halfvec (up to 4000) or reduce the dimensions")
    if col.type_name == "sparsevec" and args.method is IndexMethod.IVFFLAT:
        raise ToolError(ErrorCode.INVALID_INPUT, "IVFFlat cannot index sparsevec; use hnsw")


def _index_name(col: VecColumn, args: CreateIndexIn) -> str:
    base = f"{col.table.name}_{col.name}_{args.method.value}_{args.metric.value}_idx"
    return base if len(base) <= 63 else base[:59].rstrip("_") + "_idx"


class PerformanceIn(VectorColumnIn):
    metric: Metric | None = metric_field(None)
    k: int = Field(10, ge=1, le=100)
    sample_size: int = Field(10, ge=1, le=100)
    vectors: list[Vector] | None = Field(None, max_length=100)
    where: str | None = where_field()
    ef_search: int | None = ef_search_field()
    probes: int | None = probes_field()


@tool(group="vector", effect=Effect.READ, extensions=VECTOR)
async def vector_performance(ctx: ToolContext, args: PerformanceIn) -> dict[str, Any]:
    """Recall@k of a column's vector index against an exact scan, with both latencies.

    k: neighbours per query, recall is measured at k. The query vectors are sampleSize stored ones, or the given
    vectors. efSearch: the HNSW candidate list size for this call (hnsw.ef_search, default 40); probes: the IVFFlat
    lists to visit for this call (ivfflat.probes, default 1); higher values of either find more true neighbours, slower.
    Runs the same nearest-k queries through the index and with index scans off (exact), so recall is real, not
    estimated. The metric defaults to that of the column's index. Also the indexes, their sizes and the plan's choice of
    index.
    """
    col = await vector_column(ctx, args, args.column)
    indexes = await vector_indexes(ctx, col)
    metric = args.metric or _index_metric(indexes)
    settings = await apply_settings(ctx, ef_search=args.ef_search, probes=args.probes)
    queries = await _queries(ctx, col, args.vectors, args.sample_size, args.where)
    used = await plan_index(ctx, col, metric, queries[0], args.k, args.where)
    result = await measure(ctx, col, metric, queries, args.k, args.where)
    return {"table": col.table.name, "schema": col.table.schema, "column": col.name, "metric": metric.value,
            "k": args.k, "queries": len(queries), "rows": await _row_estimate(ctx, col), "indexes": indexes,
            "indexUsed": used, "settings": settings, **result.summary(),
            "note": None if used else "no vector index serves this metric: both paths scanned the table"}


def _index_metric(indexes: list[dict[str, Any]]) -> Metric:
    for index in indexes:
        if index["metric"]:
            return Metric(index["metric"])
    return Metric.L2


async def _queries(ctx: ToolContext, col: VecColumn, given: list[list[float]] | None, n: int,
                   where: str | None) -> list[list[float]]:
    if given:
        for vec in given:
            col.check_dims(vec)
        return given
    queries = await sample_vectors(ctx, col, n, where)
    if not queries:
        raise ToolError(ErrorCode.INVALID_INPUT, f"column {col.label} has no vectors to sample",
                        hint="insert vectors first, or pass query vectors in `vectors`")
    return queries


async def _row_estimate(ctx: ToolContext, col: VecColumn) -> int:
    """Rows with a vector: counted when the table is small, else the planner's estimate."""
    est = await ctx.fetchval("SELECT c.reltuples::bigint FROM pg_class c JOIN pg_namespace n ON "
                             "n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
                             (col.table.schema, col.table.name))
    if est is not None and est >= 100_000:
        return int(est)
    count: int = await ctx.fetchval(sql.SQL("SELECT count(*) FROM {} AS t WHERE t.{} IS NOT NULL").format(
        col.table.ident, col.ident))
    return count


class IndexOptimizeIn(VectorColumnIn):
    metric: Metric | None = metric_field(None)
    target_recall: float = Field(0.95, gt=0, le=1)
    k: int = Field(10, ge=1, le=100)
    sample_size: int = Field(10, ge=1, le=50)


_EF_STEPS = (40, 80, 160, 320, 640, 1000)


@tool(group="vector", effect=Effect.READ, extensions=VECTOR)
async def vector_index_optimize(ctx: ToolContext, args: IndexOptimizeIn) -> dict[str, Any]:
    """Recommended HNSW and IVFFlat settings for a vector column, from measured recall.

    From its rows, dimensions and recall@k (k neighbours per query, sampleSize query vectors sampled from the
    table). When the column has an index for the metric, recall@k is measured at rising ef_search (HNSW) or probes
    (IVFFlat) until `targetRecall` is reached; the smallest setting that reaches it is recommended.
    """
    col = await vector_column(ctx, args, args.column)
    indexes = await vector_indexes(ctx, col)
    metric = args.metric or _index_metric(indexes)
    rows = await _row_estimate(ctx, col)
    dims = col.dims or await ctx.fetchval(sql.SQL("SELECT {}(t.{}) FROM {} AS t WHERE t.{} IS NOT NULL LIMIT 1"
                                                  ).format(col.func("vector_dims"), col.ident, col.table.ident,
                                                           col.ident)) or 0
    rec, reasons = _recommend(rows, dims, col.type_name)
    index = next((i for i in indexes if i["metric"] == metric.value and i["valid"]), None)
    measured: list[dict[str, Any]] = []
    if index is not None and rows > 0:
        queries = await sample_vectors(ctx, col, args.sample_size, None)
        steps = _EF_STEPS if index["method"] == "hnsw" else _probe_steps(int(index["options"].get("lists", 100)))
        hnsw = index["method"] == "hnsw"
        for step in steps:
            setting = {"ef_search": step} if hnsw else {"probes": step}
            await apply_settings(ctx, ef_search=step if hnsw else None, probes=None if hnsw else step)
            summary = (await measure(ctx, col, metric, queries, args.k, None)).summary()
            measured.append({**setting, "recall": summary["recall"]["mean"],
                             "latencyMs": summary["latencyMs"]["index"]["p50"]})
            if summary["recall"]["mean"] >= args.target_recall:
                break
        best = measured[-1]
        key = "efSearch" if index["method"] == "hnsw" else "probes"
        rec[index["method"]][key] = best.get("ef_search", best.get("probes"))
        reached = best["recall"] >= args.target_recall
        reasons.append(f"measured on {index['name']}: recall@{args.k} {best['recall']} at {key} "
                       f"{rec[index['method']][key]}" + ("" if reached else f", below the target {args.target_recall}"
                                                         "; rebuild with larger m / ef_construction (or lists)"))
    return {"table": col.table.name, "schema": col.table.schema, "column": col.name, "metric": metric.value,
            "rows": rows, "dimensions": dims, "indexes": indexes, "recommendation": rec, "measurements": measured,
            "reasons": reasons}


def _probe_steps(lists: int) -> list[int]:
    steps, p = [], 1
    while p < lists:
        steps.append(p)
        p *= 2
    return [*steps[:8], lists]


def _recommend(rows: int, dims: int, type_name: str) -> tuple[dict[str, Any], list[str]]:
    reasons = []
    m = 16 if rows < 1_000_000 and dims < 1024 else 24 if rows < 10_000_000 else 32
    ef_construction = max(64, 4 * m) if m > 16 else 64
    lists = ivfflat_lists(rows)
    bytes_per = {"halfvec": 2, "vector": 4}.get(type_name, 8)
    hnsw_bytes = rows * (dims * bytes_per + 8 + m * 2 * 6 + 32)
    method = "none" if rows < 10_000 else "hnsw"
    if rows < 10_000:
        reasons.append(f"{rows} rows: an exact scan is fast; an index is optional")
    reasons.append(f"m {m}, ef_construction {ef_construction}: {'defaults suit' if m == 16 else 'larger for'} "
                   f"{rows} rows of {dims} dimensions")
    reasons.append(f"IVFFlat lists {lists} (rows / 1000, or sqrt(rows) above a million); probes sqrt(lists) to start")
    reasons.append(f"an HNSW build fits in memory with maintenance_work_mem of about {_mb(hnsw_bytes)} MB")
    return ({"method": method,
             "hnsw": {"m": m, "efConstruction": ef_construction, "efSearch": 40,
                      "estimatedBytes": hnsw_bytes, "maintenanceWorkMemMb": _mb(hnsw_bytes)},
             "ivfflat": {"lists": lists, "probes": max(1, round(math.sqrt(lists)))}}, reasons)


def _mb(n: int) -> int:
    return max(64, math.ceil(n / 2**20 * 1.1))
