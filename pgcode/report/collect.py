"""Gather a health report's data: every tool called through invoke() as the requesting principal."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

from pgcode.core.runtime import Runtime
from pgcode.errors import ErrorCode, ToolError
from pgcode.health import AREAS
from pgcode.types import Principal

AREA_TITLES = {
    "wraparound": "Wraparound and ID exhaustion", "indexes": "Indexes and constraints",
    "tables": "Tables and vacuum", "sessions": "Sessions and locks", "memory": "Memory and cache",
    "replication": "Replication", "wal": "WAL, archiving and checkpoints", "security": "Security",
}
TOP_TABLES = 15
TOP_QUERIES = 10

# The report's sections besides the health checks: (key, tool, arguments).
_SECTIONS: tuple[tuple[str, str, dict[str, Any]], ...] = (
    ("server", "pg_server_version", {}),
    ("database_size", "pg_database_size", {}),
    ("tables", "pg_table_sizes", {"limit": TOP_TABLES}),
    ("connections", "pg_connection_stats", {"groupBy": "state"}),
    ("cache", "pg_cache_hit_ratio", {"limit": 10}),
)


async def collect(rt: Runtime, principal: Principal, *, thresholds: dict[str, Any] | None = None,
                  checks: list[str] | None = None, save: bool = False, baseline: int | None = None,
                  since: str | None = None) -> dict[str, Any]:
    """The report as data: health checks worst first, per area, and the monitoring sections.

    save stores a health snapshot (pg_health_snapshot, under `snapshot`); baseline (a snapshot id) or since (a
    look-back such as 7d) adds what changed since that snapshot (pg_health_snapshot_diff, under `changes`).
    Raises the ToolError of the health checks (FORBIDDEN without the read scope, INVALID_INPUT for bad
    thresholds) and of the snapshot tools (NOT_FOUND for an unknown baseline); a section whose tool fails
    otherwise is listed under `unavailable` with the reason.
    """
    started = time.perf_counter()
    trends = asyncio.ensure_future(_trends(rt, principal, thresholds or {}, save, baseline, since))
    calls = [rt.invoke("pg_analyze_db_health", {"thresholds": thresholds or {}, "checks": checks}, principal)]
    calls += [rt.invoke(tool, args, principal) for _, tool, args in _SECTIONS]
    statements = rt.db.caps.has_extension("pg_stat_statements")
    if statements:
        calls.append(rt.invoke("pg_stat_statements", {"orderBy": "total_time", "limit": TOP_QUERIES,
                                                      "queryMaxLength": 2000}, principal))
    results = await asyncio.gather(*calls, return_exceptions=True)
    snapshot, changes = await trends
    for res in results:
        if isinstance(res, ToolError) and res.code in (ErrorCode.FORBIDDEN, ErrorCode.RATE_LIMITED):
            raise res
        if isinstance(res, BaseException) and not isinstance(res, ToolError):
            raise res
    if isinstance(results[0], ToolError):
        raise results[0]
    health: dict[str, Any] = results[0]  # type: ignore[assignment]
    report: dict[str, Any] = {
        "title": "PostgreSQL health report", "generated_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "database": health["database"], "status": health["status"], "summary": health["summary"],
        "findings": [c for c in health["checks"] if c["status"] != "ok"],
        "areas": [{"area": a, "title": AREA_TITLES.get(a, a), "status": _worst(a, health["checks"]),
                   "checks": [c for c in health["checks"] if c["area"] == a]} for a in AREAS
                  if any(c["area"] == a for c in health["checks"])],
        "thresholds": health["thresholds"], "unavailable": {}, "coverage": health["coverage"],
    }
    for (key, tool, _), res in zip(_SECTIONS, results[1:], strict=False):
        report[key] = None if isinstance(res, ToolError) else res
        if isinstance(res, ToolError):
            report["unavailable"][key] = f"{tool}: {res.message}"
    if statements:
        res = results[-1]
        if isinstance(res, ToolError):
            report["top_queries"] = None
            report["unavailable"]["top_queries"] = f"pg_stat_statements: {res.message}"
        else:
            assert not isinstance(res, BaseException)  # any other exception was raised above
            report["top_queries"] = res["statements"]
            report["coverage"]["statistics"]["pg_stat_statements_reset"] = res.get("stats_reset")
    else:
        report["top_queries"] = None
        report["unavailable"]["top_queries"] = "the pg_stat_statements extension is not installed"
    if snapshot is not None:
        report["snapshot"] = {k: snapshot[k] for k in ("id", "taken_at", "principal", "status", "retention")}
    if changes is not None:
        report["changes"] = changes
    report["duration_ms"] = round((time.perf_counter() - started) * 1000, 1)
    return report


async def _trends(rt: Runtime, principal: Principal, thresholds: dict[str, Any], save: bool, baseline: int | None,
                  since: str | None) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The snapshot saved (when asked) and the changes since the baseline: compared with the snapshot just
    saved, else with the database now."""
    saved = await rt.invoke("pg_health_snapshot", {"thresholds": thresholds}, principal) if save else None
    if baseline is None and since is None:
        return saved, None
    args: dict[str, Any] = {"baseline": baseline} if baseline is not None else {"since": since}
    args.update({"target": saved["id"]} if saved else {"thresholds": thresholds})
    return saved, await rt.invoke("pg_health_snapshot_diff", args, principal)


def _worst(area: str, checks: list[dict[str, Any]]) -> str:
    rank = {"critical": 3, "warning": 2, "unknown": 1, "ok": 0}
    return max((c["status"] for c in checks if c["area"] == area), key=rank.__getitem__, default="ok")
