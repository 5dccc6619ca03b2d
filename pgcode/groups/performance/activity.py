"""performance: sessions, locks and connection usage."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from psycopg import sql
from pydantic import Field

from pgcode.core.context import Row, ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.db.queries import load_query
from pgcode.groups._common import IDENT_MAX
from pgcode.groups.performance._shared import QUERY_TEXT_MAX, cut
from pgcode.health.blocking import blocking_chains as health_blocking_chains
from pgcode.health.locks import set_lock_timeout
from pgcode.health.probes import connection_counts, ratio
from pgcode.types import Effect

_WAITSTART = 140000  # pg_locks.waitstart arrived in PostgreSQL 14


class SessionState(StrEnum):
    ACTIVE = "active"
    IDLE = "idle"
    IDLE_IN_TRANSACTION = "idle in transaction"
    IDLE_IN_TRANSACTION_ABORTED = "idle in transaction (aborted)"
    FASTPATH = "fastpath function call"
    DISABLED = "disabled"


class StatActivityIn(ToolInput):
    state: SessionState | None = None
    include_idle: bool = False
    usename: str | None = Field(None, max_length=IDENT_MAX)
    application_name: str | None = Field(None, max_length=64)
    all_databases: bool = False
    include_background: bool = False
    include_self: bool = False
    query_max_length: int = Field(500, ge=20, le=QUERY_TEXT_MAX)
    limit: int = Field(100, ge=1, le=10_000)


@tool(group="performance", effect=Effect.READ)
async def stat_activity(ctx: ToolContext, args: StatActivityIn) -> dict[str, Any]:
    """Current sessions and their queries: state, waits, durations, blockers.

    Sessions come longest-running first, with counts by state. state, usename and applicationName keep only those
    sessions; includeIdle adds idle sessions (always there when state is idle); allDatabases adds sessions of other
    databases; includeBackground adds background workers, autovacuum, walsenders ...; includeSelf adds pgcode's own
    sessions (application_name 'pgcode': the one running this tool, its pool and held transactions). Query texts are
    cut to queryMaxLength.

    duration_seconds is the time in the current state (the running query for active sessions). Other
    users' query texts need the pg_read_all_stats role.
    """
    rows = await ctx.fetch(load_query("stat_activity"), {
        "qlen": args.query_max_length, "all_backends": args.include_background, "all_databases": args.all_databases,
        "include_idle": args.include_idle or args.state is SessionState.IDLE,
        "state": args.state.value if args.state else None, "usename": args.usename,
        "application": args.application_name, "include_self": args.include_self, "own_app": own_app(ctx),
        "limit": args.limit + 1})
    sessions, truncated = cut(rows, args.limit)
    by_state = await ctx.fetch(
        "SELECT coalesce(state, 'unknown') AS state, count(*) AS count FROM pg_stat_activity "
        "WHERE backend_type = 'client backend' AND datname = current_database() "
        "AND (%s OR application_name IS DISTINCT FROM %s) GROUP BY 1 ORDER BY 2 DESC, 1",
        (args.include_self, own_app(ctx)))
    return {"sessions": sessions, "count": len(sessions), "truncated": truncated,
            "by_state": {r["state"]: r["count"] for r in by_state}}


class LocksIn(ToolInput):
    granted: bool | None = Field(None, description="true: held locks only; false: waiting only")
    blocking_only: bool = False
    relation: str | None = Field(None, max_length=IDENT_MAX, description="Only locks on this table")
    all_databases: bool = False
    include_self: bool = False
    query_max_length: int = Field(300, ge=20, le=QUERY_TEXT_MAX)
    limit: int = Field(500, ge=1, le=10_000)


@tool(group="performance", effect=Effect.READ, aliases=("monitoring.locks",))
async def locks(ctx: ToolContext, args: LocksIn) -> list[dict[str, Any]]:
    """List locks with their sessions, wait times and blocked/blocking pairs.

    Each lock has type, relation, mode, granted, pid, user, query and waiting time. granted true keeps held locks,
    false waiting ones; blockingOnly keeps locks in a blocked/blocking pair; relation keeps locks on the table of
    that name; allDatabases adds locks in other databases. Query texts are cut to queryMaxLength.

    A waiting lock names the pids it waits for in blocked_by; a held lock names the pids waiting on it in
    blocking. Locks of pairs come first. waiting_seconds needs PostgreSQL 14+ (pg_locks.waitstart).
    pgcode's own sessions' locks are left out unless they block someone (includeSelf shows them all).
    """
    if ctx.server_version >= _WAITSTART:
        waiting = "round(extract(epoch FROM now() - x.waitstart)::numeric, 3)"
    else:  # before 14, the session's last state change is the closest thing to when the wait began
        waiting = ("CASE WHEN NOT x.granted THEN round(extract(epoch FROM now() - x.state_change)::numeric, 3) "
                   "END")
    query = load_query("locks").format(waiting=sql.SQL(waiting))
    return await ctx.fetch(query, {
        "include_self": args.include_self, "qlen": args.query_max_length, "granted": args.granted,
        "blocking_only": args.blocking_only, "relation": args.relation, "all_databases": args.all_databases,
        "own_app": own_app(ctx), "limit": args.limit})


def own_app(ctx: ToolContext) -> str:
    """application_name of pgcode's own sessions, which session and lock summaries leave out unless asked."""
    return ctx.rt.db.application_name


