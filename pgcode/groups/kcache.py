"""kcache group: OS-level CPU and I/O per statement, from pg_stat_kcache joined to pg_stat_statements."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from psycopg import sql
from pydantic import Field

from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import IDENT_MAX
from pgcode.groups._extensions import create_extension, extension_schema, preloaded
from pgcode.groups._kcache import kcache_params, kcache_statements, require_kcache
from pgcode.types import Effect

KCACHE = ("pg_stat_kcache", "pg_stat_statements")


class CreateExtensionIn(ToolInput):
    pass


@tool(group="kcache", effect=Effect.ADMIN, extensions=("pg_stat_statements",))
async def kcache_create_extension(ctx: ToolContext, args: CreateExtensionIn) -> dict[str, Any]:
    """Create the pg_stat_kcache extension (OS-level CPU and I/O per statement).

    Says whether it was already there. pg_stat_kcache only loads from shared_preload_libraries (after
    pg_stat_statements): when the library is not listed there, nothing is created and the error says what to change;
    that takes a server restart. Runs in autocommit so that the extension is usable by the next call.
    """
    ctx.use_autocommit()
    libs = await preloaded(ctx)
    if "pg_stat_kcache" in ctx.caps.available and "pg_stat_kcache" not in libs:
        raise ToolError(ErrorCode.EXTENSION_MISSING,
                        "pg_stat_kcache can only be loaded from shared_preload_libraries, which does not list it "
                        f"(it is {', '.join(libs) or 'empty'}); nothing was created",
                        hint="add pg_stat_kcache after pg_stat_statements to shared_preload_libraries (pg_set_config "
                             "with scope system), restart the server, then call this again",
                        details={"shared_preload_libraries": libs})
    out = await create_extension(ctx, "pg_stat_kcache", cascade=True,
                                 package="the server package (e.g. postgresql-15-pg-stat-kcache)")
    return {**out, "shared_preload_libraries": libs}


class QueryOrder(StrEnum):
    CPU_TIME = "cpu_time"
    USER_TIME = "user_time"
    SYSTEM_TIME = "system_time"
    READS = "reads"
    WRITES = "writes"
    EXEC_TIME = "exec_time"
    CALLS = "calls"
    MAJOR_FAULTS = "major_faults"


_ORDER_COLUMNS = {
    QueryOrder.CPU_TIME: "cpu_time_s", QueryOrder.USER_TIME: "user_time_s", QueryOrder.SYSTEM_TIME: "system_time_s",
    QueryOrder.READS: "reads_bytes", QueryOrder.WRITES: "writes_bytes", QueryOrder.EXEC_TIME: "exec_time_ms",
    QueryOrder.CALLS: "calls", QueryOrder.MAJOR_FAULTS: "major_faults",
}

# Derived columns over the per-statement rows: CPU share of the statement's time, per-call figures.
_DERIVED = sql.SQL(
    "SELECT q.*, "
    "CASE WHEN q.exec_time_ms + q.plan_time_ms > 0 "
    "THEN round(least(1, q.cpu_time_s * 1000 / (q.exec_time_ms + q.plan_time_ms))::numeric, 4) END AS cpu_share, "
    "round((q.cpu_time_s * 1000 / q.calls)::numeric, 4) AS cpu_ms_per_call, "
    "round((q.exec_time_ms / q.calls)::numeric, 4) AS exec_ms_per_call, "
    "q.reads_bytes + q.writes_bytes AS io_bytes "
    "FROM ({base}) q")


class StatsIn(ToolInput):
    all_databases: bool = False
    include_nested: bool = False
    min_calls: int = Field(1, ge=1)
    query_max_length: int = Field(200, ge=0, le=100_000)


class QueryStatsIn(StatsIn):
    order_by: QueryOrder = QueryOrder.CPU_TIME
    limit: int = Field(50, ge=1, le=1000)


async def _statements(ctx: ToolContext, args: StatsIn, order: str, limit: int,
                      where: sql.Composable | None = None) -> list[dict[str, Any]]:
    await require_kcache(ctx)
    base = await kcache_statements(ctx)
    query = sql.SQL("SELECT * FROM ({derived}) s {where} ORDER BY {order} DESC NULLS LAST, s.queryid LIMIT {limit}"
                    ).format(derived=_DERIVED.format(base=base), where=where or sql.SQL(""),
                             order=sql.Identifier(order), limit=sql.Literal(limit))
    rows = await ctx.fetch(query, kcache_params(
        query_max=args.query_max_length, all_databases=args.all_databases, toplevel_only=not args.include_nested,
        min_calls=args.min_calls))
    for r in rows:
        for key in ("user_time_s", "system_time_s", "cpu_time_s"):
            r[key] = round(r[key], 6)
        for key in ("exec_time_ms", "plan_time_ms"):
            r[key] = round(r[key], 3)
    return rows


@tool(group="kcache", effect=Effect.READ, extensions=KCACHE)
async def kcache_query_stats(ctx: ToolContext, args: QueryStatsIn) -> list[dict[str, Any]]:
    """Per-statement OS-level cost: CPU seconds, disk bytes read and written, page faults.

    User and system CPU seconds, bytes read and written, minor and major faults, context switches; also calls,
    exec_time_ms and plan_time_ms (pg_stat_statements), cpu_share (CPU over wall time), and per-call figures.
    reads_bytes/writes_bytes are physical I/O seen by the kernel: page-cache hits do not count. Planning counters are
    included when pg_stat_statements.track_planning is on.

    Arguments: orderBy: the counter to sort by, largest first; limit: most statements to return; allDatabases:
    statements of every database, not only this one; includeNested: also statements run inside functions (not
    only top-level ones); minCalls: only statements called at least this often; queryMaxLength: each query
    text is cut to this many characters.
    """
    return await _statements(ctx, args, _ORDER_COLUMNS[args.order_by], args.limit)


class TopIn(StatsIn):
    limit: int = Field(10, ge=1, le=1000)


@tool(group="kcache", effect=Effect.READ, extensions=KCACHE, aliases=("topQueries",))
async def kcache_top_cpu(ctx: ToolContext, args: TopIn) -> list[dict[str, Any]]:
    """The statements that used the most CPU time, with their share of all CPU used.

    CPU time is user + system seconds. pg.kcache.topQueries() is this tool with its defaults. The other
    arguments are those of pg_kcache_query_stats.
    """
    rows = await _statements(ctx, args, "cpu_time_s", args.limit, sql.SQL("WHERE s.cpu_time_s > 0"))
    total = await _total(ctx, args, "cpu_time_s")
    for r in rows:
        r["pct_of_total_cpu"] = round(100 * r["cpu_time_s"] / total, 2) if total else None
    return rows


class IoKind(StrEnum):
    BOTH = "both"
    READS = "reads"
    WRITES = "writes"


class TopIoIn(TopIn):
    kind: IoKind = IoKind.BOTH


@tool(group="kcache", effect=Effect.READ, extensions=KCACHE)
async def kcache_top_io(ctx: ToolContext, args: TopIoIn) -> list[dict[str, Any]]:
    """The statements that did the most physical disk I/O (bytes at the kernel level).

    kind ranks them by bytes read, written, or both. The other arguments are those of pg_kcache_query_stats.
    shared_blks_read (PostgreSQL reads, including those the OS cache served) is included for comparison.
    """
    column = {IoKind.BOTH: "io_bytes", IoKind.READS: "reads_bytes", IoKind.WRITES: "writes_bytes"}[args.kind]
    rows = await _statements(ctx, args, column, args.limit, sql.SQL("WHERE s.{} > 0").format(sql.Identifier(column)))
    total = await _total(ctx, args, column)
    for r in rows:
        r["pct_of_total_io"] = round(100 * r[column] / total, 2) if total else None
    return rows


async def _total(ctx: ToolContext, args: StatsIn, column: str) -> float:
    base = await kcache_statements(ctx)
    value = await ctx.fetchval(sql.SQL("SELECT coalesce(sum({}), 0) FROM ({}) s").format(
        sql.Identifier(column), _DERIVED.format(base=base)), kcache_params(
        all_databases=args.all_databases, toplevel_only=not args.include_nested, min_calls=args.min_calls))
    return float(value)


class DatabaseStatsIn(ToolInput):
    database: str | None = Field(None, min_length=1, max_length=IDENT_MAX)
    all_databases: bool = Field(False, description="Also list every database's totals")


_PER_DATABASE = sql.SQL(
    "SELECT database, count(*) AS statements, sum(calls) AS calls, round(sum(exec_time_ms)::numeric, 3) AS "
    "exec_time_ms, round(sum(plan_time_ms)::numeric, 3) AS plan_time_ms, round(sum(user_time_s)::numeric, 6) AS "
    "user_time_s, round(sum(system_time_s)::numeric, 6) AS system_time_s, round(sum(cpu_time_s)::numeric, 6) AS "
    "cpu_time_s, sum(reads_bytes) AS reads_bytes, sum(writes_bytes) AS writes_bytes, sum(minor_faults) AS "
    "minor_faults, sum(major_faults) AS major_faults, sum(voluntary_switches) AS voluntary_switches, "
    "sum(involuntary_switches) AS involuntary_switches, CASE WHEN sum(exec_time_ms + plan_time_ms) > 0 THEN "
    "round(least(1, sum(cpu_time_s) * 1000 / sum(exec_time_ms + plan_time_ms))::numeric, 4) END AS cpu_share "
    "FROM ({base}) q GROUP BY database ORDER BY cpu_time_s DESC, database")


@tool(group="kcache", effect=Effect.READ, extensions=KCACHE)
async def kcache_database_stats(ctx: ToolContext, args: DatabaseStatsIn) -> dict[str, Any]:
    """A database's OS-level totals: CPU seconds, disk bytes, faults, cpu_share.

    Over its top-level statements; database defaults to the one pgcode is connected to. allDatabases also lists
    every database's totals under `databases`.
    """
    await require_kcache(ctx)
    query = _PER_DATABASE.format(base=await kcache_statements(ctx))
    rows = await ctx.fetch(query, kcache_params(all_databases=True))
    name = args.database or ctx.caps.database
    if args.database is not None and not await ctx.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = %s)", (name,)):
        raise ToolError(ErrorCode.NOT_FOUND, f"database {name!r} does not exist")
    empty = {"statements": 0, "calls": 0, "exec_time_ms": 0, "plan_time_ms": 0, "user_time_s": 0,
             "system_time_s": 0, "cpu_time_s": 0, "reads_bytes": 0, "writes_bytes": 0, "minor_faults": 0,
             "major_faults": 0, "voluntary_switches": 0, "involuntary_switches": 0, "cpu_share": None}
    out = next((r for r in rows if r["database"] == name), {"database": name, **empty})
    if args.all_databases:
        out = {**out, "databases": rows}
    return out


class ResourceAnalysisIn(StatsIn):
    cpu_bound_share: float = Field(0.7, gt=0, le=1)
    io_bound_share: float = Field(0.3, ge=0, lt=1)
    limit: int = Field(50, ge=1, le=1000)


@tool(group="kcache", effect=Effect.READ, extensions=KCACHE)
async def kcache_resource_analysis(ctx: ToolContext, args: ResourceAnalysisIn) -> dict[str, Any]:
    """Classify the statements with the most time as cpu_bound, io_bound or balanced.

    Counts per class are in summary.

    Rule: cpu_share = (user + system CPU seconds) / (execution + planning time). cpu_bound when cpu_share >=
    cpuBoundShare (0.7); io_bound when cpu_share <= ioBoundShare (0.3) and the statement read or wrote
    (kernel-level bytes, shared blocks read from outside PostgreSQL's cache, or temp files); balanced
    otherwise, including statements that spend their time off-CPU without I/O (waiting on locks, the client,
    or sleeps), which `reason` points out. limit: most statements classified (those with the most time); the
    other arguments are those of pg_kcache_query_stats.
    """
    if args.io_bound_share >= args.cpu_bound_share:
        raise ToolError(ErrorCode.INVALID_INPUT, "ioBoundShare must be below cpuBoundShare")
    rows = await _statements(ctx, args, "exec_time_ms", args.limit)
    summary = {"cpu_bound": 0, "io_bound": 0, "balanced": 0}
    for r in rows:
        r["classification"], r["reason"] = _classify(r, args.cpu_bound_share, args.io_bound_share)
        summary[r["classification"]] += 1
    return {"rule": f"cpu_share >= {args.cpu_bound_share:g}: cpu_bound; cpu_share <= {args.io_bound_share:g} "
                    "with disk, buffer or temp I/O: io_bound; otherwise balanced",
            "summary": summary, "queries": rows}


def _classify(r: dict[str, Any], cpu_bound: float, io_bound: float) -> tuple[str, str]:
    share = r["cpu_share"]
    if share is None:
        return "balanced", "no measurable time"
    share = float(share)
    did_io = r["io_bytes"] > 0 or r["shared_blks_read"] > 0 or r["temp_blks_written"] > 0
    if share >= cpu_bound:
        return "cpu_bound", f"{share:.0%} of its time on CPU"
    if share <= io_bound and did_io:
        return "io_bound", f"{share:.0%} of its time on CPU, the rest with I/O ({r['io_bytes']} bytes from disk, " \
                           f"{r['shared_blks_read']} blocks read into shared buffers)"
    if share <= io_bound:
        return "balanced", f"only {share:.0%} on CPU but no I/O: time went to waits (locks, client, sleep)"
    return "balanced", f"{share:.0%} of its time on CPU"


class ResetIn(ToolInput):
    pass


@tool(group="kcache", effect=Effect.DESTRUCTIVE, extensions=KCACHE)
async def kcache_reset(ctx: ToolContext, args: ResetIn) -> dict[str, Any]:
    """Reset all pg_stat_kcache counters (every database); pg_stat_statements is kept."""
    await require_kcache(ctx)
    schema = await extension_schema(ctx, "pg_stat_kcache")
    await ctx.execute(sql.SQL("SELECT {}()").format(sql.Identifier(schema, "pg_stat_kcache_reset")))
    return {"reset": "pg_stat_kcache", "scope": "all databases", "pg_stat_statements_reset": False,
            "note": "pg_reset_stats with target statements resets pg_stat_statements"}
