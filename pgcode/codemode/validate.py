"""Checks code without running it: the engine's parser in a worker, then static problems found here.

The static pass works on the code with strings and comments blanked out (a small tokenizer, good
enough once the real parser has accepted the code); its findings are errors when the code would fail
for certain (an unknown method, a write tool under readonly) and warnings otherwise.
"""

from __future__ import annotations

import difflib
import re
from typing import Any

from pgcode.codemode.api import CODEMODE_GROUP, SandboxApi
from pgcode.types import Effect

_METHOD_CALL = re.compile(r"\bpg\s*\.\s*([A-Za-z_$][\w$]*)\s*\.\s*([A-Za-z_$][\w$]*)\s*\(")
_PG_CALL = re.compile(r"\bpg\s*\.\s*call\s*\(\s*(['\"])([^'\"\n]*)\1")
_RETURN = re.compile(r"\breturn\b")
_FORBIDDEN = [
    (re.compile(r"(?<![\w$.])eval\s*\("), "eval() is disabled in code mode"),
    (re.compile(r"(?<![\w$.])(?:new\s+)?Function\s*\("), "Function() is disabled in code mode"),
    (re.compile(r"\.\s*constructor\s*\("), "calling .constructor(...) is how code generation is reached; "
                                           "it is disabled in code mode"),
    (re.compile(r"(?<![\w$.])require\s*\("), "require() is not available: there are no modules"),
    (re.compile(r"(?<![\w$.])import\s*\("), "import() is not available: there are no modules"),
    (re.compile(r"^\s*import\s+[\w{*'\"]", re.M), "import statements are not available: there are no modules"),
    (re.compile(r"(?<![\w$.])process\s*\."), "there is no process or environment in code mode"),
    (re.compile(r"(?<![\w$.])(?:setTimeout|setInterval|setImmediate)\s*\("), "timers are not available"),
    (re.compile(r"(?<![\w$.])(?:new\s+)?(?:fetch|XMLHttpRequest|WebSocket)\s*\("),
     "there is no network access in code mode"),
]


def blank_strings_and_comments(code: str) -> str:
    """The code with the contents of strings, template literals and comments replaced by spaces.

    Template substitutions (`${...}`) stay as code. Newlines are kept, so line numbers still match.
    """
    out: list[str] = []
    i, n = 0, len(code)
    depth: list[int] = []  # brace depth at each open `${`
    braces = 0

    def blank(text: str) -> str:
        return "".join(c if c == "\n" else " " for c in text)

    while i < n:
        c = code[i]
        if c == "/" and code.startswith("//", i):
            j = code.find("\n", i)
            j = n if j < 0 else j
            out.append(blank(code[i:j]))
            i = j
        elif c == "/" and code.startswith("/*", i):
            j = code.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(blank(code[i:j]))
            i = j
        elif c in "'\"" or c == "`" or (c == "}" and depth and depth[-1] == braces):
            if c == "}":
                depth.pop()
            quote = "`" if c in "`}" else c
            out.append(c if c != "}" else "}")
            j = i + 1
            while j < n and code[j] != quote:
                if code[j] == "\\":
                    j += 2
                    continue
                if quote == "`" and code.startswith("${", j):
                    break
                if quote != "`" and code[j] == "\n":
                    break
                j += 1
            out.append(blank(code[i + 1:j]))
            if quote == "`" and code.startswith("${", j):
                out.append("${")
                depth.append(braces)
                i = j + 2
            else:
                out.append(code[j:j + 1])
                i = j + 1
        else:
            if c == "{":
                braces += 1
            elif c == "}":
                braces -= 1
            out.append(c)
            i += 1
    return "".join(out)


def _line(text: str, pos: int) -> int:
    return text.count("\n", 0, pos) + 1


def static_problems(code: str, api: SandboxApi, *, readonly: bool) -> tuple[list[dict[str, Any]], list[dict[str, Any]],
                                                                             list[str]]:
    """(errors, warnings, methods called) found without running the code."""
    errors: list[dict[str, Any]] = []
    warnings: list[dict[str, Any]] = []
    called: list[str] = []
    bare = blank_strings_and_comments(code)
    for m in _METHOD_CALL.finditer(bare):
        group, method = m.group(1), m.group(2)
        line = _line(bare, m.start())
        if group in ("call", "help"):
            continue
        spec = api.registry.by_method(group, method)
        if group not in api.groups:
            hint = difflib.get_close_matches(group, list(api.groups), n=1)
            suffix = f"; did you mean pg.{hint[0]}?" if hint else "; pg.help() lists the groups"
            errors.append({"code": "NOT_FOUND", "message": f"pg.{group} does not exist{suffix}", "line": line})
        elif method == "help":
            continue
        elif spec is None or spec.group == CODEMODE_GROUP:
            names = [m for m, _ in api.groups[group]]
            hint = difflib.get_close_matches(method, names, n=1)
            suffix = f"; did you mean pg.{group}.{hint[0]}?" if hint else f"; pg.{group}.help() lists them"
            errors.append({"code": "NOT_FOUND", "message": f"pg.{group}.{method} does not exist{suffix}",
                           "line": line})
        else:
            called.append(f"pg.{group}.{method}")
            if readonly and spec.effect is not Effect.READ:
                errors.append({"code": "READ_ONLY", "message": f"pg.{group}.{method} ({spec.name}) changes the "
                                                               "database; it fails when readonly is set",
                               "line": line})
    for m in _PG_CALL.finditer(code):
        name, line = m.group(2), _line(code, m.start())
        spec = api.registry.get(name)
        if spec is None:
            errors.append({"code": "NOT_FOUND", "message": f"pg.call: there is no tool named {name!r}", "line": line})
        elif spec.group == CODEMODE_GROUP:
            errors.append({"code": "SECURITY_ERROR", "message": f"{name} cannot be called from code mode",
                           "line": line})
        else:
            called.append(name)
            if readonly and spec.effect is not Effect.READ:
                errors.append({"code": "READ_ONLY", "message": f"{name} changes the database; it fails when "
                                                               "readonly is set", "line": line})
    for pattern, message in _FORBIDDEN:
        for m in pattern.finditer(bare):
            errors.append({"code": "SECURITY_ERROR", "message": message, "line": _line(bare, m.start())})
    if not _RETURN.search(bare):
        warnings.append({"code": "NO_RETURN", "message": "the code has no return statement: its result will be null",
                         "line": None})
    errors.sort(key=lambda e: e["line"] or 0)
    return errors, warnings, sorted(set(called))
