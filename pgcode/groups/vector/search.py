"""vector: nearest-neighbour search, hybrid (full text + vector) search, distances and averages."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from psycopg import sql
from pydantic import Field

from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._extensions import extension_schema
from pgcode.groups._tabular import (
    ColumnName,
    column_field,
    limit_field,
    return_columns_field,
    where_clause,
    where_field,
)
from pgcode.groups.text._fts import Syntax, config_field, resolve_config, syntax_field, tsquery
from pgcode.groups.vector._base import (
    FUNCTIONS,
    Metric,
    VecColumn,
    Vector,
    VectorColumnIn,
    metric_field,
    norm,
    pgvector_version,
    same_dims,
    vector_column,
    vector_field,
    vector_text,
)
from pgcode.groups.vector._search import (
    IterativeScan,
    apply_settings,
    ef_search_field,
    iterative_scan_field,
    nearest_query,
    probes_field,
    similarity,
)
from pgcode.types import Effect

VECTOR = ("vector",)


def _select(col: VecColumn, names: list[str] | None, include_vector: bool) -> list[sql.Composable]:
    """The caller's columns, or every column but the vector (it can be large) unless asked for."""
    table = col.table
    if names:
        chosen = [c.name for c in table.all(names)]
    else:
        chosen = [n for n in table.columns if n != col.name or include_vector]
    if include_vector and col.name not in chosen:
        chosen.append(col.name)
    return [sql.Identifier("t", n) for n in chosen]


class SearchIn(VectorColumnIn):
    vector: Vector = vector_field()
    metric: Metric = metric_field()
    limit: int = Field(10, ge=1, le=1000)
    where: str | None = where_field()
    return_columns: list[ColumnName] | None = return_columns_field()
    include_vector: bool = False
    ef_search: int | None = ef_search_field()
    probes: int | None = probes_field()
    iterative_scan: IterativeScan | None = iterative_scan_field()


@tool(group="vector", effect=Effect.READ, extensions=VECTOR, aliases=("similaritySearch",))
async def vector_search(ctx: ToolContext, args: SearchIn) -> list[dict[str, Any]]:
    """The `limit` rows nearest a query vector, nearest first, with their `distance`.

    Each row with its columns (and its vector with includeVector). metric: l2 (Euclidean, <->), cosine (<=>),
    inner_product (<#>, ordered by largest dot product) or l1 (taxicab, <+>). cosine rows also carry `similarity` (1 -
    distance); inner_product rows carry `similarity`, the inner product itself (their `distance` is pgvector's negative
    inner product, so nearest first is largest product first). efSearch, probes and iterativeScan apply to this call
    only. Uses an HNSW or IVFFlat index built for the same metric when the planner finds it cheaper. efSearch: the HNSW
    candidate list size for this call (hnsw.ef_search, default 40); probes: the IVFFlat lists to visit for this call
    (ivfflat.probes, default 1); higher values of either find more true neighbours, slower. iterativeScan
    (hnsw.iterative_scan; pgvector 0.8+) keeps scanning the index until enough rows pass the where filter.
    """
    col = await vector_column(ctx, args, args.column)
    col.check_dims(args.vector)
    await apply_settings(ctx, ef_search=args.ef_search, probes=args.probes, iterative_scan=args.iterative_scan)
    query = nearest_query(col, args.metric, _select(col, args.return_columns, args.include_vector), args.limit,
                          args.where)
    rows = await ctx.fetch(query, {"q": vector_text(args.vector)})
    for row in rows:
        score = similarity(args.metric, row["distance"])
        if score is not None:
            row["similarity"] = score
    return rows


class HybridMethod(StrEnum):
    RRF = "rrf"
    WEIGHTED = "weighted"


