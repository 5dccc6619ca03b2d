"""Registry rules: tool names, code-mode method names, documented inputs, schemas built once, MCP annotations."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

import pytest
from pydantic import Field

from pgcode.core.context import ToolContext
from pgcode.core.registry import Registry, ToolInput, ToolSpec, load_registry, method_name, tool
from pgcode.core.runtime import Runtime
from pgcode.server.mcp import mcp_schema, tool_definition
from pgcode.types import Effect, Scope, TxMode

SPECS = list(load_registry())


class _GoodIn(ToolInput):
    some_value: int = Field(1, description="A documented field")


class _UndocumentedIn(ToolInput):
    some_value: int


async def _good(ctx: ToolContext, args: _GoodIn) -> dict[str, Any]:
    """A tool used only to exercise the decorator."""
    return {}


async def _undocumented_field(ctx: ToolContext, args: _UndocumentedIn) -> dict[str, Any]:
    """A tool whose input field has no description."""
    return {}


async def _no_docstring(ctx: ToolContext, args: _GoodIn) -> dict[str, Any]:
    return {}


async def _untyped(ctx: ToolContext, args: dict[str, Any]) -> dict[str, Any]:
    """A tool whose args are not a ToolInput."""
    return {}


def test_registry_has_the_core_tools() -> None:
    names = {s.name for s in SPECS}
    assert {"pg_read_query", "pg_write_query", "pg_count", "pg_exists", "pg_drop_table", "pg_list_tables",
            "pg_transaction_begin"} <= names
    assert len(names) == len(SPECS) == len(load_registry())


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_tool_name_and_method(spec: ToolSpec) -> None:
    assert re.fullmatch(r"pg_[a-z0-9_]+", spec.name)
    assert spec.method == method_name(spec.name, spec.group)
    assert re.fullmatch(r"[a-z][A-Za-z0-9]*", spec.method)
    assert load_registry().by_method(spec.group, spec.method) is spec
    assert load_registry().get(spec.name) is spec
    assert spec.scope is spec.effect.scope
    default_tx = TxMode.READ_ONLY if spec.effect is Effect.READ else TxMode.READ_WRITE
    # A tool may ask for less than its effect's default (an admin-only tool that only reads), never more;
    # the one read tool that writes keeps pgcode's own memo (pgcode.insights), not the caller's data.
    # EXPLAIN ANALYZE tools run a write inside a savepoint they always roll back, so they need READ_WRITE.
    rolled_back_or_own = {"pg_append_insight", "pg_explain_analyze", "pg_explain_buffers", "pg_query_plan_compare"}
    if spec.name in rolled_back_or_own:
        assert spec.tx is TxMode.READ_WRITE
    else:
        assert spec.tx in (default_tx, TxMode.NONE, TxMode.AUTOCOMMIT, TxMode.READ_ONLY)
        assert not (spec.effect is Effect.READ and spec.tx in (TxMode.READ_WRITE, TxMode.AUTOCOMMIT))


@pytest.mark.parametrize(("name", "group", "method"), [
    ("pg_transaction_begin", "transactions", "transactionBegin"),
    ("pg_jsonb_extract", "jsonb", "extract"),
    ("pg_stats_top_n", "stats", "topN"),
    ("pg_list_tables", "core", "listTables"),
    ("pg_read_query", "core", "readQuery"),
    ("pg_core_thing", "core", "thing"),
    ("pg_vector_create_extension", "vector", "createExtension"),
    ("pg_partman_show_partitions", "partman", "showPartitions"),
    ("pg_stats", "stats", "stats"),
])
def test_method_name_rule(name: str, group: str, method: str) -> None:
    assert method_name(name, group) == method


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_every_required_input_field_is_described(spec: ToolSpec) -> None:
    """A required argument always says what it takes; an optional one may leave it to its name, type, enum and
    default (the catalog is read on every turn), and then the tool's description covers anything more."""
    for field_name, info in spec.input_model.model_fields.items():
        if info.is_required():
            assert info.description and info.description.strip(), f"{spec.name}.{field_name}"
        assert info.description is None or info.description.strip(), f"{spec.name}.{field_name}: blank"
    properties = spec.input_schema.get("properties", {})
    assert set(properties) == {info.alias or field_name for field_name, info in spec.input_model.model_fields.items()}
    for key in properties:
        assert "_" not in key, f"{spec.name}: schema key {key} is not camelCase"
    assert spec.input_schema.get("additionalProperties") is False
    assert spec.description.strip() and spec.title == spec.description.split("\n", 1)[0]


def test_input_schema_is_built_once() -> None:
    first, second = load_registry(), load_registry()
    assert first is second
    for spec in SPECS:
        again = second.get(spec.name)
        assert again is not None and again.input_schema is spec.input_schema
    schema = first.get("pg_read_query").input_schema  # type: ignore[union-attr]
    assert set(schema["properties"]) == {"sql", "params", "limit", "transactionId"}
    assert schema["required"] == ["sql"]


