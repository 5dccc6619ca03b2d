"""partitioning group: declarative range, list and hash partitioning; partitions created, attached, detached, listed."""

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
from pgcode.groups._common import IDENT_MAX, TableRef, relation_kind, split_name
from pgcode.groups._snapshots import snapshot_before
from pgcode.groups.core.tables import ColumnDef, _column_sql
from pgcode.types import Effect


class Strategy(StrEnum):
    RANGE = "range"
    LIST = "list"
    HASH = "hash"


_STRATEGY_CODES = {"r": Strategy.RANGE, "l": Strategy.LIST, "h": Strategy.HASH}


class Unbounded(ToolInput):
    unbounded: Literal["minvalue", "maxvalue"] = Field(description="Open range bound")


RangeValue = str | int | float | bool | Unbounded
ListValue = str | int | float | bool | None

_FROM = Field(None, alias="from", min_length=1, max_length=32)
_TO = Field(None, min_length=1, max_length=32)
_VALUES = Field(None, min_length=1, max_length=10_000)
_MODULUS = Field(None, ge=1, le=100_000)
_REMAINDER = Field(None, ge=0, lt=100_000)
_DEFAULT = Field(False)


class BoundsMixin(ToolInput):
    """One partition's bounds, given structurally: from/to, values, modulus/remainder, or default."""

    from_: list[RangeValue] | None = _FROM
    to: list[RangeValue] | None = _TO
    values: list[ListValue] | None = _VALUES
    modulus: int | None = _MODULUS
    remainder: int | None = _REMAINDER
    default: bool = _DEFAULT

    @model_validator(mode="after")
    def _one_kind(self) -> BoundsMixin:
        kinds = [k for k, given in (
            ("from/to", self.from_ is not None or self.to is not None), ("values", self.values is not None),
            ("modulus/remainder", self.modulus is not None or self.remainder is not None),
            ("default", self.default)) if given]
        if len(kinds) != 1:
            raise ValueError("give exactly one kind of bounds: from and to (range), values (list), "
                             f"modulus and remainder (hash), or default: true; got {', '.join(kinds) or 'none'}")
        if kinds[0] == "from/to" and (self.from_ is None or self.to is None):
            raise ValueError("a range partition needs both from and to")
        if kinds[0] == "modulus/remainder":
            if self.modulus is None or self.remainder is None:
                raise ValueError("a hash partition needs both modulus and remainder")
            if self.remainder >= self.modulus:
                raise ValueError("remainder must be less than modulus")
        return self

    @property
    def strategy(self) -> Strategy | None:
        """The strategy these bounds fit; None for the default partition."""
        if self.from_ is not None:
            return Strategy.RANGE
        if self.values is not None:
            return Strategy.LIST
        if self.modulus is not None:
            return Strategy.HASH
        return None


def _range_value(value: RangeValue) -> sql.Composable:
    if isinstance(value, Unbounded):
        return sql.SQL(value.unbounded.upper())
    return sql.Literal(value)


def bound_spec(bounds: BoundsMixin, strategy: Strategy, nkeys: int, table: str) -> sql.Composable:
    """`FOR VALUES ...` or `DEFAULT`, every value a literal rendered by psycopg, checked against the parent."""
    if bounds.default:
        if strategy is Strategy.HASH:
            raise ToolError(ErrorCode.INVALID_INPUT, f"{table} is hash-partitioned and cannot have a default partition")
        return sql.SQL("DEFAULT")
    if bounds.strategy is not strategy:
        need = {Strategy.RANGE: "from and to", Strategy.LIST: "values",
                Strategy.HASH: "modulus and remainder"}[strategy]
        raise ToolError(ErrorCode.INVALID_INPUT, f"{table} is partitioned by {strategy.value}: give {need}",
                        details={"strategy": strategy.value})
    if bounds.from_ is not None and bounds.to is not None:
        for side, items in (("from", bounds.from_), ("to", bounds.to)):
            if len(items) != nkeys:
                raise ToolError(ErrorCode.INVALID_INPUT, f"{side} has {len(items)} value(s); the partition key of "
                                f"{table} has {nkeys} column(s)", details={"keyColumns": nkeys})
        return sql.SQL("FOR VALUES FROM ({}) TO ({})").format(
            sql.SQL(", ").join(map(_range_value, bounds.from_)), sql.SQL(", ").join(map(_range_value, bounds.to)))
    if bounds.values is not None:
        return sql.SQL("FOR VALUES IN ({})").format(sql.SQL(", ").join(map(sql.Literal, bounds.values)))
    return sql.SQL("FOR VALUES WITH (MODULUS {}, REMAINDER {})").format(
        sql.Literal(bounds.modulus), sql.Literal(bounds.remainder))


