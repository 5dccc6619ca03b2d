"""schema: list functions, triggers and constraints."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field

from pgcode.core import arguments
from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.db.queries import SYSTEM_SCHEMAS, load_query
from pgcode.groups._common import IDENT_MAX
from pgcode.groups.schema._shared import NO_NUL, listing, schema_field
from pgcode.types import Effect

FunctionKind = Literal["function", "procedure", "aggregate", "window"]


class ListFunctionsIn(ToolInput):
    schema_: str | None = schema_field(arguments.SCHEMA_FILTER)
    pattern: str | None = Field(None, max_length=200, description="ILIKE pattern on the name")
    language: str | None = Field(None, min_length=1, max_length=IDENT_MAX, description="e.g. plpgsql, sql")
    kinds: list[FunctionKind] | None = None
    security_definer: bool | None = None
    include_extensions: bool = False
    include_system: bool = False
    include_definition: bool = False
    limit: int = Field(500, ge=1, le=10_000)


@tool(group="schema", effect=Effect.READ)
async def list_functions(ctx: ToolContext, args: ListFunctionsIn) -> dict[str, Any]:
    """List user-defined functions and procedures: signature, result, language, volatility.

    Each also has its SECURITY DEFINER flag with the search_path it pins (null when it pins none), owner and extension.
    kinds keeps those kinds (default: all); securityDefiner true keeps only SECURITY DEFINER functions, false only
    SECURITY INVOKER ones; includeExtensions adds functions that extensions installed; includeSystem adds pg_catalog,
    information_schema and pgcode's own; includeDefinition adds each CREATE statement.
    """
    rows = await ctx.fetch(load_query("schema_list_functions"), {
        "schema": args.schema_, "pattern": args.pattern, "language": args.language, "kinds": args.kinds,
        "security_definer": args.security_definer, "include_extensions": args.include_extensions,
        "include_system": args.include_system, "system": SYSTEM_SCHEMAS, "definition": args.include_definition,
        "limit": args.limit + 1})
    if not args.include_definition:
        for r in rows:
            del r["definition"]
    return listing("functions", rows, args.limit)


def _table_filter(table: str | None, schema: str | None) -> tuple[str | None, str | None]:
    """(schema, table) filters: `schema.table` splits when no schema is given; a bare table matches any schema."""
    if table is not None and schema is None and "." in table:
        head, tail = table.split(".", 1)
        if head and tail:
            return head, tail
    return schema, table


class ListTriggersIn(ToolInput):
    schema_: str | None = schema_field(arguments.SCHEMA_FILTER)
    table: str | None = Field(None, min_length=1, max_length=2 * IDENT_MAX + 1, pattern=NO_NUL,
                              description=arguments.TABLE)
    include_internal: bool = False
    include_system: bool = False
    limit: int = Field(500, ge=1, le=10_000)


@tool(group="schema", effect=Effect.READ)
async def list_triggers(ctx: ToolContext, args: ListTriggersIn) -> dict[str, Any]:
    """List triggers: table, timing, events, level, enabled state, function and definition.

    Timing is BEFORE, AFTER or INSTEAD OF, level ROW or STATEMENT; the definition is the CREATE TRIGGER statement.
    includeInternal adds internal triggers (those enforcing foreign keys); includeSystem adds system schemas and
    pgcode's own.
    """
    schema, table = _table_filter(args.table, args.schema_)
    rows = await ctx.fetch(load_query("schema_list_triggers"), {
        "schema": schema, "table": table, "include_internal": args.include_internal,
        "include_system": args.include_system, "system": SYSTEM_SCHEMAS, "limit": args.limit + 1})
    return listing("triggers", rows, args.limit)


ConstraintType = Literal["primary_key", "foreign_key", "unique", "check", "exclusion", "not_null", "trigger"]
DEFAULT_CONSTRAINT_TYPES: list[ConstraintType] = ["primary_key", "foreign_key", "unique", "check", "exclusion"]


class ListConstraintsIn(ToolInput):
    schema_: str | None = schema_field(arguments.SCHEMA_FILTER)
    table: str | None = Field(None, min_length=1, max_length=2 * IDENT_MAX + 1, pattern=NO_NUL,
                              description=arguments.TABLE)
    types: list[ConstraintType] | None = Field(None, min_length=1)
    include_system: bool = False
    limit: int = Field(1000, ge=1, le=10_000)


@tool(group="schema", effect=Effect.READ)
async def list_constraints(ctx: ToolContext, args: ListConstraintsIn) -> dict[str, Any]:
    """List table constraints (primary, foreign, unique, check, exclusion) with columns and definition.

    Foreign keys also have the referenced table and columns and their ON UPDATE/ON DELETE actions. types keeps those
    kinds (default: primary_key, foreign_key, unique, check, exclusion; not_null exists as a constraint from PostgreSQL
    18); includeSystem adds system schemas and pgcode's own.
    """
    schema, table = _table_filter(args.table, args.schema_)
    rows = await ctx.fetch(load_query("schema_list_constraints"), {
        "schema": schema, "table": table, "types": args.types or DEFAULT_CONSTRAINT_TYPES,
        "include_system": args.include_system, "system": SYSTEM_SCHEMAS, "limit": args.limit + 1})
    return listing("constraints", rows, args.limit)
