"""Helpers for the data tools (text, stats): a table's columns by type, column lists, ordering, row limits."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from psycopg import sql
from psycopg.abc import Params
from pydantic import BeforeValidator, Field, StringConstraints

from pgcode.core import arguments
from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput
from pgcode.db.sqlpolicy import where_fragment
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import IDENT_MAX, TableRef

# Base type names (pg_type.typname; a domain counts as its base type).
NUMERIC_TYPES = frozenset({"int2", "int4", "int8", "float4", "float8", "numeric"})
TEXT_TYPES = frozenset({"text", "varchar", "bpchar", "name", "citext"})
TIME_TYPES = frozenset({"date", "timestamp", "timestamptz"})

ColumnName = Annotated[str, StringConstraints(min_length=1, max_length=IDENT_MAX, pattern=r"^[^\x00]+$")]

_COLUMNS_SQL = sql.SQL(
    "SELECT c.relkind::text AS kind, a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type, "
    "CASE WHEN t.typtype = 'd' THEN bt.typname ELSE t.typname END AS base "
    "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
    "LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped "
    "LEFT JOIN pg_type t ON t.oid = a.atttypid LEFT JOIN pg_type bt ON bt.oid = t.typbasetype "
    "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f') ORDER BY a.attnum")


def column_field(description: str, default: Any = ...) -> Any:
    """A pydantic Field for one column name (an identifier, never SQL text)."""
    return Field(default, min_length=1, max_length=IDENT_MAX, pattern=r"^[^\x00]+$", description=description)


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: str  # as format_type() writes it, e.g. "numeric(10,2)"
    base: str  # pg_type.typname of the type, or of a domain's base type

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.name)

    def of(self, alias: str = "t") -> sql.Identifier:
        """The column qualified by the query's table alias."""
        return sql.Identifier(alias, self.name)


@dataclass(frozen=True, slots=True)
class Table:
    """A table-like relation and its columns, read from the catalog before any query names them."""

    schema: str
    name: str
    kind: str  # pg_class.relkind
    columns: dict[str, Column]

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.name)

    @property
    def label(self) -> str:
        return f'"{self.schema}"."{self.name}"'

    def column(self, name: str) -> Column:
        col = self.columns.get(name)
        if col is None:
            raise ToolError(ErrorCode.NOT_FOUND, f"{self.label} has no column {name!r}",
                            hint="pg_describe_table lists the columns", details={"columns": list(self.columns)})
        return col

    def all(self, names: Iterable[str]) -> list[Column]:
        return [self.column(n) for n in names]

    def _typed(self, name: str, kinds: frozenset[str], what: str) -> Column:
        col = self.column(name)
        if col.base not in kinds:
            raise ToolError(ErrorCode.INVALID_INPUT, f'column "{name}" of {self.label} is {col.type}, not {what}',
                            details={"column": name, "type": col.type})
        return col

    def numeric(self, name: str) -> Column:
        return self._typed(name, NUMERIC_TYPES, "a numeric type (integer, bigint, numeric, real, double ...)")

    def text(self, name: str) -> Column:
        return self._typed(name, TEXT_TYPES, "a text type (text, varchar, char, citext)")

    def temporal(self, name: str) -> Column:
        return self._typed(name, TIME_TYPES, "a date or timestamp type")


async def table_info(ctx: ToolContext, ref: TableRef) -> Table:
    """The table `ref` names with its columns; NOT_FOUND unless it is a table, view or materialized view."""
    schema, name = ref.schema_name, ref.table_name
    if "\x00" in schema or "\x00" in name:
        raise ToolError(ErrorCode.INVALID_INPUT, "a table or schema name cannot contain a NUL character")
    rows = await ctx.fetch(_COLUMNS_SQL, (schema, name))
    if not rows:
        raise ToolError(ErrorCode.NOT_FOUND, f'table "{schema}"."{name}" does not exist',
                        hint="pg_list_tables lists the tables")
    return Table(schema, name, rows[0]["kind"],
                 {r["name"]: Column(r["name"], r["type"], r["base"]) for r in rows if r["name"] is not None})


