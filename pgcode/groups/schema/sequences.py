"""schema: list, create and drop sequences."""

from __future__ import annotations

from fractions import Fraction
from typing import Any, Literal

from psycopg import sql
from pydantic import Field, model_validator

from pgcode.core import arguments
from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.db.queries import SYSTEM_SCHEMAS, load_query
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups.schema._drop import DropTarget, drop
from pgcode.groups.schema._shared import (
    RELKIND_NAMES,
    listing,
    name_field,
    qualified,
    relation,
    require_schema,
    schema_field,
)
from pgcode.types import Effect

BIGINT_MIN, BIGINT_MAX = -(2**63), 2**63 - 1


class ListSequencesIn(ToolInput):
    schema_: str | None = schema_field(arguments.SCHEMA_FILTER)
    pattern: str | None = Field(None, max_length=200, description="ILIKE pattern on the name")
    include_system: bool = False
    limit: int = Field(500, ge=1, le=10_000)


def range_usage(row: dict[str, Any]) -> dict[str, Any]:
    """How much of its range a sequence has handed out, and how many nextval calls are left before it stops
    (or wraps, when it cycles). Before the first nextval, last_value is NULL and nothing is used."""
    low, high, step = row["min_value"], row["max_value"], row["increment"]
    last = row["last_value"] if row["last_value"] is not None else row["start_value"] - step
    span = high - low + 1
    if step > 0:
        used = Fraction(min(max(last - low + 1, 0), span), span)
        remaining = max(high - last, 0) // step
    else:
        used = Fraction(min(max(high - last + 1, 0), span), span)
        remaining = max(last - low, 0) // -step
    return {"used_fraction": float(used), "used_percent": round(float(used * 100), 4),
            "remaining_values": remaining}


@tool(group="schema", effect=Effect.READ)
async def list_sequences(ctx: ToolContext, args: ListSequencesIn) -> dict[str, Any]:
    """List sequences with their settings, owning column and how much of the range is used.

    Each has data type, start, increment, min/max, cache, cycle, last_value (null before the first nextval), the owning
    column (owned_by, also for serial and identity columns) and the range used (used_fraction, used_percent,
    remaining_values). includeSystem adds system schemas and pgcode's own.
    """
    rows = await ctx.fetch(load_query("schema_list_sequences"), {
        "schema": args.schema_, "name": None, "pattern": args.pattern, "include_system": args.include_system,
        "system": SYSTEM_SCHEMAS, "limit": args.limit + 1})
    return listing("sequences", [_present(r) for r in rows], args.limit)


def _present(row: dict[str, Any]) -> dict[str, Any]:
    table, column = row.pop("owned_by_table"), row.pop("owned_by_column")
    schema = row.pop("owned_by_schema")
    row["owned_by"] = {"schema": schema, "table": table, "column": column} if table is not None else None
    return {**row, **range_usage(row)}


class CreateSequenceIn(ToolInput):
    name: str = name_field("Sequence name (schema.name ok)")
    schema_: str | None = schema_field()
    data_type: Literal["smallint", "integer", "bigint"] | None = None
    start: int | None = Field(None, ge=BIGINT_MIN, le=BIGINT_MAX)
    increment: int | None = Field(None, ge=BIGINT_MIN, le=BIGINT_MAX,
                                  description="Not 0; negative counts down (default 1)")
    min_value: int | None = Field(None, ge=BIGINT_MIN, le=BIGINT_MAX)
    max_value: int | None = Field(None, ge=BIGINT_MIN, le=BIGINT_MAX)
    cache: int | None = Field(None, ge=1, le=BIGINT_MAX)
    cycle: bool = False
    owned_by: str | None = Field(None, min_length=3, max_length=200, pattern=r"^[^\x00]+$",
                                 description="table.column (same schema)")
    if_not_exists: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> CreateSequenceIn:
        if self.increment == 0:
            raise ValueError("increment cannot be 0")
        if self.min_value is not None and self.max_value is not None and self.min_value >= self.max_value:
            raise ValueError("minValue must be below maxValue")
        if self.start is not None and ((self.min_value is not None and self.start < self.min_value)
                                       or (self.max_value is not None and self.start > self.max_value)):
            raise ValueError("start must lie between minValue and maxValue")
        return self


async def _owner_column(ctx: ToolContext, schema: str, owned_by: str) -> tuple[str, str]:
    parts = owned_by.split(".")
    if len(parts) == 3 and parts[0] == schema:
        parts = parts[1:]
    if len(parts) != 2 or not all(parts):
        raise ToolError(ErrorCode.INVALID_INPUT, f"ownedBy must be table.column in schema {schema!r}, "
                                                 f"not {owned_by!r}",
                        hint="a sequence can only be owned by a column of a table in its own schema")
    table, column = parts
    found = await ctx.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s "
        "AND c.relkind IN ('r', 'p', 'f') AND a.attname = %s AND a.attnum > 0 AND NOT a.attisdropped)",
        (schema, table, column))
    if not found:
        raise ToolError(ErrorCode.NOT_FOUND, f'column "{column}" of table "{schema}"."{table}" does not exist')
    return table, column


