"""Shared by the vector tools: metrics and their operators, the vector column a call names, query vectors."""

from __future__ import annotations

import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from psycopg import sql
from pydantic import Field, FiniteFloat

from pgcode.core.context import ToolContext
from pgcode.db.pool import register_vector_types
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import TableRef
from pgcode.groups._tabular import Table, column_field, table_info

MAX_DIMS = 16_000  # pgvector's limit for vector and halfvec columns
VECTOR_TYPES = frozenset({"vector", "halfvec", "sparsevec"})

Vector = Annotated[list[FiniteFloat], Field(min_length=1, max_length=MAX_DIMS)]


class Metric(StrEnum):
    L2 = "l2"
    COSINE = "cosine"
    INNER_PRODUCT = "inner_product"
    L1 = "l1"


# pgvector's operator, distance function and operator-class suffix per metric.
OPERATORS = {Metric.L2: "<->", Metric.COSINE: "<=>", Metric.INNER_PRODUCT: "<#>", Metric.L1: "<+>"}
FUNCTIONS = {Metric.L2: "l2_distance", Metric.COSINE: "cosine_distance", Metric.INNER_PRODUCT: "inner_product",
             Metric.L1: "l1_distance"}
OPCLASS_SUFFIX = {Metric.L2: "l2_ops", Metric.COSINE: "cosine_ops", Metric.INNER_PRODUCT: "ip_ops",
                  Metric.L1: "l1_ops"}


def metric_field(default: Metric | None = Metric.L2) -> Any:
    return Field(default)


def vector_field(description: str = "Query vector") -> Any:
    return Field(description=description)


class VectorColumnIn(TableRef):
    column: str = column_field("Vector column")


@dataclass(frozen=True, slots=True)
class VecColumn:
    """A vector column read from the catalog: its type, declared dimensions and the extension's schema."""

    table: Table
    name: str
    type_name: str  # vector, halfvec or sparsevec
    dims: int | None  # None when the column was declared without dimensions
    ext_schema: str

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.name)

    @property
    def label(self) -> str:
        return f'{self.table.label}."{self.name}"'

    def op(self, metric: Metric) -> sql.Composable:
        """The distance operator, qualified by the extension's schema (it need not be on the search_path)."""
        return sql.SQL("OPERATOR({}.{})").format(sql.Identifier(self.ext_schema), sql.SQL(OPERATORS[metric]))

    def func(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.ext_schema, name)

    def cast(self, value: sql.Composable) -> sql.Composable:
        """A vector given as text `[1,2,3]` cast to this column's type (and dimensions, when declared)."""
        vec = sql.SQL("CAST({} AS {})").format(value, sql.Identifier(self.ext_schema, "vector"))
        if self.type_name == "vector":
            return vec
        return sql.SQL("CAST({} AS {})").format(vec, sql.Identifier(self.ext_schema, self.type_name))

    def check_dims(self, vector: list[float], what: str = "the query vector") -> None:
        if self.dims is not None and len(vector) != self.dims:
            raise ToolError(ErrorCode.INVALID_INPUT, f"{what} has {len(vector)} dimensions but column {self.label} "
                            f"has {self.dims}", details={"expected": self.dims, "given": len(vector)})


_COLUMN_SQL = sql.SQL(
    "SELECT t.typname AS type, n.nspname AS ext_schema, CASE WHEN a.atttypmod > 0 THEN a.atttypmod END AS dims, "
    "(SELECT v.oid FROM pg_type v WHERE v.typname = 'vector' AND v.typnamespace = t.typnamespace) AS vector_oid "
    "FROM pg_class c JOIN pg_namespace cn ON cn.oid = c.relnamespace "
    "JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = %s AND NOT a.attisdropped "
    "JOIN pg_type t ON t.oid = a.atttypid JOIN pg_namespace n ON n.oid = t.typnamespace "
    "WHERE cn.nspname = %s AND c.relname = %s")


async def vector_column(ctx: ToolContext, ref: TableRef, column: str) -> VecColumn:
    """The table and vector column a call names; NOT_FOUND or INVALID_INPUT naming what is wrong."""
    table = await table_info(ctx, ref)
    col = table.column(column)
    if col.base not in VECTOR_TYPES:
        raise ToolError(ErrorCode.INVALID_INPUT, f'column "{column}" of {table.label} is {col.type}, not a vector '
                        "type (vector, halfvec, sparsevec)", hint="pg_vector_add_column adds one",
                        details={"column": column, "type": col.type})
    row = await ctx.fetchone(_COLUMN_SQL, (column, table.schema, table.name))
    assert row is not None
    await register_vector_types(await ctx.conn(), row["vector_oid"])
    return VecColumn(table, column, row["type"], row["dims"], row["ext_schema"])


def vector_text(vector: list[float]) -> str:
    """pgvector's text form, `[1,2.5,3]` (repr keeps every digit a float has)."""
    return "[" + ",".join(repr(float(v)) for v in vector) + "]"


def same_dims(a: list[float], b: list[float], names: tuple[str, str] = ("a", "b")) -> None:
    if len(a) != len(b):
        raise ToolError(ErrorCode.INVALID_INPUT, f"{names[0]} has {len(a)} dimensions but {names[1]} has {len(b)}",
                        details={names[0]: len(a), names[1]: len(b)})


def norm(v: list[float]) -> float:
    return math.sqrt(math.fsum(x * x for x in v))


def as_floats(value: Any) -> list[float]:
    """A vector loaded by the pgvector adapter (or a text `[...]` when the adapter is absent) as floats."""
    if isinstance(value, str):
        return [float(x) for x in value.strip("[]").split(",") if x]
    to_list = getattr(value, "to_list", None)
    return list(to_list()) if callable(to_list) else [float(x) for x in value]


def pgvector_version(ctx: ToolContext) -> tuple[int, ...]:
    text = ctx.caps.installed.get("vector", "0")
    return tuple(int(p) for p in text.split(".") if p.isdigit())
