"""The health report as Markdown: summary, findings worst first, sections per area, then the monitoring tables."""

from __future__ import annotations

import re
from typing import Any

from pgcode.health._base import size
from pgcode.report import changes
from pgcode.report._format import columns, coverage_lines, examined, shown_threshold, shown_value, value, when
from pgcode.report.changes import Cell, Trend

# Escaped: what could start markup (emphasis, code, links, tables). Underscores stay: GitHub Markdown ignores
# them inside words, and names are full of them. <, > and & become entities, so no HTML gets through.
_SPECIAL = re.compile(r"([\\`*\[\]|~])")
_LABEL = {"critical": "🔴 CRITICAL", "warning": "🟠 WARNING", "unknown": "⚪ UNKNOWN", "ok": "🟢 OK"}


def esc(text: Any) -> str:
    """Database text as inert Markdown: no HTML, no links or code, no table breaks, one line."""
    s = str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    s = " ".join(s.split())
    return _SPECIAL.sub(r"\\\1", s)


def _trend(cell: Cell) -> str:
    """A figure and its arrow, with the baseline's value: 12 MB ▲ (was 8 MB)."""
    if not isinstance(cell, Trend):
        return esc(cell)
    return f"{esc(cell.text)} {cell.arrow} (was {esc(cell.was)})"


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return [*out, ""]


def _objects(check: dict[str, Any]) -> list[str]:
    details = check.get("details")
    rows = (details.get("items") or details.get("findings")) if isinstance(details, dict) else None
    if not rows or not isinstance(details, dict):
        return []
    cols = columns(rows)
    out = _table([esc(c) for c in cols], [[esc(value(c, r.get(c))) for c in cols] for r in rows])
    more = int(details.get("count", len(rows))) - len(rows)
    if more > 0:
        out.insert(-1, f"\n…and {more:,} more.")
    return out


def _check_line(c: dict[str, Any]) -> list[str]:
    return [f"#### {_LABEL[c['status']]} — {esc(c['check'])}", "", esc(c["summary"]), "",
            f"- **value:** {esc(shown_value(c))}", f"- **threshold:** {esc(shown_threshold(c))}",
            f"- **advice:** {esc(c['advice'])}", "", *_objects(c)]


def render(report: dict[str, Any]) -> str:
    s = report["summary"]
    lines = [f"# {esc(report['title'])}: {esc(report['database'])}", "",
             f"Generated {esc(report['generated_at'])} in {report['duration_ms']:.0f} ms"
             + (f" · {esc(report['server']['server_version'])}" if report.get("server") else "")
             + (f" · database size {esc(report['database_size']['size_pretty'])}"
                if report.get("database_size") else "")
             + (f" · saved as health snapshot #{report['snapshot']['id']}" if report.get("snapshot") else ""), "",
             f"**Overall: {_LABEL[report['status']]}** — {s['critical']} critical, {s['warning']} warning, "
             f"{s['unknown']} unknown, {s['ok']} ok", "", *_coverage(report), *_changes(report),
             "## Findings, worst first", ""]
    if report["findings"]:
        lines += _table(["status", "check", "summary", "value", "threshold"], [
            [_LABEL[c["status"]], esc(c["check"]), esc(c["summary"]),
             _trend(changes.check_trend(report, c, shown_value(c))), esc(shown_threshold(c))]
            for c in report["findings"]])
    else:
        lines += ["Every check passed.", ""]
    for area in report["areas"]:
        lines += [f"## {esc(area['title'])} ({_LABEL[area['status']]})", ""]
        lines += _table(["status", "check", "summary", "examined"], [
            [_LABEL[c["status"]], esc(c["check"]), esc(c["summary"]), esc(examined(c))] for c in area["checks"]])
        for c in area["checks"]:
            if c["status"] != "ok":
                lines += _check_line(c)
    lines += _monitoring(report)
    return "\n".join(lines).rstrip() + "\n"


def _changes(report: dict[str, Any]) -> list[str]:
    diff = report.get("changes")
    if not diff:
        return []
    lines = [f"## Changed since {esc(when(diff['baseline']['taken_at']))}", "",
             *[esc(line) + "  " for line in changes.headline(diff)], ""]
    for t in changes.tables(diff):
        lines += [f"### {esc(t.title)}", ""]
        if t.rows:
            lines += _table([esc(c) for c in t.header], [
                [_LABEL.get(str(cell), "") if col == "status" else _trend(cell)
                 for col, cell in zip(t.header, row, strict=True)] for row in t.rows])
        else:
            lines += [f"*{esc(t.empty)}*", ""]
        if t.note:
            lines += [f"*{esc(t.note)}*", ""]
    return lines


def _coverage(report: dict[str, Any]) -> list[str]:
    cov = report.get("coverage")
    if not cov:
        return []
    lines = ["## Coverage", "", *[esc(line) + "  " for line in coverage_lines(cov)], ""]
    if cov["skipped"]:
        lines += _table(["skipped object", "why", "checks"], [[esc(s["object"]), esc(s["reason"]),
                                                               esc(", ".join(s["checks"]))] for s in cov["skipped"]])
    return lines


def _monitoring(report: dict[str, Any]) -> list[str]:
    lines = ["## Database size by table", ""]
    if report.get("tables"):
        lines += _table(["table", "total", "table", "indexes", "toast"], [
            [esc(f"{t['schema']}.{t['table']}"),
             _trend(changes.table_size_trend(report, f"{t['schema']}.{t['table']}", size(t["size_bytes"]))),
             size(t["table_bytes"]),
             size(t["index_bytes"]), size(t["toast_bytes"])] for t in report["tables"]])
    lines += ["## Connections by state", ""]
    if report.get("connections"):
        lines += _table(["state", "total", "waiting on locks", "longest (s)"], [
            [esc(c["state"]), str(c["total"]), str(c["waiting_on_locks"]), esc(value("s", c["longest_duration"]))]
            for c in report["connections"]])
    lines += ["## Cache hit ratios", ""]
    cache = report.get("cache")
    if cache:
        lines += _table(["scope", "hit ratio"], [[k.removesuffix("_hit_ratio"), value("ratio", cache[k])]
                                                 for k in ("database_hit_ratio", "table_hit_ratio",
                                                           "index_hit_ratio", "toast_hit_ratio")])
    lines += ["## Top queries by total time", ""]
    if report.get("top_queries"):
        lines += _table(["total ms", "calls", "mean ms", "share", "query"], [
            [value("ms", q["total_exec_time_ms"]), f"{q['calls']:,}",
             _trend(changes.query_trend(report, q["queryid"], value("ms", q["mean_exec_time_ms"]))),
             f"{q['percent_of_total_time'] or 0}%", esc(q["query"][:300])] for q in report["top_queries"]])
    for key, why in report.get("unavailable", {}).items():
        lines += [f"*{esc(key)} unavailable: {esc(why)}*", ""]
    return lines
