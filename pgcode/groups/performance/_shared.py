"""Helpers the performance modules share: pg_stat_statements columns, ratios, table lookup, savepoints."""

from __future__ import annotations

from typing import Any

from psycopg import errors as pg_errors
from psycopg import sql

from pgcode.core.context import Row, ToolContext
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import split_name

# Schemas no statistics tool reports unless asked for by name (pg_toast*, pg_temp* are matched in SQL).
QUERY_TEXT_MAX = 100_000


def cut(rows: list[Row], limit: int) -> tuple[list[Row], bool]:
    """The first `limit` rows of a query that fetched limit + 1, and whether there were more."""
    return rows[:limit], len(rows) > limit


# ---------------------------------------------------------------- table lookup

_TABLE_KINDS = ("r", "p", "m", "v", "f")


async def resolve_table(ctx: ToolContext, table: str, schema: str | None) -> tuple[str, str]:
    """(schema, table) for a table named with or without its schema.

    Without a schema: the table the search_path sees, else `public`, else the only schema that has one.
    """
    if schema or "." in table:
        schema_name, name = split_name(table, schema)
        rows = await ctx.fetch(
            "SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND c.relkind = ANY(%s)", (schema_name, name, list(_TABLE_KINDS)))
        if rows:
            return schema_name, name
        if schema or table.count(".") != 1:
            raise _no_table(schema_name, name)
    rows = await ctx.fetch(
        "SELECT n.nspname AS schema, pg_table_is_visible(c.oid) AS visible FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE c.relname = %s AND c.relkind = ANY(%s) "
        "ORDER BY 2 DESC, n.nspname = 'public' DESC, n.nspname", (table, list(_TABLE_KINDS)))
    if not rows:
        raise _no_table(*split_name(table, schema))
    first = rows[0]
    if len(rows) > 1 and not first["visible"] and first["schema"] != "public":
        raise ToolError(ErrorCode.INVALID_INPUT, f'table "{table}" exists in several schemas; say which',
                        details={"schemas": [r["schema"] for r in rows]})
    return str(first["schema"]), table


def _no_table(schema: str, table: str) -> ToolError:
    return ToolError(ErrorCode.NOT_FOUND, f'table "{schema}"."{table}" does not exist',
                     hint="pg_list_tables lists the tables")


# ---------------------------------------------------------------- pg_stat_statements


def pgss_version(ctx: ToolContext) -> tuple[int, ...]:
    """The installed pg_stat_statements version as numbers, e.g. (1, 10)."""
    text = ctx.caps.installed.get("pg_stat_statements", "0")
    return tuple(int(part) for part in text.split(".") if part.isdigit())


def pgss_columns(ctx: ToolContext) -> sql.Composable:
    """Select-list of pg_stat_statements under stable names, whatever the extension version.

    1.8 (PostgreSQL 13) renamed total_time/mean_time/... to total_exec_time/... and added the planning
    times (plans, total_plan_time) and WAL counters; 1.11 (PostgreSQL 17) renamed blk_read_time and
    blk_write_time to shared_blk_read_time and shared_blk_write_time.
    """
    version = pgss_version(ctx)
    if version >= (1, 8):
        exec_cols = ("s.total_exec_time AS total_exec_time_ms, s.mean_exec_time AS mean_exec_time_ms, "
                     "s.min_exec_time AS min_exec_time_ms, s.max_exec_time AS max_exec_time_ms, "
                     "s.stddev_exec_time AS stddev_exec_time_ms, s.plans, s.total_plan_time AS total_plan_time_ms, "
                     "s.mean_plan_time AS mean_plan_time_ms, s.wal_bytes::bigint AS wal_bytes")
    else:
        exec_cols = ("s.total_time AS total_exec_time_ms, s.mean_time AS mean_exec_time_ms, "
                     "s.min_time AS min_exec_time_ms, s.max_time AS max_exec_time_ms, "
                     "s.stddev_time AS stddev_exec_time_ms, NULL::bigint AS plans, NULL::float8 AS total_plan_time_ms, "
                     "NULL::float8 AS mean_plan_time_ms, NULL::bigint AS wal_bytes")
    if version >= (1, 11):
        io_cols = "s.shared_blk_read_time AS blk_read_time_ms, s.shared_blk_write_time AS blk_write_time_ms"
    else:
        io_cols = "s.blk_read_time AS blk_read_time_ms, s.blk_write_time AS blk_write_time_ms"
    return sql.SQL(exec_cols + ", " + io_cols)


def pgss_order(ctx: ToolContext, key: str) -> sql.Composable:
    """The ORDER BY expression for a stable column name (see pgss_columns)."""
    exec_prefix = "exec_time" if pgss_version(ctx) >= (1, 8) else "time"
    columns = {
        "total_time": f"s.total_{exec_prefix}", "mean_time": f"s.mean_{exec_prefix}",
        "max_time": f"s.max_{exec_prefix}", "calls": "s.calls", "rows": "s.rows",
        "io": "s.shared_blks_read + s.temp_blks_read + s.temp_blks_written",
        "plan_time": "s.total_plan_time", "mean_plan_time": "s.mean_plan_time",
        "plan_share": "s.total_plan_time / nullif(s.total_plan_time + s.total_exec_time, 0)",
        "z": "(s.max_exec_time - s.mean_exec_time) / nullif(s.stddev_exec_time, 0)",
    }
    return sql.SQL(columns[key])


async def pgss_relation(ctx: ToolContext, view: str = "pg_stat_statements") -> sql.Identifier:
    """pg_stat_statements (or another of its views) qualified with the schema the extension lives in."""
    schema = await ctx.fetchval("SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
                                "WHERE e.extname = 'pg_stat_statements'")
    if schema is None:  # dropped since the capabilities were read
        raise ToolError(ErrorCode.EXTENSION_MISSING, "this tool needs the pg_stat_statements extension, "
                        "which is not installed", details={"extension": "pg_stat_statements"})
    return sql.Identifier(str(schema), view)


async def pgss_fetch(ctx: ToolContext, query: sql.Composed, params: dict[str, Any]) -> list[Row]:
    """Rows from pg_stat_statements; a clear error when the library is not preloaded."""
    try:
        return await ctx.fetch(query, params)
    except pg_errors.ObjectNotInPrerequisiteState:
        raise ToolError(ErrorCode.EXTENSION_MISSING,
                        "pg_stat_statements is installed but not loaded by the server",
                        hint="add pg_stat_statements to shared_preload_libraries and restart PostgreSQL",
                        details={"extension": "pg_stat_statements"}) from None


def track_planning(value: str | None) -> bool:
    return (value or "").lower() in ("on", "true", "1")
