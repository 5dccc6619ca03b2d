"""The health report as one self-contained HTML page: inline CSS and SVG, no scripts, no external requests.

Every string that comes from the database (names, query texts, settings) goes through h() (html.escape):
table names and queries are written by whoever can create tables or run queries.
"""

from __future__ import annotations

from typing import Any

from pgcode.health._base import size
from pgcode.report import changes, charts
from pgcode.report._format import columns, coverage_lines, examined, shown_threshold, shown_value, value, when
from pgcode.report.changes import Cell, Trend
from pgcode.report.charts import Bar, h

_CSS = """
:root { --critical: #c62828; --warning: #e67700; --unknown: #6b7280; --ok: #2e7d32; --ink: #1f2933;
        --muted: #61707f; --line: #d9dee4; --panel: #f6f8fa; --accent: #2457a6; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
       color: var(--ink); background: #fff; }
main { max-width: 1120px; margin: 0 auto; padding: 28px 28px 48px; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 34px 0 10px; padding-bottom: 6px; border-bottom: 2px solid var(--line); }
h3 { font-size: 15px; margin: 0 0 6px; }
.meta { color: var(--muted); margin: 0 0 18px; }
.overall { display: inline-block; padding: 6px 14px; border-radius: 6px; color: #fff; font-weight: 600; }
.cards { display: grid; grid-template-columns: repeat(4, 1fr); gap: 12px; margin: 18px 0 6px; }
.card { border: 1px solid var(--line); border-radius: 8px; padding: 10px 14px; border-top: 5px solid; }
.card b { display: block; font-size: 26px; line-height: 1.1; }
.card span { color: var(--muted); text-transform: uppercase; font-size: 12px; letter-spacing: .04em; }
.s-critical { --c: var(--critical); } .s-warning { --c: var(--warning); } .s-unknown { --c: var(--unknown); }
.s-ok { --c: var(--ok); }
.card.s-critical, .card.s-warning, .card.s-unknown, .card.s-ok { border-top-color: var(--c); }
.overall.s-critical, .overall.s-warning, .overall.s-unknown, .overall.s-ok { background: var(--c); }
.badge { display: inline-block; min-width: 70px; text-align: center; padding: 1px 8px; border-radius: 10px;
         font-size: 11px; font-weight: 700; letter-spacing: .03em; color: #fff; background: var(--c); }
table { border-collapse: collapse; width: 100%; margin: 6px 0 12px; font-size: 13px; }
th, td { text-align: left; vertical-align: top; padding: 5px 8px; border-bottom: 1px solid var(--line); }
th { background: var(--panel); font-weight: 600; white-space: nowrap; }
td.num { text-align: right; white-space: nowrap; font-variant-numeric: tabular-nums; }
td code, .query { font: 12px/1.4 ui-monospace, SFMono-Regular, Menlo, Consolas, monospace; word-break: break-word; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 18px 26px; }
.panel { border: 1px solid var(--line); border-radius: 8px; padding: 12px 14px; break-inside: avoid; }
.panel h3 { margin-bottom: 8px; }
.finding { border-left: 4px solid var(--c); background: var(--panel); padding: 10px 14px; margin: 10px 0 14px;
           border-radius: 0 6px 6px 0; break-inside: avoid; }
.finding p { margin: 4px 0; }
.finding table { background: #fff; }
.advice { color: #33404d; }
.more, .empty, .note { color: var(--muted); font-style: italic; }
svg.chart { display: block; max-width: 100%; height: auto; }
svg .label, svg .value, svg .legend { font: 11px -apple-system, "Segoe UI", Roboto, Arial, sans-serif;
                                      fill: var(--ink); }
svg .legend { fill: var(--muted); }
svg .track { fill: #edf0f3; }
svg .mark { stroke: var(--ink); stroke-dasharray: 3 2; stroke-width: 1; }
.trend { font-size: 11px; margin-left: 4px; } .trend.worse { color: var(--critical); }
.trend.better { color: var(--ok); } .trend.neutral { color: var(--accent); }
#changes h3 { margin: 16px 0 4px; }
footer { margin-top: 40px; color: var(--muted); font-size: 12px; border-top: 1px solid var(--line);
         padding-top: 10px; }
@media (max-width: 760px) { .grid { grid-template-columns: 1fr; } .cards { grid-template-columns: 1fr 1fr; } }
@media print {
  @page { margin: 14mm 12mm; }
  body { font-size: 10.5pt; }
  main { max-width: none; padding: 0; }
  * { -webkit-print-color-adjust: exact; print-color-adjust: exact; }
  h2 { break-after: avoid; }
  .panel, .finding, tr { break-inside: avoid; }
  .grid { grid-template-columns: 1fr; }  /* charts at full width: their labels stay legible on paper */
  .cards { grid-template-columns: repeat(4, 1fr); }
  a { color: inherit; text-decoration: none; }
}
"""
_SERIES = (("table", "#2457a6"), ("indexes", "#6f9ad8"), ("toast", "#b7cbe8"))
_LABELS = {"critical": "CRITICAL", "warning": "WARNING", "unknown": "UNKNOWN", "ok": "OK"}


