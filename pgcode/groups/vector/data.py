"""vector: the extension, vector columns, writing vectors (one, or many through binary COPY) and checking them."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Self

from psycopg import sql
from psycopg.rows import dict_row
from pydantic import Field, model_validator

from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.db.pool import register_vector_types
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import IDENT_MAX, adapt_value, check_columns
from pgcode.groups._extensions import create_extension, extension_schema
from pgcode.groups._tabular import ColumnName, column_field, table_info, where_clause
from pgcode.groups.vector._base import (
    MAX_DIMS,
    VecColumn,
    Vector,
    VectorColumnIn,
    vector_column,
    vector_field,
    vector_text,
)
from pgcode.types import Effect

VECTOR = ("vector",)


class CreateExtensionIn(ToolInput):
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX)


@tool(group="vector", effect=Effect.ADMIN)
async def vector_create_extension(ctx: ToolContext, args: CreateExtensionIn) -> dict[str, Any]:
    """Create the pgvector extension (vector, halfvec and sparsevec types).

    With their index methods and operators. Says whether it was already there. schema: where its types and
    functions go (default: the first schema on the search_path). Runs in autocommit, so the next call can use it.
    """
    ctx.use_autocommit()
    out = await create_extension(ctx, "vector", package="pgvector (e.g. the postgresql-NN-pgvector package)",
                                 schema=args.schema_)
    await register_vector_types(await ctx.conn())
    return out


class VectorType(StrEnum):
    VECTOR = "vector"
    HALFVEC = "halfvec"
    SPARSEVEC = "sparsevec"


class AddColumnIn(VectorColumnIn):
    column: str = column_field("New column")
    dimensions: int = Field(ge=1, le=MAX_DIMS, description="e.g. 384 or 1536")
    type: VectorType = VectorType.VECTOR
    not_null: bool = False
    if_not_exists: bool = False


@tool(group="vector", effect=Effect.ADMIN, extensions=VECTOR)
async def vector_add_column(ctx: ToolContext, args: AddColumnIn) -> dict[str, Any]:
    """Add a vector column of fixed dimensions to a table; returns the column as created.

    type: vector (float4), halfvec (float2, half the space) or sparsevec (only non-zero elements stored).
    notNull declares it NOT NULL (the table must be empty); ifNotExists does nothing when the column exists.
    """
    table = await table_info(ctx, args)
    if table.kind not in ("r", "p"):
        raise ToolError(ErrorCode.INVALID_INPUT, f"{table.label} is not a table")
    existing = table.columns.get(args.column)
    if existing is not None and not args.if_not_exists:
        raise ToolError(ErrorCode.ALREADY_EXISTS, f'{table.label} already has a column "{args.column}" '
                        f"({existing.type})")
    schema = await extension_schema(ctx, "vector")
    if existing is None:
        await ctx.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} {}({}){}").format(
            table.ident, sql.Identifier(args.column), sql.Identifier(schema, args.type.value),
            sql.Literal(args.dimensions), sql.SQL(" NOT NULL") if args.not_null else sql.SQL("")))
    after = await table_info(ctx, args)
    return {"table": table.name, "schema": table.schema, "column": args.column,
            "type": after.column(args.column).type, "created": existing is None}


class InsertIn(VectorColumnIn):
    vector: Vector = vector_field("Vector to store")
    data: dict[str, Any] = Field(default_factory=dict, max_length=1000, description="Other column values")
    match: dict[str, Any] | None = Field(None, max_length=32, description="Update rows with these values instead")
    returning: list[ColumnName] | None = Field(None, max_length=100)


@tool(group="vector", effect=Effect.WRITE, extensions=VECTOR)
async def vector_insert(ctx: ToolContext, args: InsertIn) -> dict[str, Any]:
    """Insert a row with a vector, or with `match` set the vector of existing rows.

    data: the row's other column values, e.g. {"id": 7, "title": "..."}. match: update instead of insert: the
    rows whose columns equal these values, e.g. {"id": 7}, get the vector (and `data`). returning: columns of
    the written rows to return (default: none). An update that matches no row is NOT_FOUND and changes nothing.
    """
    col = await vector_column(ctx, args, args.column)
    col.check_dims(args.vector)
    types = {n: c.base for n, c in col.table.columns.items()}
    check_columns([*args.data, *(args.match or {}), *(args.returning or [])], types, col.table.label)
    if col.name in args.data:
        raise ToolError(ErrorCode.INVALID_INPUT, f'give the vector in `vector`, not as data["{col.name}"]')
    params: dict[str, Any] = {"q": vector_text(args.vector)}
    values = [col.cast(sql.Placeholder("q"))]
    for i, (name, value) in enumerate(args.data.items()):
        params[f"d{i}"] = adapt_value(value, types[name])
        values.append(sql.Placeholder(f"d{i}"))
    names = [col.ident, *map(sql.Identifier, args.data)]
    returning = (sql.SQL(" RETURNING {}").format(sql.SQL(", ").join(map(sql.Identifier, args.returning)))
                 if args.returning else sql.SQL(""))
    if args.match is None:
        stmt = sql.SQL("INSERT INTO {} AS t ({}) VALUES ({}){}").format(
            col.table.ident, sql.SQL(", ").join(names), sql.SQL(", ").join(values), returning)
    else:
        if not args.match:
            raise ToolError(ErrorCode.INVALID_INPUT, "match needs at least one column = value")
        conds = []
        for i, (name, value) in enumerate(args.match.items()):
            params[f"m{i}"] = adapt_value(value, types[name])
            conds.append(sql.SQL("t.{} = {}").format(sql.Identifier(name), sql.Placeholder(f"m{i}")))
        sets = [sql.SQL("{} = {}").format(n, v) for n, v in zip(names, values, strict=True)]
        stmt = sql.SQL("UPDATE {} AS t SET {}{}{}").format(
            col.table.ident, sql.SQL(", ").join(sets), where_clause(None, *conds), returning)
    conn = await ctx.conn()
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(stmt, params)
        rows = await cur.fetchall() if cur.description else []
        count = cur.rowcount
    if args.match is not None and count == 0:
        raise ToolError(ErrorCode.NOT_FOUND, f"no row of {col.table.label} matches {args.match}")
    return {"table": col.table.name, "schema": col.table.schema, "operation": "insert" if args.match is None
            else "update", "rowCount": count, "rows": rows}


MAX_BATCH = 100_000
MAX_BATCH_FLOATS = 50_000_000  # 200 MB of float4 on the wire; larger loads go in several calls


class BatchInsertIn(VectorColumnIn):
    vectors: list[Vector] = Field(min_length=1, max_length=MAX_BATCH, description="One per new row")
    data: list[dict[str, Any]] | None = Field(None, max_length=MAX_BATCH, description="Other column values per row")

    @model_validator(mode="after")
    def _sizes(self) -> Self:
        if self.data is not None and len(self.data) != len(self.vectors):
            raise ValueError(f"data has {len(self.data)} rows but vectors has {len(self.vectors)}")
        if sum(len(v) for v in self.vectors) > MAX_BATCH_FLOATS:
            raise ValueError(f"more than {MAX_BATCH_FLOATS} numbers in one call; split the load")
        return self


@tool(group="vector", effect=Effect.WRITE, extensions=VECTOR)
async def vector_batch_insert(ctx: ToolContext, args: BatchInsertIn) -> dict[str, Any]:
    """Insert many rows with vectors through binary COPY (all or none); returns the count.

    data: the other column values per row, in the order of vectors (same length), e.g. [{"id": 1}, ...]. Every
    vector must have the column's dimensions (or, for a column declared without them, the same as the first).
    """
    col = await vector_column(ctx, args, args.column)
    dims = col.dims or len(args.vectors[0])
    for i, vec in enumerate(args.vectors):
        if len(vec) != dims:
            what = f"column {col.label}" if col.dims else "vector 0"
            raise ToolError(ErrorCode.INVALID_INPUT, f"vector {i} has {len(vec)} dimensions but {what} has {dims}; "
                            "nothing was inserted", details={"expected": dims, "given": len(vec), "index": i})
    names = sorted({k for row in args.data or () for k in row})
    types = {n: c.base for n, c in col.table.columns.items()}
    check_columns(names, types, col.table.label)
    if col.name in names:
        raise ToolError(ErrorCode.INVALID_INPUT, f'give the vectors in `vectors`, not as data["{col.name}"]')
    # Binary COPY sends float4s as they are (no text formatting or parsing); other columns go binary only when
    # a JSON value maps onto their type directly, otherwise the whole load uses text COPY.
    binary = col.type_name == "vector" and all(types[n] in _BINARY_SAFE for n in names)
    oids = await _column_oids(ctx, col, names) if binary else []
    stmt = sql.SQL("COPY {} ({}) FROM STDIN (FORMAT {})").format(
        col.table.ident, sql.SQL(", ").join(map(sql.Identifier, [col.name, *names])),
        sql.SQL("BINARY" if binary else "TEXT"))
    cur = (await ctx.conn()).cursor()
    async with cur.copy(stmt) as copy:
        if binary:
            copy.set_types(oids)
        for i, vec in enumerate(args.vectors):
            extra = args.data[i] if args.data else {}
            values = [adapt_value(extra.get(n), types[n]) for n in names]
            await copy.write_row([vec if binary else vector_text(vec), *values])
    return {"table": col.table.name, "schema": col.table.schema, "column": col.name, "inserted": cur.rowcount,
            "dimensions": dims, "format": "binary" if binary else "text"}


_BINARY_SAFE = frozenset({"int2", "int4", "int8", "float4", "float8", "text", "varchar", "bool", "json", "jsonb"})


async def _column_oids(ctx: ToolContext, col: VecColumn, names: list[str]) -> list[int]:
    """Type oids of the vector column and then `names`, for the binary COPY's dumpers."""
    rows = await ctx.fetch(
        "SELECT a.attname, a.atttypid::int AS oid FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s "
        "AND a.attname = ANY(%s) AND NOT a.attisdropped", (col.table.schema, col.table.name, [col.name, *names]))
    by_name = {r["attname"]: r["oid"] for r in rows}
    return [by_name[n] for n in [col.name, *names]]


