"""Health checks on sessions: long queries, idle transactions, prepared transactions, lock waits, connections."""

from __future__ import annotations

from pgcode.core.context import ToolContext
from pgcode.health._base import CheckResult, Coverage, Thresholds, check, grade, items, limits, result
from pgcode.health.blocking import blocking_chains
from pgcode.health.probes import connection_counts

AREA = "sessions"

# Sessions of this database other than the one running the checks; durations in seconds.
_SESSIONS = """
SELECT pid, usename, application_name, host(client_addr) AS client_addr, state, wait_event_type, wait_event,
       round(extract(epoch FROM now() - {since})::numeric, 1) AS seconds,
       round(extract(epoch FROM now() - xact_start)::numeric, 1) AS transaction_seconds,
       left(query, 300) AS query
FROM pg_stat_activity
WHERE backend_type = 'client backend' AND pid <> pg_backend_pid() AND datname = current_database()
  AND {state} AND now() - {since} >= make_interval(secs => %(seconds)s)
ORDER BY seconds DESC, pid
"""


@check("long_running_queries", AREA, "sessions", "live")
async def long_running_queries(ctx: ToolContext, t: Thresholds, cov: Coverage) -> CheckResult:
    """Queries of this database running longer than the warning limit."""
    rows = await ctx.fetch(_SESSIONS.format(since="query_start", state="state = 'active'"),
                           {"seconds": t.long_query_warning_seconds})
    top = float(rows[0]["seconds"]) if rows else 0.0
    return result("long_running_queries", AREA,
                  grade(top, t.long_query_warning_seconds, t.long_query_critical_seconds),
                  f"{len(rows)} queries running longer than {t.long_query_warning_seconds:g} s", top,
                  limits(t.long_query_warning_seconds, t.long_query_critical_seconds, "seconds"),
                  "look at their plans (pg_explain); pg_cancel_backend stops one; a statement_timeout for the "
                  "role or database bounds them", items(rows, t))


@check("idle_in_transaction", AREA, "sessions", "live")
async def idle_in_transaction(ctx: ToolContext, t: Thresholds, cov: Coverage) -> CheckResult:
    """Sessions of this database idle inside an open transaction: they hold locks and stop vacuum's cleanup."""
    rows = await ctx.fetch(_SESSIONS.format(since="state_change", state="state LIKE 'idle in transaction%%'"),
                           {"seconds": t.idle_in_transaction_warning_seconds})
    top = float(rows[0]["seconds"]) if rows else 0.0
    return result("idle_in_transaction", AREA,
                  grade(top, t.idle_in_transaction_warning_seconds, t.idle_in_transaction_critical_seconds),
                  f"{len(rows)} sessions idle in a transaction for more than "
                  f"{t.idle_in_transaction_warning_seconds:g} s", top,
                  limits(t.idle_in_transaction_warning_seconds, t.idle_in_transaction_critical_seconds, "seconds"),
                  "fix the application so it commits or rolls back promptly; set idle_in_transaction_session_timeout; "
                  "pg_terminate_backend ends one now", items(rows, t))


_PREPARED = """
SELECT gid, prepared, owner, database, round(extract(epoch FROM now() - prepared)::numeric, 1) AS seconds,
       age(transaction) AS xid_age
FROM pg_prepared_xacts WHERE database = current_database()
ORDER BY prepared
"""


@check("prepared_transactions", AREA, "prepared transactions", "live")
async def prepared_transactions(ctx: ToolContext, t: Thresholds, cov: Coverage) -> CheckResult:
    """Prepared (two-phase) transactions left open: they hold locks and the xmin horizon until resolved."""
    rows = await ctx.fetch(_PREPARED)
    old = [r for r in rows if float(r["seconds"]) >= t.prepared_xact_warning_seconds]
    top = float(rows[0]["seconds"]) if rows else 0.0
    return result("prepared_transactions", AREA,
                  grade(top, t.prepared_xact_warning_seconds, t.prepared_xact_critical_seconds),
                  f"{len(rows)} prepared transactions, {len(old)} older than {t.prepared_xact_warning_seconds:g} s",
                  top, limits(t.prepared_xact_warning_seconds, t.prepared_xact_critical_seconds, "seconds"),
                  "COMMIT PREPARED or ROLLBACK PREPARED each gid once the transaction manager's intent is known",
                  items(rows, t))


