"""What changed between two health snapshots: findings, growth, dead tuples and bloat, ID burn, query regressions.

Pure functions over snapshot figures (pgcode/health/snapshots.py); the tools, the report and the CLI share them.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from pydantic import Field

from pgcode.core.registry import ToolInput
from pgcode.health._base import RANK, XID_SPACE
from pgcode.health.vacuum import STOP_MARGIN

FINDING = ("warning", "critical")
_SINCE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(m|min|h|d|w)\s*$", re.IGNORECASE)
_UNIT_SECONDS = {"m": 60, "min": 60, "h": 3_600, "d": 86_400, "w": 604_800}
_MAX_SINCE = dt.timedelta(days=3650)
_STEADY = 0.01  # a figure that moved by 1 % or less gets no arrow: an XID age one higher is no trend


def parse_since(text: str) -> dt.timedelta:
    """A look-back like 30m, 12h, 7d or 2w; ValueError saying what is accepted otherwise."""
    m = _SINCE.match(text)
    if m is None:
        raise ValueError(f"{text!r} is not a duration: give a number and a unit (m, h, d or w), e.g. 12h or 7d")
    span = dt.timedelta(seconds=float(m.group(1)) * _UNIT_SECONDS[m.group(2).lower()])
    if not dt.timedelta(0) < span <= _MAX_SINCE:
        raise ValueError(f"{text!r} is out of range: more than zero and at most 3650 days")
    return span


class TrendLimits(ToolInput):
    """When a change counts: what makes a query a regression, and how many rows each list keeps."""

    regression_min_calls: int = Field(10, ge=1, le=10**9, description="A query regresses only with at least this "
                                      "many calls since the baseline")
    regression_ratio: float = Field(1.5, gt=1, le=1000, description="...and a mean time since the baseline at least "
                                    "this multiple of its mean at the baseline")
    regression_min_ms: float = Field(1.0, ge=0, le=3_600_000, description="...and at least this many milliseconds "
                                     "slower per call")
    max_items: int = Field(20, ge=1, le=1000, description="Most rows per list (tables, indexes, queries)")


def diff(base: dict[str, Any], now: dict[str, Any], limits: TrendLimits | None = None) -> dict[str, Any]:
    """The changes from snapshot `base` (a stored row: id, taken_at, principal, figures) to figures `now`."""
    lim = limits or TrendLimits()
    before, after = base["figures"], now
    at_before, at_after = _when(base["taken_at"]), taken_at(after)
    hours = (at_after - at_before).total_seconds() / 3600
    tables = _growth(before["tables"], after["tables"], _table_key, "total_bytes", lim.max_items)
    return {
        "baseline": {"id": base["id"], "taken_at": at_before.isoformat(), "principal": base["principal"],
                     "status": before["status"], **({"chosen": base["chosen"]} if base.get("chosen") else {})},
        "current": {"id": now.get("id"), "taken_at": at_after.isoformat(), "status": after["status"]},
        "hours": round(hours, 4),
        "findings": _findings(before["checks"], after["checks"]),
        "checks": _check_values(before["checks"], after["checks"]),
        "tables": tables,
        "indexes": _growth(before["indexes"], after["indexes"], _index_key, "bytes", lim.max_items),
        "dead_tuples_and_bloat": _vacuum(before["tables"]["items"], after["tables"]["items"], lim.max_items),
        "ids": _ids(before["ids"], after["ids"], hours),
        "queries": _queries(before["queries"], after["queries"], hours, lim),
        "limits": lim.model_dump(),
    }


def taken_at(figures: dict[str, Any]) -> dt.datetime:
    """When figures were measured: their snapshot's taken_at, else the time their IDs were read."""
    return _when(figures.get("taken_at") or figures["ids"]["at"])


def _when(value: dt.datetime | str) -> dt.datetime:
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)


def trend(before: float | None, after: float | None, higher_is_worse: bool = True) -> dict[str, Any] | None:
    """An arrow for a figure with a baseline: up or down, and whether the move is for the worse."""
    if before is None or after is None or abs(after - before) <= _STEADY * max(abs(before), abs(after)):
        return None
    up = after > before
    return {"before": before, "after": after, "direction": "up" if up else "down", "worse": up == higher_is_worse}


