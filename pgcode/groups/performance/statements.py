"""performance: query statistics from pg_stat_statements: top statements, planning time, anomalies."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from psycopg import sql
from pydantic import Field

from pgcode.core.context import Row, ToolContext, optional
from pgcode.core.registry import ToolInput, tool
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups.performance._shared import (
    QUERY_TEXT_MAX,
    cut,
    pgss_columns,
    pgss_fetch,
    pgss_order,
    pgss_relation,
    pgss_version,
    track_planning,
)
from pgcode.health.probes import hit_ratio, ratio
from pgcode.types import Effect

_QUERY_ID_IN_ACTIVITY = 140000  # pg_stat_activity.query_id arrived in PostgreSQL 14

_SELECT = """
SELECT s.queryid::text AS queryid, left(s.query, %(qlen)s) AS query, length(s.query) > %(qlen)s AS query_truncated,
       r.rolname AS username, d.datname AS database, s.calls, s.rows,
       round(s.rows::numeric / nullif(s.calls, 0), 2) AS rows_per_call, {cols},
       s.shared_blks_hit, s.shared_blks_read, s.shared_blks_dirtied, s.shared_blks_written,
       s.temp_blks_read, s.temp_blks_written,
       round((100 * {total} / nullif(sum({total}) OVER (), 0))::numeric, 2) AS percent_of_total_time
FROM {pgss} s
LEFT JOIN pg_roles r ON r.oid = s.userid
LEFT JOIN pg_database d ON d.oid = s.dbid
WHERE (%(all_databases)s OR s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database()))
  AND s.calls >= %(min_calls)s
  AND (%(search)s::text IS NULL OR strpos(lower(s.query), lower(%(search)s)) > 0)
  {extra}
ORDER BY {order} DESC NULLS LAST, s.queryid
LIMIT %(limit)s
"""


async def select_statements(ctx: ToolContext, *, order: str, limit: int, qlen: int = 1000, min_calls: int = 1,
                            search: str | None = None, all_databases: bool = False,
                            extra: sql.Composable | None = None,
                            extra_params: dict[str, Any] | None = None) -> tuple[list[Row], bool]:
    """Rows of pg_stat_statements under stable column names (see pgss_columns), and whether more matched."""
    query = sql.SQL(_SELECT).format(cols=pgss_columns(ctx), total=pgss_order(ctx, "total_time"),
                                    pgss=await pgss_relation(ctx), order=pgss_order(ctx, order),
                                    extra=extra or sql.SQL(""))
    rows = await pgss_fetch(ctx, query, {"qlen": qlen, "all_databases": all_databases, "min_calls": min_calls,
                                         "search": search, "limit": limit + 1, **(extra_params or {})})
    for row in rows:
        row["cache_hit_ratio"] = hit_ratio(row["shared_blks_hit"], row["shared_blks_read"])
    return cut(rows, limit)


async def statements_info(ctx: ToolContext) -> dict[str, Any]:
    """Extension version, track_planning, and (1.9+) when its counters were reset and entries evicted."""
    info: dict[str, Any] = {"extension_version": ctx.caps.installed.get("pg_stat_statements"),
                            "track_planning": track_planning(await ctx.fetchval(
                                "SELECT current_setting('pg_stat_statements.track_planning', true)"))}
    if pgss_version(ctx) >= (1, 9):  # pg_stat_statements_info arrived with 1.9 (PostgreSQL 14)
        rows, _ = await optional(ctx, "pgcode_pgss_info", sql.SQL("SELECT stats_reset, dealloc FROM {}").format(
            await pgss_relation(ctx, "pg_stat_statements_info")))
        if rows:
            info.update(stats_reset=rows[0]["stats_reset"], deallocated=rows[0]["dealloc"])
    return info


class StatementOrder(StrEnum):
    TOTAL_TIME = "total_time"
    MEAN_TIME = "mean_time"
    MAX_TIME = "max_time"
    CALLS = "calls"
    ROWS = "rows"
    IO = "io"


class StatStatementsIn(ToolInput):
    order_by: StatementOrder = StatementOrder.TOTAL_TIME
    limit: int = Field(20, ge=1, le=1000)
    min_calls: int = Field(1, ge=1)
    search: str | None = Field(None, min_length=1, max_length=1000,
                               description="Only statements containing this (any case)")
    all_databases: bool = False
    query_max_length: int = Field(1000, ge=20, le=QUERY_TEXT_MAX)
    include_self: bool = False


def without_pgcode(ctx: ToolContext) -> tuple[sql.Composable, dict[str, Any]]:
    """A condition on select_statements leaving out what pgcode's own calls ran: they run as the scope roles."""
    roles = [ctx.rt.roles.read_role, ctx.rt.roles.write_role] if ctx.rt.roles.enabled else []
    return sql.SQL("AND coalesce(r.rolname, '') <> ALL(%(own_roles)s::text[])"), {"own_roles": roles}


