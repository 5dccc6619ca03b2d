"""The `pg` API as code mode shows it: built from the registry, for the prelude, pg.help() and /v1/docs."""

from __future__ import annotations

import difflib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from pgcode.core.registry import Registry, ToolSpec

CODEMODE_GROUP = "codemode"
"""Tools of this group (pg_execute_code, pg_script_*, ...) are never callable from inside the sandbox."""

LANGUAGES = [
    {"name": "javascript", "extensions": [".js", ".mjs"], "engine": "QuickJS-ng (ES2023)",
     "notes": "the code is the body of an async function: use await, and return the result"},
    {"name": "typescript", "extensions": [".ts"], "engine": "QuickJS-ng after type stripping (sucrase)",
     "notes": "annotations, interfaces, generics and enums are removed; types are not checked"},
]

USAGE = ("The code is the body of an async function: `return` gives the result. Call tools with "
         "`await pg.<group>.<method>({...})` or `await pg.call('pg_<name>', {...})`; calls in Promise.all run "
         "concurrently. A failed call throws an Error with .code and .message. `input` holds the request's input, "
         "`args` a saved script's arguments; console.log/info/warn/error/debug are captured. There is no eval, "
         "Function, import/require, timers, network, files or environment.")

ERROR_CODES = {
    "MISSING_CODE": "no code was given",
    "INVALID_INPUT": "the code or input is too large, or an argument is out of range",
    "SYNTAX_ERROR": "the code is neither valid JavaScript nor valid TypeScript; nothing ran",
    "RUNTIME_ERROR": "the code threw an error it did not catch",
    "TIMEOUT": "the code ran past its time limit (the worker was stopped)",
    "SECURITY_ERROR": "the code reached for something code mode does not allow",
    "RESULT_TOO_LARGE": "the returned value is larger than the result limit as JSON",
    "RATE_LIMITED": "too many executions for this caller (a tool error, HTTP 429, before the code runs)",
    "READ_ONLY": "a readonly execution called a tool that changes the database",
    "MEMORY_LIMIT": "the code used more memory than its limit (memoryLimit); the worker was replaced",
    "FORBIDDEN": "the code called a tool outside its allow-list (tools), or one the caller's scopes do not allow",
    "EXECUTION_FAILED": "the sandbox could not finish: too many tool calls, or a crashed worker",
}


Methods = dict[str, list[tuple[str, ToolSpec]]]


@dataclass(frozen=True)
class Allowance:
    """What one run with an allow-list (`tools`) sees in `pg` and may call; scopes and readonly still apply."""

    entries: tuple[str, ...]
    tools: frozenset[str]
    api: str
    """The prelude map of the methods left in `pg` (SandboxApi.prelude_map)."""

    def refusal(self, tool: str) -> str | None:
        if tool in self.tools:
            return None
        listed = ", ".join(self.entries) or "nothing"
        return f"{tool} is not in this run's allow-list (tools: {listed})"


OFF_NOTE = ("Code mode is off on this server (PGCODE_CODEMODE=off): pg_execute_code, the code-mode tools and the "
            "/v1/execute family are not offered; call the tools directly.")


def without_code_mode(registry: Registry) -> Registry:
    """The registry of a server with code mode off: every tool but the codemode group's."""
    return Registry({s.name: s for s in registry if s.group != CODEMODE_GROUP})


def serves_code_mode(registry: Registry) -> bool:
    return any(s.group == CODEMODE_GROUP for s in registry)


def sandbox_tools(registry: Registry) -> list[ToolSpec]:
    return [s for s in registry if s.group != CODEMODE_GROUP]


def _type_of(schema: dict[str, Any], defs: dict[str, Any]) -> str:
    if "$ref" in schema:
        name = str(schema["$ref"]).rsplit("/", 1)[-1]
        target = defs.get(name, {})
        return _type_of(target, defs) if "enum" in target else name
    if "enum" in schema:
        return " | ".join(repr(v) for v in schema["enum"])
    if "anyOf" in schema:
        parts = [_type_of(s, defs) for s in schema["anyOf"] if s.get("type") != "null"]
        return " | ".join(parts) or "null"
    kind = schema.get("type", "any")
    if kind == "array":
        return f"{_type_of(schema.get('items', {}), defs)}[]"
    return str(kind)


def arguments(spec: ToolSpec) -> list[dict[str, Any]]:
    """Each argument of a tool: name (camelCase), type, required, default, description."""
    schema = spec.input_schema
    defs = schema.get("$defs", {})
    required = set(schema.get("required", []))
    out = []
    for name, prop in schema.get("properties", {}).items():
        arg: dict[str, Any] = {"name": name, "type": _type_of(prop, defs), "required": name in required,
                               "description": prop.get("description", "")}
        if "default" in prop:
            arg["default"] = prop["default"]
        out.append(arg)
    return out


