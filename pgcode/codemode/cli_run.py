"""`pgcode run FILE`: read the script and its input, then print the outcome the way cron jobs want it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pgcode.codemode.engine import INPUT_ERRORS


def read_request(path: str, input_file: str | None, *, readonly: bool, timeout: int | None,
                 memory_limit: int | None = None, tools: str | None = None) -> dict[str, Any]:
    """The pg_execute_code arguments; OSError or ValueError (with a message for the user) when unreadable."""
    code = sys.stdin.read() if path == "-" else Path(path).read_text(encoding="utf-8")
    args: dict[str, Any] = {"code": code, "readonly": readonly}
    if timeout is not None:
        args["timeout"] = timeout
    if memory_limit is not None:
        args["memoryLimit"] = memory_limit
    if tools is not None:
        args["tools"] = [name.strip() for name in tools.split(",") if name.strip()]
    if input_file is not None:
        try:
            args["input"] = json.loads(Path(input_file).read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{input_file} is not valid JSON: {exc}") from None
    return args


def report(out: dict[str, Any]) -> int:
    """Logs to stderr, the result (or the error) as JSON on stdout; the exit code says which."""
    for entry in out.get("logs") or []:
        print(f"[{entry['level']}] {entry['message']}", file=sys.stderr)
    if out.get("success"):
        print(json.dumps(out.get("result"), indent=2))
        return 0
    err = out.get("error") or {}
    where = f" at line {err['line']}" if err.get("line") else ""
    print(f"pgcode run: {err.get('code')}{where}: {err.get('message')}", file=sys.stderr)
    print(json.dumps({"error": err, "metrics": out.get("metrics")}, indent=2))
    return 2 if err.get("code") in INPUT_ERRORS else 1
