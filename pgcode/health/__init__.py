"""Database health checks, shared by pg_analyze_db_health and the health report.

Each check is `async (ctx, thresholds) -> CheckResult` with {check, area, status, summary, value, threshold,
details, advice}; status is ok, warning, critical, or unknown when the check could not run (a missing
privilege or extension), with the reason in details. Imports core, db and the leaves.
"""

from __future__ import annotations

from typing import Any

import psycopg

from pgcode.core.context import ToolContext, savepoint
from pgcode.errors import ToolError
from pgcode.health import indexes, replication, security, sessions, settings, tables, wraparound
from pgcode.health._base import RANK, Check, CheckResult, Coverage, Status, Thresholds, registered, result, worst
from pgcode.health.coverage import coverage_facts, describe
from pgcode.health.coverage import summary as coverage_summary
from pgcode.health.locks import Locks, locked_relations, set_lock_timeout

__all__ = ["AREAS", "CHECKS", "Check", "CheckResult", "Coverage", "Status", "Thresholds", "run_checks", "select",
           "summarize"]

_MODULES = (wraparound, indexes, tables, sessions, settings, replication, security)  # their @check registrations
# The areas in the order the report presents them; the checks of an area in their module's order.
AREAS: tuple[str, ...] = ("wraparound", "indexes", "tables", "sessions", "memory", "replication", "wal", "security")
CHECKS: dict[str, Check] = dict(sorted(registered().items(), key=lambda kv: AREAS.index(kv[1].area)))


def select(names: list[str] | None) -> list[Check]:
    """The checks named (a check name or an area selects all of its checks); all when names is None.

    Raises ValueError naming what is unknown.
    """
    if not names:
        return list(CHECKS.values())
    unknown = [n for n in names if n not in CHECKS and n not in AREAS]
    if unknown:
        raise ValueError(", ".join(map(repr, unknown)))
    wanted = set(names)
    return [c for c in CHECKS.values() if c.name in wanted or c.area in wanted]


async def run_checks(ctx: ToolContext, thresholds: Thresholds, checks: list[Check] | None = None) -> list[CheckResult]:
    """Run checks one by one, each in a savepoint so that one failing never aborts the others.

    No check waits on a lock: lock_timeout is short, relations other sessions lock are left out of the
    lock-taking calls (and named under coverage.skipped), and a check that still meets a lock taken since
    the locks were read runs once more around it before it is unknown.
    """
    await set_lock_timeout(ctx)
    locks = await locked_relations(ctx)
    facts = await coverage_facts(ctx)
    out = []
    for c in checks if checks is not None else CHECKS.values():
        try:
            res, cov = await _run(ctx, c, thresholds, locks)
        except psycopg.errors.LockNotAvailable:
            locks = await locked_relations(ctx)
            try:
                res, cov = await _run(ctx, c, thresholds, locks)
            except (psycopg.Error, ToolError) as exc:
                res, cov = _unknown(c, exc, locks), Coverage(locks)
        except (psycopg.Error, ToolError) as exc:
            res, cov = _unknown(c, exc, locks), Coverage(locks)
        res["coverage"] = describe(c, cov, facts)
        if cov.skipped and res["status"] != "unknown":
            res["summary"] += f" ({len(cov.skipped)} locked objects skipped)"
        out.append(res)
    return out


async def _run(ctx: ToolContext, c: Check, thresholds: Thresholds, locks: Locks) -> tuple[CheckResult, Coverage]:
    cov = Coverage(locks)
    async with savepoint(ctx, "pgcode_health"):
        return await c.func(ctx, thresholds, cov), cov


def _unknown(c: Check, exc: Exception, locks: Locks) -> CheckResult:
    advice = "see the reason; the other checks ran"
    if isinstance(exc, ToolError):
        reason = exc.message
    elif isinstance(exc, psycopg.errors.LockNotAvailable):
        held = "; ".join(f"{r.object}: {r.reason}" for r in locks.by_oid.values()) or "a lock taken and released"
        reason = f"blocked by a lock twice within lock_timeout ({held})"
        advice = "run the check again once the lock is released"
    elif isinstance(exc, psycopg.errors.InsufficientPrivilege):
        reason = f"not permitted: {exc.diag.message_primary}"
        advice = "grant the role pg_monitor (or pg_read_all_stats) so the checks can read the server's statistics"
    elif isinstance(exc, psycopg.errors.UndefinedFunction | psycopg.errors.UndefinedTable):
        reason = f"not available on this server: {exc.diag.message_primary}"
        advice = "the check needs a function or view this server (version or extension) does not have"
    else:
        reason = (exc.diag.message_primary if isinstance(exc, psycopg.Error) else None) or type(exc).__name__
    return result(c.name, c.area, "unknown", f"{c.name} could not run: {reason}", None, None, advice,
                  {"reason": reason, "error": type(exc).__name__,
                   "sqlstate": exc.sqlstate if isinstance(exc, psycopg.Error) else None})


def summarize(results: list[CheckResult]) -> dict[str, Any]:
    """Overall status (the worst), counts per status, coverage, and the results worst first (area order kept on
    ties)."""
    order = {a: i for i, a in enumerate(AREAS)}
    ranked = sorted(results, key=lambda r: (-RANK[r["status"]], order.get(r["area"], len(order))))
    counts = {s: sum(1 for r in results if r["status"] == s) for s in ("critical", "warning", "unknown", "ok")}
    return {"status": worst([r["status"] for r in results]), "summary": counts, "coverage": coverage_summary(results),
            "checks": ranked}