@dataclass(frozen=True)
class SandboxApi:
    """Everything the sandbox and its docs need to know about the registry, computed once."""

    registry: Registry

    @cached_property
    def tools(self) -> dict[str, ToolSpec]:
        return {s.name: s for s in sandbox_tools(self.registry)}

    @cached_property
    def groups(self) -> dict[str, list[tuple[str, ToolSpec]]]:
        """{group: [(method, spec), ...]}, aliases included (an alias may sit in another group)."""
        out: dict[str, list[tuple[str, ToolSpec]]] = {}
        for spec in self.tools.values():
            for group, method in spec.method_paths:
                out.setdefault(group, []).append((method, spec))
        return {g: sorted(out[g], key=lambda e: e[0]) for g in sorted(out)}

    def prelude_map(self, groups: Methods | None = None) -> str:
        """"group:method=tool,method=tool;group:..." with every alias as a method of its own.

        One string, not a JS object literal: QuickJS parses a string about ten times faster (prelude.js).
        """
        groups = self.groups if groups is None else groups
        return ";".join(f"{g}:" + ",".join(f"{m}={s.name}" for m, s in entries) for g, entries in groups.items())

    def allowance(self, entries: Sequence[str]) -> Allowance:
        """The `pg` of an allow-list: whole groups by name, single tools (with all their methods) by tool name.

        ValueError, with the names that are neither and what they may have meant, for anything else.
        """
        groups = {e for e in entries if e in self.groups}
        names = {e for e in entries if e in self.tools}
        unknown = [e for e in entries if e not in groups and e not in names]
        if unknown:
            raise ValueError(self._unknown_entries(unknown))
        visible = {g: kept for g, methods in self.groups.items()
                   if (kept := [(m, s) for m, s in methods if g in groups or s.name in names])}
        tools = frozenset(s.name for methods in visible.values() for _, s in methods)
        return Allowance(tuple(dict.fromkeys(entries)), tools, self.prelude_map(visible))

    def _unknown_entries(self, unknown: list[str]) -> str:
        parts = []
        for entry in unknown[:5]:
            spec = self.registry.get(entry)
            if spec is not None:
                parts.append(f"{entry} cannot be called from code mode")
                continue
            near = difflib.get_close_matches(entry, [*self.groups, *self.tools], n=1)
            parts.append(f"{entry[:80]!r} is neither a group nor a tool" + (f" (did you mean {near[0]}?)" if near
                                                                             else ""))
        return (f"tools: {'; '.join(parts)}. Name groups ({', '.join(self.groups)}) or tools such as "
                "pg_read_query")

    def method_doc(self, group: str, method: str, spec: ToolSpec) -> dict[str, Any]:
        here = f"pg.{group}.{method}"
        return {"method": here, "name": method, "aliases": [f"pg.{g}.{m}" for g, m in spec.method_paths
                                                             if f"pg.{g}.{m}" != here],
                "tool": spec.name, "effect": spec.effect.value, "description": spec.description,
                "extensions": list(spec.extensions), "arguments": arguments(spec), "inputSchema": spec.input_schema}

    def _group_docs(self) -> dict[str, list[dict[str, Any]]]:
        return {g: [self.method_doc(g, m, s) for m, s in entries] for g, entries in self.groups.items()}

    def help_payload(self) -> dict[str, Any]:
        """What pg.help() returns, and pg.<group>.help() per group."""
        index = {"usage": USAGE,
                 "groups": {g: {"count": len(entries), "methods": [m for m, _ in entries], "help": f"pg.{g}.help()"}
                            for g, entries in self.groups.items()},
                 "call": "pg.call('pg_<name>', args) calls any tool by its MCP name"}
        groups = {g: {"group": g, "methods": docs} for g, docs in self._group_docs().items()}
        return {"index": index, "groups": groups}

    def worker_init(self, js_limits: dict[str, int], memory: dict[str, int]) -> dict[str, Any]:
        return {"api": self.prelude_map(), "help": self.help_payload(), "limits": js_limits, "memory": memory}

    def docs(self, limits: dict[str, Any]) -> dict[str, Any]:
        return {"usage": USAGE, "languages": LANGUAGES, "limits": limits, "errorCodes": ERROR_CODES,
                "globals": ["pg", "input", "args", "console"],
                "groups": [{"group": g, "methods": docs} for g, docs in self._group_docs().items()]}

    def docs_markdown(self, limits: dict[str, Any]) -> str:
        lines = ["# pgcode code mode: the `pg` API", "", USAGE, "",
                 "```js", "const tables = await pg.core.listTables();",
                 "const [stats, sizes] = await Promise.all([pg.performance.databaseStats(), "
                 "pg.monitoring.tableSizes()]);", "return {tables: tables.length, stats, sizes};", "```", "",
                 "## Limits", ""]
        lines += [f"- {k}: {v}" for k, v in limits.items()]
        lines += ["", "## Error codes", ""]
        lines += [f"- `{code}`: {text}" for code, text in ERROR_CODES.items()]
        for group, entries in self.groups.items():
            lines += ["", f"## pg.{group} ({len(entries)})", ""]
            for method, spec in entries:
                home = f"pg.{spec.group}.{spec.method}"
                also = "" if home == f"pg.{group}.{method}" else f" (alias of `{home}`)"
                lines += [f"### `pg.{group}.{method}(args)`{also}", "", spec.description, "",
                          f"Tool `{spec.name}`, effect `{spec.effect.value}`.", ""]
                args = arguments(spec)
                if args:
                    lines += ["| argument | type | required | default | description |", "|---|---|---|---|---|"]
                    for a in args:
                        default = f"`{json.dumps(a['default'])}`" if "default" in a else ""
                        desc = a["description"].replace("|", "\\|").replace("\n", " ")
                        kind = a["type"].replace("|", "\\|")
                        lines.append(f"| `{a['name']}` | {kind} | {'yes' if a['required'] else ''} | {default} "
                                     f"| {desc} |")
                    lines.append("")
        return "\n".join(lines) + "\n"