_BLOCKED = """
SELECT a.pid AS blocked_pid, a.usename, a.application_name, pg_blocking_pids(a.pid) AS blocked_by,
       round(extract(epoch FROM now() - coalesce({wait_start}, a.state_change))::numeric, 1) AS waiting_seconds,
       left(a.query, 300) AS query,
       (SELECT array_agg(DISTINCT b.application_name) FROM pg_stat_activity b
        WHERE b.pid = ANY (pg_blocking_pids(a.pid))) AS blocked_by_applications
FROM pg_stat_activity a
WHERE a.datname = current_database() AND a.wait_event_type = 'Lock' AND cardinality(pg_blocking_pids(a.pid)) > 0
ORDER BY waiting_seconds DESC, a.pid
"""
_WAITSTART = 140000  # pg_locks.waitstart (when a lock wait began) arrived in PostgreSQL 14


@check("blocking_locks", AREA, "sessions", "live")
async def blocking_locks(ctx: ToolContext, t: Thresholds, cov: Coverage) -> CheckResult:
    """Sessions of this database waiting on a lock another session holds, and who blocks them."""
    wait_start = ("(SELECT min(l.waitstart) FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted)"
                  if ctx.server_version >= _WAITSTART else "NULL::timestamptz")
    rows = await ctx.fetch(_BLOCKED.format(wait_start=wait_start))
    waiting = [r for r in rows if float(r["waiting_seconds"]) >= t.lock_wait_warning_seconds]
    top = max((float(r["waiting_seconds"]) for r in waiting), default=0.0)
    status = grade(top, t.lock_wait_warning_seconds, t.lock_wait_critical_seconds) if waiting else "ok"
    database = await ctx.fetchval("SELECT current_database()")
    chains = [c for c in await blocking_chains(ctx) if any(b["database"] == database for b in c["blocked"])]
    advice = ("end the blocking transactions (blocked_by pids; pg_locks shows what they hold) and keep "
              "transactions short; lock_timeout bounds the wait")
    if chains and waiting:
        root = chains[0]["root"]
        advice = (f"the root blocker is pid {root['pid']}"
                  + (f" ({root['state']}, transaction open {root['transaction_seconds']:g} s, "
                     f"{root['application_name'] or 'no application_name'})" if root["kind"] == "session"
                     else f" ({root['kind']})")
                  + f", holding up {chains[0]['blocked_count']} sessions: {chains[0]['action']} "
                    f"(details.chains[].command, or the tool named there; admin scope); then " + advice)
    return result("blocking_locks", AREA, status,
                  f"{len(waiting)} sessions waiting on locks for at least {t.lock_wait_warning_seconds:g} s "
                  f"({len(rows)} waiting now" + (f", {len(chains)} root blockers" if chains else "") + ")", top,
                  limits(t.lock_wait_warning_seconds, t.lock_wait_critical_seconds, "seconds waited"),
                  advice, items(waiting, t, chains=chains[: t.max_items]))


@check("connections", AREA, "sessions", "live")
async def connections(ctx: ToolContext, t: Thresholds, cov: Coverage) -> CheckResult:
    """Client connections against max_connections (less the reserved slots), server-wide."""
    c = await connection_counts(ctx)
    usage = c["usage_ratio"] or 0.0
    return result("connections", AREA, grade(usage, t.connections_warning_ratio, t.connections_critical_ratio),
                  f"{c['total']} of {c['max_connections'] - c['reserved_connections']} usable connections in use "
                  f"({usage:.0%})", usage,
                  limits(t.connections_warning_ratio, t.connections_critical_ratio, "share of usable connections"),
                  "put a pooler (PgBouncer in transaction mode) in front of the applications, shrink their pools, "
                  "or raise max_connections (a restart; each connection costs memory)", {"counts": c})
