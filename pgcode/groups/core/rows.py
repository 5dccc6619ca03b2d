"""core: insert, upsert, count and test rows."""

from __future__ import annotations

from typing import Any

from psycopg import sql
from pydantic import Field

from pgcode.core import arguments
from pgcode.core.context import ToolContext
from pgcode.core.registry import tool
from pgcode.db.sqlpolicy import where_fragment
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import TableRef, adapt_value, check_columns, column_types
from pgcode.types import Effect

_MAX_PARAMS = 65_535  # the protocol's limit on bound parameters per statement


class UpsertIn(TableRef):
    data: dict[str, Any] = Field(min_length=1, description="Column -> value")
    conflict_columns: list[str] = Field(min_length=1, max_length=32, description="Columns of a unique constraint")
    update_columns: list[str] | None = Field(None, description="Default: data's columns not in conflictColumns")


@tool(group="core", effect=Effect.WRITE)
async def upsert(ctx: ToolContext, args: UpsertIn) -> dict[str, Any]:
    """Insert a row or update it on a unique-key conflict; says which happened.

    conflictColumns are the columns of the unique constraint that decides a conflict; on conflict
    updateColumns are updated (default: every column of data not in conflictColumns).
    """
    types = await column_types(ctx, args.schema_name, args.table_name)
    cols = list(args.data)
    updates = args.update_columns if args.update_columns is not None else [
        c for c in cols if c not in args.conflict_columns]
    check_columns(cols + args.conflict_columns + updates, types, args.table)
    action = (sql.SQL("DO UPDATE SET {}").format(sql.SQL(", ").join(
        sql.SQL("{0} = EXCLUDED.{0}").format(sql.Identifier(c)) for c in updates)) if updates
        else sql.SQL("DO NOTHING"))
    query = sql.SQL("INSERT INTO {} ({}) VALUES ({}) ON CONFLICT ({}) {} RETURNING *, (xmax = 0) AS _pgcode_inserted"
                    ).format(args.ident, sql.SQL(", ").join(map(sql.Identifier, cols)),
                             sql.SQL(", ").join(sql.Placeholder() * len(cols)),
                             sql.SQL(", ").join(map(sql.Identifier, args.conflict_columns)), action)
    row = await ctx.fetchone(query, [adapt_value(args.data[c], types[c]) for c in cols])
    if row is None:  # DO NOTHING on a conflict returns no row
        return {"action": "unchanged", "row": None}
    inserted = row.pop("_pgcode_inserted")
    return {"action": "inserted" if inserted else "updated", "row": row}


class BatchInsertIn(TableRef):
    rows: list[dict[str, Any]] = Field(min_length=1, max_length=10_000,
                                       description="Column -> value objects")
    returning: bool = False


@tool(group="core", effect=Effect.WRITE)
async def batch_insert(ctx: ToolContext, args: BatchInsertIn) -> dict[str, Any]:
    """Insert many rows in one statement (all or none); returns the count.

    A column missing from a row gets its DEFAULT; returning adds the inserted rows to the result.
    """
    types = await column_types(ctx, args.schema_name, args.table_name)
    cols = list(dict.fromkeys(k for row in args.rows for k in row))
    if not cols:
        raise ToolError(ErrorCode.INVALID_INPUT, "the rows have no columns")
    check_columns(cols, types, args.table)
    if len(cols) * len(args.rows) > _MAX_PARAMS:
        raise ToolError(ErrorCode.INVALID_INPUT, f"{len(cols) * len(args.rows)} values exceed the {_MAX_PARAMS} a "
                        "statement can carry", hint="split the rows into smaller batches")
    params: list[Any] = []
    values = []
    for row in args.rows:
        items: list[sql.Composable] = []
        for c in cols:
            if c in row:
                items.append(sql.Placeholder())
                params.append(adapt_value(row[c], types[c]))
            else:
                items.append(sql.SQL("DEFAULT"))
        values.append(sql.SQL("({})").format(sql.SQL(", ").join(items)))
    query = sql.SQL("INSERT INTO {} ({}) VALUES {}{}").format(
        args.ident, sql.SQL(", ").join(map(sql.Identifier, cols)), sql.SQL(", ").join(values),
        sql.SQL(" RETURNING *") if args.returning else sql.SQL(""))
    if args.returning:
        rows = await ctx.fetch(query, params)
        return {"inserted": len(rows), "rows": rows}
    return {"inserted": await ctx.execute(query, params)}


class CountIn(TableRef):
    where: str | None = Field(None, max_length=10_000, description=arguments.WHERE)
    column: str | None = Field(None, max_length=63, description="Count its non-NULL values")
    distinct: bool = False


@tool(group="core", effect=Effect.READ)
async def count(ctx: ToolContext, args: CountIn) -> dict[str, Any]:
    """Count rows exactly (matching where), or a column's non-NULL values.

    column counts its non-NULL values; distinct (with column) counts distinct ones.
    """
    if args.distinct and args.column is None:
        raise ToolError(ErrorCode.INVALID_INPUT, "distinct needs a column")
    what = (sql.SQL("{}{}").format(sql.SQL("DISTINCT ") if args.distinct else sql.SQL(""),
                                   sql.Identifier(args.column)) if args.column else sql.SQL("*"))
    where = sql.SQL(" WHERE {}").format(where_fragment(args.where)) if args.where is not None else sql.SQL("")
    n = await ctx.fetchval(sql.SQL("SELECT count({}) FROM {}{}").format(what, args.ident, where))
    return {"count": n, "table": args.table_name, "schema": args.schema_name}


class ExistsIn(TableRef):
    where: str | None = Field(None, max_length=10_000, description=arguments.WHERE)


@tool(group="core", effect=Effect.READ)
async def exists(ctx: ToolContext, args: ExistsIn) -> dict[str, Any]:
    """Whether any row (matching where) exists; stops at the first match."""
    where = sql.SQL(" WHERE {}").format(where_fragment(args.where)) if args.where is not None else sql.SQL("")
    found = await ctx.fetchval(sql.SQL("SELECT EXISTS (SELECT 1 FROM {}{})").format(args.ident, where))
    return {"exists": found, "table": args.table_name, "schema": args.schema_name}
