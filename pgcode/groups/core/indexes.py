"""core: list, create and drop indexes."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import psycopg
from psycopg import sql
from pydantic import Field

from pgcode.core import arguments
from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.db.queries import load_query
from pgcode.db.sqlpolicy import where_fragment
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import IDENT_MAX, TableRef, require_table, split_name
from pgcode.groups._snapshots import snapshot_before
from pgcode.types import Effect


class GetIndexesIn(ToolInput):
    table: str | None = Field(None, max_length=2 * IDENT_MAX + 1, description=arguments.TABLE)
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX, description=arguments.SCHEMA_FILTER)
    limit: int = Field(1000, ge=1, le=10_000)


@tool(group="core", effect=Effect.READ)
async def get_indexes(ctx: ToolContext, args: GetIndexesIn) -> list[dict[str, Any]]:
    """List indexes: definition, columns, validity, scans, size_bytes.

    scans count index scans since the statistics were reset.
    """
    schema, table = args.schema_, args.table
    if table is not None:
        schema, table = split_name(table, schema)
    return await ctx.fetch(load_query("get_indexes"), {"schema": schema, "table": table, "limit": args.limit})


class IndexMethod(StrEnum):
    BTREE = "btree"
    HASH = "hash"
    GIN = "gin"
    GIST = "gist"
    SPGIST = "spgist"
    BRIN = "brin"


class CreateIndexIn(TableRef):
    columns: list[str] = Field(min_length=1, max_length=32, description="Key columns, in order")
    name: str | None = Field(None, max_length=IDENT_MAX, description="Default: <table>_<cols>_idx")
    unique: bool = False
    method: IndexMethod = IndexMethod.BTREE
    where: str | None = Field(None, max_length=10_000, description="Partial index condition, e.g. active = true")
    include: list[str] = Field(default_factory=list, max_length=32, description="Non-key columns (INCLUDE)")
    concurrently: bool = False
    if_not_exists: bool = False


def _index_name(table: str, columns: list[str]) -> str:
    base = f"{table}_{'_'.join(columns)}_idx"
    return base if len(base) <= IDENT_MAX else base[: IDENT_MAX - 4].rstrip("_") + "_idx"


@tool(group="core", effect=Effect.ADMIN)
async def create_index(ctx: ToolContext, args: CreateIndexIn) -> dict[str, Any]:
    """Create an index (any method, unique, partial, INCLUDE, CONCURRENTLY).

    Returns its definition.

    concurrently builds it without blocking writes, outside a transaction; a failed concurrent build leaves no
    invalid index behind. ifNotExists does nothing when an index of that name exists.
    """
    name = args.name or _index_name(args.table_name, args.columns)
    where = sql.SQL(" WHERE {}").format(where_fragment(args.where)) if args.where is not None else sql.SQL("")
    include = (sql.SQL(" INCLUDE ({})").format(sql.SQL(", ").join(map(sql.Identifier, args.include)))
               if args.include else sql.SQL(""))
    stmt = sql.SQL("CREATE {unique}INDEX {conc}{ine}{name} ON {table} USING {method} ({cols}){include}{where}").format(
        unique=sql.SQL("UNIQUE ") if args.unique else sql.SQL(""),
        conc=sql.SQL("CONCURRENTLY ") if args.concurrently else sql.SQL(""),
        ine=sql.SQL("IF NOT EXISTS ") if args.if_not_exists else sql.SQL(""),
        name=sql.Identifier(name), table=args.ident, method=sql.SQL(args.method.value),
        cols=sql.SQL(", ").join(map(sql.Identifier, args.columns)), include=include, where=where)
    if args.concurrently:
        ctx.use_autocommit()
    await require_table(ctx, args.schema_name, args.table_name)
    before = await _index_state(ctx, args.schema_name, name)
    if before is not None and not before["is_valid"]:
        raise ToolError(ErrorCode.CONFLICT, f'an INVALID index "{args.schema_name}"."{name}" exists '
                        "(left by a failed CREATE INDEX CONCURRENTLY)",
                        hint="drop it with pg_drop_index, then create it again")
    try:
        await ctx.execute(stmt)
    except psycopg.Error:
        if args.concurrently and before is None:
            await _drop_failed_concurrent_build(ctx, args.schema_name, name)
        raise
    after = await _index_state(ctx, args.schema_name, name)
    return {"name": name, "table": args.table_name, "schema": args.schema_name, "created": before is None,
            "definition": after["definition"] if after else None, "is_valid": bool(after and after["is_valid"])}


async def _index_state(ctx: ToolContext, schema: str, name: str) -> dict[str, Any] | None:
    return await ctx.fetchone(
        "SELECT pg_get_indexdef(c.oid) AS definition, x.indisvalid AS is_valid FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_index x ON x.indexrelid = c.oid "
        "WHERE n.nspname = %s AND c.relname = %s", (schema, name))


async def _drop_failed_concurrent_build(ctx: ToolContext, schema: str, name: str) -> None:
    """A failed CREATE INDEX CONCURRENTLY leaves an INVALID index behind; remove the one this call made."""
    left = await _index_state(ctx, schema, name)
    if left is not None and not left["is_valid"]:
        await ctx.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(schema, name)))


class DropIndexIn(ToolInput):
    name: str = Field(min_length=1, max_length=2 * IDENT_MAX + 1, description="Index name (schema.name ok)")
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX, description=arguments.SCHEMA_OF_OBJECT)
    if_exists: bool = False
    cascade: bool = False
    concurrently: bool = False


@tool(group="core", effect=Effect.DESTRUCTIVE)
async def drop_index(ctx: ToolContext, args: DropIndexIn) -> dict[str, Any]:
    """Drop an index (optionally CONCURRENTLY); says whether it existed.

    The result also gives the definition of the index dropped. concurrently drops it without blocking the table,
    outside a transaction; cascade also drops the objects that depend on it.
    """
    schema, name = split_name(args.name, args.schema_)
    if args.concurrently:
        ctx.use_autocommit()
    row = await ctx.fetchone(
        "SELECT c.relkind, pg_get_indexdef(c.oid) AS definition FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s", (schema, name))
    if row is None and not args.if_exists:
        raise ToolError(ErrorCode.NOT_FOUND, f'index "{schema}"."{name}" does not exist',
                        hint="pg_get_indexes lists the indexes")
    if row is not None and row["relkind"] not in ("i", "I"):
        raise ToolError(ErrorCode.INVALID_INPUT, f'"{schema}"."{name}" is not an index')
    await snapshot_before(ctx, "pg_drop_index", "index", schema, name)
    await ctx.execute(sql.SQL("DROP INDEX {}{}{}{}").format(
        sql.SQL("CONCURRENTLY ") if args.concurrently else sql.SQL(""),
        sql.SQL("IF EXISTS ") if args.if_exists else sql.SQL(""), sql.Identifier(schema, name),
        sql.SQL(" CASCADE") if args.cascade else sql.SQL("")))
    return {"name": name, "schema": schema, "dropped": row is not None,
            "definition": row["definition"] if row else None}
