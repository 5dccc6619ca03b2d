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


def examined(check: dict[str, Any]) -> str:
    """What a check looked at: "12 tables (1 skipped: locked)", with the age of the statistics it rests on."""
    cov = check.get("coverage")
    if not isinstance(cov, dict):
        return ""
    text = f"{cov['examined']:,} {cov['objects']}"
    if cov["skipped"]:
        text += f" ({len(cov['skipped'])} skipped)"
    stats = cov.get("statistics") or {}
    if stats.get("observed_days") is not None:
        text += f"; counters over {stats['observed_days']:g} days"
    elif "oldest_analyze_days" in stats:
        days = stats["oldest_analyze_days"]
        text += f"; oldest ANALYZE {days:g} days ago" if days is not None else "; never analyzed"
    return text


def when(v: Any) -> str:
    """A timestamp to the minute, as the server wrote it: 2026-11-22 10:04."""
    return str(v)[:16].replace("T", " ")


def _span(days: float) -> str:
    return f"{days:g} days" if days >= 1 else f"{days * 24:.1f} hours"


def coverage_lines(cov: dict[str, Any]) -> list[str]:
    """The report's coverage in sentences: checks complete, partial, not run; the statistics' ages."""
    lines = [f"{cov['complete']} of {cov['checks']} checks looked at everything"
             + (f"; {len(cov['partial'])} left locked objects out ({', '.join(cov['partial'])})"
                if cov["partial"] else "")
             + (f"; {len(cov['could_not_run'])} could not run ({', '.join(cov['could_not_run'])})"
                if cov["could_not_run"] else "")]
    ages = statistics_ages(cov.get("statistics") or {})
    if ages:
        lines.append("Based on " + "; ".join(ages))
    return lines


def statistics_ages(stats: dict[str, Any]) -> list[str]:
    """The ages of the statistics a report rests on, one phrase each."""
    out = []
    if stats.get("observed_since"):
        days = stats.get("observed_days")
        out.append(f"activity counters since {when(stats['observed_since'])}"
                   + (f" ({_span(days)})" if days is not None else "")
                   + ("" if stats.get("stats_reset") else ", never reset"))
    if stats.get("oldest_analyze"):
        out.append(f"oldest ANALYZE {when(stats['oldest_analyze'])}")
    if stats.get("never_analyzed_tables"):
        out.append(f"{stats['never_analyzed_tables']:,} tables never analyzed")
    if "pg_stat_statements_reset" in stats:
        out.append(f"pg_stat_statements since {when(stats['pg_stat_statements_reset'])}"
                   if stats["pg_stat_statements_reset"] else "pg_stat_statements reset time unknown")
    return out