async def _parent(ctx: ToolContext, schema: str, name: str) -> dict[str, Any]:
    """The partitioned table schema.name: oid, strategy, key; NOT_FOUND or INVALID_INPUT otherwise."""
    row = await ctx.fetchone(
        "SELECT c.oid, c.relkind::text AS relkind, pt.partstrat::text AS strategy, pt.partnatts AS nkeys, "
        "pg_get_partkeydef(c.oid) AS key, pt.partdefid, "
        "(SELECT array_agg(a.attname::text ORDER BY k.ord) FROM unnest(pt.partattrs::int2[]) WITH ORDINALITY "
        "k(attnum, ord) LEFT JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = k.attnum) AS key_columns "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "LEFT JOIN pg_partitioned_table pt ON pt.partrelid = c.oid WHERE n.nspname = %s AND c.relname = %s",
        (schema, name))
    label = f'"{schema}"."{name}"'
    if row is None:
        raise ToolError(ErrorCode.NOT_FOUND, f"table {label} does not exist", hint="pg_list_tables lists the tables")
    if row["relkind"] != "p":
        raise ToolError(ErrorCode.INVALID_INPUT, f"{label} is not a partitioned table",
                        hint="pg_create_partitioned_table creates one")
    row["strategy"] = _STRATEGY_CODES[row["strategy"]]
    row["label"] = label
    return row


async def _bounds_of(ctx: ToolContext, schema: str, name: str) -> str | None:
    bounds: str | None = await ctx.fetchval(
        "SELECT pg_get_expr(c.relpartbound, c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s", (schema, name))
    return bounds


class PartitionDef(BoundsMixin):
    name: str = Field(min_length=1, max_length=IDENT_MAX, description="Partition name")


class CreatePartitionedTableIn(TableRef):
    columns: list[ColumnDef] = Field(min_length=1, max_length=1600, description="Column definitions")
    partition_by: Strategy = Field(description="Partitioning strategy")
    partition_key: list[str] = Field(min_length=1, max_length=32, description="Key columns, in order")
    partitions: list[PartitionDef] = Field([], max_length=1000)
    default_partition: bool = False

    @model_validator(mode="after")
    def _key_in_columns(self) -> CreatePartitionedTableIn:
        names = [c.name for c in self.columns]
        if len(set(names)) != len(names):
            raise ValueError("column names must be unique")
        missing = [k for k in self.partition_key if k not in names]
        if missing:
            raise ValueError(f"partition key column(s) {', '.join(missing)} are not among the columns")
        return self


