"""The tool registry: the @tool decorator, naming rules, discovery of the modules that define tools."""

from __future__ import annotations

import importlib
import inspect
import json
import pkgutil
import re
import typing
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict
from pydantic.alias_generators import to_camel

from pgcode.types import Effect, Scope, TxMode

if TYPE_CHECKING:
    from pgcode.core.context import ToolContext

_NAME_RE = re.compile(r"^pg_[a-z][a-z0-9_]*$")
_METHOD_RE = re.compile(r"^[a-z][A-Za-z0-9]*$")
_GROUP_RE = re.compile(r"^[a-z][a-z0-9_]*$")


class ToolInput(BaseModel):
    """Base of every tool's input model: unknown keys refused, camelCase and snake_case accepted."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        validate_by_name=True,
        validate_by_alias=True,
        frozen=True,
    )


ToolFunc = Callable[["ToolContext", Any], Awaitable[Any]]
F = TypeVar("F", bound=ToolFunc)
ScopeFor = Callable[[Any], Scope]


@dataclass(frozen=True, slots=True)
class ToolSpec:
    """Everything known about one tool; built once at import, never changed."""

    name: str
    group: str
    method: str
    effect: Effect
    description: str
    input_model: type[ToolInput]
    func: ToolFunc
    aliases: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()
    min_version: int | None = None
    tx: TxMode = TxMode.READ_ONLY
    scope_for: ScopeFor | None = None
    own_sql: bool = False
    """The tool runs only its own SQL (no caller SQL or fragments) over records kept behind row-level
    security (pgcode's own schema, pg_cron's job table): it runs as the connecting role."""
    input_schema: dict[str, Any] = field(default_factory=dict, compare=False)
    scope: Scope = field(init=False, compare=False)
    """The scope a call needs (its effect's): read on every call, so kept, not derived each time."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "scope", self.effect.scope)

    @property
    def title(self) -> str:
        return self.description.split("\n", 1)[0]

    @property
    def summary(self) -> str:
        """The description's first paragraph as one line: what the tool does and returns."""
        return " ".join(self.description.split("\n\n", 1)[0].split())

    @property
    def methods(self) -> tuple[str, ...]:
        """Method names in the tool's own group: its own and same-group aliases."""
        return tuple(m for g, m in self.method_paths if g == self.group)

    @property
    def method_paths(self) -> tuple[tuple[str, str], ...]:
        """Every (group, method) that reaches this tool in code mode: its own, then its aliases.

        An alias is a method of the tool's group, or `group.method` to appear in another group, e.g.
        `pg.monitoring.locks` for pg_locks, which lives in performance.
        """
        paths = [(self.group, self.method)]
        for alias in self.aliases:
            group, _, method = alias.rpartition(".")
            paths.append((group or self.group, method))
        return tuple(paths)


def method_name(name: str, group: str) -> str:
    """`pg_<name>` -> code-mode method: drop `pg_`, drop a leading `<group>_`, camelCase the rest."""
    base = name.removeprefix("pg_")
    base = base.removeprefix(f"{group}_")
    head, *rest = base.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


_SPECS: dict[str, ToolSpec] = {}
_FROZEN = False


def tool(
    *,
    group: str,
    effect: Effect,
    name: str | None = None,
    aliases: tuple[str, ...] = (),
    extensions: tuple[str, ...] = (),
    min_version: int | None = None,
    tx: TxMode | None = None,
    scope_for: ScopeFor | None = None,
    own_sql: bool = False,
) -> Callable[[F], F]:
    """Register an async tool function `(ctx, args) -> result` as `pg_<function name>`."""

    def register(func: F) -> F:
        spec = _build_spec(func, group=group, effect=effect, name=name, aliases=aliases,
                           extensions=extensions, min_version=min_version, tx=tx, scope_for=scope_for,
                           own_sql=own_sql)
        if _FROZEN:
            raise RuntimeError(f"{spec.name}: the registry is frozen; tools register at import of pgcode.groups")
        if spec.name in _SPECS:
            raise ValueError(f"{spec.name}: registered twice")
        _SPECS[spec.name] = spec
        return func

    return register


def _build_spec(func: ToolFunc, *, group: str, effect: Effect, name: str | None, aliases: tuple[str, ...],
                extensions: tuple[str, ...], min_version: int | None, tx: TxMode | None,
                scope_for: ScopeFor | None, own_sql: bool) -> ToolSpec:
    tool_name = name or "pg_" + func.__name__
    if not _NAME_RE.match(tool_name):
        raise ValueError(f"{tool_name}: tool names are pg_ followed by lower_snake_case")
    doc = inspect.cleandoc(func.__doc__ or "")
    if not doc:
        raise ValueError(f"{tool_name}: a tool needs a docstring; its first line is what callers read")
    hints = typing.get_type_hints(func)
    model = hints.get("args")
    if not (isinstance(model, type) and issubclass(model, ToolInput)):
        raise TypeError(f"{tool_name}: the `args` parameter must be annotated with a ToolInput subclass")
    for field_name, info in model.model_fields.items():
        if info.is_required() and not info.description:
            raise ValueError(f"{tool_name}: field {field_name!r} of {model.__name__} has no description")
    method = method_name(tool_name, group)
    for m in (method, *aliases):
        alias_group, _, alias_method = m.rpartition(".")
        if not _METHOD_RE.match(alias_method) or (alias_group and not _GROUP_RE.match(alias_group)):
            raise ValueError(f"{tool_name}: {m!r} is not a camelCase method name (or group.method)")
    return ToolSpec(
        name=tool_name, group=group, method=method, effect=effect, description=doc, input_model=model,
        func=func, aliases=aliases, extensions=extensions, min_version=min_version,
        tx=tx or (TxMode.READ_ONLY if effect is Effect.READ else TxMode.READ_WRITE),
        scope_for=scope_for, own_sql=own_sql, input_schema=compact_schema(model.model_json_schema(by_alias=True)),
    )


# A NUL check every identifier field carries: it guards the server, and tells a model nothing.
_NO_NUL_PATTERN = r"^[^\x00]+$"
# Length bounds guard the server (identifiers, SQL text, list sizes); a call past one gets INVALID_INPUT naming
# the field. Numeric bounds stay: they say what a value means (limit 1-10000).
_SERVER_ONLY_KEYWORDS = frozenset({"title", "maxLength", "minLength", "maxItems", "minItems", "maxProperties"})
# Keywords whose value is data, not a schema: never rewritten.
_VALUE_KEYWORDS = frozenset({"default", "enum", "const", "examples", "required"})


def compact_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The JSON Schema a caller reads, without what pydantic adds for itself.

    Drops titles (the property name says it) and length bounds, writes an optional field as its type rather than
    `anyOf [type, null]` with `default: null` (leaving it out means null), and inlines a `$defs` entry used
    once. Validation stays with the pydantic model, so nothing here loosens what the server accepts.
    """
    defs = schema.pop("$defs", {})
    uses = {name: json.dumps(schema).count(f'"#/$defs/{name}"')
            + sum(json.dumps(d).count(f'"#/$defs/{name}"') for d in defs.values()) for name in defs}
    inline = {name: d for name, d in defs.items() if uses[name] == 1}
    shared = {name: _compact(d, inline) for name, d in defs.items() if uses[name] != 1}
    out: dict[str, Any] = _compact(schema, inline)
    if shared:
        out["$defs"] = shared
    return out


def _compact(node: Any, inline: dict[str, Any]) -> Any:
    if isinstance(node, list):
        return [_compact(item, inline) for item in node]
    if not isinstance(node, dict):
        return node
    variants = node.get("anyOf")
    if isinstance(variants, list) and {"type": "null"} in variants and node.get("default", ...) is None:
        rest = [v for v in variants if v != {"type": "null"}]
        node = {k: v for k, v in node.items() if k not in ("anyOf", "default")}
        node = {**rest[0], **node} if len(rest) == 1 else {**node, "anyOf": rest}
    ref = node.get("$ref", "")
    if ref.startswith("#/$defs/") and ref.removeprefix("#/$defs/") in inline:
        node = {**inline[ref.removeprefix("#/$defs/")], **{k: v for k, v in node.items() if k != "$ref"}}
    out: dict[str, Any] = {}
    for key, value in node.items():
        if key in _SERVER_ONLY_KEYWORDS or (key == "pattern" and value == _NO_NUL_PATTERN) or value == {}:
            continue
        if key == "properties":
            out[key] = {name: _compact(prop, inline) for name, prop in value.items()}
        elif key in _VALUE_KEYWORDS:
            out[key] = value
        else:
            out[key] = _compact(value, inline)
    return out


class Registry:
    """The frozen set of tools, looked up by name or by (group, method)."""

    def __init__(self, specs: dict[str, ToolSpec]) -> None:
        self._by_name = dict(specs)
        self._by_method: dict[tuple[str, str], ToolSpec] = {}
        for spec in specs.values():
            for key in spec.method_paths:
                if key in self._by_method:
                    other = self._by_method[key].name
                    raise ValueError(f"pg.{key[0]}.{key[1]} names both {other} and {spec.name}")
                self._by_method[key] = spec

    def get(self, name: str) -> ToolSpec | None:
        return self._by_name.get(name)

    def by_method(self, group: str, method: str) -> ToolSpec | None:
        return self._by_method.get((group, method))

    def __iter__(self) -> Iterator[ToolSpec]:
        return iter(self._by_name.values())

    def __len__(self) -> int:
        return len(self._by_name)

    def groups(self) -> list[str]:
        return sorted({s.group for s in self})

    def select(self, selection: list[str]) -> frozenset[str]:
        """Names of the tools a selection of groups and tool names covers (an empty selection: every tool).

        Raises ValueError naming the groups when an entry is neither a group nor a tool.
        """
        if not selection:
            return frozenset(self._by_name)
        groups = self.groups()
        unknown = [entry for entry in selection if entry not in groups and entry not in self._by_name]
        if unknown:
            raise ValueError(f"no group or tool named {', '.join(map(repr, unknown))}; the groups are "
                             f"{', '.join(groups)}")
        return frozenset(s.name for s in self if s.group in selection or s.name in selection)


# Where tools are defined: every public module of a package here, or the module itself, registers its tools with
# @tool when imported. Named, not imported, so that core depends on none of them.
TOOL_MODULES = ("pgcode.groups", "pgcode.codemode.tools")


@cache
def load_registry() -> Registry:
    """Import every module that defines tools (registering them), then freeze the registry."""
    global _FROZEN
    for name in TOOL_MODULES:
        module = importlib.import_module(name)
        if hasattr(module, "__path__"):
            for sub in sorted(pkgutil.iter_modules(module.__path__), key=lambda m: m.name):
                if not sub.name.startswith("_"):
                    importlib.import_module(f"{name}.{sub.name}")
    _FROZEN = True
    return Registry(_SPECS)