async def blocking_pairs(ctx: ToolContext, limit: int = 50) -> list[Row]:
    """Sessions waiting on a lock, each with the pids blocking it and how long it has waited."""
    return await ctx.fetch(
        "SELECT a.pid AS blocked_pid, a.usename, pg_blocking_pids(a.pid) AS blocked_by, "
        "left(a.query, 300) AS query, round(extract(epoch FROM now() - a.query_start)::numeric, 3) "
        "AS waiting_seconds FROM pg_stat_activity a WHERE a.wait_event_type = 'Lock' "
        "AND cardinality(pg_blocking_pids(a.pid)) > 0 ORDER BY a.query_start LIMIT %s", (limit,))


class BlockingChainsIn(ToolInput):
    query_max_length: int = Field(300, ge=20, le=QUERY_TEXT_MAX)
    limit: int = Field(50, ge=1, le=1000)


@tool(group="performance", effect=Effect.READ)
async def blocking_chains(ctx: ToolContext, args: BlockingChainsIn) -> dict[str, Any]:
    """Lock waits as chains down to the root blocker, with the command that frees them.

    Each chain says who waits on whom and how long; the longest waits come first. Query texts are cut to
    queryMaxLength.

    One entry per root (a session, or a prepared transaction as pid 0, that blocks others and waits on no
    one), with every session behind it (depth 1 waits on the root directly) from pg_blocking_pids. The
    advice cancels a root that runs a lone statement and terminates one whose transaction goes on (a
    cancelled statement leaves the transaction and its locks); the SQL command is guarded by the root's
    xact_start so it does nothing once that transaction has ended. Ending sessions needs the admin scope.
    """
    await set_lock_timeout(ctx)
    chains = await health_blocking_chains(ctx, args.query_max_length)
    return {"chains": chains[: args.limit], "count": len(chains), "truncated": len(chains) > args.limit,
            "blocked_sessions": sum(c["blocked_count"] for c in chains)}


class ConnectionPoolOptimizeIn(ToolInput):
    cpu_cores: int | None = Field(None, ge=1, le=4096, description="Database server's CPU cores")
    idle_threshold_seconds: int = Field(300, ge=1, le=86_400)


@tool(group="performance", effect=Effect.READ)
async def connection_pool_optimize(ctx: ToolContext, args: ConnectionPoolOptimizeIn) -> dict[str, Any]:
    """Connection usage against max_connections, and pool-size advice.

    Covers idle and idle-in-transaction sessions; sessions idle longer than idleThresholdSeconds count as long-idle.

    The suggested pool size follows the PostgreSQL wiki rule (cores x 2 + 1) when cpu_cores is given,
    and otherwise the current number of active sessions with headroom.
    """
    counts = await connection_counts(ctx)
    settings = await ctx.fetchone(
        "SELECT current_setting('idle_in_transaction_session_timeout') AS idle_in_transaction_session_timeout, "
        "current_setting('idle_session_timeout', true) AS idle_session_timeout, "
        "current_setting('tcp_keepalives_idle') AS tcp_keepalives_idle, "
        "pg_size_bytes(current_setting('work_mem')) AS work_mem_bytes")
    long_idle = await ctx.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND state = 'idle' "
        "AND now() - state_change > make_interval(secs => %s)", (args.idle_threshold_seconds,))
    by_app = await ctx.fetch(
        "SELECT coalesce(nullif(application_name, ''), '(none)') AS application_name, usename, count(*) AS total, "
        "count(*) FILTER (WHERE state = 'active') AS active, count(*) FILTER (WHERE state = 'idle') AS idle "
        "FROM pg_stat_activity WHERE backend_type = 'client backend' GROUP BY 1, 2 ORDER BY 3 DESC LIMIT 20")
    assert settings is not None
    findings = _pool_findings(counts, settings, long_idle, args.idle_threshold_seconds)
    if args.cpu_cores:
        size, basis = args.cpu_cores * 2 + 1, "cpu_cores x 2 + 1 (PostgreSQL wiki)"
    else:
        size, basis = max(10, counts["active"] * 2), "twice the sessions active now (at least 10); give cpu_cores"
    return {"connections": counts, "long_idle": long_idle, "settings": settings, "by_application": by_app,
            "suggested_pool_size": {"size": min(size, counts["max_connections"] - counts["reserved_connections"]),
                                    "basis": basis},
            "findings": findings}