class Direction(StrEnum):
    ASC = "asc"
    DESC = "desc"


class Nulls(StrEnum):
    FIRST = "first"
    LAST = "last"


DIRECTION_SQL = {Direction.ASC: sql.SQL(" ASC"), Direction.DESC: sql.SQL(" DESC")}
_NULLS = {Nulls.FIRST: sql.SQL(" NULLS FIRST"), Nulls.LAST: sql.SQL(" NULLS LAST")}


class OrderItem(ToolInput):
    column: str = column_field("Column to order by (a column name, not an expression)")
    direction: Direction = Field(Direction.ASC, description="Sort direction")
    nulls: Nulls | None = Field(None, description="Where NULLs go (default: last ascending, first descending)")


def _order_items(value: Any) -> Any:
    """A bare column name is shorthand for {column: name} (ascending)."""
    if isinstance(value, str):
        return [{"column": value}]
    if isinstance(value, list):
        return [{"column": v} if isinstance(v, str) else v for v in value]
    return value


OrderBy = Annotated[list[OrderItem], BeforeValidator(_order_items)]


def order_terms(items: Sequence[OrderItem], table: Table, alias: str = "t") -> list[sql.Composable]:
    """`t.col ASC NULLS LAST`, ... for checked columns (qualified, so no output column name can capture them)."""
    terms: list[sql.Composable] = []
    for item in items:
        col = table.column(item.column)
        nulls = _NULLS[item.nulls] if item.nulls else sql.SQL("")
        terms.append(sql.SQL("{}{}{}").format(sql.Identifier(alias, col.name), DIRECTION_SQL[item.direction], nulls))
    return terms


def idents(columns: Iterable[Column]) -> sql.Composable:
    return sql.SQL(", ").join(c.ident for c in columns)


def select_list(names: Sequence[str] | None, table: Table, alias: str = "t") -> sql.Composable:
    """The caller's returnColumns, checked against the table, or every column of `alias`."""
    if not names:
        return sql.SQL("{}.*").format(sql.Identifier(alias))
    return sql.SQL(", ").join(sql.Identifier(alias, c.name) for c in table.all(names))


def caller_where(where: str) -> sql.Composable:
    """The caller's condition, checked by the SQL policy, with `%` doubled: these queries always take parameters."""
    return sql.SQL(where_fragment(where).as_string(None).replace("%", "%%"))


def where_clause(where: str | None, *extra: sql.Composable) -> sql.Composable:
    """` WHERE a AND b ...` from the tool's own conditions and the caller's checked fragment.

    Run the query with a parameter mapping (at least `{}`), so that a `%` in the fragment reads as one.
    """
    parts = [*extra, *([caller_where(where)] if where is not None else [])]
    if not parts:
        return sql.SQL("")
    return sql.SQL(" WHERE ") + sql.SQL(" AND ").join(parts)


async def fetch_limited(ctx: ToolContext, query: sql.Composable, params: Params | None,
                        limit: int) -> dict[str, Any]:
    """Rows of `query` (which must end before LIMIT) up to `limit`, and whether there were more."""
    rows = await ctx.fetch(sql.SQL("{} LIMIT {}").format(query, sql.Literal(limit + 1)), params or {})
    truncated = len(rows) > limit
    rows = rows[:limit]
    return {"rows": rows, "rowCount": len(rows), "truncated": truncated}



def limit_field(default: int = 100, maximum: int = 10_000) -> Any:
    return Field(default, ge=1, le=maximum, description=arguments.LIMIT)


def where_field() -> Any:
    return Field(None, max_length=10_000, description=arguments.WHERE)


def return_columns_field() -> Any:
    return Field(None, max_length=100, description=arguments.RETURN_COLUMNS)
