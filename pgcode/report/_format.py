"""How report values read: byte sizes, ratios, counts, and the columns shown for a check's objects."""

from __future__ import annotations

from typing import Any

from pgcode.health._base import size

# Columns a check's objects show first, when present; other keys follow up to MAX_COLUMNS.
_PREFERRED = ("schema", "table", "index", "name", "sequence", "constraint", "column", "columns", "function", "role",
              "pid", "blocked_pid", "application_name", "usename", "state", "seconds", "waiting_seconds",
              "blocked_by", "kind", "size_bytes", "bloat_bytes", "bloat_ratio", "dead_tuples", "dead_ratio",
              "live_tuples", "used_ratio", "last_value", "limit_value", "column_type", "redundant_with",
              "seq_scan", "rows", "slot_name", "retained_wal_bytes", "query", "fix")
MAX_COLUMNS = 7
STATUS_ORDER = ("critical", "warning", "unknown", "ok")


def columns(rows: list[dict[str, Any]]) -> list[str]:
    keys: dict[str, None] = {}
    for row in rows:
        keys.update(dict.fromkeys(row))
    first = [k for k in _PREFERRED if k in keys]
    rest = [k for k in keys if k not in first and not isinstance(rows[0].get(k), dict | list)]
    chosen = (first + rest)[:MAX_COLUMNS]
    if "fix" in keys and "fix" not in chosen:
        chosen[-1] = "fix"
    return chosen


def value(key: str, v: Any) -> str:
    """A cell: bytes as sizes, ratios as percentages, big numbers grouped, lists joined."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, list):
        return ", ".join(value(key, x) for x in v)
    if isinstance(v, dict):
        return ", ".join(f"{k}: {value(k, x)}" for k, x in v.items())
    if isinstance(v, int | float) and (key.endswith("_bytes") or key == "bytes"):
        return size(v)
    if isinstance(v, int | float) and (key.endswith("_ratio") or key == "ratio"):
        return f"{float(v):.1%}"
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:,.2f}".rstrip("0").rstrip(".") if abs(v) < 1e15 else f"{v:.3g}"
    return str(v)


def shown_value(check: dict[str, Any]) -> str:
    """A check's measured value, in the unit its thresholds use."""
    threshold = check.get("threshold")
    unit = threshold.get("unit", "") if isinstance(threshold, dict) else ""
    v = check.get("value")
    if isinstance(v, int | float) and not isinstance(v, bool):
        if unit == "bytes":
            return size(v)
        if _is_share(unit):
            return f"{float(v):.1%}"
    return value("value", v)


def _is_share(unit: str) -> bool:
    return "ratio" in unit or "share" in unit


def shown_threshold(check: dict[str, Any]) -> str:
    t = check.get("threshold")
    if t is False or (isinstance(t, int) and not isinstance(t, bool) and t == 0):
        return "none expected"  # any object found is a finding
    if not isinstance(t, dict):
        return value("threshold", t) or "n/a"
    if "warning" not in t:  # named limits, or warning/critical pairs per unit (bytes and seconds)
        return "; ".join(f"{k}: {shown_threshold({'threshold': v}) if isinstance(v, dict) else value(k, v)}"
                         for k, v in t.items())
    unit = t.get("unit", "")
    parts = []
    for level in ("warning", "critical"):
        limit = t.get(level)
        if limit is None:
            continue
        if isinstance(limit, int | float) and unit == "bytes":
            text = size(limit)
        elif isinstance(limit, int | float) and _is_share(unit):
            text = f"{float(limit):.0%}"
        else:
            text = value(level, limit)
        parts.append(f"{level} {text}")
    return ", ".join(parts) + (f" ({unit})" if unit and unit != "bytes" else "")