@tool(group="partitioning", effect=Effect.ADMIN)
async def create_partitioned_table(ctx: ToolContext, args: CreatePartitionedTableIn) -> dict[str, Any]:
    """Create a range, list or hash partitioned table, optionally with its first partitions.

    Everything is created in one transaction: a bad partition leaves nothing behind. partitionKey: each one of
    `columns`; a primary key or unique column must include them all. partitions: created with the table, each
    with a name (in the table's schema) and its bounds, as pg_create_partition takes them. defaultPartition:
    also create the default partition <table>_default (range and list only).
    """
    schema, name = args.schema_name, args.table_name
    if args.default_partition and args.partition_by is Strategy.HASH:
        raise ToolError(ErrorCode.INVALID_INPUT, "a hash-partitioned table cannot have a default partition")
    if args.default_partition and len(f"{name}_default") > IDENT_MAX:
        raise ToolError(ErrorCode.INVALID_INPUT, f"{name}_default is longer than {IDENT_MAX} characters",
                        hint="give a shorter table name, or create the default partition with pg_create_partition")
    if await relation_kind(ctx, schema, name) is not None:
        raise ToolError(ErrorCode.ALREADY_EXISTS, f'"{schema}"."{name}" already exists')
    items = [_column_sql(c) for c in args.columns]
    pk = [c.name for c in args.columns if c.primary_key]
    if pk:
        items.append(sql.SQL("PRIMARY KEY ({})").format(sql.SQL(", ").join(map(sql.Identifier, pk))))
    await ctx.execute(sql.SQL("CREATE TABLE {} ({}) PARTITION BY {} ({})").format(
        args.ident, sql.SQL(", ").join(items), sql.SQL(args.partition_by.value.upper()),
        sql.SQL(", ").join(map(sql.Identifier, args.partition_key))))
    label = f'"{schema}"."{name}"'
    created = []
    parts = [*args.partitions]
    if args.default_partition:
        parts.append(PartitionDef(name=f"{name}_default", default=True))
    for part in parts:
        spec = bound_spec(part, args.partition_by, len(args.partition_key), label)
        await ctx.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} {}").format(
            sql.Identifier(schema, part.name), args.ident, spec))
        created.append({"name": part.name, "bounds": await _bounds_of(ctx, schema, part.name)})
    return {"table": name, "schema": schema, "strategy": args.partition_by.value,
            "partition_key": args.partition_key, "primary_key": pk, "partitions": created}


class PartitionRef(TableRef):
    partition: str = Field(min_length=1, max_length=2 * IDENT_MAX + 1, description=(
        "Partition name (`schema.name` accepted)"))

    @property
    def partition_names(self) -> tuple[str, str]:
        return split_name(self.partition, None, default_schema=self.schema_name)


class CreatePartitionIn(PartitionRef, BoundsMixin):
    pass


@tool(group="partitioning", effect=Effect.ADMIN)
async def create_partition(ctx: ToolContext, args: CreatePartitionIn) -> dict[str, Any]:
    """Create a partition from bounds: from/to, values, modulus/remainder, or default.

    Bounds that overlap an existing partition are refused with PostgreSQL's reason, and nothing is created.
    The partition's schema defaults to the partitioned table's.

    Bounds, exactly one kind: from and to (range: from inclusive, to exclusive, one value per key column, e.g.
    ['2024-01-01']; {unbounded: 'minvalue'} or {unbounded: 'maxvalue'} leaves that side open in that key
    column), values (list: the key values the partition holds, null for NULL keys), modulus and remainder
    (hash: the modulus is the number of hash partitions, the remainder the one this partition takes), or
    default: true (the default partition, for rows no other partition accepts; range and list only).
    """
    parent = await _parent(ctx, args.schema_name, args.table_name)
    schema, name = args.partition_names
    spec = bound_spec(args, parent["strategy"], parent["nkeys"], parent["label"])
    await ctx.execute(sql.SQL("CREATE TABLE {} PARTITION OF {} {}").format(
        sql.Identifier(schema, name), args.ident, spec))
    return {"partition": name, "schema": schema, "table": args.table_name, "table_schema": args.schema_name,
            "strategy": parent["strategy"].value, "bounds": await _bounds_of(ctx, schema, name)}


class AttachPartitionIn(PartitionRef, BoundsMixin):
    pass