def _findings(before: dict[str, Any], after: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    out: dict[str, list[dict[str, Any]]] = {"new": [], "resolved": [], "worse": [], "better": [], "objects": [],
                                            "not_compared": []}
    for name in [*after, *(n for n in before if n not in after)]:
        b, a = before.get(name), after.get(name)
        if a is None or b is None:
            out["not_compared"].append({"check": name, "reason": "not run now" if a is None else
                                        "not run in the baseline"})
            continue
        was, now = b["status"], a["status"]
        if "unknown" in (was, now):
            if was != now:
                out["not_compared"].append({"check": name, "reason": f"{was} before, {now} now"})
            continue
        if now in FINDING and was not in FINDING:
            out["new"].append({"check": name, "area": a["area"], "status": now, "summary": a["summary"],
                               "objects": a.get("objects", [])})
        elif was in FINDING and now not in FINDING:
            out["resolved"].append({"check": name, "area": a["area"], "was": was, "summary": b["summary"],
                                    "objects": b.get("objects", [])})
        elif was in FINDING:
            if was != now:
                out["worse" if RANK[now] > RANK[was] else "better"].append(
                    {"check": name, "area": a["area"], "before": was, "after": now, "summary": a["summary"]})
            added = sorted(set(a.get("objects", [])) - set(b.get("objects", [])))
            removed = sorted(set(b.get("objects", [])) - set(a.get("objects", [])))
            if added or removed:
                out["objects"].append({"check": name, "added": added, "removed": removed})
    return out


def _check_values(before: dict[str, Any], after: dict[str, Any]) -> dict[str, dict[str, Any]]:
    out = {}
    for name, a in after.items():
        b = before.get(name)
        move = trend(b.get("value"), a.get("value"), a.get("higher_is_worse", True)) if b else None
        if move:
            out[name] = move
    return out


def _table_key(r: dict[str, Any]) -> str:
    return f"{r['schema']}.{r['table']}"


def _index_key(r: dict[str, Any]) -> str:
    return f"{r['schema']}.{r['index']}"


def _growth(before: dict[str, Any], after: dict[str, Any], key: Any, size: str, limit: int) -> dict[str, Any]:
    """Size changes of the largest relations. One missing from the baseline's list is `new` when that list held
    every relation (it did not exist), else `entered` (new, or grown into the largest)."""
    old = {key(r): r for r in before["items"]}
    cur = {key(r): r for r in after["items"]}
    rows = []
    for name, r in cur.items():
        b = old.get(name)
        if b is None:
            change = "new" if before["count"] <= len(before["items"]) else "entered"
            rows.append({"object": name, "before": None, "after": r[size], "growth_bytes": r[size],
                         "growth_pct": None, "change": change})
            continue
        grown = r[size] - b[size]
        if grown:
            rows.append({"object": name, "before": b[size], "after": r[size], "growth_bytes": grown,
                         "growth_pct": round(100 * grown / b[size], 1) if b[size] else None,
                         "change": "grown" if grown > 0 else "shrunk"})
    for name, b in old.items():
        if name not in cur:
            change = "gone" if after["count"] <= len(after["items"]) else "left"
            rows.append({"object": name, "before": b[size], "after": None, "growth_bytes": -b[size],
                         "growth_pct": None, "change": change})
    rows.sort(key=lambda r: (-abs(r["growth_bytes"]), r["object"]))
    total = {"before": sum(r[size] for r in before["items"]), "after": sum(r[size] for r in after["items"])}
    return {"items": rows[:limit], "count": len(rows), "truncated": len(rows) > limit, "listed": total,
            "relations": {"before": before["count"], "after": after["count"]}}


def _vacuum(before: list[dict[str, Any]], after: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """Dead tuples and estimated bloat of the tables in both snapshots' lists, the largest moves first."""
    old = {_table_key(r): r for r in before}
    rows = []
    for r in after:
        b = old.get(_table_key(r))
        if b is None:
            continue
        dead = _delta(b["dead_tuples"], r["dead_tuples"])
        wasted = _delta(b["bloat_bytes"], r["bloat_bytes"])
        if dead or wasted:
            rows.append({"object": _table_key(r), "dead_tuples_before": b["dead_tuples"],
                         "dead_tuples_after": r["dead_tuples"], "dead_tuples_change": dead,
                         "bloat_bytes_before": b["bloat_bytes"], "bloat_bytes_after": r["bloat_bytes"],
                         "bloat_bytes_change": wasted, "bloat_ratio_before": b["bloat_ratio"],
                         "bloat_ratio_after": r["bloat_ratio"]})
    rows.sort(key=lambda r: (-abs(r["dead_tuples_change"] or 0), -abs(r["bloat_bytes_change"] or 0), r["object"]))
    return {"items": rows[:limit], "count": len(rows), "truncated": len(rows) > limit,
            "note": "bloat is estimated from planner statistics: it moves with ANALYZE, not with every write"}


def _delta(before: int | None, after: int | None) -> int | None:
    return after - before if before is not None and after is not None else None


def _ids(before: dict[str, Any], after: dict[str, Any], hours: float) -> dict[str, Any]:
    """Transaction IDs consumed per hour between the snapshots, and the time left at that rate until
    autovacuum_freeze_max_age (this database) and until the server stops assigning IDs (the oldest database)."""
    consumed = after["next_xid"] - before["next_xid"]
    rate = consumed / hours if hours > 0 and consumed > 0 else None

    def hours_left(limit: int, age: int) -> float | None:
        return round(max(limit - age, 0) / rate, 1) if rate else None

    return {"xids_consumed": consumed, "xids_per_hour": round(rate, 1) if rate else 0.0,
            "xid_age_before": before["xid_age"], "xid_age_after": after["xid_age"],
            "xid_age_change": after["xid_age"] - before["xid_age"],
            "mxid_age_before": before["mxid_age"], "mxid_age_after": after["mxid_age"],
            "freeze_max_age": after["freeze_max_age"], "cluster_xid_age": after["cluster_xid_age"],
            "hours_to_freeze_max_age": hours_left(after["freeze_max_age"], after["xid_age"]),
            "hours_to_wraparound": hours_left(XID_SPACE - STOP_MARGIN, after["cluster_xid_age"]),
            "note": None if rate else "no transaction IDs were consumed between the snapshots: no runway to compute"}


def _queries(before: dict[str, Any], after: dict[str, Any], hours: float, lim: TrendLimits) -> dict[str, Any]:
    """Top queries compared by queryid over the calls made since the baseline (the counters' difference)."""
    rule = (f"a regression has ≥ {lim.regression_min_calls} calls since the baseline and a mean time since then "
            f"≥ {lim.regression_ratio:g} times its mean at the baseline and ≥ {lim.regression_min_ms:g} ms slower")
    if not before.get("available") or not after.get("available"):
        why = after.get("reason") if not after.get("available") else before.get("reason")
        return {"available": False, "reason": f"pg_stat_statements: {why}", "rule": rule}
    reset = bool(before.get("stats_reset") and after.get("stats_reset") != before.get("stats_reset"))
    old = {q["queryid"]: q for q in before["items"]}
    compared, new = [], []
    for q in after["items"]:
        b = old.get(q["queryid"])
        if b is None:
            new.append({k: q[k] for k in ("queryid", "query", "calls", "mean_ms", "total_ms")})
            continue
        counted_again = reset or q["calls"] < b["calls"]  # the counters restarted after the baseline
        calls = q["calls"] if counted_again else q["calls"] - b["calls"]
        total = q["total_ms"] if counted_again else q["total_ms"] - b["total_ms"]
        mean = total / calls if calls > 0 else None
        was = b["mean_ms"]
        row = {"queryid": q["queryid"], "query": q["query"], "calls_before": b["calls"], "calls_since": calls,
               "calls_per_hour": round(calls / hours, 1) if hours > 0 else None,
               "mean_ms_before": round(was, 3), "mean_ms_since": round(mean, 3) if mean is not None else None,
               "mean_change_pct": round(100 * (mean - was) / was, 1) if mean is not None and was else None,
               "total_ms_since": round(total, 3), "counters_reset": counted_again}
        row["regressed"] = (calls >= lim.regression_min_calls and mean is not None
                            and mean >= was * lim.regression_ratio and mean - was >= lim.regression_min_ms)
        if calls > 0:
            compared.append(row)
    regressions = sorted((r for r in compared if r["regressed"]),
                         key=lambda r: -(r["mean_ms_since"] - r["mean_ms_before"]) * r["calls_since"])
    return {"available": True, "rule": rule, "counters_reset": reset,
            "regressions": regressions[: lim.max_items], "regression_count": len(regressions),
            "compared": compared, "new": new[: lim.max_items]}
