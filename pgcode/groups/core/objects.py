"""core: list objects, describe one object, list extensions."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from pgcode.core import arguments
from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.db.queries import load_query
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import IDENT_MAX, split_name
from pgcode.groups.core.tables import DescribeTableIn, describe_table
from pgcode.types import Effect

ObjectType = Literal["table", "view", "materialized_view", "sequence", "index", "foreign_table", "function",
                     "procedure", "aggregate", "window_function", "enum", "domain", "composite_type", "range"]


class ListObjectsIn(ToolInput):
    types: list[ObjectType] | None = None
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX, description=arguments.SCHEMA_FILTER)
    pattern: str | None = Field(None, max_length=200, description="ILIKE on the name, e.g. order%")
    limit: int = Field(500, ge=1, le=10_000)


@tool(group="core", effect=Effect.READ)
async def list_objects(ctx: ToolContext, args: ListObjectsIn) -> list[dict[str, Any]]:
    """List schema objects (tables, functions, types ...) by kind and name."""
    return await ctx.fetch(load_query("list_objects"), {
        "types": args.types, "schema": args.schema_, "pattern": args.pattern, "limit": args.limit})


class ObjectDetailsIn(ToolInput):
    name: str = Field(min_length=1, max_length=2 * IDENT_MAX + 1, description="Object name (schema.name ok)")
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX, description=arguments.SCHEMA_OF_OBJECT)
    type: Literal["table", "view", "materialized_view", "sequence", "index", "function"] | None = None


_RELKINDS = {"r": "table", "p": "table", "f": "table", "v": "view", "m": "materialized_view",
             "S": "sequence", "i": "index", "I": "index"}


@tool(group="core", effect=Effect.READ)
async def object_details(ctx: ToolContext, args: ObjectDetailsIn) -> dict[str, Any]:
    """Describe one table, view, sequence, index or function in detail.

    type (table, view, materialized_view, sequence, index, function) picks the kind when the name alone is
    ambiguous.
    """
    schema, name = split_name(args.name, args.schema_)
    if args.type != "function":
        rel = await ctx.fetchone(
            "SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s", (schema, name))
        kind = _RELKINDS.get(rel["relkind"]) if rel else None
        if rel is not None and kind is not None and args.type in (None, kind):
            return {"type": kind, **await _relation_details(ctx, kind, rel["oid"], schema, name)}
    if args.type in (None, "function"):
        funcs = await ctx.fetch(
            "SELECT p.proname AS name, n.nspname AS schema, pg_get_function_identity_arguments(p.oid) AS arguments, "
            "pg_get_function_result(p.oid) AS returns, l.lanname AS language, p.prosecdef AS security_definer, "
            "p.provolatile AS volatility, p.proconfig AS config, pg_get_functiondef(p.oid) AS definition, "
            "obj_description(p.oid, 'pg_proc') AS comment FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace JOIN pg_language l ON l.oid = p.prolang "
            "WHERE n.nspname = %s AND p.proname = %s AND p.prokind IN ('f', 'p') ORDER BY 3", (schema, name))
        if funcs:
            vol = {"i": "immutable", "s": "stable", "v": "volatile"}
            for f in funcs:
                f["volatility"] = vol.get(f["volatility"], f["volatility"])
            return {"type": "function", "name": name, "schema": schema, "overloads": funcs}
    what = args.type or "object"
    raise ToolError(ErrorCode.NOT_FOUND, f'{what} "{schema}"."{name}" does not exist',
                    hint="pg_list_objects lists objects by kind")


async def _relation_details(ctx: ToolContext, kind: str, oid: int, schema: str, name: str) -> dict[str, Any]:
    table = DescribeTableIn.model_validate({"table": name, "schema": schema})
    if kind == "table":
        return await describe_table(ctx, table)
    if kind in ("view", "materialized_view"):
        view = await describe_table(ctx, table)
        view["definition"] = await ctx.fetchval("SELECT pg_get_viewdef(%s::oid, true)", (oid,))
        return view
    if kind == "sequence":
        seq = await ctx.fetchone(
            "SELECT s.data_type::text, s.start_value, s.min_value, s.max_value, s.increment_by, s.cycle, "
            "s.cache_size, s.last_value FROM pg_sequences s WHERE s.schemaname = %s AND s.sequencename = %s",
            (schema, name))
        return {"name": name, "schema": schema, **(seq or {})}
    index = await ctx.fetchone(
        "SELECT t.relname AS table, pg_get_indexdef(x.indexrelid) AS definition, x.indisunique AS is_unique, "
        "x.indisprimary AS is_primary, x.indisvalid AS is_valid, pg_relation_size(x.indexrelid) AS size_bytes, "
        "coalesce(s.idx_scan, 0) AS scans FROM pg_index x JOIN pg_class t ON t.oid = x.indrelid "
        "LEFT JOIN pg_stat_all_indexes s ON s.indexrelid = x.indexrelid WHERE x.indexrelid = %s", (oid,))
    return {"name": name, "schema": schema, **(index or {})}


class ListExtensionsIn(ToolInput):
    include_available: bool = False


@tool(group="core", effect=Effect.READ)
async def list_extensions(ctx: ToolContext, args: ListExtensionsIn) -> list[dict[str, Any]]:
    """List installed (or available) extensions with version and schema."""
    return await ctx.fetch(
        "SELECT a.name, e.extversion AS version, n.nspname AS schema, a.default_version, "
        "e.oid IS NOT NULL AS installed, a.comment AS description "
        "FROM pg_available_extensions a LEFT JOIN pg_extension e ON e.extname = a.name "
        "LEFT JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.oid IS NOT NULL OR %s ORDER BY a.name", (args.include_available,))