@tool(group="performance", effect=Effect.READ, extensions=("pg_stat_statements",))
async def stat_statements(ctx: ToolContext, args: StatStatementsIn) -> dict[str, Any]:
    """Top statements from pg_stat_statements: calls, times (ms), rows, cache hits.

    Also each statement's share of the total time. orderBy is total_time, mean_time, max_time, calls, rows or io
    (blocks read from disk and temp), highest first; minCalls keeps statements called at least that often; search
    keeps those whose text contains it (case-insensitive); allDatabases adds every database's statements;
    includeSelf adds those pgcode's own read and write calls ran (as pgcode_read / pgcode_write). Query texts are
    cut to queryMaxLength.

    Column names are the same on every version (1.8 renamed total_time to total_exec_time, 1.11 renamed the
    block timing columns). Times are in milliseconds since the statistics were last reset. pgcode's own
    statements (its read and write calls, run as its scope roles) are left out unless includeSelf.
    """
    extra, extra_params = (sql.SQL(""), {}) if args.include_self else without_pgcode(ctx)
    rows, truncated = await select_statements(
        ctx, order=args.order_by.value, limit=args.limit, qlen=args.query_max_length, min_calls=args.min_calls,
        search=args.search, all_databases=args.all_databases, extra=extra, extra_params=extra_params)
    return {"statements": rows, "count": len(rows), "truncated": truncated, "order_by": args.order_by.value,
            **await statements_info(ctx)}


class PlanOrder(StrEnum):
    PLAN_TIME = "plan_time"
    MEAN_PLAN_TIME = "mean_plan_time"
    PLAN_SHARE = "plan_share"


class QueryPlanStatsIn(ToolInput):
    order_by: PlanOrder = PlanOrder.PLAN_TIME
    limit: int = Field(20, ge=1, le=1000)
    min_calls: int = Field(1, ge=1)
    query_max_length: int = Field(1000, ge=20, le=QUERY_TEXT_MAX)


@tool(group="performance", effect=Effect.READ, extensions=("pg_stat_statements",))
async def query_plan_stats(ctx: ToolContext, args: QueryPlanStatsIn) -> dict[str, Any]:
    """Planning time against execution time per statement (pg_stat_statements).

    Also the share spent planning. orderBy is plan_time (total), mean_plan_time or plan_share (planning / (planning
    + execution)); minCalls keeps statements called at least that often. Query texts are cut to queryMaxLength.

    Planning is only measured with pg_stat_statements.track_planning = on; when it is off the plan times
    are zero and the result says so (track_planning: false, with the setting to change).
    """
    if pgss_version(ctx) < (1, 8):  # planning counters arrived with 1.8 (PostgreSQL 13)
        raise ToolError(ErrorCode.UNSUPPORTED_VERSION, "planning statistics need pg_stat_statements 1.8 "
                                                       f"(PostgreSQL 13) or later; this server has "
                                                       f"{ctx.caps.installed.get('pg_stat_statements')}")
    rows, truncated = await select_statements(ctx, order=args.order_by.value, limit=args.limit,
                                              qlen=args.query_max_length, min_calls=args.min_calls)
    for row in rows:
        row["plan_share"] = ratio(row["total_plan_time_ms"],
                                  (row["total_plan_time_ms"] or 0) + (row["total_exec_time_ms"] or 0))
    info = await statements_info(ctx)
    totals = await ctx.fetchone(sql.SQL(
        "SELECT sum(total_plan_time) AS plan_time_ms, sum(total_exec_time) AS exec_time_ms FROM {} "
        "WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())"
    ).format(await pgss_relation(ctx)))
    assert totals is not None
    totals["plan_share"] = ratio(totals["plan_time_ms"], (totals["plan_time_ms"] or 0) + (totals["exec_time_ms"] or 0))
    out = {**info, "statements": rows, "count": len(rows), "truncated": truncated, "totals": totals}
    if not info["track_planning"]:
        out["note"] = ("pg_stat_statements.track_planning is off, so planning times are zero; set it to on "
                       "(ALTER SYSTEM SET pg_stat_statements.track_planning = on; SELECT pg_reload_conf()) "
                       "to measure planning")
    return out


