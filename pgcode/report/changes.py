"""The "changed since" part of the report as plain rows, so that HTML and Markdown say the same: headline, findings,
growth, dead tuples and bloat, ID burn, query regressions; and the trend arrows beside figures with a baseline."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pgcode.health._base import size
from pgcode.report._format import value, when


@dataclass(frozen=True, slots=True)
class Trend:
    """A figure with its arrow: direction up or down; tone worse, better, or neutral (sizes: growth is not bad in
    itself)."""

    text: str
    direction: str
    tone: str
    was: str

    @property
    def arrow(self) -> str:
        return "▲" if self.direction == "up" else "▼"


Cell = str | Trend


@dataclass(frozen=True, slots=True)
class Table:
    title: str
    header: tuple[str, ...]
    rows: list[tuple[Cell, ...]]
    empty: str
    note: str | None = None


def trend(text: str, before: Any, after: Any, *, worse_when_up: bool | None, fmt: Any = None) -> Cell:
    """`text` with an arrow when the figure moved; worse_when_up None colours the arrow neutral."""
    if not isinstance(before, int | float) or not isinstance(after, int | float) or before == after:
        return text
    up = after > before
    tone = "neutral" if worse_when_up is None else "worse" if up == worse_when_up else "better"
    return Trend(text, "up" if up else "down", tone, (fmt or (lambda v: value("value", v)))(before))


def check_trend(report: dict[str, Any], check: dict[str, Any], text: str) -> Cell:
    """A check's shown value with its arrow when the baseline had a different value."""
    move = (report.get("changes") or {}).get("checks", {}).get(check["check"])
    if not move:
        return text
    return Trend(text, move["direction"], "worse" if move["worse"] else "better", value("value", move["before"]))


def table_size_trend(report: dict[str, Any], name: str, text: str) -> Cell:
    rows = (report.get("changes") or {}).get("tables", {}).get("items", [])
    row = next((r for r in rows if r["object"] == name), None)
    if row is None or row["before"] is None:
        return text
    return trend(text, row["before"], row["after"], worse_when_up=None, fmt=size)


def query_trend(report: dict[str, Any], queryid: Any, text: str) -> Cell:
    """A top query's mean time with an arrow from its mean at the baseline to its mean since."""
    compared = ((report.get("changes") or {}).get("queries") or {}).get("compared") or []
    row = next((r for r in compared if r["queryid"] == str(queryid)), None)
    if row is None:
        return text
    return trend(text, row["mean_ms_before"], row["mean_ms_since"], worse_when_up=True)


def headline(changes: dict[str, Any]) -> list[str]:
    """Which snapshot the report compares with, chosen how, and the overall status then and now."""
    base = changes["baseline"]
    lines = [f"Compared with health snapshot #{base['id']} taken {when(base['taken_at'])} by {base['principal']}"
             f" ({_hours(changes['hours'])} before)" + (f": {base['chosen']}" if base.get("chosen") else "") + ".",
             f"Overall status then {base['status']}, now {changes['current']['status']}."]
    ids = changes["ids"]
    if ids["note"]:
        lines.append(f"Transaction IDs: {ids['note']}.")
    else:
        lines.append(
            f"Transaction IDs: {ids['xids_consumed']:,} consumed ({ids['xids_per_hour']:,.0f} per hour); XID age "
            f"{ids['xid_age_before']:,} → {ids['xid_age_after']:,}; at this rate autovacuum_freeze_max_age "
            f"({ids['freeze_max_age']:,}) is reached in {_hours(ids['hours_to_freeze_max_age'])} and wraparound "
            f"in {_hours(ids['hours_to_wraparound'])}.")
    return lines


def _hours(h: float | None) -> str:
    if h is None:
        return "n/a"
    if h >= 48:
        return f"{h / 24:,.1f} days"
    if h >= 1:
        return f"{h:,.1f} h"
    return f"{h * 60:,.0f} min" if h * 60 >= 1 else "under a minute"


def tables(changes: dict[str, Any]) -> list[Table]:
    """The changes as tables, in the order the report shows them."""
    return [_findings(changes["findings"]), _growth("Largest tables", changes["tables"]),
            _growth("Largest indexes", changes["indexes"]), _vacuum(changes["dead_tuples_and_bloat"]),
            _regressions(changes["queries"])]


