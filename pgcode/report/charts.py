"""Inline SVG charts for the HTML report: horizontal bars, stacked or not, and ratio gauges. No scripts."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape

WIDTH = 520
LABEL_W = 180
VALUE_W = 70
ROW_H = 22
BAR_H = 14


def h(text: object) -> str:
    return escape(str(text), quote=True)


def _clip(text: str, n: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


@dataclass(frozen=True)
class Bar:
    label: str
    parts: Sequence[float]  # one value per series, stacked left to right
    title: str | None = None  # the full text, shown on hover


def bars(rows: Sequence[Bar], *, series: Sequence[tuple[str, str]], fmt: Callable[[float], str],
         caption: str) -> str:
    """A horizontal (stacked) bar chart; series are (name, colour); the total is written after each bar."""
    if not rows:
        return f'<p class="empty">{h(caption)}: nothing to show</p>'
    legend_h = 22 if len(series) > 1 else 0
    height = legend_h + len(rows) * ROW_H + 6
    top = max(sum(r.parts) for r in rows) or 1.0
    span = WIDTH - LABEL_W - VALUE_W
    out = [f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" width="100%" role="img" '
           f'aria-label="{h(caption)}" xmlns="http://www.w3.org/2000/svg">']
    if legend_h:
        x: float = LABEL_W
        for name, colour in series:
            out.append(f'<rect x="{x}" y="5" width="10" height="10" rx="2" fill="{colour}"/>'
                       f'<text x="{x + 14}" y="14" class="legend">{h(name)}</text>')
            x += 24 + 7 * len(name)
    for i, row in enumerate(rows):
        y = legend_h + i * ROW_H + 4
        out.append(f'<g><title>{h(row.title or row.label)}</title>'
                   f'<text x="{LABEL_W - 8}" y="{y + BAR_H - 3}" text-anchor="end" class="label">'
                   f'{h(_clip(row.label, 25))}</text>')
        x = LABEL_W
        for value, (_, colour) in zip(row.parts, series, strict=False):
            w = max(span * value / top, 0.0)
            if w > 0:
                out.append(f'<rect x="{x:.1f}" y="{y}" width="{max(w, 1):.1f}" height="{BAR_H}" rx="2" '
                           f'fill="{colour}"/>')
            x += w
        out.append(f'<text x="{x + 6:.1f}" y="{y + BAR_H - 3}" class="value">{h(fmt(sum(row.parts)))}</text></g>')
    out.append("</svg>")
    return "".join(out)


def gauges(rows: Sequence[tuple[str, float | None]], *, warning: float, critical: float, caption: str) -> str:
    """Ratios 0-1 as bars on a 0-100 % scale, coloured by the thresholds, with the warning line marked."""
    height = len(rows) * ROW_H + 24
    span = WIDTH - LABEL_W - VALUE_W
    out = [f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" width="100%" role="img" '
           f'aria-label="{h(caption)}" xmlns="http://www.w3.org/2000/svg">']
    for i, (label, ratio) in enumerate(rows):
        y = i * ROW_H + 4
        out.append(f'<text x="{LABEL_W - 8}" y="{y + BAR_H - 3}" text-anchor="end" class="label">{h(label)}</text>'
                   f'<rect x="{LABEL_W}" y="{y}" width="{span}" height="{BAR_H}" rx="2" class="track"/>')
        if ratio is None:
            out.append(f'<text x="{LABEL_W + 6}" y="{y + BAR_H - 3}" class="value">no reads yet</text>')
            continue
        colour = "var(--critical)" if ratio < critical else "var(--warning)" if ratio < warning else "var(--ok)"
        out.append(f'<rect x="{LABEL_W}" y="{y}" width="{span * max(min(ratio, 1.0), 0.0):.1f}" height="{BAR_H}" '
                   f'rx="2" fill="{colour}"/><text x="{WIDTH - VALUE_W + 6}" y="{y + BAR_H - 3}" class="value">'
                   f'{h(f"{ratio:.2%}")}</text>')
    mark = LABEL_W + span * warning
    bottom = len(rows) * ROW_H + 4
    out.append(f'<line x1="{mark:.1f}" y1="0" x2="{mark:.1f}" y2="{bottom}" class="mark"/>'
               f'<text x="{mark:.1f}" y="{bottom + 14}" text-anchor="middle" class="legend">'
               f'warning below {h(f"{warning:.0%}")}</text></svg>')
    return "".join(out)