class DetectQueryAnomaliesIn(ToolInput):
    z_threshold: float = Field(3.0, ge=0.5, le=100)
    min_calls: int = Field(10, ge=2)
    min_mean_ms: float = Field(1.0, ge=0)
    limit: int = Field(20, ge=1, le=1000)
    query_max_length: int = Field(500, ge=20, le=QUERY_TEXT_MAX)


@tool(group="performance", effect=Effect.READ, extensions=("pg_stat_statements",))
async def detect_query_anomalies(ctx: ToolContext, args: DetectQueryAnomaliesIn) -> dict[str, Any]:
    """Statements whose slowest or current run lies far above their mean (z-score).

    Highest z-score first. zThreshold is how many standard deviations above the mean flag a run; minCalls keeps
    statements with that much history; statements whose mean time is below minMeanMs (ms) are ignored, since
    sub-millisecond statements jitter by nature. Query texts are cut to queryMaxLength.

    For each statement z = (max time - mean time) / standard deviation, from pg_stat_statements; running
    queries (PostgreSQL 14+, matched by query_id) are scored by their elapsed time the same way.
    """
    if pgss_version(ctx) < (1, 8):
        raise ToolError(ErrorCode.UNSUPPORTED_VERSION, "this tool needs pg_stat_statements 1.8 (PostgreSQL 13)+")
    extra = sql.SQL("AND s.stddev_exec_time > 0 AND s.mean_exec_time >= %(min_mean)s AND {} >= %(z)s").format(
        pgss_order(ctx, "z"))
    rows, truncated = await select_statements(ctx, order="z", limit=args.limit, qlen=args.query_max_length,
                                              min_calls=args.min_calls, extra=extra,
                                              extra_params={"min_mean": args.min_mean_ms, "z": args.z_threshold})
    for row in rows:
        z = (row["max_exec_time_ms"] - row["mean_exec_time_ms"]) / row["stddev_exec_time_ms"]
        row["z_score"] = round(z, 2)
        row["coefficient_of_variation"] = ratio(row["stddev_exec_time_ms"], row["mean_exec_time_ms"], 3)
        row["severity"] = "critical" if z >= 2 * args.z_threshold else "warning"
    return {"method": "z = (max_exec_time - mean_exec_time) / stddev_exec_time per statement; running queries: "
                      "z = (elapsed - mean) / stddev",
            "z_threshold": args.z_threshold, "anomalies": rows, "count": len(rows), "truncated": truncated,
            "running": await _running_anomalies(ctx, args)}


async def _running_anomalies(ctx: ToolContext, args: DetectQueryAnomaliesIn) -> list[Row] | None:
    if ctx.server_version < _QUERY_ID_IN_ACTIVITY:
        return None
    query = sql.SQL(
        "SELECT a.pid, a.query_id::text AS queryid, left(a.query, %(qlen)s) AS query, a.usename, "
        "round((extract(epoch FROM clock_timestamp() - a.query_start) * 1000)::numeric, 1) AS elapsed_ms, "
        "s.mean_exec_time AS mean_exec_time_ms, s.stddev_exec_time AS stddev_exec_time_ms, s.calls, "
        "round(((extract(epoch FROM clock_timestamp() - a.query_start) * 1000 - s.mean_exec_time) "
        "/ s.stddev_exec_time)::numeric, 2) AS z_score "
        "FROM pg_stat_activity a JOIN {pgss} s ON s.queryid = a.query_id AND s.dbid = a.datid "
        "AND s.userid = a.usesysid "
        "WHERE a.state = 'active' AND a.pid <> pg_backend_pid() AND s.calls >= %(min_calls)s "
        "AND s.stddev_exec_time > 0 AND (extract(epoch FROM clock_timestamp() - a.query_start) * 1000 "
        "- s.mean_exec_time) / s.stddev_exec_time >= %(z)s "
        "ORDER BY z_score DESC LIMIT %(limit)s").format(pgss=await pgss_relation(ctx))
    return await pgss_fetch(ctx, query, {"qlen": args.query_max_length, "min_calls": args.min_calls,
                                         "z": args.z_threshold, "limit": args.limit})
