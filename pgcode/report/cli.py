"""`pgcode report`: write the health report to a file or standard output."""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from pgcode.errors import ToolError
from pgcode.report import FORMATS, collect, render
from pgcode.settings import Settings
from pgcode.types import LOCAL_PRINCIPAL

_SUFFIXES = {".html": "html", ".htm": "html", ".md": "md", ".markdown": "md", ".json": "json"}


def report_format(fmt: str | None, output: str | None) -> str:
    """The format asked for, else the one the output file's suffix names, else Markdown."""
    if fmt:
        return fmt
    return _SUFFIXES.get(Path(output).suffix.lower(), "md") if output else "md"


def report_command(settings: Settings, fmt: str | None, output: str | None, thresholds: str | None) -> int:
    """Build the report as the local user; 0 when written, 1 on a tool error, 2 on bad arguments."""
    try:
        limits: dict[str, Any] = json.loads(thresholds) if thresholds else {}
        if not isinstance(limits, dict):
            raise ValueError("--thresholds must be a JSON object")
    except ValueError as exc:
        print(f"pgcode report: {exc}", file=sys.stderr)
        return 2
    fmt = report_format(fmt, output)
    from pgcode.core.runtime import Runtime

    async def run() -> dict[str, Any]:
        async with Runtime(settings) as rt:
            return await collect(rt, LOCAL_PRINCIPAL, thresholds=limits)

    try:
        text = render(asyncio.run(run()), fmt)
    except ToolError as err:
        print(json.dumps({"error": err.to_dict()}, indent=2))
        return 1
    if output:
        Path(output).write_text(text, encoding="utf-8")
        print(f"pgcode report: wrote {fmt} report to {output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    return 0


__all__ = ["FORMATS", "report_command", "report_format"]