class HybridIn(VectorColumnIn):
    column: str = column_field("Vector column")
    vector: Vector = vector_field()
    text_column: str = column_field("Text or tsvector column")
    query: str = Field(min_length=1, max_length=10_000, description="Full-text query (see syntax)")
    syntax: Syntax = syntax_field()
    config: str = config_field()
    metric: Metric = metric_field()
    method: HybridMethod = HybridMethod.RRF
    vector_weight: float = Field(0.5, ge=0, le=1)
    rrf_k: int = Field(60, ge=1, le=10_000)
    candidates: int | None = Field(None, ge=1, le=10_000)
    limit: int = Field(10, ge=1, le=1000)
    where: str | None = where_field()
    return_columns: list[ColumnName] | None = return_columns_field()
    ef_search: int | None = ef_search_field()


@tool(group="vector", effect=Effect.READ, extensions=VECTOR)
async def hybrid_search(ctx: ToolContext, args: HybridIn) -> list[dict[str, Any]]:
    """Rows ranked by vector similarity and full-text relevance together, best first.

    method: rrf, reciprocal-rank fusion, the sum of 1/(rrfK + rank) over both lists (rrfK 60 is the usual choice);
    weighted: vectorWeight x vector score + (1 - vectorWeight) x text score, each scaled to 0-1 over the candidates.
    candidates: rows taken from each search before fusion (default 4 x limit). query is read as syntax says (as
    pg_text_search reads it), with config. Each row has its fused `score`, says its `vectorRank` and `textRank` (null
    when that search did not find it), `distance` and `textScore` (ts_rank_cd). Both searches can use their indexes
    (HNSW/IVFFlat and GIN).
    """
    col = await vector_column(ctx, args, args.column)
    col.check_dims(args.vector)
    text_col = col.table.column(args.text_column)
    if text_col.base not in ("text", "varchar", "bpchar", "citext", "tsvector"):
        raise ToolError(ErrorCode.INVALID_INPUT, f'column "{text_col.name}" of {col.table.label} is {text_col.type}, '
                        "not text or tsvector")
    config = await resolve_config(ctx, args.config)
    await apply_settings(ctx, ef_search=args.ef_search)
    candidates = args.candidates or min(4 * args.limit, 10_000)
    select = [*_select(col, args.return_columns, False), sql.SQL("t.ctid::text AS {}").format(sql.Identifier("_id"))]
    params = {"q": vector_text(args.vector), "config": config, "query": args.query}
    by_vector = await ctx.fetch(nearest_query(col, args.metric, select, candidates, args.where), params)
    doc = (sql.SQL("t.{}").format(text_col.ident) if text_col.base == "tsvector"
           else sql.SQL("to_tsvector(%(config)s::regconfig, t.{}::text)").format(text_col.ident))
    q = tsquery(args.syntax)
    score = sql.SQL("ts_rank_cd({}, {})").format(doc, q)
    by_text = await ctx.fetch(sql.SQL("SELECT {select}, {score} AS {alias} FROM {table} AS t{where} "
                                      "ORDER BY {score} DESC LIMIT {n}").format(
        select=sql.SQL(", ").join(select), score=score, alias=sql.Identifier("textScore"), table=col.table.ident,
        where=where_clause(args.where, sql.SQL("{} @@ {}").format(doc, q)), n=sql.Literal(candidates)), params)
    return _fuse(by_vector, by_text, args)[: args.limit]


def _fuse(by_vector: list[dict[str, Any]], by_text: list[dict[str, Any]], args: HybridIn) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for rank, row in enumerate(by_vector, 1):
        rows[row["_id"]] = {**row, "vectorRank": rank, "textRank": None, "textScore": None}
    for rank, row in enumerate(by_text, 1):
        merged = rows.setdefault(row["_id"], {**row, "vectorRank": None, "distance": None})
        merged.update(textRank=rank, textScore=row["textScore"])
    dists = [r["distance"] for r in by_vector]
    texts = [r["textScore"] for r in by_text]
    for row in rows.values():
        if args.method is HybridMethod.RRF:
            row["score"] = sum(1.0 / (args.rrf_k + row[k]) for k in ("vectorRank", "textRank") if row[k] is not None)
        else:
            v = _scaled(row["distance"], dists, lower_is_better=True)
            t = _scaled(row["textScore"], texts, lower_is_better=False)
            row["score"] = args.vector_weight * v + (1 - args.vector_weight) * t
        del row["_id"]
    return sorted(rows.values(), key=lambda r: -r["score"])


