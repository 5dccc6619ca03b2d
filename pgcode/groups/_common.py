"""Helpers shared by the tool groups: table names, SQL files, caller expressions and values."""

from __future__ import annotations

import re
from typing import Any

from pglast import ast, parse_sql
from pglast.parser import ParseError
from pglast.stream import RawStream
from psycopg import AsyncRawCursor, sql
from psycopg.pq import ExecStatus
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from pydantic import Field

from pgcode.core import arguments
from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput
from pgcode.db.sqlpolicy import denied_function, walk
from pgcode.errors import ErrorCode, ToolError

IDENT_MAX = 63  # NAMEDATALEN - 1: PostgreSQL truncates longer names silently

Identifier = Field(min_length=1, max_length=IDENT_MAX)


class TableRef(ToolInput):
    """`table` (optionally `schema.table`) and `schema`."""

    table: str = Field(min_length=1, max_length=2 * IDENT_MAX + 1,
                       description=arguments.TABLE)
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX,
                                description=arguments.SCHEMA)

    @property
    def schema_name(self) -> str:
        return split_name(self.table, self.schema_)[0]

    @property
    def table_name(self) -> str:
        return split_name(self.table, self.schema_)[1]

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema_name, self.table_name)


def split_name(name: str, schema: str | None, default_schema: str = "public") -> tuple[str, str]:
    """("public", "t") for "t"; ("s", "t") for "s.t" unless a schema is given explicitly."""
    if schema:
        return schema, name
    if "." in name:
        head, tail = name.split(".", 1)
        if head and tail:
            return head, tail
    return default_schema, name


async def relation_kind(ctx: ToolContext, schema: str, name: str) -> str | None:
    """pg_class.relkind of schema.name, or None when it does not exist."""
    kind: str | None = await ctx.fetchval(
        "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s", (schema, name))
    return kind


async def require_table(ctx: ToolContext, schema: str, name: str) -> str:
    """Raise NOT_FOUND unless schema.name is a table-like relation; return its relkind."""
    kind = await relation_kind(ctx, schema, name)
    if kind not in ("r", "p", "v", "m", "f"):
        raise ToolError(ErrorCode.NOT_FOUND, f'table "{schema}"."{name}" does not exist',
                        hint="pg_list_tables lists the tables")
    return kind


async def column_types(ctx: ToolContext, schema: str, table: str) -> dict[str, str]:
    """Column name -> type name (pg_type.typname) of a table, in column order."""
    rows = await ctx.fetch(
        "SELECT a.attname, t.typname FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
        "WHERE a.attrelid = (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (schema, table))
    if not rows:
        raise ToolError(ErrorCode.NOT_FOUND, f'table "{schema}"."{table}" does not exist',
                        hint="pg_list_tables lists the tables")
    return {r["attname"]: r["typname"] for r in rows}


def adapt_value(value: Any, typname: str | None) -> Any:
    """A JSON value as a query parameter: for json/jsonb columns any non-null value is the JSON value
    itself (the string "hello" is stored as the JSON string), and objects always become jsonb."""
    if value is not None and (typname in ("json", "jsonb") or isinstance(value, dict)):
        return Jsonb(value)
    return value


def check_columns(names: list[str], known: dict[str, str], table: str) -> None:
    missing = [n for n in names if n not in known]
    if missing:
        raise ToolError(ErrorCode.NOT_FOUND, f"{table} has no column {', '.join(map(repr, missing))}",
                        details={"columns": list(known)})


_TYPE_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)?"
                      r"( [A-Za-z_][A-Za-z0-9_]*){0,3}(\(\s*-?\d+\s*(,\s*-?\d+\s*)?\))?( ?\[\d*\])*$")


