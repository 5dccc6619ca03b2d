"""stats: descriptive statistics, percentiles, correlation, regression, time buckets and distributions."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Self

from psycopg import sql
from pydantic import Field, model_validator

from pgcode.core.context import ToolContext
from pgcode.core.registry import tool
from pgcode.db.queries import load_query
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import TableRef
from pgcode.groups._tabular import (
    Column,
    column_field,
    fetch_limited,
    limit_field,
    table_info,
    where_clause,
    where_field,
)
from pgcode.groups.stats._base import ColumnIn
from pgcode.types import Effect


@tool(group="stats", effect=Effect.READ)
async def stats_descriptive(ctx: ToolContext, args: ColumnIn) -> dict[str, Any]:
    """Count, NULLs, sum, min, max, mean, median, stddev and variance of a numeric column.

    Also the range (max - min). stddev and variance are the sample versions (n-1); stddevPop and variancePop divide by
    n.
    """
    table = await table_info(ctx, args)
    c = table.numeric(args.column).of()
    row = await ctx.fetchone(sql.SQL(
        "SELECT count(*) AS rows, count({c}) AS count, count(*) - count({c}) AS nulls, sum({c}) AS sum, "
        "min({c}) AS min, max({c}) AS max, max({c}) - min({c}) AS range, avg({c})::float8 AS mean, "
        "percentile_cont(0.5) WITHIN GROUP (ORDER BY {c}::float8) AS median, "
        "stddev_samp({c})::float8 AS stddev, var_samp({c})::float8 AS variance, "
        "stddev_pop({c})::float8 AS \"stddevPop\", var_pop({c})::float8 AS \"variancePop\" "
        "FROM {table} AS t{where}").format(c=c, table=table.ident, where=where_clause(args.where)), {})
    assert row is not None
    return {"column": args.column, **row}


class PercentileMethod(StrEnum):
    CONTINUOUS = "continuous"  # percentile_cont: interpolates between values
    DISCRETE = "discrete"  # percentile_disc: the first value whose position reaches the fraction


class PercentilesIn(ColumnIn):
    percentiles: list[float] = Field([0.25, 0.5, 0.75], min_length=1, max_length=100, description=(
        "Fractions 0-1, e.g. [0.9, 0.99]"))
    method: PercentileMethod = PercentileMethod.CONTINUOUS

    @model_validator(mode="after")
    def _fractions(self) -> Self:
        if any(not 0 <= p <= 1 for p in self.percentiles):
            raise ValueError("percentiles are fractions between 0 and 1 (0.5 is the median)")
        return self


@tool(group="stats", effect=Effect.READ)
async def stats_percentiles(ctx: ToolContext, args: PercentilesIn) -> dict[str, Any]:
    """Percentiles of a numeric column (quartiles by default).

    percentiles are fractions between 0 and 1 ([0.25, 0.5, 0.75] the quartiles, [0.9, 0.99]). method:
    continuous (percentile_cont, interpolated) or discrete (percentile_disc, always a value of the column).
    """
    table = await table_info(ctx, args)
    c = table.numeric(args.column).of()
    agg = (sql.SQL("percentile_cont(%(p)s::float8[]) WITHIN GROUP (ORDER BY {}::float8)")
           if args.method is PercentileMethod.CONTINUOUS
           else sql.SQL("percentile_disc(%(p)s::float8[]) WITHIN GROUP (ORDER BY {})")).format(c)
    row = await ctx.fetchone(sql.SQL("SELECT count({c}) AS count, {agg} AS v FROM {table} AS t{where}").format(
        c=c, agg=agg, table=table.ident, where=where_clause(args.where)), {"p": args.percentiles})
    assert row is not None
    values = row["v"] or [None] * len(args.percentiles)
    return {"column": args.column, "method": args.method.value, "count": row["count"],
            "percentiles": [{"percentile": p, "value": v} for p, v in zip(args.percentiles, values, strict=True)]}


class CorrelationIn(TableRef):
    column1: str = column_field("First numeric column")
    column2: str = column_field("Second numeric column")
    where: str | None = where_field()


def _strength(r: float | None) -> str | None:
    if r is None:
        return None
    size = abs(r)
    return "strong" if size >= 0.7 else "moderate" if size >= 0.3 else "weak" if size >= 0.1 else "none"


@tool(group="stats", effect=Effect.READ)
async def stats_correlation(ctx: ToolContext, args: CorrelationIn) -> dict[str, Any]:
    """Pearson correlation of two numeric columns, with r² and covariance.

    Also the pairs counted. Rows where either value is NULL are left out. strength: |r| < 0.1 none, < 0.3 weak, < 0.7
    moderate, else strong.
    """
    table = await table_info(ctx, args)
    x, y = table.numeric(args.column1).of(), table.numeric(args.column2).of()
    row = await ctx.fetchone(sql.SQL(
        "SELECT regr_count({y}, {x}) AS n, corr({y}, {x}) AS r, covar_samp({y}, {x}) AS covariance "
        "FROM {table} AS t{where}").format(x=x, y=y, table=table.ident, where=where_clause(args.where)), {})
    assert row is not None
    r = row["r"]
    return {"column1": args.column1, "column2": args.column2, "n": row["n"], "correlation": r,
            "rSquared": r * r if r is not None else None, "covariance": row["covariance"],
            "strength": _strength(r), "direction": None if not r else "positive" if r > 0 else "negative"}


class RegressionIn(TableRef):
    x_column: str = column_field("x (independent) column")
    y_column: str = column_field("y (dependent) column")
    where: str | None = where_field()


@tool(group="stats", effect=Effect.READ)
async def stats_regression(ctx: ToolContext, args: RegressionIn) -> dict[str, Any]:
    """Least-squares line y = slope·x + intercept of two numeric columns, with r².

    Also the correlation and the number of pairs used.
    """
    table = await table_info(ctx, args)
    x, y = table.numeric(args.x_column).of(), table.numeric(args.y_column).of()
    row = await ctx.fetchone(sql.SQL(
        "SELECT regr_count({y}, {x}) AS n, regr_slope({y}, {x}) AS slope, regr_intercept({y}, {x}) AS intercept, "
        "regr_r2({y}, {x}) AS \"rSquared\", corr({y}, {x}) AS correlation FROM {table} AS t{where}").format(
        x=x, y=y, table=table.ident, where=where_clause(args.where)), {})
    assert row is not None
    slope, intercept = row["slope"], row["intercept"]
    equation = (f"y = {slope:.6g}x {'+' if intercept >= 0 else '-'} {abs(intercept):.6g}"
                if slope is not None and intercept is not None else None)
    return {"xColumn": args.x_column, "yColumn": args.y_column, **row, "equation": equation}


class TimeUnit(StrEnum):
    SECOND = "second"
    MINUTE = "minute"
    HOUR = "hour"
    DAY = "day"
    WEEK = "week"
    MONTH = "month"
    QUARTER = "quarter"
    YEAR = "year"


_UNIT_STEP = {u: "3 months" if u is TimeUnit.QUARTER else f"1 {u.value}" for u in TimeUnit}


class Aggregation(StrEnum):
    COUNT = "count"
    SUM = "sum"
    AVG = "avg"
    MIN = "min"
    MAX = "max"


_AGG_SQL = {a: sql.SQL(a.value) for a in Aggregation}


class TimeSeriesIn(TableRef):
    time_column: str = column_field("Date or timestamp column")
    value_column: str | None = column_field("Numeric column to aggregate", None)
    aggregation: Aggregation = Aggregation.AVG
    unit: TimeUnit | None = None
    interval: str | None = Field(None, max_length=100, description="Fixed bucket width, e.g. '15 minutes'")
    origin: str | None = Field(None, max_length=100)
    fill_gaps: bool = False
    where: str | None = where_field()
    limit: int = limit_field(1000)

    @model_validator(mode="after")
    def _one_bucketing(self) -> Self:
        if self.unit is not None and self.interval is not None:
            raise ValueError("give unit or interval, not both")
        if self.origin is not None and self.interval is None:
            raise ValueError("origin applies to interval buckets")
        return self


async def _bucket(ctx: ToolContext, args: TimeSeriesIn, time: Column) -> tuple[sql.Composable, dict[str, Any], str]:
    """The bucket expression, its parameters (step: the bucket width) and a description of it."""
    # date_trunc and date_bin on a date would go through timestamptz: compare dates as local timestamps.
    ts = sql.SQL("{}::timestamp").format(time.of()) if time.base == "date" else time.of()
    if args.interval is None:
        unit = args.unit or TimeUnit.DAY
        return (sql.SQL("date_trunc(%(unit)s, {})").format(ts), {"step": _UNIT_STEP[unit], "unit": unit.value},
                f"date_trunc('{unit.value}')")
    ctx.caps.require_version(140000, "fixed-interval buckets (date_bin)")
    ok = await ctx.fetchval("SELECT i > interval '0' AND date_part('month', i) = 0 AND date_part('year', i) = 0 "
                            "FROM (SELECT %s::interval AS i) s", (args.interval,))
    if not ok:
        raise ToolError(ErrorCode.INVALID_INPUT, f"interval {args.interval!r} must be positive and shorter "
                        "than a month", hint="use unit month, quarter or year for calendar buckets")
    origin_type = sql.SQL("timestamptz" if time.base == "timestamptz" else "timestamp")
    return (sql.SQL("date_bin(%(step)s::interval, {}, %(origin)s::{})").format(ts, origin_type),
            {"step": args.interval, "origin": args.origin or "2000-01-01"}, f"date_bin('{args.interval}')")


@tool(group="stats", effect=Effect.READ)
async def stats_time_series(ctx: ToolContext, args: TimeSeriesIn) -> dict[str, Any]:
    """Rows (or an aggregate of a column) per time bucket, oldest first.

    unit: calendar buckets (date_trunc), second ... year (default day when interval is not given); interval: fixed-size
    buckets instead, e.g. '15 minutes', '6 hours', '7 days' (date_bin, PostgreSQL 14+), aligned to origin (default
    2000-01-01 00:00). valueColumn: a numeric column aggregated per bucket by aggregation (default: rows only). fillGaps
    also returns the empty buckets between the first and the last. Buckets are calendar units (date_trunc; timestamptz
    in the session time zone) or fixed intervals (date_bin, PostgreSQL 14+). count is the rows in the bucket; value is
    NULL for an empty bucket.
    """
    table = await table_info(ctx, args)
    time = table.temporal(args.time_column)
    bucket, params, bucketing = await _bucket(ctx, args, time)
    value: sql.Composable = sql.SQL("")
    if args.value_column is not None:
        col = table.column(args.value_column) if args.aggregation is Aggregation.COUNT else table.numeric(
            args.value_column)
        value = sql.SQL(", {}({}){} AS value").format(
            _AGG_SQL[args.aggregation], col.of(),
            sql.SQL("::float8") if args.aggregation is Aggregation.AVG else sql.SQL(""))
    data = sql.SQL("SELECT {bucket} AS bucket, count(*) AS count{value} FROM {table} AS t{where} GROUP BY 1").format(
        bucket=bucket, value=value, table=table.ident,
        where=where_clause(args.where, sql.SQL("{} IS NOT NULL").format(time.of())))
    if args.fill_gaps:
        # generate_series in the select list streams, so LIMIT stops it however many buckets the range holds.
        query = load_query("stats_time_series").format(
            data=data, value=sql.SQL(", d.value") if args.value_column else sql.SQL(""),
            ts_type=sql.SQL("timestamptz" if time.base == "timestamptz" else "timestamp"))
        params["cap"] = args.limit + 1
    else:
        query = sql.SQL("SELECT * FROM ({}) d ORDER BY bucket").format(data)
    out = await fetch_limited(ctx, query, params, args.limit)
    return {**out, "bucketing": bucketing, "gapsFilled": args.fill_gaps,
            "aggregation": args.aggregation.value if args.value_column else None}


class DistributionIn(ColumnIn):
    buckets: int = Field(10, ge=1, le=1000)


@tool(group="stats", effect=Effect.READ)
async def stats_distribution(ctx: ToolContext, args: DistributionIn) -> dict[str, Any]:
    """Histogram of a numeric column with mean, stddev, skewness and excess kurtosis.

    buckets equal-width buckets; each holds lower <= value < upper; the last also holds the maximum. skewness and
    kurtosis are the population moment estimates (g1 = m3/m2^1.5, g2 = m4/m2^2 - 3, as scipy.stats with bias=True); NULL
    when all values are equal. Values are compared as double precision.
    """
    table = await table_info(ctx, args)
    c = table.numeric(args.column).of()
    values = sql.SQL("SELECT {c}::float8 AS x FROM {table} AS t{where}").format(
        c=c, table=table.ident, where=where_clause(args.where, sql.SQL("{} IS NOT NULL").format(c)))
    moments = await ctx.fetchone(load_query("stats_distribution").format(values=values), {})
    assert moments is not None
    histogram = await ctx.fetch(load_query("stats_distribution_histogram").format(values=values),
                                {"buckets": args.buckets})
    return {"column": args.column, **moments, "buckets": histogram}
