"""Input models shared by the stats tools: a column of a table with an optional filter, ordered windows."""

from __future__ import annotations

from psycopg import sql
from pydantic import Field

from pgcode.groups._common import TableRef
from pgcode.groups._tabular import (
    ColumnName,
    OrderBy,
    Table,
    column_field,
    limit_field,
    order_terms,
    return_columns_field,
    where_field,
)


class ColumnIn(TableRef):
    column: str = column_field("Column to analyze")
    where: str | None = where_field()


class WindowIn(TableRef):
    order_by: OrderBy = Field(min_length=1, max_length=16, description="Column names or {column, direction, nulls}")
    partition_by: list[ColumnName] | None = Field(None, max_length=16)
    return_columns: list[ColumnName] | None = return_columns_field()
    where: str | None = where_field()
    limit: int = limit_field(100)


def window_spec(args: WindowIn, table: Table) -> tuple[sql.Composable, sql.Composable]:
    """(`PARTITION BY ... ORDER BY ...` for OVER, the ORDER BY list that shows rows group by group)."""
    parts = [c.of() for c in table.all(args.partition_by or [])]
    order = order_terms(args.order_by, table)
    spec = sql.SQL("ORDER BY {}").format(sql.SQL(", ").join(order))
    if parts:
        spec = sql.SQL("PARTITION BY {} {}").format(sql.SQL(", ").join(parts), spec)
    return spec, sql.SQL(", ").join([*parts, *order])