def type_name(text: str) -> sql.SQL:
    """A column type written by a caller (`numeric(10,2)`, `timestamp with time zone`, `int[]`)."""
    text = " ".join(text.split())
    if len(text) > 100 or not _TYPE_RE.match(text):
        raise ToolError(ErrorCode.INVALID_INPUT, f"{text!r} is not a type name",
                        hint="write a type such as integer, text, numeric(10,2), timestamptz, jsonb, int[]")
    try:
        parse_sql(f"SELECT NULL::{text}")
    except ParseError:
        raise ToolError(ErrorCode.INVALID_INPUT, f"{text!r} is not a type name") from None
    return sql.SQL(text)


def expression(text: str, what: str = "expression") -> sql.SQL:
    """A caller's scalar expression (a DEFAULT, a CHECK), rebuilt from its parse tree."""
    try:
        stmts = parse_sql(f"SELECT {text}\n")
    except ParseError as exc:
        raise ToolError(ErrorCode.INVALID_INPUT, f"the {what} does not parse: {exc.args[0]}") from None
    node = stmts[0].stmt if len(stmts) == 1 else None
    if not (isinstance(node, ast.SelectStmt) and len(node.targetList or ()) == 1 and node.fromClause is None
            and node.whereClause is None and node.larg is None and node.sortClause is None
            and node.limitCount is None and node.groupClause is None and node.intoClause is None
            and node.withClause is None and node.targetList[0].name is None):  # type: ignore[index]
        raise ToolError(ErrorCode.INVALID_INPUT, f"the {what} must be a single expression")
    value = node.targetList[0].val  # type: ignore[index]
    if any(isinstance(n, ast.SubLink) for n in walk(value)):
        raise ToolError(ErrorCode.INVALID_INPUT, f"the {what} cannot contain a subquery")
    # A column DEFAULT runs nextval() on each insert, as serial columns do; nowhere else is it allowed.
    name = denied_function(value, allowed=frozenset({"nextval"}) if what == "default" else frozenset())
    if name:
        raise ToolError(ErrorCode.INVALID_INPUT, f"the function {name}() is not allowed in a {what}")
    return sql.SQL(str(RawStream()(value)))


def sorted_unique(items: list[str]) -> list[str]:
    seen: dict[str, None] = {}
    for item in items:
        seen.setdefault(item, None)
    return list(seen)


async def run_sql(ctx: ToolContext, text: str, params: list[Any], limit: int, *, last: bool = False) -> dict[str, Any]:
    """Execute caller SQL with native $n placeholders; return rows, fields and whether rows were cut.

    `last`: `text` is one statement (the policy parsed it) and the call's only one (see ToolContext.execute_on)."""
    conn = await ctx.cursor_connection()
    async with AsyncRawCursor(conn, row_factory=dict_row) as cur:
        await ctx.execute_on(cur, text, params or None, last=last)
        out: dict[str, Any] = {"command": cur.statusmessage, "rowCount": cur.rowcount}
        result = cur.pgresult  # its columns straight from libpq: cursor.description builds a Column object each
        if result is None or not (result.nfields or result.status == ExecStatus.TUPLES_OK):
            return out  # a statement without rows (psycopg's description would be None)
        rows = await cur.fetchmany(limit + 1)
        types = conn.adapters.types
        encoding = conn.info.encoding
        fields = []
        for i in range(result.nfields):
            oid = result.ftype(i)
            info = types.get(oid)
            if info is None:
                name = await _type_name(ctx, oid)
            else:  # a type's array oid finds the type too: its name then takes []
                name = info.name if oid == info.oid else f"{info.name}[]"
            fields.append({"name": (result.fname(i) or b"").decode(encoding), "type": name})
    truncated = len(rows) > limit
    out.update(rows=rows[:limit], rowCount=min(len(rows), limit), fields=fields, truncated=truncated)
    return out


async def _type_name(ctx: ToolContext, oid: int) -> str:
    """The name of a type psycopg does not know (an extension's, an enum)."""
    name: str = await ctx.fetchval("SELECT format_type(%s::oid, NULL)", (oid,))
    return name
