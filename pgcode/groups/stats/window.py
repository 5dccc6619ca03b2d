"""stats: window functions over ordered rows: row numbers, ranks, lag/lead, running totals, moving averages, ntile."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from psycopg import sql
from pydantic import Field

from pgcode.core.context import ToolContext
from pgcode.core.registry import tool
from pgcode.groups._tabular import Table, column_field, fetch_limited, select_list, table_info, where_clause
from pgcode.groups.stats._base import WindowIn, window_spec
from pgcode.types import Effect


async def _window(ctx: ToolContext, args: WindowIn, table: Table, *computed: tuple[str, sql.Composable],
                  params: dict[str, Any] | None = None) -> dict[str, Any]:
    """Rows with window expressions (`... OVER w` or `OVER (w ROWS ...)`) as extra columns, group by group."""
    spec, order = window_spec(args, table)
    extra = sql.SQL("").join(sql.SQL(", {} AS {}").format(expr, sql.Identifier(name)) for name, expr in computed)
    query = sql.SQL("SELECT {cols}{extra} FROM {table} AS t{where} WINDOW w AS ({spec}) ORDER BY {order}").format(
        cols=select_list(args.return_columns, table), extra=extra, table=table.ident,
        where=where_clause(args.where), spec=spec, order=order)
    return await fetch_limited(ctx, query, params, args.limit)


@tool(group="stats", effect=Effect.READ)
async def stats_row_number(ctx: ToolContext, args: WindowIn) -> dict[str, Any]:
    """Rows numbered 1, 2, 3 ... in the given order, as column row_number.

    partitionBy: columns whose values split the rows into groups; the numbering restarts in each group.
    """
    table = await table_info(ctx, args)
    return await _window(ctx, args, table, ("row_number", sql.SQL("row_number() OVER w")))


class RankMethod(StrEnum):
    RANK = "rank"  # ties share a rank, then a gap: 1, 1, 3
    DENSE_RANK = "dense_rank"  # ties share a rank, no gap: 1, 1, 2
    PERCENT_RANK = "percent_rank"  # (rank - 1) / (rows - 1), from 0 to 1


_RANK_SQL = {RankMethod.RANK: sql.SQL("rank() OVER w"), RankMethod.DENSE_RANK: sql.SQL("dense_rank() OVER w"),
             RankMethod.PERCENT_RANK: sql.SQL("percent_rank() OVER w")}


class RankIn(WindowIn):
    method: RankMethod = RankMethod.RANK


@tool(group="stats", effect=Effect.READ)
async def stats_rank(ctx: ToolContext, args: RankIn) -> dict[str, Any]:
    """Rows with their rank (rank, dense_rank or percent_rank) in the given order.

    As column rank. method: rank (ties share a rank, then a gap: 1,1,3), dense_rank (no gap: 1,1,2) or percent_rank (0
    to 1). partitionBy: columns whose values split the rows into groups; the ranking restarts in each group.
    """
    table = await table_info(ctx, args)
    out = await _window(ctx, args, table, ("rank", _RANK_SQL[args.method]))
    return {**out, "method": args.method.value}


class LagLeadMode(StrEnum):
    LAG = "lag"  # a previous row
    LEAD = "lead"  # a following row


class LagLeadIn(WindowIn):
    column: str = column_field("Column to read from the other row")
    mode: LagLeadMode = LagLeadMode.LAG
    offset: int = Field(1, ge=1, le=10_000)
    default: str | int | float | bool | None = None


@tool(group="stats", effect=Effect.READ)
async def stats_lag_lead(ctx: ToolContext, args: LagLeadIn) -> dict[str, Any]:
    """Rows with a column's value from `offset` rows before (lag) or after (lead).

    As column lag or lead. mode: lag (a previous row) or lead (a following row); offset: how many rows back or
    ahead; default: the value when there is no such row (default NULL), read as the column's type.
    partitionBy: columns whose values split the rows into groups; the window restarts in each group.
    """
    table = await table_info(ctx, args)
    col = table.column(args.column)
    fn = sql.SQL("lag" if args.mode is LagLeadMode.LAG else "lead")
    params: dict[str, Any] = {}
    default = sql.SQL("")
    if args.default is not None:
        # Sent as text of unknown type, so PostgreSQL reads it as the column's type (anycompatible).
        default = sql.SQL(", %(default)s")
        params["default"] = str(args.default).lower() if isinstance(args.default, bool) else str(args.default)
    expr = sql.SQL("{}({}, {}{}) OVER w").format(fn, col.of(), sql.Literal(args.offset), default)
    out = await _window(ctx, args, table, (args.mode.value, expr), params=params)
    return {**out, "mode": args.mode.value, "offset": args.offset}


class NumericWindowIn(WindowIn):
    column: str = column_field("Numeric column")


@tool(group="stats", effect=Effect.READ)
async def stats_running_total(ctx: ToolContext, args: NumericWindowIn) -> dict[str, Any]:
    """Rows with the running total of a numeric column, as running_total.

    The cumulative sum in the given order. partitionBy: columns whose values split the rows into groups; the sum
    restarts in each group.

    Row by row (ROWS framing): tied rows get successive totals, not a shared one. NULLs add nothing.
    """
    table = await table_info(ctx, args)
    c = table.numeric(args.column).of()
    expr = sql.SQL("sum({}) OVER (w ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)").format(c)
    return await _window(ctx, args, table, ("running_total", expr))


class MovingAvgIn(NumericWindowIn):
    window_size: int = Field(3, ge=1, le=10_000)


@tool(group="stats", effect=Effect.READ)
async def stats_moving_avg(ctx: ToolContext, args: MovingAvgIn) -> dict[str, Any]:
    """Rows with the moving average of a column over windowSize rows.

    As column moving_avg. Each average covers this row and the windowSize-1 before it. partitionBy: columns whose values
    split the rows into groups; the window restarts in each group.

    The first rows of each partition average fewer values; window_count says how many non-NULL values went in.
    """
    table = await table_info(ctx, args)
    c = table.numeric(args.column).of()
    frame = sql.SQL("OVER (w ROWS BETWEEN {} PRECEDING AND CURRENT ROW)").format(sql.Literal(args.window_size - 1))
    out = await _window(ctx, args, table, ("moving_avg", sql.SQL("(avg({}) {})::float8").format(c, frame)),
                        ("window_count", sql.SQL("count({}) {}").format(c, frame)))
    return {**out, "windowSize": args.window_size}


class NtileIn(WindowIn):
    buckets: int = Field(4, ge=1, le=10_000)


@tool(group="stats", effect=Effect.READ)
async def stats_ntile(ctx: ToolContext, args: NtileIn) -> dict[str, Any]:
    """Rows split in order into `buckets` near-equal groups, as column ntile.

    Groups are as equal as possible, 1 the first. buckets 4 gives quartiles, 10 deciles. partitionBy: columns whose
    values split the rows into groups; the split restarts in each group.
    """
    table = await table_info(ctx, args)
    expr = sql.SQL("ntile({}) OVER w").format(sql.Literal(args.buckets))
    out = await _window(ctx, args, table, ("ntile", expr))
    return {**out, "buckets": args.buckets}
