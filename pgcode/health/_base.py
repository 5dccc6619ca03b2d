"""What every health check shares: the result shape, the thresholds, grading, and the check registry."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal, NotRequired, TypedDict

from pydantic import Field

from pgcode.core.context import Row, ToolContext
from pgcode.core.registry import ToolInput
from pgcode.db.queries import SYSTEM_SCHEMAS, load_query
from pgcode.health.locks import Locks, skipped

Status = Literal["ok", "warning", "critical", "unknown"]
RANK: dict[str, int] = {"critical": 3, "warning": 2, "unknown": 1, "ok": 0}
XID_SPACE = 2**31  # transaction IDs and multixacts wrap around after 2^31
MB = 1024 * 1024
GB = 1024 * MB


class CheckResult(TypedDict):
    """One check's verdict: what was measured, against what, what was found, and what to do."""

    check: str
    area: str
    status: Status
    summary: str
    value: Any
    threshold: Any
    details: dict[str, Any]
    advice: str
    coverage: NotRequired[dict[str, Any]]


class Thresholds(ToolInput):
    """Limits the checks grade against; every one has a default and may be overridden by the caller."""

    max_items: int = Field(20, ge=1, le=10_000)
    wraparound_warning_ratio: float = Field(1.25, gt=0)
    wraparound_critical_fraction: float = Field(0.5, gt=0, le=1)
    xmin_horizon_warning_seconds: float = Field(600, gt=0)
    xmin_horizon_critical_seconds: float = Field(3600, gt=0)
    xmin_horizon_warning_xids: int = Field(10_000_000, ge=0)
    overflow_warning_ratio: float = Field(0.75, gt=0, le=1)
    overflow_critical_ratio: float = Field(0.9, gt=0, le=1)
    unused_index_min_bytes: int = Field(MB, ge=0)
    unused_index_critical_bytes: int = Field(GB, ge=0)
    min_observed_days: float = Field(7, ge=0)
    bloat_min_bytes: int = Field(10 * MB, ge=0)
    bloat_warning_ratio: float = Field(0.3, gt=0, le=1)
    bloat_critical_ratio: float = Field(0.6, gt=0, le=1)
    dead_tuples_min: int = Field(1000, ge=0)
    dead_tuple_warning_ratio: float = Field(0.2, gt=0, le=1)
    dead_tuple_critical_ratio: float = Field(0.5, gt=0, le=1)
    stale_days: float = Field(7, gt=0)
    stale_min_modified_ratio: float = Field(0.2, ge=0)
    seq_scan_min_rows: int = Field(10_000, ge=0)
    seq_scan_min_scans: int = Field(100, ge=0)
    seq_scan_ratio: float = Field(0.5, ge=0, le=1)
    fk_min_rows: int = Field(1000, ge=0)
    long_query_warning_seconds: float = Field(300, gt=0)
    long_query_critical_seconds: float = Field(1800, gt=0)
    idle_in_transaction_warning_seconds: float = Field(60, gt=0)
    idle_in_transaction_critical_seconds: float = Field(600, gt=0)
    prepared_xact_warning_seconds: float = Field(300, gt=0)
    prepared_xact_critical_seconds: float = Field(3600, gt=0)
    lock_wait_warning_seconds: float = Field(10, ge=0)
    lock_wait_critical_seconds: float = Field(300, ge=0)
    connections_warning_ratio: float = Field(0.75, gt=0, le=1)
    connections_critical_ratio: float = Field(0.9, gt=0, le=1)
    cache_hit_warning: float = Field(0.95, gt=0, le=1)
    cache_hit_critical: float = Field(0.9, gt=0, le=1)
    cache_min_blocks: int = Field(10_000, ge=0)
    replication_lag_warning_bytes: int = Field(256 * MB, ge=0)
    replication_lag_critical_bytes: int = Field(GB, ge=0)
    replication_lag_warning_seconds: float = Field(60, ge=0)
    replication_lag_critical_seconds: float = Field(300, ge=0)
    slot_wal_warning_bytes: int = Field(GB, ge=0)
    slot_wal_critical_bytes: int = Field(10 * GB, ge=0)
    checkpoint_warning_ratio: float = Field(0.3, ge=0, le=1)
    checkpoint_critical_ratio: float = Field(0.6, ge=0, le=1)
    checkpoint_min_count: int = Field(10, ge=0)


@dataclass(slots=True)
class Coverage:
    """What one check could not look at: the locked objects it left out (or measured only from the catalog)."""

    locks: Locks
    skipped: list[dict[str, Any]] = field(default_factory=list)

    def skip_locked(self, kinds: str, what: str | None = None) -> None:
        """Name every locked relation of these relkinds ('r', 'i', ...) as skipped (`what`: the part left out)."""
        self.skipped += skipped(self.locks.user_relations(kinds), what)

    def around(self, rows: list[Row], what: str, *names: str) -> None:
        """Mark rows measured around a lock (`schema` plus a `names` key is a locked relation) with locked: true,
        and name them under skipped with the part (`what`) left out or estimated."""
        held = {r.object: r for r in self.locks.by_oid.values()}
        for row in rows:
            lock = next((held[o] for o in (f"{row['schema']}.{row[k]}" for k in names) if o in held), None)
            if lock is not None:
                row["locked"] = True
                self.skipped.append({"object": f"{row['schema']}.{row[names[0]]}", "reason": lock.reason,
                                     "skipped": what})