def _pool_findings(counts: Row, settings: Row, long_idle: int, idle_threshold: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []

    def add(severity: str, finding: str, advice: str) -> None:
        out.append({"severity": severity, "finding": finding, "advice": advice})

    usage = counts["usage_ratio"] or 0
    if usage >= 0.9:
        add("critical", f"{counts['total']} connections use {usage:.0%} of the available slots",
            "put a pooler (PgBouncer in transaction mode) in front, or raise max_connections")
    elif usage >= 0.7:
        add("warning", f"{counts['total']} connections use {usage:.0%} of the available slots",
            "plan for a pooler before the limit is reached")
    if counts["total"] >= 20 and counts["idle"] / counts["total"] >= 0.5:
        add("warning", f"{counts['idle']} of {counts['total']} connections are idle",
            "application pools are larger than needed: lower their maximum size or share one pooler")
    if long_idle:
        add("info", f"{long_idle} connections idle longer than {idle_threshold} s",
            "set an idle timeout in the application pool or idle_session_timeout (PostgreSQL 14+)")
    if counts["idle_in_transaction"]:
        add("warning", f"{counts['idle_in_transaction']} sessions idle in transaction (longest "
                       f"{float(counts['longest_idle_in_transaction_seconds']):.0f} s)",
            "they hold locks and snapshots: commit promptly, and set idle_in_transaction_session_timeout")
    if settings["idle_in_transaction_session_timeout"] in ("0", "0ms"):
        add("info", "idle_in_transaction_session_timeout is off",
            "set it (e.g. 60s) so forgotten transactions do not hold locks and block vacuum")
    if counts["max_connections"] > 500:
        add("warning", f"max_connections is {counts['max_connections']}",
            "each connection costs memory and snapshot work; a pooler with fewer server connections scales better")
    return out


class DetectConnectionSpikeIn(ToolInput):
    window_seconds: int = Field(60, ge=1, le=86_400)
    concentration_threshold: float = Field(0.5, gt=0, le=1)
    min_connections: int = Field(10, ge=1)
    limit: int = Field(10, ge=1, le=100)


_DIMENSIONS = {
    "user": "coalesce(usename, '(none)')",
    "application": "coalesce(nullif(application_name, ''), '(none)')",
    "client": "coalesce(host(client_addr), 'local')",
    "state": "coalesce(state, 'unknown')",
    "wait_event": "coalesce(wait_event_type || ':' || wait_event, 'not waiting')",
    "database": "coalesce(datname, '(none)')",
}
# Concentrations that are normal: most sessions idle or active, idle sessions waiting for their client.
_USUAL = {("state", "active"), ("state", "idle"), ("wait_event", "not waiting"), ("wait_event", "Client:ClientRead")}


@tool(group="performance", effect=Effect.READ)
async def detect_connection_spike(ctx: ToolContext, args: DetectConnectionSpikeIn) -> dict[str, Any]:
    """Unusual connection patterns: who holds a large share of the connections.

    Connections are grouped by user, application, client, state and wait event, at most limit groups per dimension.
    Connections opened within windowSeconds count as recent; a group holding at least concentrationThreshold (a
    share, 0-1) of the connections, and at least minConnections, is flagged.

    Also how many connections opened within the window. Each group holding at least concentration_threshold
    of the connections (and min_connections) becomes a finding, as do a burst of new connections and usage
    near max_connections.
    """
    counts = await connection_counts(ctx)
    total = counts["total"]
    groups: dict[str, list[Row]] = {}
    for name, expr in _DIMENSIONS.items():
        rows = await ctx.fetch(sql.SQL(
            "SELECT {} AS key, count(*) AS count FROM pg_stat_activity WHERE backend_type = 'client backend' "
            "GROUP BY 1 ORDER BY 2 DESC, 1 LIMIT %s").format(sql.SQL(expr)), (args.limit,))
        for r in rows:
            r["share"] = ratio(r["count"], total)
        groups[name] = rows
    recent = await ctx.fetchval(
        "SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' "
        "AND backend_start > now() - make_interval(secs => %s)", (args.window_seconds,))
    findings = []
    for name, rows in groups.items():
        for r in rows:
            if (r["count"] >= args.min_connections and (r["share"] or 0) >= args.concentration_threshold
                    and (name, r["key"]) not in _USUAL and name != "database"):
                severity = "warning" if name in ("state", "wait_event") else "info"
                findings.append({"dimension": name, "key": r["key"], "count": r["count"], "share": r["share"],
                                 "severity": severity,
                                 "message": f"{r['count']} of {total} connections share {name} {r['key']!r}"})
    recent_share = ratio(recent, total)
    if recent >= args.min_connections and (recent_share or 0) >= args.concentration_threshold:
        findings.append({"dimension": "recent", "key": f"last {args.window_seconds} s", "count": recent,
                         "share": recent_share, "severity": "warning",
                         "message": f"{recent} of {total} connections opened in the last {args.window_seconds} s"})
    if (counts["usage_ratio"] or 0) >= 0.8:
        findings.append({"dimension": "capacity", "key": "max_connections", "count": total,
                         "share": counts["usage_ratio"], "severity": "critical",
                         "message": f"connections at {counts['usage_ratio']:.0%} of the available slots"})
    return {"connections": counts, "recent_connections": {"window_seconds": args.window_seconds, "count": recent,
                                                          "share": recent_share},
            "by": groups, "findings": findings, "spike_detected": bool(findings)}
