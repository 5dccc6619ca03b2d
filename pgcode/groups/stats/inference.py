"""stats: one-sample t and z tests, and random samples of rows."""

from __future__ import annotations

import random
from enum import StrEnum
from typing import Any

from psycopg import sql
from pydantic import Field

from pgcode.core.context import ToolContext
from pgcode.core.registry import tool
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import TableRef
from pgcode.groups._tabular import (
    ColumnName,
    fetch_limited,
    return_columns_field,
    select_list,
    table_info,
    where_clause,
    where_field,
)
from pgcode.groups.stats import _tdist
from pgcode.groups.stats._base import ColumnIn
from pgcode.types import Effect


class TestKind(StrEnum):
    T = "t"
    Z = "z"


class Alternative(StrEnum):
    TWO_SIDED = "two-sided"
    GREATER = "greater"
    LESS = "less"


class HypothesisIn(ColumnIn):
    hypothesized_mean: float = Field(allow_inf_nan=False, description="Mean under the null hypothesis")
    test: TestKind = TestKind.T
    population_stddev: float | None = Field(None, gt=0, allow_inf_nan=False)
    alternative: Alternative = Alternative.TWO_SIDED
    alpha: float = Field(0.05, gt=0, lt=1)


@tool(group="stats", effect=Effect.READ)
async def stats_hypothesis(ctx: ToolContext, args: HypothesisIn) -> dict[str, Any]:
    """One-sample t or z test of a column's mean: statistic, p-value, verdict at alpha.

    The statistic (mean - μ0) / (s / √n) is computed in the database; the p-value from Student's t with n-1
    degrees of freedom (regularized incomplete beta) or the standard normal distribution (erfc).

    Arguments: hypothesizedMean: the mean under the null hypothesis (μ0); test: t (Student's t, unknown
    variance) or z (normal); populationStddev (z test only): the known population standard deviation (default:
    the sample's, fair only for large samples); alternative: two-sided (mean differs), greater (mean is
    larger) or less (mean is smaller); alpha: the significance level.
    """
    if args.population_stddev is not None and args.test is TestKind.T:
        raise ToolError(ErrorCode.INVALID_INPUT, "populationStddev is for the z test; a t test estimates it")
    table = await table_info(ctx, args)
    c = table.numeric(args.column).of()
    row = await ctx.fetchone(sql.SQL(
        "SELECT n, mean, sd, se, (mean - %(mu)s) / nullif(se, 0) AS statistic FROM ("
        "SELECT count({c}) AS n, avg({c})::float8 AS mean, stddev_samp({c})::float8 AS sd, "
        "coalesce(%(sigma)s::float8, stddev_samp({c})::float8) / sqrt(nullif(count({c}), 0)) AS se "
        "FROM {table} AS t{where}) s").format(c=c, table=table.ident, where=where_clause(args.where)),
        {"mu": args.hypothesized_mean, "sigma": args.population_stddev})
    assert row is not None
    n, statistic = row["n"], row["statistic"]
    needed = 1 if args.population_stddev is not None else 2
    if n < needed:
        raise ToolError(ErrorCode.INVALID_INPUT, f"the test needs at least {needed} non-NULL values of "
                        f'"{args.column}"; found {n}', details={"n": n})
    if statistic is None:
        raise ToolError(ErrorCode.INVALID_INPUT, f'every value of "{args.column}" is the same: the standard '
                        "deviation is 0 and the test statistic is undefined", details={"n": n, "mean": row["mean"]})
    if args.test is TestKind.T:
        df: int | None = n - 1
        sf = _tdist.t_sf(statistic, n - 1)
    else:
        df = None
        sf = _tdist.z_sf(statistic)
    p = _tdist.p_value(statistic, sf, args.alternative.value)
    significant = p < args.alpha
    verdict = "reject" if significant else "do not reject"
    return {"test": args.test.value, "column": args.column, "n": n, "mean": row["mean"], "stddev": row["sd"],
            "hypothesizedMean": args.hypothesized_mean, "standardError": row["se"], "statistic": statistic,
            "degreesOfFreedom": df, "alternative": args.alternative.value, "pValue": p, "alpha": args.alpha,
            "significant": significant,
            "conclusion": f"{verdict} the null hypothesis (mean = {args.hypothesized_mean:g}) at alpha {args.alpha:g}"}


