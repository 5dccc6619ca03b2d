"""performance: the database-wide baseline (databaseStats) and the consolidated performance diagnosis."""

from __future__ import annotations

import datetime as dt
from collections.abc import Awaitable, Callable
from typing import Any

import psycopg
from pydantic import Field

from pgcode.core.context import Row, ToolContext, savepoint
from pgcode.core.registry import ToolInput, tool
from pgcode.errors import ToolError
from pgcode.groups.performance.activity import blocking_pairs
from pgcode.groups.performance.statements import select_statements
from pgcode.groups.performance.stats import database_wraparound
from pgcode.health.probes import checkpoint_stats, connection_counts, hit_ratio, ratio
from pgcode.types import Effect

_SESSIONS = 140000  # pg_stat_database session counters and pg_stat_wal arrived in PostgreSQL 14
_STAT_IO = 160000  # pg_stat_io arrived in PostgreSQL 16
_IO_BYTES = 180000  # PostgreSQL 18 replaced pg_stat_io.op_bytes with read_bytes/write_bytes/extend_bytes

_DATABASE = """
SELECT d.datname AS database, pg_database_size(d.datname) AS database_size_bytes,
       d.numbackends, d.xact_commit, d.xact_rollback, d.blks_read, d.blks_hit, d.tup_returned, d.tup_fetched,
       d.tup_inserted, d.tup_updated, d.tup_deleted, d.conflicts, d.temp_files, d.temp_bytes, d.deadlocks,
       d.blk_read_time AS blk_read_time_ms, d.blk_write_time AS blk_write_time_ms, d.stats_reset{sessions}
FROM pg_stat_database d WHERE d.datname = current_database()
"""
_SESSION_COLS = (", d.sessions, d.sessions_abandoned, d.sessions_fatal, d.sessions_killed, "
                 "d.session_time AS session_time_ms, d.active_time AS active_time_ms, "
                 "d.idle_in_transaction_time AS idle_in_transaction_time_ms")


async def database_stats(ctx: ToolContext) -> Row:
    """pg_stat_database for this database, with commits, rollbacks, cache_hit_ratio and its size."""
    query = _DATABASE.format(sessions=_SESSION_COLS if ctx.server_version >= _SESSIONS else "")
    row = await ctx.fetchone(query)
    assert row is not None
    row["cache_hit_ratio"] = hit_ratio(row["blks_hit"], row["blks_read"])
    row["commits"], row["rollbacks"] = row["xact_commit"], row["xact_rollback"]
    row["rollback_ratio"] = ratio(row["xact_rollback"], row["xact_commit"] + row["xact_rollback"])
    return row


async def io_stats(ctx: ToolContext) -> Row | None:
    """pg_stat_io summed over backend types (PostgreSQL 16+), bytes included."""
    if ctx.server_version < _STAT_IO:
        return None
    if ctx.server_version >= _IO_BYTES:
        cols = "sum(read_bytes)::bigint AS read_bytes, sum(write_bytes)::bigint AS write_bytes"
    else:
        cols = "sum(reads * op_bytes)::bigint AS read_bytes, sum(writes * op_bytes)::bigint AS write_bytes"
    return await ctx.fetchone(
        f"SELECT sum(reads)::bigint AS reads, sum(writes)::bigint AS writes, sum(extends)::bigint AS extends, "
        f"sum(hits)::bigint AS hits, sum(evictions)::bigint AS evictions, sum(fsyncs)::bigint AS fsyncs, {cols} "
        f"FROM pg_stat_io")


class PerformanceBaselineIn(ToolInput):
    top_statements: int = Field(5, ge=0, le=100)
    previous: dict[str, Any] | None = Field(None, description="An earlier result, for deltas and rates")


_RATE_KEYS = ("xact_commit", "xact_rollback", "blks_read", "blks_hit", "tup_returned", "tup_fetched",
              "tup_inserted", "tup_updated", "tup_deleted", "temp_files", "temp_bytes", "deadlocks")


