"""stats: outliers, top N rows, distinct values, value frequencies and a summary of several numeric columns."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from psycopg import sql
from pydantic import Field

from pgcode.core.context import ToolContext
from pgcode.core.registry import tool
from pgcode.groups._common import TableRef
from pgcode.groups._tabular import (
    DIRECTION_SQL,
    NUMERIC_TYPES,
    Column,
    ColumnName,
    Direction,
    column_field,
    fetch_limited,
    limit_field,
    return_columns_field,
    select_list,
    table_info,
    where_clause,
    where_field,
)
from pgcode.groups.stats._base import ColumnIn
from pgcode.types import Effect


class OutlierMethod(StrEnum):
    IQR = "iqr"  # outside [Q1 - k·IQR, Q3 + k·IQR]
    ZSCORE = "zscore"  # |value - mean| / stddev above k


class OutliersIn(ColumnIn):
    method: OutlierMethod = OutlierMethod.IQR
    threshold: float | None = Field(None, gt=0, le=100)
    return_columns: list[ColumnName] | None = return_columns_field()
    limit: int = limit_field(100)


@tool(group="stats", effect=Effect.READ)
async def stats_outliers(ctx: ToolContext, args: OutliersIn) -> dict[str, Any]:
    """Rows whose numeric value is an outlier (IQR or z-score), most extreme first.

    The result states the bounds used. method: iqr (outside Q1 - k·IQR .. Q3 + k·IQR; robust) or zscore (more
    than k sample standard deviations from the mean); threshold is k (default 1.5 for iqr, 3 for zscore).
    """
    table = await table_info(ctx, args)
    c = table.numeric(args.column).of()
    iqr = args.method is OutlierMethod.IQR
    k = args.threshold if args.threshold is not None else 1.5 if iqr else 3.0
    center = (sql.SQL("percentile_cont(0.25) WITHIN GROUP (ORDER BY {c}::float8) AS a, "
                      "percentile_cont(0.75) WITHIN GROUP (ORDER BY {c}::float8) AS b") if iqr else
              sql.SQL("avg({c})::float8 AS a, stddev_samp({c})::float8 AS b")).format(c=c)
    stats = await ctx.fetchone(sql.SQL("SELECT count({c}) AS n, {center} FROM {table} AS t{where}").format(
        c=c, center=center, table=table.ident, where=where_clause(args.where)), {})
    assert stats is not None
    n, a, b = stats["n"], stats["a"], stats["b"]
    out: dict[str, Any] = {"column": args.column, "method": args.method.value, "threshold": k, "n": n}
    if iqr:
        out.update(q1=a, q3=b, iqr=None if a is None else b - a)
        lower, upper = (None, None) if a is None else (a - k * (b - a), b + k * (b - a))
    else:
        out.update(mean=a, stddev=b)
        lower, upper = (None, None) if a is None or not b else (a - k * b, a + k * b)
    out.update(lowerBound=lower, upperBound=upper)
    if lower is None:
        return {**out, "rows": [], "rowCount": 0, "truncated": False, "outliers": 0, "low": 0, "high": 0}
    score = (sql.SQL("greatest(%(lo)s - {c}::float8, {c}::float8 - %(hi)s)") if iqr
             else sql.SQL("abs({c}::float8 - %(mean)s) / %(sd)s")).format(c=c)
    query = sql.SQL(
        "SELECT {cols}, {c} AS value, CASE WHEN {c}::float8 < %(lo)s THEN 'low' ELSE 'high' END AS side, "
        "{score} AS {label}, count(*) OVER () AS _pgcode_total, "
        "count(*) FILTER (WHERE {c}::float8 < %(lo)s) OVER () AS _pgcode_low "
        "FROM {table} AS t{where} ORDER BY {score} DESC").format(
        cols=select_list(args.return_columns, table), c=c, score=score,
        label=sql.Identifier("beyond" if iqr else "zscore"), table=table.ident,
        where=where_clause(args.where, sql.SQL("({c}::float8 < %(lo)s OR {c}::float8 > %(hi)s)").format(c=c)))
    found = await fetch_limited(ctx, query, {"lo": lower, "hi": upper, "mean": a, "sd": b}, args.limit)
    total = low = 0
    for row in found["rows"]:
        total, low = row.pop("_pgcode_total"), row.pop("_pgcode_low")
    return {**out, **found, "outliers": total, "low": low, "high": total - low}


class TopNIn(TableRef):
    column: str = column_field("Column that ranks the rows")
    direction: Direction = Direction.DESC
    n: int = Field(10, ge=1, le=10_000)
    partition_by: list[ColumnName] | None = Field(None, max_length=16)
    with_ties: bool = False
    return_columns: list[ColumnName] | None = return_columns_field()
    where: str | None = where_field()
    limit: int = limit_field(1000)


@tool(group="stats", effect=Effect.READ)
async def stats_top_n(ctx: ToolContext, args: TopNIn) -> dict[str, Any]:
    """The top n rows by a column, optionally per group, with their rank.

    direction desc (default): largest first; asc: smallest first. partitionBy: columns whose values form
    groups, and then n rows per group. withTies also returns rows tied with the last one (may exceed n).

    Rows where the column is NULL are left out.
    """
    table = await table_info(ctx, args)
    col = table.column(args.column)
    parts = [c.of() for c in table.all(args.partition_by or [])]
    order = sql.SQL("ORDER BY {}{}").format(col.of(), DIRECTION_SQL[args.direction])
    rank = sql.SQL("rank" if args.with_ties else "row_number")
    window = (sql.SQL("PARTITION BY {} ").format(sql.SQL(", ").join(parts)) if parts else sql.SQL("")) + order
    # The partition values ride along under private names, so rows come out group by group.
    keys = [sql.Identifier(f"_pgcode_p{i}") for i in range(len(parts))]
    inner = sql.SQL("SELECT {cols}{keys}, {rank}() OVER ({window}) AS _pgcode_rank FROM {table} AS t{where}").format(
        cols=select_list(args.return_columns, table), rank=rank, window=window, table=table.ident,
        keys=sql.SQL("").join(sql.SQL(", {} AS {}").format(p, k) for p, k in zip(parts, keys, strict=True)),
        where=where_clause(args.where, sql.SQL("{} IS NOT NULL").format(col.of())))
    query = sql.SQL("SELECT * FROM ({}) s WHERE _pgcode_rank <= %(n)s ORDER BY {}").format(
        inner, sql.SQL(", ").join([*keys, sql.SQL("_pgcode_rank")]))
    out = await fetch_limited(ctx, query, {"n": args.n}, args.limit)
    for row in out["rows"]:
        row["rank"] = row.pop("_pgcode_rank")
        for i in range(len(keys)):
            del row[f"_pgcode_p{i}"]
    return {**out, "column": args.column, "direction": args.direction.value, "n": args.n}


def _groupable(col: Column) -> sql.Composable:
    """The column as values GROUP BY can compare: json has no equality operator, so it is grouped as jsonb."""
    return sql.SQL("{}::jsonb").format(col.of()) if col.base == "json" else col.of()


class DistinctSort(StrEnum):
    VALUE = "value"
    COUNT = "count"


class DistinctIn(ColumnIn):
    sort: DistinctSort = DistinctSort.VALUE
    direction: Direction = Direction.ASC
    limit: int = limit_field(100)


@tool(group="stats", effect=Effect.READ)
async def stats_distinct(ctx: ToolContext, args: DistinctIn) -> dict[str, Any]:
    """Distinct values of a column with how many rows hold each (NULL included).

    Also the number of distinct values. sort: by the value or by how often it occurs.
    """
    table = await table_info(ctx, args)
    c = _groupable(table.column(args.column))
    direction = DIRECTION_SQL[args.direction]
    order = (sql.SQL("value{} NULLS LAST").format(direction) if args.sort is DistinctSort.VALUE
             else sql.SQL("count{}, value NULLS LAST").format(direction))
    query = sql.SQL("SELECT {c} AS value, count(*) AS count, count(*) OVER () AS _pgcode_groups "
                    "FROM {table} AS t{where} GROUP BY {c} ORDER BY {order}").format(
        c=c, table=table.ident, where=where_clause(args.where), order=order)
    out = await fetch_limited(ctx, query, {}, args.limit)
    groups = 0
    for row in out["rows"]:
        groups = row.pop("_pgcode_groups")
    has_null = await ctx.fetchval(sql.SQL("SELECT EXISTS (SELECT 1 FROM {table} AS t{where})").format(
        table=table.ident, where=where_clause(args.where, sql.SQL("{} IS NULL").format(c))), {})
    return {"column": args.column, "values": out["rows"], "rowCount": out["rowCount"], "truncated": out["truncated"],
            "distinctCount": groups - (1 if has_null else 0), "hasNull": has_null}


class FrequencyIn(ColumnIn):
    limit: int = limit_field(50)


@tool(group="stats", effect=Effect.READ)
async def stats_frequency(ctx: ToolContext, args: FrequencyIn) -> dict[str, Any]:
    """How often each value of a column occurs, most frequent first, with percents.

    Each value with its count, percent and cumulative percent.
    """
    table = await table_info(ctx, args)
    c = _groupable(table.column(args.column))
    query = sql.SQL(
        "SELECT {c} AS value, count(*) AS count, "
        "round(100.0 * count(*) / sum(count(*)) OVER (), 4) AS percent, "
        "round(100.0 * sum(count(*)) OVER (ORDER BY count(*) DESC, {c} NULLS LAST ROWS UNBOUNDED PRECEDING) "
        "/ sum(count(*)) OVER (), 4) AS \"cumulativePercent\", "
        "count(*) OVER () AS _pgcode_groups, sum(count(*)) OVER () AS _pgcode_rows "
        "FROM {table} AS t{where} GROUP BY {c} ORDER BY count(*) DESC, {c} NULLS LAST").format(
        c=c, table=table.ident, where=where_clause(args.where))
    out = await fetch_limited(ctx, query, {}, args.limit)
    groups = rows = 0
    for row in out["rows"]:
        groups, rows = row.pop("_pgcode_groups"), row.pop("_pgcode_rows")
    return {"column": args.column, **out, "distinctValues": groups, "totalRows": rows}


class SummaryIn(TableRef):
    columns: list[ColumnName] | None = Field(None, min_length=1, max_length=100)
    where: str | None = where_field()


_SUMMARY = (("count", "count({})"), ("nulls", "count(*) - count({})"), ("mean", "avg({})::float8"),
            ("min", "min({})"), ("max", "max({})"), ("stddev", "stddev_samp({})::float8"), ("sum", "sum({})"))


@tool(group="stats", effect=Effect.READ)
async def stats_summary(ctx: ToolContext, args: SummaryIn) -> dict[str, Any]:
    """Count, NULLs, mean, min, max, stddev, sum of several numeric columns.

    In one pass; stddev is the sample one. columns: the numeric columns to summarize (default: every numeric column).
    """
    table = await table_info(ctx, args)
    cols = ([table.numeric(n) for n in args.columns] if args.columns
            else [c for c in table.columns.values() if c.base in NUMERIC_TYPES])
    if not cols:
        return {"table": table.name, "schema": table.schema, "rows": None, "columns": []}
    aggs: list[sql.Composable] = [sql.SQL("count(*) AS rows")]
    for i, col in enumerate(cols):
        for key, template in _SUMMARY:
            aggs.append(sql.SQL("{} AS {}").format(sql.SQL(template).format(col.of()), sql.Identifier(f"{i}_{key}")))
    row = await ctx.fetchone(sql.SQL("SELECT {} FROM {} AS t{}").format(
        sql.SQL(", ").join(aggs), table.ident, where_clause(args.where)), {})
    assert row is not None
    summary = [{"column": col.name, "type": col.type, **{key: row[f"{i}_{key}"] for key, _ in _SUMMARY}}
               for i, col in enumerate(cols)]
    return {"table": table.name, "schema": table.schema, "rows": row["rows"], "columns": summary}
