"""schema: list, create and drop schemas."""

from __future__ import annotations

from typing import Any

from psycopg import sql
from pydantic import Field

from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.db.queries import SYSTEM_SCHEMAS, load_query
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import IDENT_MAX
from pgcode.groups.schema._drop import DropTarget, drop
from pgcode.groups.schema._shared import NO_NUL, check_name, listing
from pgcode.types import Effect


class ListSchemasIn(ToolInput):
    include_system: bool = False
    pattern: str | None = Field(None, max_length=200, description="ILIKE pattern on the name, e.g. app%")
    limit: int = Field(500, ge=1, le=10_000)


@tool(group="schema", effect=Effect.READ)
async def list_schemas(ctx: ToolContext, args: ListSchemasIn) -> dict[str, Any]:
    """List schemas with owner, size and counts of the objects each holds.

    Size covers tables, indexes and TOAST; counts are of tables, views, sequences, functions, types and extensions.
    includeSystem adds pg_catalog, information_schema, pg_toast, temporary schemas and pgcode's own schema.
    """
    rows = await ctx.fetch(load_query("schema_list_schemas"), {
        "system": SYSTEM_SCHEMAS, "include_system": args.include_system, "pattern": args.pattern,
        "limit": args.limit + 1})
    return listing("schemas", rows, args.limit)


SchemaName = Field(min_length=1, max_length=IDENT_MAX, pattern=NO_NUL, description="Schema name")


class CreateSchemaIn(ToolInput):
    name: str = SchemaName
    authorization: str | None = Field(None, min_length=1, max_length=IDENT_MAX, pattern=NO_NUL,
                                      description="Owner role (default: the connecting role)")
    if_not_exists: bool = False


@tool(group="schema", effect=Effect.ADMIN)
async def create_schema(ctx: ToolContext, args: CreateSchemaIn) -> dict[str, Any]:
    """Create a schema, optionally owned by another role; says whether it was created.

    With ifNotExists an existing schema is left alone and created is false.
    """
    name = check_name(args.name, "schema")
    if name.startswith("pg_"):
        raise ToolError(ErrorCode.INVALID_INPUT, f"schema names starting with pg_ are reserved: {name!r}")
    if args.authorization is not None and not await ctx.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s)", (args.authorization,)):
        raise ToolError(ErrorCode.NOT_FOUND, f'role "{args.authorization}" does not exist')
    owner = await ctx.fetchval("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %s", (name,))
    if owner is not None:
        if not args.if_not_exists:
            raise ToolError(ErrorCode.ALREADY_EXISTS, f'schema "{name}" already exists',
                            hint="pass ifNotExists: true to accept an existing schema")
        return {"schema": name, "created": False, "owner": owner}
    statement = sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(name))
    if args.authorization is not None:
        statement = sql.SQL("{} AUTHORIZATION {}").format(statement, sql.Identifier(args.authorization))
    await ctx.execute(statement)
    owner = await ctx.fetchval("SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %s", (name,))
    return {"schema": name, "created": True, "owner": owner}


class DropSchemaIn(ToolInput):
    name: str = SchemaName
    if_exists: bool = False
    cascade: bool = False


@tool(group="schema", effect=Effect.DESTRUCTIVE)
async def drop_schema(ctx: ToolContext, args: DropSchemaIn) -> dict[str, Any]:
    """Drop a schema (CASCADE drops its objects too).

    A schema with objects in it is refused (CONFLICT, with the objects listed) unless cascade is true; then the objects
    and anything depending on them go too, and dropped_dependents names them. With ifExists a missing schema is no error
    and dropped is false.
    """
    name = args.name
    if name in SYSTEM_SCHEMAS or name.startswith("pg_"):
        raise ToolError(ErrorCode.INVALID_INPUT, f'schema "{name}" belongs to the system or to pgcode and is not '
                                                 "dropped")
    oid = await ctx.fetchval("SELECT oid FROM pg_namespace WHERE nspname = %s", (name,))
    if oid is None:
        if args.if_exists:
            return {"schema": name, "dropped": False, "cascade": args.cascade, "dropped_dependents": [],
                    "dependent_count": 0}
        raise ToolError(ErrorCode.NOT_FOUND, f'schema "{name}" does not exist', hint="pg_list_schemas lists them")
    target = DropTarget("SCHEMA", sql.Identifier(name), "pg_namespace", oid, f'schema "{name}"')
    return {"schema": name, **await drop(ctx, target, cascade=args.cascade)}