@tool(group="performance", effect=Effect.READ, aliases=("databaseStats",))
async def performance_baseline(ctx: ToolContext, args: PerformanceBaselineIn) -> dict[str, Any]:
    """Database metrics in one object: cache hits, commits, rollbacks, deadlocks, temp, size.

    topStatements is how many top statements by total time to include (pg_stat_statements, when installed);
    previous, a baseline returned earlier, adds deltas and per-second rates since then.

    Also reachable as pg.performance.databaseStats(). Top level: database_size_bytes, cache_hit_ratio,
    commits/xact_commit, rollbacks/xact_rollback, deadlocks, temp_files, temp_bytes, tuple counters; then
    table/index hit ratios, connections, checkpoints, wal, io and top_statements. Counters are cumulative
    since stats_reset; pass an earlier result as `previous` to get deltas and rates. Checkpoints come from
    pg_stat_checkpointer on PostgreSQL 17+, I/O from pg_stat_io on 16+.
    """
    now = await ctx.fetchval("SELECT now()")
    out: dict[str, Any] = {"captured_at": now, "server_version": ctx.caps.server_version,
                           **await database_stats(ctx)}
    tables = await ctx.fetchone(
        "SELECT sum(heap_blks_hit) AS heap_hit, sum(heap_blks_read) AS heap_read, sum(idx_blks_hit) AS idx_hit, "
        "sum(idx_blks_read) AS idx_read FROM pg_statio_user_tables")
    assert tables is not None
    out["table_hit_ratio"] = hit_ratio(tables["heap_hit"], tables["heap_read"])
    out["index_hit_ratio"] = hit_ratio(tables["idx_hit"], tables["idx_read"])
    out["connections"] = await connection_counts(ctx)
    out["checkpoints"] = await checkpoint_stats(ctx)
    if ctx.server_version >= _SESSIONS:
        out["wal"] = await ctx.fetchone("SELECT wal_records, wal_fpi, wal_bytes::bigint AS wal_bytes, "
                                        "wal_buffers_full, stats_reset FROM pg_stat_wal")
    out["io"] = await io_stats(ctx)
    if ctx.caps.has_extension("pg_stat_statements") and args.top_statements:
        try:
            async with savepoint(ctx, "pgcode_baseline_pgss"):
                rows, _ = await select_statements(ctx, order="total_time", limit=args.top_statements, qlen=200)
            out["top_statements"] = rows
        except (psycopg.Error, ToolError) as exc:
            out["top_statements"] = None
            out["top_statements_unavailable"] = getattr(exc, "message", None) or str(exc)
    if args.previous:
        out["since_previous"] = _deltas(out, args.previous)
    return out


def _deltas(now: dict[str, Any], previous: dict[str, Any]) -> dict[str, Any]:
    try:
        then = dt.datetime.fromisoformat(str(previous.get("captured_at")))
        elapsed = (now["captured_at"] - then).total_seconds()
    except (ValueError, TypeError):
        elapsed = None
    deltas: dict[str, Any] = {"elapsed_seconds": elapsed}
    for key in _RATE_KEYS:
        old = previous.get(key)
        if isinstance(old, int | float) and not isinstance(old, bool) and now.get(key) is not None:
            change = now[key] - old
            deltas[key] = change
            if elapsed:
                deltas[f"{key}_per_second"] = round(change / elapsed, 3)
    hits, reads = deltas.get("blks_hit"), deltas.get("blks_read")
    if isinstance(hits, int | float) and isinstance(reads, int | float):
        deltas["cache_hit_ratio"] = hit_ratio(hits, reads)
    return deltas


class DiagnoseDatabasePerformanceIn(ToolInput):
    long_query_seconds: float = Field(60, gt=0)
    idle_in_transaction_seconds: float = Field(60, gt=0)
    cache_hit_warning: float = Field(0.99, gt=0, le=1)
    cache_hit_critical: float = Field(0.9, gt=0, le=1)
    dead_tuple_ratio: float = Field(0.2, gt=0, le=1)
    slow_query_ms: float = Field(500, gt=0)


Finding = dict[str, Any]
Section = Callable[[ToolContext, DiagnoseDatabasePerformanceIn], Awaitable[list[Finding]]]
_RANK = {"critical": 3, "warning": 2, "unknown": 1, "ok": 0}


@tool(group="performance", effect=Effect.READ)
async def diagnose_database_performance(ctx: ToolContext, args: DiagnoseDatabasePerformanceIn) -> dict[str, Any]:
    """A performance report of findings, worst first: queries, locks, cache, vacuum, indexes.

    Thresholds: a query running longer than longQuerySeconds and a session idle in a transaction longer than
    idleInTransactionSeconds are findings; cacheHitWarning and cacheHitCritical are hit ratios (0-1) to warn and be
    critical below; deadTupleRatio flags tables with that share of dead tuples; slowQueryMs flags statements whose
    mean time is above it.

    Covers slow and long-running queries, idle-in-transaction sessions, blocking locks, connection usage, the
    cache hit ratio, dead tuples and wraparound, unused indexes and sequential scans, temp files, deadlocks and
    checkpoints. Each finding is {area, status: ok|warning|critical|unknown, title, value, threshold, advice, details}.
    A check that cannot run (missing privilege or extension) reports unknown with the reason.
    """
    findings: list[Finding] = []
    for name, section in _SECTIONS.items():
        try:
            async with savepoint(ctx, "pgcode_diagnose"):
                findings.extend(await section(ctx, args))
        except (psycopg.Error, ToolError) as exc:
            reason = exc.message if isinstance(exc, ToolError) else (exc.diag.message_primary or str(exc))
            findings.append(_finding(name, "unknown", f"{name} could not be checked", None, None,
                                     f"the check failed: {reason}"))
    findings.sort(key=lambda f: -_RANK[f["status"]])
    worst = findings[0]["status"] if findings else "ok"
    counts = {s: sum(1 for f in findings if f["status"] == s) for s in _RANK}
    return {"status": worst, "summary": counts, "findings": findings}