def _findings(f: dict[str, Any]) -> Table:
    rows: list[tuple[Cell, ...]] = []
    rows += [("new", c["status"], c["check"], _with_objects(c["summary"], c["objects"])) for c in f["new"]]
    rows += [("resolved", "ok", c["check"], f"was {c['was']}: {c['summary']}") for c in f["resolved"]]
    rows += [("worse", c["after"], c["check"], f"{c['before']} → {c['after']}: {c['summary']}") for c in f["worse"]]
    rows += [("better", c["after"], c["check"], f"{c['before']} → {c['after']}: {c['summary']}") for c in f["better"]]
    for c in f["objects"]:
        parts = ([f"new: {', '.join(c['added'])}"] if c["added"] else []) + (
            [f"gone: {', '.join(c['removed'])}"] if c["removed"] else [])
        rows.append(("objects", "", c["check"], "; ".join(parts)))
    rows += [("not compared", "", c["check"], c["reason"]) for c in f["not_compared"]]
    return Table("Findings", ("change", "status", "check", "what"), rows, "No finding appeared, went or changed.")


def _with_objects(summary: str, objects: list[str]) -> str:
    shown = ", ".join(objects[:10]) + (f" and {len(objects) - 10} more" if len(objects) > 10 else "")
    return f"{summary} ({shown})" if objects else summary


_CHANGE = {"new": "new", "entered": "new among the largest", "gone": "gone", "left": "no longer among the largest"}


def _growth(title: str, g: dict[str, Any]) -> Table:
    rows: list[tuple[Cell, ...]] = []
    for r in g["items"]:
        after = size(r["after"]) if r["after"] is not None else _CHANGE[r["change"]]
        sign = "+" if r["growth_bytes"] > 0 else "-" if r["growth_bytes"] < 0 else ""
        growth = f"{sign}{size(abs(r['growth_bytes']))}"
        rows.append((r["object"], size(r["before"]) if r["before"] is not None else _CHANGE[r["change"]],
                     trend(after, r["before"], r["after"], worse_when_up=None, fmt=size), growth,
                     f"{r['growth_pct']:+.1f}%" if r["growth_pct"] is not None else ""))
    more = f"{g['count'] - len(g['items'])} more changed" if g["truncated"] else None
    return Table(title, ("object", "before", "now", "growth", "growth %"), rows, "No size changed.", more)


def _vacuum(v: dict[str, Any]) -> Table:
    rows: list[tuple[Cell, ...]] = []
    for r in v["items"]:
        dead = trend(value("n", r["dead_tuples_after"]), r["dead_tuples_before"], r["dead_tuples_after"],
                     worse_when_up=True)
        wasted = trend(size(r["bloat_bytes_after"]), r["bloat_bytes_before"], r["bloat_bytes_after"],
                       worse_when_up=True, fmt=size) if r["bloat_bytes_after"] is not None else ""
        rows.append((r["object"], value("n", r["dead_tuples_before"]), dead, size(r["bloat_bytes_before"])
                     if r["bloat_bytes_before"] is not None else "", wasted))
    return Table("Dead tuples and bloat", ("table", "dead before", "dead now", "bloat before", "bloat now"), rows,
                 "No dead-tuple or bloat change among the largest tables.", v["note"])


def _regressions(q: dict[str, Any]) -> Table:
    if not q["available"]:
        return Table("Query regressions", ("queryid",), [], q["reason"])
    rows: list[tuple[Cell, ...]] = [
        (r["queryid"], r["query"], value("ms", r["mean_ms_before"]),
         trend(value("ms", r["mean_ms_since"]), r["mean_ms_before"], r["mean_ms_since"], worse_when_up=True),
         value("n", r["calls_since"]), value("n", r["calls_per_hour"])) for r in q["regressions"]]
    note = q["rule"] + (" (pg_stat_statements was reset in between: counts since the reset)"
                        if q["counters_reset"] else "")
    return Table("Query regressions", ("queryid", "query", "mean ms before", "mean ms since", "calls since",
                                       "calls per hour"), rows, "No query regressed.", note)