class ValidateIn(VectorColumnIn):
    vectors: list[Vector] = Field(default_factory=list, max_length=1000)
    vector: Vector | None = None


@tool(group="vector", effect=Effect.READ, extensions=VECTOR)
async def vector_validate(ctx: ToolContext, args: ValidateIn) -> dict[str, Any]:
    """Check vectors against a column's dimensions, and the dimensions of its stored rows.

    vectors (or one vector) are checked against the column's declared dimensions. `valid` is true when every given
    vector fits; each vector says its dimensions and, when it does not fit, why.
    """
    col = await vector_column(ctx, args, args.column)
    given = ([args.vector] if args.vector else []) + list(args.vectors)
    checks = []
    for i, vec in enumerate(given):
        problem = (f"{len(vec)} dimensions, the column has {col.dims}"
                   if col.dims is not None and len(vec) != col.dims else None)
        checks.append({"index": i, "dimensions": len(vec), "valid": problem is None, "problem": problem})
    dims_fn = col.func("vector_dims") if col.type_name != "sparsevec" else None
    stored = await ctx.fetch(sql.SQL(
        "SELECT {dims} AS dimensions, count(*) AS rows FROM {table} AS t WHERE t.{col} IS NOT NULL "
        "GROUP BY 1 ORDER BY 2 DESC LIMIT 20").format(
        dims=sql.SQL("{}(t.{})").format(dims_fn, col.ident) if dims_fn else sql.Literal(col.dims),
        table=col.table.ident, col=col.ident))
    nulls = await ctx.fetchval(sql.SQL("SELECT count(*) FROM {} AS t WHERE t.{} IS NULL").format(
        col.table.ident, col.ident))
    return {"table": col.table.name, "schema": col.table.schema, "column": col.name, "type": col.type_name,
            "dimensions": col.dims, "valid": all(c["valid"] for c in checks), "vectors": checks,
            "storedDimensions": stored, "nullRows": nulls}
