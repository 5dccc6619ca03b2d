"""`pgcode report`: write the health report to a file or standard output."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from pgcode.errors import ToolError
from pgcode.health.trends import parse_since
from pgcode.report import FORMATS, collect, render
from pgcode.settings import Settings
from pgcode.types import LOCAL_PRINCIPAL

_SUFFIXES = {".html": "html", ".htm": "html", ".md": "md", ".markdown": "md", ".json": "json"}


def report_format(fmt: str | None, output: str | None) -> str:
    """The format asked for, else the one the output file's suffix names, else Markdown."""
    if fmt:
        return fmt
    return _SUFFIXES.get(Path(output).suffix.lower(), "md") if output else "md"


def report_command(settings: Settings, fmt: str | None, output: str | None, thresholds: str | None, *,
                   save: bool = False, baseline: int | None = None, since: str | None = None) -> int:
    """Build the report as the local user, saving a health snapshot and comparing with a baseline when asked;
    0 when written, 1 on a tool error (an unknown baseline), 2 on bad arguments."""
    try:
        limits: dict[str, Any] = json.loads(thresholds) if thresholds else {}
        if not isinstance(limits, dict):
            raise ValueError("--thresholds must be a JSON object")
        if since is not None:
            parse_since(since)
        if baseline is not None and baseline < 1:
            raise ValueError(f"--baseline {baseline}: a snapshot id is a positive number")
    except ValueError as exc:
        print(f"pgcode report: {exc}", file=sys.stderr)
        return 2
    fmt = report_format(fmt, output)
    from pgcode.core.runtime import Runtime

    async def run() -> dict[str, Any]:
        async with Runtime(settings) as rt:
            return await collect(rt, LOCAL_PRINCIPAL, thresholds=limits, save=save, baseline=baseline, since=since)

    try:
        report = asyncio.run(run())
    except ToolError as err:
        print(json.dumps({"error": err.to_dict()}, indent=2))
        return 1
    text = render(report, fmt)
    if report.get("snapshot"):
        print(f"pgcode report: saved health snapshot #{report['snapshot']['id']}", file=sys.stderr)
    if report.get("changes"):
        base = report["changes"]["baseline"]
        print(f"pgcode report: compared with health snapshot #{base['id']} taken {base['taken_at']}"
              + (f" ({base['chosen']})" if base.get("chosen") else ""), file=sys.stderr)
    if output:
        Path(output).write_text(text, encoding="utf-8")
        print(f"pgcode report: wrote {fmt} report to {output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


__all__ = ["FORMATS", "report_command", "report_format"]