def _badge(status: str) -> str:
    return f'<span class="badge s-{h(status)}">{_LABELS.get(status, h(status))}</span>'


def _objects(check: dict[str, Any]) -> str:
    details = check.get("details")
    rows = (details.get("items") or details.get("findings")) if isinstance(details, dict) else None
    if not rows:
        return ""
    cols = columns(rows)
    head = "".join(f"<th>{h(c)}</th>" for c in cols)
    body = "".join("<tr>" + "".join(_cell(c, r.get(c)) for c in cols) + "</tr>" for r in rows)
    more = int(details.get("count", len(rows))) - len(rows) if isinstance(details, dict) else 0
    tail = f'<p class="more">…and {more:,} more (raise maxItems to list them).</p>' if more > 0 else ""
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{tail}"


def _cell(key: str, v: Any) -> str:
    text = h(value(key, v))
    if key in ("query", "fix", "definition"):
        return f"<td><code>{text}</code></td>"
    numeric = isinstance(v, int | float) and not isinstance(v, bool)
    return f'<td class="num">{text}</td>' if numeric else f"<td>{text}</td>"


def _trend(cell: Cell) -> str:
    """A figure, and beside it an arrow coloured by whether the move is for the worse (title: the baseline's)."""
    if not isinstance(cell, Trend):
        return h(cell)
    return (f'{h(cell.text)}<span class="trend {h(cell.tone)}" title="was {h(cell.was)}">'
            f"{h(cell.arrow)}</span>")


def _finding(c: dict[str, Any]) -> str:
    return (f'<div class="finding s-{h(c["status"])}"><h3>{_badge(c["status"])} {h(c["check"])}</h3>'
            f'<p>{h(c["summary"])}</p><p><b>Value:</b> {h(shown_value(c))} · <b>Threshold:</b> '
            f'{h(shown_threshold(c))}</p><p class="advice"><b>Advice:</b> {h(c["advice"])}</p>{_objects(c)}</div>')