@tool(group="partitioning", effect=Effect.ADMIN)
async def attach_partition(ctx: ToolContext, args: AttachPartitionIn) -> dict[str, Any]:
    """Attach a table as a partition with the given bounds; its rows must fit them.

    PostgreSQL scans the table to check its rows (a CHECK constraint matching the bounds skips the scan), and
    a default partition is scanned for rows that would now belong here. Overlaps and rows outside the bounds
    are refused with PostgreSQL's reason, and nothing changes. The partition's schema defaults to the
    partitioned table's.

    Bounds, exactly one kind: from and to (range: from inclusive, to exclusive, one value per key column, e.g.
    ['2024-01-01']; {unbounded: 'minvalue'} or {unbounded: 'maxvalue'} leaves that side open in that key
    column), values (list: the key values the partition holds, null for NULL keys), modulus and remainder
    (hash: the modulus is the number of hash partitions, the remainder the one this partition takes), or
    default: true (the default partition, for rows no other partition accepts; range and list only).
    """
    parent = await _parent(ctx, args.schema_name, args.table_name)
    schema, name = args.partition_names
    kind = await relation_kind(ctx, schema, name)
    if kind is None:
        raise ToolError(ErrorCode.NOT_FOUND, f'table "{schema}"."{name}" does not exist')
    spec = bound_spec(args, parent["strategy"], parent["nkeys"], parent["label"])
    await ctx.execute(sql.SQL("ALTER TABLE {} ATTACH PARTITION {} {}").format(
        args.ident, sql.Identifier(schema, name), spec))
    return {"partition": name, "schema": schema, "table": args.table_name, "table_schema": args.schema_name,
            "attached": True, "bounds": await _bounds_of(ctx, schema, name)}


class DetachMode(StrEnum):
    PLAIN = "plain"
    CONCURRENTLY = "concurrently"
    FINALIZE = "finalize"


def detach_statement(parent: sql.Identifier, partition: sql.Identifier, mode: DetachMode) -> sql.Composed:
    """The one DETACH PARTITION statement every detach runs."""
    suffix = {DetachMode.PLAIN: "", DetachMode.CONCURRENTLY: " CONCURRENTLY", DetachMode.FINALIZE: " FINALIZE"}[mode]
    return sql.SQL("ALTER TABLE {} DETACH PARTITION {}" + suffix).format(parent, partition)


class DetachPartitionIn(PartitionRef):
    concurrently: bool = False
    finalize: bool = False


@tool(group="partitioning", effect=Effect.DESTRUCTIVE)
async def detach_partition(ctx: ToolContext, args: DetachPartitionIn) -> dict[str, Any]:
    """Detach a partition: it becomes a table of its own, with its rows.

    It is no longer part of the partitioned table. concurrently: detach without blocking queries on the partitioned
    table (PostgreSQL 14+; runs outside a transaction; not possible while the table has a default partition); finalize:
    complete a concurrent detach that was interrupted (PostgreSQL 14+). The result keeps the bounds it had, so that
    pg_attach_partition can put it back.
    """
    if args.concurrently and args.finalize:
        raise ToolError(ErrorCode.INVALID_INPUT, "concurrently and finalize exclude each other")
    mode = DetachMode.CONCURRENTLY if args.concurrently else DetachMode.FINALIZE if args.finalize else DetachMode.PLAIN
    if mode is not DetachMode.PLAIN:
        ctx.caps.require_version(140000, f"DETACH PARTITION {mode.value.upper()}")
    if mode is DetachMode.CONCURRENTLY:
        ctx.use_autocommit()
    parent = await _parent(ctx, args.schema_name, args.table_name)
    schema, name = args.partition_names
    pending = sql.SQL("i.inhdetachpending" if ctx.server_version >= 140000 else "false")
    row = await ctx.fetchone(sql.SQL(
        "SELECT pg_get_expr(c.relpartbound, c.oid) AS bounds, {} AS pending "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_inherits i ON i.inhrelid = c.oid AND i.inhparent = %s WHERE n.nspname = %s AND c.relname = %s"
    ).format(pending), (parent["oid"], schema, name))
    if row is None:
        raise ToolError(ErrorCode.NOT_FOUND, f'"{schema}"."{name}" is not a partition of {parent["label"]}',
                        hint="pg_list_partitions lists its partitions")
    if mode is DetachMode.FINALIZE and not row["pending"]:
        raise ToolError(ErrorCode.INVALID_INPUT, f'"{schema}"."{name}" has no interrupted concurrent detach to '
                        "finalize")
    snapshot = await snapshot_before(ctx, "pg_detach_partition", "table", schema, name)
    await ctx.execute(detach_statement(args.ident, sql.Identifier(schema, name), mode))
    return {"snapshot_id": snapshot, "partition": name, "schema": schema, "table": args.table_name,
            "table_schema": args.schema_name, "detached": True, "mode": mode.value, "bounds_before": row["bounds"]}


