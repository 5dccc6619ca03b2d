"""The one parser of request bodies (REST, code mode and MCP): JSON in, a clear INVALID_INPUT out.

Invalid JSON (NaN and Infinity included), JSON nested deeper than MAX_DEPTH and strings that are not
Unicode (an unpaired surrogate escape such as "\\ud800") are refused here, before anything recursive or
anything that encodes text (pydantic, the audit log, psycopg) sees them.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from pgcode.errors import ErrorCode, ToolError

MAX_BODY = 10 * 1024 * 1024
"""REST and code-mode request bodies."""
MAX_MCP_BODY = 4 * 1024 * 1024
"""MCP messages (the SDK's own limit)."""
MAX_DEPTH = 100
"""Arrays and objects nested deeper than this are refused (tool arguments never need more)."""
PARSED_KEY = "pgcode.body"
"""ASGI scope key of the parsed body: the security middleware parses it once, routes read it from there."""

_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
_SURROGATE = re.compile("[\ud800-\udfff]")
_OPEN = frozenset(b"[{")


def parse_json(raw: bytes | str, what: str = "the request body") -> Any:
    """The JSON value in `raw`; ToolError(INVALID_INPUT) naming `what` when it is not acceptable JSON."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    too_deep = ToolError(ErrorCode.INVALID_INPUT, f"{what} is nested too deeply (at most {MAX_DEPTH} levels)")
    try:
        value = json.loads(data, parse_constant=_refuse_constant, parse_float=_finite_float)
    except RecursionError:
        raise too_deep from None
    except ValueError:  # includes bytes that are not UTF-8
        raise ToolError(ErrorCode.INVALID_INPUT, f"{what} is not valid JSON") from None
    if not _shallow(data, value):
        raise too_deep
    if _SURROGATE_ESCAPE.search(data) and _has_surrogate(value):
        raise ToolError(ErrorCode.INVALID_INPUT, f"{what} holds a string with an unpaired surrogate (such as "
                                                 "\\ud800), which is not valid Unicode")
    return value


def _shallow(data: bytes, value: Any) -> bool:
    """Whether no array or object in `value` lies deeper than MAX_DEPTH: the brackets of the text first
    (an upper bound, brackets inside strings count too), the parsed value only when that bound is too high."""
    if data.count(b"[") + data.count(b"{") <= MAX_DEPTH:
        return True
    depth = 0
    for byte in data.translate(None, _NOT_BRACKETS):
        if byte in _OPEN:
            depth += 1
            if depth > MAX_DEPTH:
                return _depth(value) <= MAX_DEPTH
        else:
            depth -= 1
    return True


def _depth(value: Any) -> int:
    """How deep arrays and objects nest in `value` (iterative: the value may be deep enough to exhaust the stack)."""
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, (dict, list)):
            deepest = max(deepest, depth)
            stack.extend((child, depth + 1) for child in (node.values() if isinstance(node, dict) else node))
    return deepest


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    number = float(text)
    if not math.isfinite(number):
        raise ValueError("a number too large for a double")
    return number


def _has_surrogate(value: Any) -> bool:
    """Whether a string (key or value) anywhere in `value` holds a surrogate; iterative, like the data is deep."""
    stack = [value]
    while stack:
        node = stack.pop()
        if isinstance(node, str):
            if _SURROGATE.search(node):
                return True
        elif isinstance(node, dict):
            stack.extend(node)
            stack.extend(node.values())
        elif isinstance(node, list):
            stack.extend(node)
    return False