def _scaled(value: float | None, seen: list[float], *, lower_is_better: bool) -> float:
    """0-1 over the candidates (1 the best); 0 when the row was not among them."""
    if value is None:
        return 0.0
    lo, hi = min(seen), max(seen)
    if hi == lo:
        return 1.0
    x = (value - lo) / (hi - lo)
    return 1.0 - x if lower_is_better else x


class DistanceIn(ToolInput):
    a: Vector = vector_field("First vector")
    b: Vector = vector_field("Second vector, same dimensions")
    metric: Metric | None = metric_field(None)


@tool(group="vector", effect=Effect.READ, extensions=VECTOR)
async def vector_distance(ctx: ToolContext, args: DistanceIn) -> dict[str, Any]:
    """Distance between two vectors in each pgvector metric (or only `metric`).

    The metrics are l2, cosine, inner_product and l1. inner_product is the dot product itself (the <#> operator orders
    by its negative); cosine is 1 - cosine similarity.
    """
    same_dims(args.a, args.b)
    metrics = [args.metric] if args.metric else [m for m in Metric
                                                   if m is not Metric.L1 or pgvector_version(ctx) >= (0, 7)]
    if Metric.COSINE in metrics and (norm(args.a) == 0 or norm(args.b) == 0):
        raise ToolError(ErrorCode.INVALID_INPUT, "cosine distance is undefined for a zero vector")
    schema = await extension_schema(ctx, "vector")
    vec = sql.Identifier(schema, "vector")
    terms = [sql.SQL("{}(CAST(%(a)s AS {}), CAST(%(b)s AS {})) AS {}").format(
        sql.Identifier(schema, FUNCTIONS[m]), vec, vec, sql.Identifier(m.value)) for m in metrics]
    row = await ctx.fetchone(sql.SQL("SELECT {}").format(sql.SQL(", ").join(terms)),
                             {"a": vector_text(args.a), "b": vector_text(args.b)})
    assert row is not None
    return {"dimensions": len(args.a), **row}


class AggregateIn(VectorColumnIn):
    where: str | None = where_field()
    group_by: str | None = column_field("Average per value of this column", None)
    limit: int = limit_field(100, 10_000)


@tool(group="vector", effect=Effect.READ, extensions=VECTOR)
async def vector_aggregate(ctx: ToolContext, args: AggregateIn) -> dict[str, Any]:
    """The average vector (centroid) of a column, over all rows or per groupBy value.

    With the number of vectors averaged.
    """
    col = await vector_column(ctx, args, args.column)
    if col.type_name == "sparsevec":
        raise ToolError(ErrorCode.INVALID_INPUT, "pgvector has no avg() for sparsevec; cast the column to vector")
    avg = sql.SQL("{}(t.{})").format(col.func("avg"), col.ident)
    where = where_clause(args.where, sql.SQL("t.{} IS NOT NULL").format(col.ident))
    if args.group_by is None:
        row = await ctx.fetchone(sql.SQL("SELECT {} AS average, count(*) AS count FROM {} AS t{}").format(
            avg, col.table.ident, where), {})
        assert row is not None
        return {"column": col.name, "dimensions": col.dims, **row}
    group = sql.Identifier("t", col.table.column(args.group_by).name)
    rows = await ctx.fetch(sql.SQL("SELECT {g} AS {alias}, count(*) AS count, {avg} AS average FROM {table} AS t"
                                   "{where} GROUP BY {g} ORDER BY {g} LIMIT {n}").format(
        g=group, alias=sql.Identifier("group"), avg=avg, table=col.table.ident, where=where,
        n=sql.Literal(args.limit + 1)), {})
    return {"column": col.name, "dimensions": col.dims, "groupBy": args.group_by, "groups": rows[: args.limit],
            "truncated": len(rows) > args.limit}