def _finding(area: str, status: str, title: str, value: Any, threshold: Any, advice: str,
             details: Any = None) -> Finding:
    return {"area": area, "status": status, "title": title, "value": value, "threshold": threshold,
            "advice": advice, "details": details}


async def _slow_queries(ctx: ToolContext, args: DiagnoseDatabasePerformanceIn) -> list[Finding]:
    if not ctx.caps.has_extension("pg_stat_statements"):
        return [_finding("slow_queries", "unknown", "statement statistics unavailable", None, None,
                         "CREATE EXTENSION pg_stat_statements (with it in shared_preload_libraries) to see slow "
                         "queries")]
    rows, _ = await select_statements(ctx, order="mean_time", limit=5, qlen=200, min_calls=2)
    slow = [r for r in rows if (r["mean_exec_time_ms"] or 0) >= args.slow_query_ms]
    status = "warning" if slow else "ok"
    return [_finding("slow_queries", status, f"{len(slow)} statements average over {args.slow_query_ms:g} ms",
                     len(slow), args.slow_query_ms, "EXPLAIN ANALYZE them (pg_explain_analyze) and index what they "
                     "filter on" if slow else "none", [{k: r[k] for k in ("queryid", "query", "calls",
                                                                           "mean_exec_time_ms")} for r in slow])]


async def _long_running(ctx: ToolContext, args: DiagnoseDatabasePerformanceIn) -> list[Finding]:
    rows = await ctx.fetch(
        "SELECT pid, usename, state, round(extract(epoch FROM now() - CASE WHEN state = 'active' THEN query_start "
        "ELSE state_change END)::numeric, 1) AS seconds, left(query, 200) AS query FROM pg_stat_activity "
        "WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND ((state = 'active' "
        "AND now() - query_start > make_interval(secs => %(long)s)) OR (state LIKE 'idle in transaction%%' "
        "AND now() - state_change > make_interval(secs => %(idle)s))) ORDER BY seconds DESC LIMIT 20",
        {"long": args.long_query_seconds, "idle": args.idle_in_transaction_seconds})
    active = [r for r in rows if r["state"] == "active"]
    idle = [r for r in rows if r["state"] != "active"]
    return [
        _finding("long_running", "warning" if active else "ok", f"{len(active)} queries running longer than "
                 f"{args.long_query_seconds:g} s", len(active), args.long_query_seconds,
                 "check their plans; pg_cancel_backend stops one" if active else "none", active),
        _finding("idle_in_transaction", "warning" if idle else "ok", f"{len(idle)} sessions idle in transaction "
                 f"longer than {args.idle_in_transaction_seconds:g} s", len(idle), args.idle_in_transaction_seconds,
                 "they hold locks and stop vacuum: fix the application, set idle_in_transaction_session_timeout"
                 if idle else "none", idle)]


async def _blocking(ctx: ToolContext, args: DiagnoseDatabasePerformanceIn) -> list[Finding]:
    pairs = await blocking_pairs(ctx, 20)
    return [_finding("locks", "critical" if len(pairs) >= 5 else "warning" if pairs else "ok",
                     f"{len(pairs)} sessions blocked by locks", len(pairs), 0,
                     "find the blocking pids with pg_locks (blocking_only) and end their transactions"
                     if pairs else "none", pairs)]


async def _connections(ctx: ToolContext, args: DiagnoseDatabasePerformanceIn) -> list[Finding]:
    c = await connection_counts(ctx)
    usage = c["usage_ratio"] or 0
    status = "critical" if usage >= 0.9 else "warning" if usage >= 0.75 else "ok"
    return [_finding("connections", status, f"{c['total']} of {c['max_connections']} connections in use",
                     c["usage_ratio"], 0.75, "use a pooler (pg_connection_pool_optimize)" if status != "ok"
                     else "none", c)]


async def _cache(ctx: ToolContext, args: DiagnoseDatabasePerformanceIn) -> list[Finding]:
    db = await database_stats(ctx)
    value = db["cache_hit_ratio"]
    status = ("ok" if value is None or value >= args.cache_hit_warning
              else "critical" if value < args.cache_hit_critical else "warning")
    return [_finding("cache", status, f"cache hit ratio {value if value is not None else 'n/a'}", value,
                     args.cache_hit_warning, "raise shared_buffers or reduce what queries read (indexes)"
                     if status != "ok" else "none")]