class SampleMethod(StrEnum):
    RANDOM = "random"  # ORDER BY random(): exact size, reads every row
    BERNOULLI = "bernoulli"  # TABLESAMPLE BERNOULLI: each row with probability percent/100
    SYSTEM = "system"  # TABLESAMPLE SYSTEM: whole pages; fastest, clustered


_TABLESAMPLE = {SampleMethod.BERNOULLI: sql.SQL("BERNOULLI"), SampleMethod.SYSTEM: sql.SQL("SYSTEM")}
_SEED_SCALE = 2**31  # setseed takes a value in [-1, 1]
_ENTROPY = random.SystemRandom()


class SamplingIn(TableRef):
    method: SampleMethod = SampleMethod.RANDOM
    size: int = Field(100, ge=1, le=10_000)
    percent: float = Field(10.0, gt=0, le=100)
    seed: int | None = Field(None, ge=-_SEED_SCALE, le=_SEED_SCALE - 1)
    return_columns: list[ColumnName] | None = return_columns_field()
    where: str | None = where_field()


@tool(group="stats", effect=Effect.READ)
async def stats_sampling(ctx: ToolContext, args: SamplingIn) -> dict[str, Any]:
    """A random sample of rows (at most size), repeatable with a seed.

    With bernoulli/system, when the sample holds more than `size` rows, `size` of them are chosen at random
    and truncated says so. The where condition applies after sampling.

    method: random (ORDER BY random(): exactly `size` rows, reads the whole table), bernoulli (TABLESAMPLE
    BERNOULLI: each row with probability percent/100) or system (TABLESAMPLE SYSTEM: whole pages, fastest,
    clustered). percent: the share of the table bernoulli and system sample. seed: the same seed gives the same
    sample on unchanged data; without it the sample differs every time. The result states the method.
    """
    table = await table_info(ctx, args)
    cols = select_list(args.return_columns, table)
    params: dict[str, Any] = {"percent": args.percent, "seed": args.seed}
    if args.seed is not None:
        await ctx.execute("SELECT setseed(%s)", (args.seed / _SEED_SCALE,))
    sample: sql.Composable = sql.SQL("")
    if args.method is SampleMethod.RANDOM:
        method = f"ORDER BY random() LIMIT {args.size}"
    else:
        if table.kind not in ("r", "p", "m"):
            raise ToolError(ErrorCode.INVALID_INPUT, f"{table.label} is a view: TABLESAMPLE needs a table or "
                            "materialized view", hint="use method random")
        repeatable = sql.SQL(" REPEATABLE (%(seed)s)") if args.seed is not None else sql.SQL("")
        sample = sql.SQL(" TABLESAMPLE {} (%(percent)s){}").format(_TABLESAMPLE[args.method], repeatable)
        method = f"TABLESAMPLE {args.method.value.upper()} ({args.percent:g})" + (
            f" REPEATABLE ({args.seed})" if args.seed is not None else "")
    query = sql.SQL("SELECT {} FROM {} AS t{}{} ORDER BY random()").format(
        cols, table.ident, sample, where_clause(args.where))
    out = await fetch_limited(ctx, query, params, args.size)
    if args.seed is not None:
        # setseed outlives the transaction and DISCARD ALL: leave the pooled session's random() unpredictable again.
        await ctx.execute("SELECT setseed(%s)", (_ENTROPY.uniform(-1.0, 1.0),))
    return {**out, "method": method, "seed": args.seed}