@pytest.mark.anyio
async def test_runtime_and_mcp_use_the_same_schema(rt: Runtime) -> None:
    assert rt.registry is load_registry()
    spec = rt.registry.get("pg_count")
    assert spec is not None
    assert tool_definition(spec).input_schema == mcp_schema(spec.input_schema)
    assert set(spec.input_schema["properties"]) == {"table", "schema", "where", "column", "distinct"}


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_mcp_annotations_follow_effect(spec: ToolSpec) -> None:
    definition = tool_definition(spec)
    ann = definition.annotations
    assert ann is not None
    # Only hints that differ from the spec's defaults go on the wire (a catalog a model can afford): a read says
    # it reads (destructive means nothing for it); a write says whether it destroys. The name is the title.
    assert definition.name == spec.name and definition.title is None and ann.title is None
    assert definition.description == spec.summary
    if spec.effect is Effect.READ:
        assert ann.read_only_hint is True and ann.destructive_hint is None
    else:
        assert ann.read_only_hint is None and ann.destructive_hint is (spec.effect is Effect.DESTRUCTIVE)
    assert ann.open_world_hint is None and ann.idempotent_hint is None


def test_mcp_annotations_of_known_tools() -> None:
    reg = load_registry()
    expected = {"pg_read_query": (True, False), "pg_count": (True, False), "pg_write_query": (False, False),
                "pg_create_table": (False, False), "pg_drop_table": (False, True), "pg_truncate": (False, True)}
    for name, (read_only, destructive) in expected.items():
        spec = reg.get(name)
        assert spec is not None
        ann = tool_definition(spec).annotations
        assert ann is not None
        # What a client reads, with the spec's defaults for absent hints (destructiveHint defaults to true and
        # means nothing for a read-only tool).
        effective = (bool(ann.read_only_hint), not ann.read_only_hint and ann.destructive_hint is not False)
        assert effective == (read_only, destructive), name
    assert reg.get("pg_drop_table").scope is Scope.ADMIN  # type: ignore[union-attr]
    assert reg.get("pg_write_query").scope is Scope.WRITE  # type: ignore[union-attr]


# The decorator's own rules (the registry is frozen once loaded; bad definitions fail before that check).


@pytest.mark.parametrize(("func", "kwargs", "error", "fragment"), [
    (_good, {"name": "pg_Bad"}, ValueError, "lower_snake_case"),
    (_good, {"name": "bad_name"}, ValueError, "lower_snake_case"),
    (_good, {"name": "pg_1abc"}, ValueError, "lower_snake_case"),
    (_undocumented_field, {"name": "pg_good_tool"}, ValueError, "field 'some_value' of _UndocumentedIn has no"),
    (_no_docstring, {"name": "pg_good_tool"}, ValueError, "needs a docstring"),
    (_untyped, {"name": "pg_good_tool"}, TypeError, "ToolInput subclass"),
    (_good, {"name": "pg_good_tool", "aliases": ("Bad-Alias",)}, ValueError, "camelCase"),
    (_good, {"name": "pg_good_tool"}, RuntimeError, "frozen"),
], ids=["upper_case", "no_prefix", "digit_first", "undocumented_field", "no_docstring", "untyped_args",
        "bad_alias", "frozen"])
def test_decorator_rules(func: Any, kwargs: dict[str, Any], error: type[Exception], fragment: str) -> None:
    load_registry()
    before = len(load_registry())
    with pytest.raises(error, match=fragment):
        tool(group="test", effect=Effect.READ, **kwargs)(func)
    assert len(load_registry()) == before and load_registry().get("pg_good_tool") is None


def test_duplicate_method_names_are_refused() -> None:
    spec = load_registry().get("pg_count")
    assert spec is not None
    twin = dataclasses.replace(spec, name="pg_count_again")
    with pytest.raises(ValueError, match=re.escape("pg.core.count names both pg_count and pg_count_again")):
        Registry({spec.name: spec, twin.name: twin})
    alias_clash = dataclasses.replace(spec, name="pg_other", method="other", aliases=("count",))
    with pytest.raises(ValueError, match="names both"):
        Registry({spec.name: spec, alias_clash.name: alias_clash})


def test_alias_in_another_group_reaches_the_tool() -> None:
    """pg.monitoring.locks (what users' scripts call) is pg_locks, which the catalog puts in performance."""
    registry = load_registry()
    locks = registry.get("pg_locks")
    assert locks is not None and locks.group == "performance"
    assert registry.by_method("monitoring", "locks") is locks
    assert registry.by_method("performance", "locks") is locks
    assert ("monitoring", "locks") in locks.method_paths and locks.methods == ("locks",)