CheckFunc = Callable[[ToolContext, Thresholds, Coverage], Awaitable[CheckResult]]
# What a check examines (counted for its coverage) and the statistics its verdict rests on.
Objects = Literal["database", "tables", "indexes", "sequences", "constraints", "functions", "sessions",
                  "prepared transactions", "standbys", "replication slots", "settings", "roles", "schemas",
                  "server counters"]
Basis = Literal["catalog", "counters", "analyze", "live"]
TABLES, INDEXES, SEQUENCES = "rpm", "iI", "S"  # the relkinds a check's locked objects are drawn from


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    area: str
    description: str
    func: CheckFunc
    examines: Objects = "database"
    basis: Basis = "catalog"


_CHECKS: dict[str, Check] = {}


def check(name: str, area: str, examines: Objects, basis: Basis) -> Callable[[CheckFunc], CheckFunc]:
    """Register `async (ctx, thresholds, coverage) -> CheckResult` as health check `name` of `area`.

    examines: the kind of object it looks at; basis: catalog (exact, now), counters (cumulative statistics
    since their reset), analyze (planner statistics from the last ANALYZE) or live (sessions now).
    """

    def register(func: CheckFunc) -> CheckFunc:
        if name in _CHECKS:
            raise ValueError(f"health check {name!r} registered twice")
        doc = (func.__doc__ or "").strip()
        if not doc:
            raise ValueError(f"health check {name!r} needs a docstring saying what it looks for")
        _CHECKS[name] = Check(name, area, doc.split("\n", 1)[0], func, examines, basis)
        return func

    return register


def registered() -> dict[str, Check]:
    return dict(_CHECKS)


def result(name: str, area: str, status: Status, summary: str, value: Any, threshold: Any, advice: str,
           details: dict[str, Any] | None = None) -> CheckResult:
    return {"check": name, "area": area, "status": status, "summary": summary, "value": value,
            "threshold": threshold, "details": details or {}, "advice": advice if status != "ok" else "none"}


def grade(value: float | None, warning: float, critical: float, *, higher_is_worse: bool = True) -> Status:
    """ok, warning or critical for a value against two limits; unknown when nothing was measured."""
    if value is None:
        return "unknown"
    if higher_is_worse:
        return "critical" if value >= critical else "warning" if value >= warning else "ok"
    return "critical" if value <= critical else "warning" if value <= warning else "ok"


def worst(statuses: list[Status]) -> Status:
    return max(statuses, key=RANK.__getitem__, default="ok")


def items(rows: list[Row], t: Thresholds, **extra: Any) -> dict[str, Any]:
    """The details of an object-listing check: the first max_items rows and whether more were found."""
    return {"items": rows[: t.max_items], "count": len(rows), "truncated": len(rows) > t.max_items, **extra}


def limits(warning: Any, critical: Any, unit: str | None = None) -> dict[str, Any]:
    out = {"warning": warning, "critical": critical}
    if unit:
        out["unit"] = unit
    return out


def size(n: float | int | None) -> str:
    """Bytes for people: 1.5 MB."""
    if n is None:
        return "n/a"
    value = float(n)
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(value) < 1024 or unit == "TB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")


async def bloat(ctx: ToolContext, t: Thresholds, name: str, query: str, what: str, advice: str) -> CheckResult:
    """Tables or indexes with estimated wasted space over the limits (the bloat_check estimate)."""
    rows = await ctx.fetch(load_query(query), {
        "schema": None, "table": None, "system": SYSTEM_SCHEMAS, "min_size": t.bloat_min_bytes,
        "min_ratio": t.bloat_warning_ratio, "limit": 10_000})
    rows = [r for r in rows if r["bloat_bytes"] >= t.bloat_min_bytes]
    top = max((float(r["bloat_ratio"]) for r in rows), default=0.0)
    wasted = sum(r["bloat_bytes"] for r in rows)
    return result(name, "tables" if what == "tables" else "indexes",
                  grade(top, t.bloat_warning_ratio, t.bloat_critical_ratio),
                  f"{len(rows)} {what} with ≥ {t.bloat_warning_ratio:.0%} estimated bloat ({size(wasted)} wasted)",
                  top, limits(t.bloat_warning_ratio, t.bloat_critical_ratio, "share of space wasted"), advice,
                  items(rows, t, wasted_bytes=wasted, method="estimate from pg_stats and reltuples; run ANALYZE "
                                                             "first, pgstattuple measures exactly"))