@tool(group="schema", effect=Effect.ADMIN)
async def create_sequence(ctx: ToolContext, args: CreateSequenceIn) -> dict[str, Any]:
    """Create a sequence (AS type, START, INCREMENT, MIN/MAXVALUE, CACHE, CYCLE, OWNED BY).

    Returns its settings as PostgreSQL recorded them. dataType (AS; default bigint) limits the default
    minValue/maxValue; start (START WITH) defaults to minValue, or maxValue if descending; cache is how many values each
    session preallocates; cycle wraps around at the end of the range instead of failing; ownedBy ties it to a column of
    a table in the same schema, so it is dropped with the column. With ifNotExists an existing sequence is left alone
    and created is false.
    """
    schema, name = qualified(args.name, args.schema_, "sequence")
    await require_schema(ctx, schema)
    existing = await relation(ctx, schema, name)
    if existing is not None:
        if existing["relkind"] != "S":
            raise ToolError(ErrorCode.ALREADY_EXISTS, f'"{schema}"."{name}" already exists as a '
                                                      f'{RELKIND_NAMES.get(existing["relkind"], "relation")}')
        if not args.if_not_exists:
            raise ToolError(ErrorCode.ALREADY_EXISTS, f'sequence "{schema}"."{name}" already exists',
                            hint="pass ifNotExists: true to accept an existing sequence")
        return {**await _describe(ctx, schema, name), "created": False}
    options: list[sql.Composable] = []
    if args.data_type is not None:
        options.append(sql.SQL("AS " + args.data_type))
    for keyword, value in (("INCREMENT BY", args.increment), ("MINVALUE", args.min_value),
                           ("MAXVALUE", args.max_value), ("START WITH", args.start), ("CACHE", args.cache)):
        if value is not None:
            options.append(sql.SQL(keyword + " {}").format(sql.Literal(value)))
    options.append(sql.SQL("CYCLE" if args.cycle else "NO CYCLE"))
    if args.owned_by is not None:
        table, column = await _owner_column(ctx, schema, args.owned_by)
        options.append(sql.SQL("OWNED BY {}").format(sql.Identifier(schema, table, column)))
    await ctx.execute(sql.SQL("CREATE SEQUENCE {} {}").format(sql.Identifier(schema, name),
                                                             sql.SQL(" ").join(options)))
    return {**await _describe(ctx, schema, name), "created": True}


async def _describe(ctx: ToolContext, schema: str, name: str) -> dict[str, Any]:
    row = await ctx.fetchone(load_query("schema_list_sequences"), {
        "schema": schema, "name": name, "pattern": None, "include_system": True, "system": SYSTEM_SCHEMAS,
        "limit": 1})
    assert row is not None
    return _present(row)


class DropSequenceIn(ToolInput):
    name: str = name_field("Sequence name (schema.name ok)")
    schema_: str | None = schema_field()
    if_exists: bool = False
    cascade: bool = False


@tool(group="schema", effect=Effect.DESTRUCTIVE)
async def drop_sequence(ctx: ToolContext, args: DropSequenceIn) -> dict[str, Any]:
    """Drop a sequence (CASCADE also drops the column defaults using it).

    One that a column default still uses (nextval) is refused (CONFLICT, dependents listed) unless cascade is true,
    which drops those defaults too; an identity column's sequence goes only with the identity. With ifExists a missing
    sequence is no error and dropped is false.
    """
    schema, name = qualified(args.name, args.schema_, "sequence")
    rel = await relation(ctx, schema, name)
    result = {"schema": schema, "sequence": name}
    if rel is None:
        if args.if_exists:
            return {**result, "dropped": False, "cascade": args.cascade, "dropped_dependents": [],
                    "dependent_count": 0}
        raise ToolError(ErrorCode.NOT_FOUND, f'sequence "{schema}"."{name}" does not exist',
                        hint="pg_list_sequences lists them")
    if rel["relkind"] != "S":
        raise ToolError(ErrorCode.INVALID_INPUT, f'"{schema}"."{name}" is a {RELKIND_NAMES.get(rel["relkind"])}, '
                                                 "not a sequence")
    identity = await ctx.fetchone(
        "SELECT tn.nspname AS schema, t.relname AS table, a.attname AS column FROM pg_depend d "
        "JOIN pg_class t ON t.oid = d.refobjid JOIN pg_namespace tn ON tn.oid = t.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid "
        "WHERE d.classid = 'pg_class'::regclass AND d.objid = %s AND d.refclassid = 'pg_class'::regclass "
        "AND d.deptype = 'i'", (rel["oid"],))
    if identity is not None:
        raise ToolError(ErrorCode.CONFLICT, f'sequence "{schema}"."{name}" belongs to the identity column '
                        f'"{identity["column"]}" of "{identity["schema"]}"."{identity["table"]}"; nothing was dropped',
                        hint="ALTER TABLE ... ALTER COLUMN ... DROP IDENTITY removes it with the identity",
                        details={"identity_column": identity})
    target = DropTarget("SEQUENCE", sql.Identifier(schema, name), "pg_class", rel["oid"],
                        f'sequence "{schema}"."{name}"')
    return {**result, **await drop(ctx, target, cascade=args.cascade)}
