"""The health report: health checks and monitoring tools (all through invoke()) rendered as HTML, Markdown or JSON.

Imports core, health and the leaves."""

from __future__ import annotations

import json
from typing import Any

from pgcode.report.collect import collect

FORMATS = {"html": "text/html; charset=utf-8", "md": "text/markdown; charset=utf-8",
           "json": "application/json"}

__all__ = ["FORMATS", "collect", "render"]


def render(report: dict[str, Any], fmt: str) -> str:
    """The report as text in `fmt` (html, md or json)."""
    if fmt == "json":
        return json.dumps(report, indent=2) + "\n"
    if fmt == "md":
        from pgcode.report.markdown import render as markdown

        return markdown(report)
    if fmt == "html":
        from pgcode.report.html import render as html

        return html(report)
    raise ValueError(f"unknown report format {fmt!r}; use one of {', '.join(FORMATS)}")
