"""How a worker describes an ending: output errors from what QuickJS and the prelude report, with user lines.

Worker-side (standard library only). Line numbers are approximate: QuickJS-ng reports implicit errors at
the last call or await (research/sandbox-probe.md, 4c); explicit throws and tool calls are exact.
"""

from __future__ import annotations

import json
import re
from typing import Any

PAD_LINES = 1000
"""Blank lines before the user's code: frames above this line belong to the prelude or the bridge."""
USER_OFFSET = PAD_LINES + 1  # the wrapper's head takes one more line
_FRAME_RE = re.compile(r"<dukpy>:(\d+):\d+")
COMPILE_ERROR_RE = re.compile(r"\ASyntaxError: (?P<msg>[^\n]*)\n\s+at <dukpy>:(?P<line>\d+):\d+\s*\Z")
"""A parse error of the whole script (nothing ran): one frame, no function name."""
_TS_POSITION_RE = re.compile(r"\s*\((\d+):\d+\)")
_NOT_DEFINED_RE = re.compile(r"^'?([\w$]+)'? is not defined$")

OOM = "the code ran past its memory limit"
"""The server completes this message with the run's limit (pgcode.codemode.engine)."""
TAMPERED = "the code tampered with the code-mode bridge"
_NO_MODULES = "module loading (require, import) is not available in code mode"
_NO_PROCESS = "there is no process, environment or file system in code mode"
_NO_TIMERS = "timers are not available in code mode: await tool calls instead"
_NO_NETWORK = "there is no network access in code mode: use the pg tools"
_NO_SHARED = "shared memory and garbage-collector hooks are not available in code mode"
_NO_IMPORT = "import() is not available in code mode: there are no modules"
ABSENT = {"require": _NO_MODULES, "module": _NO_MODULES, "exports": _NO_MODULES, "importScripts": _NO_MODULES,
          "process": _NO_PROCESS, "Deno": _NO_PROCESS, "Bun": _NO_PROCESS, "os": _NO_PROCESS, "std": _NO_PROCESS,
          "setTimeout": _NO_TIMERS, "setInterval": _NO_TIMERS, "setImmediate": _NO_TIMERS,
          "clearTimeout": _NO_TIMERS, "clearInterval": _NO_TIMERS, "fetch": _NO_NETWORK,
          "XMLHttpRequest": _NO_NETWORK, "WebSocket": _NO_NETWORK, "call_python": "the engine bridge is removed",
          "dukpy": "the engine bridge is removed", "WebAssembly": "WebAssembly is not available in code mode",
          "SharedArrayBuffer": _NO_SHARED, "Atomics": _NO_SHARED, "WeakRef": _NO_SHARED,
          "FinalizationRegistry": _NO_SHARED}
"""Host capabilities a sandbox does not have: reaching for one is a SECURITY_ERROR, not a plain ReferenceError."""


def error(code: str, message: str, line: int | None = None, **extra: Any) -> dict[str, Any]:
    return {"code": code, "message": message[:4000], "line": line, **{k: v for k, v in extra.items() if v}}


def user_line(stack: str | None, user_lines: int) -> int | None:
    """The first stack frame inside the user's code, as a line of that code."""
    for m in _FRAME_RE.finditer(stack or ""):
        n = int(m.group(1)) - USER_OFFSET
        if 1 <= n <= user_lines:
            return n
    return None


MAX_DETAILS_CHARS = 4000


def tool_details(text: Any) -> dict[str, Any] | None:
    """A tool error's details (sqlstate, transactionId ...) as the code rethrew them: JSON text from the
    sandbox, so untrusted; kept only when it is a small object."""
    if not isinstance(text, str) or len(text) > MAX_DETAILS_CHARS:
        return None
    try:
        value = json.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def from_rejection(err: dict[str, Any], user_lines: int) -> dict[str, Any]:
    """Map the rejection of the user's function (as the prelude described it) to an output error."""
    name, message = str(err.get("name") or "Error"), str(err.get("message") or "")
    kind = err.get("kind")
    if kind == "tool":
        return error(str(err.get("code") or "EXECUTION_FAILED"), message, user_line(err.get("site"), user_lines),
                     tool=err.get("tool"), hint=err.get("hint"), details=tool_details(err.get("details")))
    line = user_line(err.get("site") or err.get("stack"), user_lines)
    if kind == "security":
        return error("SECURITY_ERROR", message, line)
    if kind == "limit":
        return error(str(err.get("code") or "EXECUTION_FAILED"), message, line)
    if name == "InternalError" and "normalize module" in message:
        return error("SECURITY_ERROR", _NO_IMPORT, line)
    if name == "InternalError" and "out of memory" in message:
        return error("MEMORY_LIMIT", OOM, line)
    if err.get("null") is True:  # QuickJS throws null when it runs out of memory while making the error
        return error("MEMORY_LIMIT", OOM, line, hint="the code failed with null, which is how QuickJS reports "
                                                     "running out of memory (throw an Error, not null, to fail on "
                                                     "purpose)")
    absent = _NOT_DEFINED_RE.match(message) if name == "ReferenceError" else None
    if absent and absent.group(1) in ABSENT:
        return error("SECURITY_ERROR", f"{absent.group(1)}: {ABSENT[absent.group(1)]}", line)
    return error("RUNTIME_ERROR", f"{name}: {message}", line)


def from_engine(text: str, user_lines: int) -> dict[str, Any]:
    """A JSRuntimeError out of eval itself: out of memory, or a rejection nothing handled."""
    first = text.split("\n", 1)[0]
    line = user_line(text, user_lines)
    if first in ("", "null") or "out of memory" in first:
        return error("MEMORY_LIMIT", OOM, line)
    if "normalize module" in first:
        return error("SECURITY_ERROR", _NO_IMPORT, line)
    if "replaced by the code" in first:
        return error("SECURITY_ERROR", TAMPERED, None)
    return error("RUNTIME_ERROR", f"unhandled promise rejection: {first}", line)


def syntax_error(match: re.Match[str], user_lines: int, ts_problem: str | None) -> dict[str, Any]:
    """The parser that got further is the likelier language: report its error (sucrase says "(line:col)")."""
    line = min(max(int(match.group("line")) - USER_OFFSET, 1), user_lines)
    ts = _TS_POSITION_RE.search(ts_problem or "")
    if ts_problem and ts and int(ts.group(1)) > line:
        text = _TS_POSITION_RE.sub("", ts_problem.removeprefix("SyntaxError: ")).strip()
        return error("SYNTAX_ERROR", f"SyntaxError (TypeScript): {text}", min(int(ts.group(1)), user_lines))
    message = f"SyntaxError: {match.group('msg')}"
    if ts_problem:
        message += f" (nor is it valid TypeScript: {ts_problem.removeprefix('SyntaxError: ')})"
    return error("SYNTAX_ERROR", message, line)