def render(report: dict[str, Any]) -> str:
    s = report["summary"]
    server = report.get("server") or {}
    db_size = report.get("database_size") or {}
    meta = " · ".join(x for x in (
        f"generated {report['generated_at']}", f"PostgreSQL {server['server_version']}" if server else "",
        f"database size {db_size['size_pretty']}" if db_size else "", f"built in {report['duration_ms']:.0f} ms",
        f"saved as health snapshot #{report['snapshot']['id']}" if report.get("snapshot") else "")
        if x)
    parts = [
        '<!doctype html><html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{h(report['title'])}: {h(report['database'])}</title><style>{_CSS}</style></head><body><main>",
        f"<header><h1>{h(report['title'])}: {h(report['database'])}</h1><p class=\"meta\">{h(meta)}</p>",
        f'<span class="overall s-{h(report["status"])}">Overall: {_LABELS[report["status"]]}</span>',
        '<div class="cards">' + "".join(
            f'<div class="card s-{k}"><b>{int(s[k])}</b><span>{k}</span></div>'
            for k in ("critical", "warning", "unknown", "ok")) + "</div></header>",
        _coverage(report), _changes(report),
        '<section id="findings"><h2>Findings, worst first</h2>', _findings_table(report), "</section>",
        '<section id="overview"><h2>At a glance</h2><div class="grid">', _charts(report), "</div></section>",
    ]
    for area in report["areas"]:
        rows = "".join(f"<tr><td>{_badge(c['status'])}</td><td>{h(c['check'])}</td><td>{h(c['summary'])}</td>"
                       f'<td class="num">{_trend(changes.check_trend(report, c, shown_value(c)))}</td>'
                       f"<td>{h(examined(c))}</td></tr>"
                       for c in area["checks"])
        parts.append(f'<section id="area-{h(area["area"])}"><h2>{h(area["title"])} {_badge(area["status"])}</h2>'
                     "<table><thead><tr><th>status</th><th>check</th><th>summary</th><th>value</th>"
                     "<th>examined</th></tr></thead>"
                     f"<tbody>{rows}</tbody></table>"
                     + "".join(_finding(c) for c in area["checks"] if c["status"] != "ok") + "</section>")
    parts.append(_queries_table(report))
    notes = "".join(f"<li>{h(k)}: {h(v)}</li>" for k, v in report.get("unavailable", {}).items())
    parts.append(f"<footer>{'<p>Sections not available:</p><ul>' + notes + '</ul>' if notes else ''}"
                 "<p>pgcode health report. Counters are cumulative since the last statistics reset; bloat figures "
                 "are estimates from planner statistics. Thresholds are in the JSON report.</p></footer>")
    parts.append("</main></body></html>\n")
    return "".join(parts)


def _coverage(report: dict[str, Any]) -> str:
    cov = report.get("coverage")
    if not cov:
        return ""
    text = "".join(f"<p>{h(line)}</p>" for line in coverage_lines(cov))
    rows = "".join(f"<tr><td>{h(s['object'])}</td><td>{h(s['reason'])}</td><td>{h(', '.join(s['checks']))}</td></tr>"
                   for s in cov["skipped"])
    table = ("<table><thead><tr><th>skipped object</th><th>why</th><th>checks</th></tr></thead>"
             f"<tbody>{rows}</tbody></table>") if rows else ""
    return f'<section id="coverage"><h2>Coverage</h2>{text}{table}</section>'


