"""What each check examined and what its verdict rests on, so that ok means "looked and found nothing"."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pgcode.core.context import Row, ToolContext
from pgcode.db.queries import SYSTEM_SCHEMAS, load_query
from pgcode.health._base import Check, CheckResult, Coverage
from pgcode.health.probes import stats_window

_COUNTED = {"tables": "tables", "indexes": "indexes", "sequences": "sequences", "constraints": "constraints",
            "functions": "functions", "sessions": "sessions", "prepared transactions": "prepared_transactions",
            "standbys": "standbys", "replication slots": "replication_slots", "roles": "roles", "schemas": "schemas"}
_MEMORY_SETTINGS = 8  # the settings memory_settings reads


async def coverage_facts(ctx: ToolContext) -> Row:
    """Counts of what the checks examine and the ages of the statistics, read once per run (no relation locks)."""
    row = await ctx.fetchone(load_query("health_coverage"), {"system": SYSTEM_SCHEMAS})
    assert row is not None
    row.update(await stats_window(ctx))
    return row


def _days(since: dt.datetime | None, now: dt.datetime) -> float | None:
    return round((now - since).total_seconds() / 86400, 2) if since else None


def statistics(basis: str, facts: Row) -> dict[str, Any]:
    """Where a verdict's numbers come from, and how old they are."""
    if basis == "counters":
        return {"source": "cumulative statistics counters", "stats_reset": facts["stats_reset"],
                "observed_since": facts["observed_since"], "observed_days": facts["observed_days"]}
    if basis == "analyze":
        return {"source": "planner statistics (pg_stats, reltuples) from ANALYZE",
                "oldest_analyze": facts["oldest_analyze"],
                "oldest_analyze_days": _days(facts["oldest_analyze"], facts["now"]),
                "never_analyzed_tables": facts["never_analyzed"]}
    if basis == "live":
        return {"source": "the server's state now"}
    return {"source": "system catalogs, now (exact)"}


def describe(c: Check, cov: Coverage, facts: Row) -> dict[str, Any]:
    """A check's coverage: objects examined (the skipped ones not among them), what was skipped and why, basis."""
    if c.examines in _COUNTED:
        total = int(facts[_COUNTED[c.examines]])
    elif c.examines == "settings":
        total = _MEMORY_SETTINGS
    else:
        total = 1
    skipped_whole = sum(1 for s in cov.skipped if "skipped" not in s)
    return {"objects": c.examines, "examined": max(total - skipped_whole, 0), "skipped": cov.skipped,
            "complete": skipped_whole == 0, "statistics": statistics(c.basis, facts)}


def summary(results: list[CheckResult]) -> dict[str, Any]:
    """Coverage of a whole run: which checks could not run or left objects out, each skipped object and why,
    and the statistics the verdicts rest on."""
    skipped: dict[str, dict[str, Any]] = {}
    stats: dict[str, Any] = {}
    for r in results:
        cov = r.get("coverage") or {}
        for s in cov.get("skipped", []):
            entry = skipped.setdefault(s["object"], {"object": s["object"], "reason": s["reason"], "checks": []})
            entry["checks"].append(r["check"])
        stats.update({k: v for k, v in cov.get("statistics", {}).items() if k != "source"})
    unknown = [r["check"] for r in results if r["status"] == "unknown"]
    partial = [r["check"] for r in results if r["status"] != "unknown"
               and not (r.get("coverage") or {}).get("complete", True)]
    return {"checks": len(results), "complete": len(results) - len(unknown) - len(partial),
            "could_not_run": unknown, "partial": partial, "skipped": list(skipped.values()), "statistics": stats}