class ListPartitionsIn(TableRef):
    limit: int = Field(1000, ge=1, le=10_000, description=arguments.LIMIT)


async def _partitions(ctx: ToolContext, oid: int, limit: int) -> tuple[list[dict[str, Any]], int]:
    rows = await ctx.fetch(load_query("partitioning_partitions"), {"oid": oid, "limit": limit})
    total = rows[0]["total"] if rows else 0
    for r in rows:
        del r["total"]
    return rows, total


@tool(group="partitioning", effect=Effect.READ)
async def list_partitions(ctx: ToolContext, args: ListPartitionsIn) -> dict[str, Any]:
    """List a partitioned table's partitions (nested too): bounds, kind, rows, size."""
    parent = await _parent(ctx, args.schema_name, args.table_name)
    rows, total = await _partitions(ctx, parent["oid"], args.limit)
    return {"table": args.table_name, "schema": args.schema_name, "strategy": parent["strategy"].value,
            "partitions": rows, "count": len(rows), "total": total, "truncated": total > len(rows)}


class PartitionInfoIn(ListPartitionsIn):
    default_row_cap: int = Field(100_000, ge=1, le=10_000_000)


@tool(group="partitioning", effect=Effect.READ)
async def partition_info(ctx: ToolContext, args: PartitionInfoIn) -> dict[str, Any]:
    """A partitioned table in detail: key, partitions, rows in its default partition.

    Partitions with bounds, row estimates and sizes. The rows of the default partition are counted up to defaultRowCap
    (default_rows_capped says when reached). Rows in the default partition block creating a partition whose bounds cover
    them: move them out first.
    """
    parent = await _parent(ctx, args.schema_name, args.table_name)
    rows, total = await _partitions(ctx, parent["oid"], args.limit)
    default: dict[str, Any] | None = None
    if parent["partdefid"]:
        d = await ctx.fetchone(
            "SELECT c.relname AS name, n.nspname AS schema FROM pg_class c "
            "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.oid = %s", (parent["partdefid"],))
        assert d is not None
        counted = await ctx.fetchval(sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} LIMIT {}) s").format(
            sql.Identifier(d["schema"], d["name"]), sql.Literal(args.default_row_cap + 1)))
        default = {"name": d["name"], "schema": d["schema"], "rows": min(counted, args.default_row_cap),
                   "rows_capped": counted > args.default_row_cap}
    totals = await ctx.fetchone(
        "SELECT count(*) AS leaves, coalesce(sum(pg_total_relation_size(t.relid)), 0)::bigint AS size_bytes, "
        "coalesce(sum(greatest(c.reltuples, 0)), 0)::bigint AS row_estimate "
        "FROM pg_partition_tree(%s::oid::regclass) t JOIN pg_class c ON c.oid = t.relid WHERE t.isleaf",
        (parent["oid"],))
    assert totals is not None
    return {"table": args.table_name, "schema": args.schema_name, "strategy": parent["strategy"].value,
            "partition_key": parent["key"], "key_columns": parent["key_columns"], "partition_count": total,
            "leaf_partitions": totals["leaves"], "total_size_bytes": totals["size_bytes"],
            "total_row_estimate": totals["row_estimate"], "default_partition": default,
            "default_rows": default["rows"] if default else None,
            "partitions": rows, "truncated": total > len(rows)}