def _changes(report: dict[str, Any]) -> str:
    diff = report.get("changes")
    if not diff:
        return ""
    parts = [f'<section id="changes"><h2>Changed since {h(when(diff["baseline"]["taken_at"]))}</h2>',
             *(f"<p>{h(line)}</p>" for line in changes.headline(diff))]
    for t in changes.tables(diff):
        parts.append(f"<h3>{h(t.title)}</h3>")
        if not t.rows:
            parts.append(f'<p class="note">{h(t.empty)}</p>')
        else:
            head = "".join(f"<th>{h(c)}</th>" for c in t.header)
            body = "".join("<tr>" + "".join(_change_cell(col, cell) for col, cell in zip(t.header, row, strict=True))
                           + "</tr>" for row in t.rows)
            parts.append(f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")
        if t.note:
            parts.append(f'<p class="note">{h(t.note)}</p>')
    return "".join(parts) + "</section>"


def _change_cell(column: str, cell: Cell) -> str:
    if column == "status":
        return f"<td>{_badge(str(cell))}</td>" if cell else "<td></td>"
    if column == "query":
        return f"<td><code>{h(cell)}</code></td>"
    numeric = isinstance(cell, Trend) or column not in ("object", "table", "check", "what", "change", "queryid")
    return f'<td class="num">{_trend(cell)}</td>' if numeric else f"<td>{_trend(cell)}</td>"


def _findings_table(report: dict[str, Any]) -> str:
    findings = report["findings"]
    if not findings:
        return '<p class="note">Every check passed.</p>'
    rows = "".join(
        f"<tr><td>{_badge(c['status'])}</td><td><a href=\"#area-{h(c['area'])}\">{h(c['check'])}</a></td>"
        f"<td>{h(c['summary'])}</td><td class=\"num\">{_trend(changes.check_trend(report, c, shown_value(c)))}</td>"
        f"<td>{h(shown_threshold(c))}</td></tr>"
        for c in findings)
    return ("<table><thead><tr><th>status</th><th>check</th><th>finding</th><th>value</th><th>threshold</th></tr>"
            f"</thead><tbody>{rows}</tbody></table>")


def _charts(report: dict[str, Any]) -> str:
    tables = report.get("tables") or []
    size_chart = charts.bars(
        [Bar(f"{t['schema']}.{t['table']}", (t["table_bytes"], t["index_bytes"], t["toast_bytes"]))
         for t in tables], series=_SERIES, fmt=size, caption="Database size by table")
    conns = report.get("connections") or []
    conn_chart = charts.bars([Bar(str(c["state"]), (c["total"],)) for c in conns],
                             series=(("sessions", "#2457a6"),), fmt=lambda v: f"{v:,.0f}",
                             caption="Connections by state")
    cache = report.get("cache") or {}
    th = report.get("thresholds") or {}
    cache_chart = charts.gauges(
        [(label, cache.get(key)) for label, key in (("database", "database_hit_ratio"), ("tables", "table_hit_ratio"),
                                                    ("indexes", "index_hit_ratio"), ("toast", "toast_hit_ratio"))],
        warning=float(th.get("cache_hit_warning", 0.95)), critical=float(th.get("cache_hit_critical", 0.9)),
        caption="Cache hit ratios") if cache else '<p class="empty">not available</p>'
    queries = report.get("top_queries")
    query_chart = charts.bars(
        [Bar(f"#{i + 1} {q['query']}", (float(q["total_exec_time_ms"] or 0),), title=q["query"])
         for i, q in enumerate(queries)], series=(("total time", "#8a5cc2"),), fmt=lambda v: f"{v:,.0f} ms",
        caption="Top queries by total time") if queries else (
        f'<p class="empty">{h(report.get("unavailable", {}).get("top_queries", "no statements recorded"))}</p>')
    db_size = report.get("database_size") or {}
    return "".join(
        f'<div class="panel"><h3>{h(title)}</h3>{chart}</div>' for title, chart in (
            (f"Database size by table ({db_size.get('size_pretty', '?')} in all)", size_chart),
            ("Connections by state", conn_chart), ("Cache hit ratios", cache_chart),
            ("Top queries by total time", query_chart)))


def _queries_table(report: dict[str, Any]) -> str:
    queries = report.get("top_queries")
    if not queries:
        return ""
    rows = "".join(
        f'<tr><td class="num">{i + 1}</td><td class="num">{h(value("ms", q["total_exec_time_ms"]))}</td>'
        f'<td class="num">{h(value("calls", q["calls"]))}</td>'
        f'<td class="num">{_trend(changes.query_trend(report, q["queryid"], value("ms", q["mean_exec_time_ms"])))}</td>'
        f'<td class="num">{h(q["percent_of_total_time"] or 0)}%</td><td><code>{h(q["query"])}</code></td></tr>'
        for i, q in enumerate(queries))
    return ('<section id="queries"><h2>Top queries by total time</h2><table><thead><tr><th>#</th><th>total ms</th>'
            "<th>calls</th><th>mean ms</th><th>share</th><th>query</th></tr></thead>"
            f"<tbody>{rows}</tbody></table></section>")
