"""pg_partman plumbing shared by the partman tools: its schema and version, configs, children, defaults."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg import sql
from pydantic import Field

from pgcode.core import arguments
from pgcode.core.context import ToolContext, savepoint
from pgcode.core.registry import ToolInput
from pgcode.db.queries import load_query
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import IDENT_MAX, TableRef, split_name

PARTMAN = ("pg_partman",)


@dataclass(frozen=True, slots=True)
class Partman:
    """Where pg_partman lives (its schema is chosen at CREATE EXTENSION) and which API it speaks."""

    schema: str
    version: str

    @property
    def major(self) -> int:
        m = re.match(r"\d+", self.version)
        return int(m.group(0)) if m else 0

    def fn(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name)


async def partman(ctx: ToolContext) -> Partman:
    row = await ctx.fetchone(
        "SELECT n.nspname AS schema, e.extversion AS version FROM pg_extension e "
        "JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = 'pg_partman'")
    if row is None:
        raise ToolError(ErrorCode.EXTENSION_MISSING, "this tool needs the pg_partman extension, which is not installed",
                        hint="create it with pg_partman_create_extension", details={"extension": "pg_partman"})
    return Partman(row["schema"], row["version"])


def parent_name(ref: TableRef) -> str:
    """The parent as pg_partman names it: `schema.table`, unquoted."""
    return qualified(ref.schema_name, ref.table_name)


def qualified(schema: str, table: str) -> str:
    """`schema.table` as pg_partman takes it, unquoted (so neither part may contain a dot)."""
    if "." in schema or "." in table:
        raise ToolError(ErrorCode.INVALID_INPUT, f"pg_partman cannot manage {schema!r}.{table!r}: it splits names "
                        "at the dot, so neither the schema nor the table name may contain one")
    return f"{schema}.{table}"


class ParentIn(TableRef):
    pass


class OptionalParentIn(ToolInput):
    table: str | None = Field(None, min_length=1, max_length=2 * IDENT_MAX + 1)
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX, description=arguments.SCHEMA)

    def parent(self) -> str | None:
        if self.table is None:
            return None
        return qualified(*split_name(self.table, self.schema_))


async def config(ctx: ToolContext, pm: Partman, parent: str) -> dict[str, Any]:
    """The part_config row of a partition set; NOT_FOUND when pg_partman does not manage the table."""
    row = await ctx.fetchone(sql.SQL("SELECT * FROM {} WHERE parent_table = %s").format(
        sql.Identifier(pm.schema, "part_config")), (parent,))
    if row is None:
        raise ToolError(ErrorCode.NOT_FOUND, f"pg_partman does not manage {parent}",
                        hint="pg_partman_show_config lists the partition sets; pg_partman_create_parent makes one")
    return row


async def configs(ctx: ToolContext, pm: Partman, parent: str | None, limit: int) -> list[dict[str, Any]]:
    if parent is not None:
        return [await config(ctx, pm, parent)]
    return await ctx.fetch(sql.SQL("SELECT * FROM {} ORDER BY parent_table LIMIT %s").format(
        sql.Identifier(pm.schema, "part_config")), (limit,))


async def control_type(ctx: ToolContext, pm: Partman, parent: str, control: str) -> str:
    """'time' or 'id': how pg_partman treats the control column (an epoch integer counts as time)."""
    schema, table = parent.split(".", 1)
    kind: str | None = await ctx.fetchval(sql.SQL("SELECT general_type FROM {}(%s, %s, %s)").format(
        pm.fn("check_control_type")), (schema, table, control))
    if kind is None:
        raise ToolError(ErrorCode.INVALID_INPUT, f"the control column {control!r} of {parent} is neither a time "
                        "nor an integer type")
    return kind


async def children(ctx: ToolContext, pm: Partman, parent: str, order: str = "ASC") -> list[dict[str, Any]]:
    """The child partitions (not the default) with their bounds, from show_partitions and show_partition_info."""
    return await ctx.fetch(load_query("partman_children").format(
        show_partitions=pm.fn("show_partitions"), show_partition_info=pm.fn("show_partition_info"),
        order=sql.SQL("DESC" if order == "DESC" else "ASC")), {"parent": parent, "order": order})


async def default_partition(ctx: ToolContext, parent: str) -> str | None:
    """`schema.table` of the parent's DEFAULT partition, or None."""
    schema, table = parent.split(".", 1)
    name: str | None = await ctx.fetchval(
        "SELECT cn.nspname || '.' || c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_namespace cn ON cn.oid = c.relnamespace WHERE i.inhparent = (SELECT p.oid FROM pg_class p "
        "JOIN pg_namespace n ON n.oid = p.relnamespace WHERE n.nspname = %s AND p.relname = %s) "
        "AND pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT'", (schema, table))
    return name


async def count_rows(ctx: ToolContext, qualified: str, cap: int | None = None) -> int:
    """Rows in `schema.table`, counting at most `cap` when given."""
    ident = sql.Identifier(*qualified.split(".", 1))
    if cap is None:
        return int(await ctx.fetchval(sql.SQL("SELECT count(*) FROM {}").format(ident)))
    return int(await ctx.fetchval(sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} LIMIT %s) s").format(ident),
                                  (cap,)))


async def parse_value(ctx: ToolContext, text: str, kind: str, what: str) -> str:
    """A positive interval (time sets) or positive integer (id sets) as PostgreSQL prints it; INVALID_INPUT else."""
    cast = "interval" if kind == "time" else "bigint"
    zero = "interval '0'" if kind == "time" else "0"
    try:
        async with savepoint(ctx, "partman_value"):
            row = await ctx.fetchone(sql.SQL("SELECT %s::{c}::text AS v, %s::{c} > {z} AS ok").format(
                c=sql.SQL(cast), z=sql.SQL(zero)), (text, text))
    except psycopg.DataError:
        row = None
    if row is None or not row["ok"]:
        example = "'30 days' or '1 month'" if kind == "time" else "an integer such as 100000"
        raise ToolError(ErrorCode.INVALID_INPUT, f"the {what} {text!r} is not a positive "
                        f"{'interval' if kind == 'time' else 'integer'} (e.g. {example})")
    return str(row["v"])
