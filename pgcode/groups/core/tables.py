"""core: list, describe, create, drop and truncate tables."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Literal

from psycopg import sql
from pydantic import Field, model_validator

from pgcode.core import arguments
from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.db.queries import load_query
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import IDENT_MAX, TableRef, expression, relation_kind, require_table, split_name, type_name
from pgcode.groups._snapshots import snapshot_before
from pgcode.types import Effect

TableType = Literal["table", "partitioned_table", "view", "materialized_view", "foreign_table"]


class ListTablesIn(ToolInput):
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX, description=arguments.SCHEMA_FILTER)
    types: list[TableType] | None = None
    include_system: bool = False
    limit: int = Field(1000, ge=1, le=10_000)


@tool(group="core", effect=Effect.READ)
async def list_tables(ctx: ToolContext, args: ListTablesIn) -> list[dict[str, Any]]:
    """List tables, views and materialized views: type, row_estimate, size_bytes.

    types keeps only those kinds (default: all); includeSystem adds pg_catalog, information_schema and
    extension tables.
    """
    return await ctx.fetch(load_query("list_tables"), {
        "schema": args.schema_, "types": args.types, "include_system": args.include_system, "limit": args.limit})


class DescribeTableIn(TableRef):
    pass


_CONSTRAINT_TYPES = {"p": "primary_key", "f": "foreign_key", "u": "unique", "c": "check", "x": "exclusion",
                     "t": "trigger", "n": "not_null"}


@tool(group="core", effect=Effect.READ)
async def describe_table(ctx: ToolContext, args: DescribeTableIn) -> dict[str, Any]:
    """Describe a table: columns, primary key, constraints, indexes, size."""
    schema, name = args.schema_name, args.table_name
    rel = await ctx.fetchone(
        "SELECT c.oid, c.relkind, obj_description(c.oid, 'pg_class') AS comment, "
        "CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint END AS row_estimate, "
        "pg_total_relation_size(c.oid) AS size_bytes "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')", (schema, name))
    if rel is None:
        raise ToolError(ErrorCode.NOT_FOUND, f'table "{schema}"."{name}" does not exist',
                        hint="pg_list_tables lists the tables")
    columns = await ctx.fetch(load_query("describe_columns"), {"oid": rel["oid"]})
    constraints = await ctx.fetch(
        "SELECT conname AS name, contype AS type, pg_get_constraintdef(oid, true) AS definition, "
        "convalidated AS validated FROM pg_constraint WHERE conrelid = %s ORDER BY conname", (rel["oid"],))
    for c in constraints:
        c["type"] = _CONSTRAINT_TYPES.get(c["type"], c["type"])
    indexes = await ctx.fetch(
        "SELECT i.relname AS name, pg_get_indexdef(x.indexrelid) AS definition, x.indisunique AS is_unique, "
        "x.indisprimary AS is_primary, x.indisvalid AS is_valid, pg_relation_size(x.indexrelid) AS size_bytes "
        "FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = %s ORDER BY i.relname",
        (rel["oid"],))
    kinds = {"r": "table", "p": "partitioned_table", "v": "view", "m": "materialized_view", "f": "foreign_table"}
    return {
        "name": name, "schema": schema, "type": kinds[rel["relkind"]], "comment": rel["comment"],
        "row_estimate": rel["row_estimate"], "size_bytes": rel["size_bytes"], "columns": columns,
        "primary_key": [c["name"] for c in columns if c["is_primary_key"]],
        "constraints": constraints, "indexes": indexes,
    }


class OnAction(StrEnum):
    NO_ACTION = "NO ACTION"
    RESTRICT = "RESTRICT"
    CASCADE = "CASCADE"
    SET_NULL = "SET NULL"
    SET_DEFAULT = "SET DEFAULT"


class ForeignKeyRef(ToolInput):
    table: str = Field(min_length=1, max_length=2 * IDENT_MAX + 1, description="Referenced table")
    column: str = Field(min_length=1, max_length=IDENT_MAX, description="Referenced column")
    on_delete: OnAction = OnAction.NO_ACTION


class ColumnDef(ToolInput):
    name: str = Field(min_length=1, max_length=IDENT_MAX, description="Column name")
    type: str = Field(min_length=1, max_length=100, description="SQL type, e.g. numeric(10,2)")
    nullable: bool = True
    default: str | None = Field(None, max_length=1000, description="Expression, e.g. now(), 0 or 'x'")
    primary_key: bool = False
    unique: bool = False
    check: str | None = Field(None, max_length=1000, description="e.g. price > 0")
    references: ForeignKeyRef | None = None


class CreateTableIn(TableRef):
    columns: list[ColumnDef] = Field(min_length=1, max_length=1600, description="Column definitions")
    if_not_exists: bool = False

    @model_validator(mode="after")
    def _unique_names(self) -> CreateTableIn:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError("column names must be unique")
        return self


def _column_sql(col: ColumnDef) -> sql.Composable:
    parts: list[sql.Composable] = [sql.Identifier(col.name), type_name(col.type)]
    if not col.nullable:
        parts.append(sql.SQL("NOT NULL"))
    if col.default is not None:
        parts.append(sql.SQL("DEFAULT {}").format(expression(col.default, "default")))
    if col.unique:
        parts.append(sql.SQL("UNIQUE"))
    if col.check is not None:
        parts.append(sql.SQL("CHECK ({})").format(expression(col.check, "check")))
    if col.references is not None:
        ref_schema, ref_table = split_name(col.references.table, None)
        parts.append(sql.SQL("REFERENCES {} ({}) ON DELETE {}").format(
            sql.Identifier(ref_schema, ref_table), sql.Identifier(col.references.column),
            sql.SQL(col.references.on_delete.value)))
    return sql.SQL(" ").join(parts)


@tool(group="core", effect=Effect.ADMIN)
async def create_table(ctx: ToolContext, args: CreateTableIn) -> dict[str, Any]:
    """Create a table from column definitions (keys, defaults, checks, FKs).

    Columns marked primaryKey form the primary key together; unique adds a UNIQUE constraint on the column;
    references is a foreign key to another table's column, with onDelete the action when the referenced row
    is deleted.
    """
    items = [_column_sql(c) for c in args.columns]
    pk = [c.name for c in args.columns if c.primary_key]
    if pk:
        items.append(sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, pk))))
    existed = await relation_kind(ctx, args.schema_name, args.table_name) is not None
    await ctx.execute(sql.SQL("CREATE TABLE {}{} ({})").format(
        sql.SQL("IF NOT EXISTS ") if args.if_not_exists else sql.SQL(""), args.ident, sql.SQL(", ").join(items)))
    return {"table": args.table_name, "schema": args.schema_name, "created": not existed,
            "columns": [c.name for c in args.columns], "primary_key": pk}


class DropTableIn(TableRef):
    if_exists: bool = False
    cascade: bool = False


@tool(group="core", effect=Effect.DESTRUCTIVE)
async def drop_table(ctx: ToolContext, args: DropTableIn) -> dict[str, Any]:
    """Drop a table (IF EXISTS, CASCADE); says whether it existed.

    cascade also drops the objects that depend on it (views, foreign keys).
    """
    kind = await ctx.fetchval(
        "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s", (args.schema_name, args.table_name))
    if kind is None and not args.if_exists:
        raise ToolError(ErrorCode.NOT_FOUND, f'table "{args.schema_name}"."{args.table_name}" does not exist')
    if kind is not None and kind not in ("r", "p", "f"):
        raise ToolError(ErrorCode.INVALID_INPUT, f'"{args.schema_name}"."{args.table_name}" is not a table',
                        hint="use pg_drop_view, pg_drop_index or pg_drop_sequence for other objects")
    await snapshot_before(ctx, "pg_drop_table", "table", args.schema_name, args.table_name)
    await ctx.execute(sql.SQL("DROP TABLE {}{}{}").format(
        sql.SQL("IF EXISTS ") if args.if_exists else sql.SQL(""), args.ident,
        sql.SQL(" CASCADE") if args.cascade else sql.SQL("")))
    return {"table": args.table_name, "schema": args.schema_name, "dropped": kind is not None}


class TruncateIn(TableRef):
    cascade: bool = False
    restart_identity: bool = False


@tool(group="core", effect=Effect.DESTRUCTIVE)
async def truncate(ctx: ToolContext, args: TruncateIn) -> dict[str, Any]:
    """Empty a table (TRUNCATE), optionally RESTART IDENTITY and CASCADE.

    restartIdentity resets the sequences owned by the table's columns; cascade also truncates the tables that
    reference it by foreign key.
    """
    await require_table(ctx, args.schema_name, args.table_name)
    await snapshot_before(ctx, "pg_truncate", "table", args.schema_name, args.table_name)
    await ctx.execute(sql.SQL("TRUNCATE {}{}{}").format(
        args.ident, sql.SQL(" RESTART IDENTITY") if args.restart_identity else sql.SQL(""),
        sql.SQL(" CASCADE") if args.cascade else sql.SQL("")))
    return {"table": args.table_name, "schema": args.schema_name, "truncated": True,
            "restart_identity": args.restart_identity, "cascade": args.cascade}