async def _vacuum(ctx: ToolContext, args: DiagnoseDatabasePerformanceIn) -> list[Finding]:
    rows = await ctx.fetch(
        "SELECT schemaname AS schema, relname AS table, n_live_tup AS live_tuples, n_dead_tup AS dead_tuples, "
        "round(n_dead_tup::numeric / nullif(n_live_tup + n_dead_tup, 0), 4) AS dead_tuple_ratio, "
        "greatest(last_vacuum, last_autovacuum) AS last_vacuum FROM pg_stat_user_tables "
        "WHERE n_dead_tup >= 1000 AND n_dead_tup::numeric / nullif(n_live_tup + n_dead_tup, 0) >= %s "
        "ORDER BY n_dead_tup DESC LIMIT 10", (args.dead_tuple_ratio,))
    wrap = await database_wraparound(ctx)
    ratio_ = float(wrap["wraparound_ratio"]) if wrap else 0.0
    return [
        _finding("vacuum", "warning" if rows else "ok", f"{len(rows)} tables with ≥ {args.dead_tuple_ratio:.0%} "
                 "dead tuples", len(rows), args.dead_tuple_ratio, "VACUUM them and tune autovacuum "
                 "(pg_vacuum_stats, pg_detect_bloat_risk)" if rows else "none", rows),
        _finding("wraparound", "critical" if ratio_ >= 1.0 else "warning" if ratio_ >= 0.75 else "ok",
                 f"transaction-ID age at {ratio_:.0%} of autovacuum_freeze_max_age", ratio_, 0.75,
                 "VACUUM (FREEZE) the oldest tables; look for long transactions and stale replication slots"
                 if ratio_ >= 0.75 else "none", wrap)]


async def _indexes(ctx: ToolContext, args: DiagnoseDatabasePerformanceIn) -> list[Finding]:
    row = await ctx.fetchone(
        "SELECT count(*) AS unused, coalesce(sum(pg_relation_size(s.indexrelid)), 0) AS unused_bytes "
        "FROM pg_stat_user_indexes s JOIN pg_index x ON x.indexrelid = s.indexrelid "
        "WHERE s.idx_scan = 0 AND NOT x.indisunique AND NOT x.indisprimary")
    seq = await ctx.fetch(
        "SELECT schemaname AS schema, relname AS table, seq_scan, seq_tup_read, coalesce(idx_scan, 0) AS idx_scan "
        "FROM pg_stat_user_tables WHERE seq_scan >= 100 AND n_live_tup >= 10000 "
        "AND seq_scan > coalesce(idx_scan, 0) ORDER BY seq_tup_read DESC LIMIT 10")
    assert row is not None
    return [
        _finding("unused_indexes", "warning" if row["unused_bytes"] >= 100 * 1024 * 1024 else "ok",
                 f"{row['unused']} indexes never scanned ({row['unused_bytes']} bytes)", row["unused_bytes"],
                 100 * 1024 * 1024, "review with pg_unused_indexes and drop the ones nothing needs"
                 if row["unused"] else "none", row),
        _finding("seq_scans", "warning" if seq else "ok", f"{len(seq)} large tables read mostly by sequential "
                 "scans", len(seq), 0, "pg_index_recommendations suggests indexes" if seq else "none", seq)]


async def _database(ctx: ToolContext, args: DiagnoseDatabasePerformanceIn) -> list[Finding]:
    db = await database_stats(ctx)
    cp = await checkpoint_stats(ctx)
    requested = cp["requested_ratio"] or 0
    return [
        _finding("temp_files", "warning" if db["temp_bytes"] >= 1024**3 else "ok",
                 f"{db['temp_files']} temporary files, {db['temp_bytes']} bytes", db["temp_bytes"], 1024**3,
                 "raise work_mem for the queries that sort or hash large sets" if db["temp_bytes"] >= 1024**3
                 else "none"),
        _finding("deadlocks", "warning" if db["deadlocks"] else "ok", f"{db['deadlocks']} deadlocks",
                 db["deadlocks"], 0, "make transactions take locks in the same order" if db["deadlocks"]
                 else "none"),
        _finding("checkpoints", "warning" if requested >= 0.3 else "ok",
                 f"{requested:.0%} of checkpoints were requested rather than timed", requested, 0.3,
                 "raise max_wal_size so checkpoints happen on schedule" if requested >= 0.3 else "none", cp)]


_SECTIONS: dict[str, Section] = {
    "slow_queries": _slow_queries, "long_running": _long_running, "locks": _blocking,
    "connections": _connections, "cache": _cache, "vacuum": _vacuum, "indexes": _indexes, "database": _database,
}
