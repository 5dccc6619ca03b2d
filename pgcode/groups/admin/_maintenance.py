"""Shared machinery of the maintenance commands: autocommit, time limits, before/after state, notices."""

from __future__ import annotations

import time
from typing import Any

from psycopg import sql
from psycopg.errors import Diagnostic
from pydantic import Field

from pgcode.core import arguments
from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import IDENT_MAX, split_name


class MaintenanceIn(ToolInput):
    """Time limits every maintenance command takes."""

    lock_timeout_seconds: float = Field(
        10, ge=0, le=3600,
        description=arguments.LOCK_TIMEOUT)
    timeout_seconds: float | None = Field(None, gt=0, le=86_400, description="Default: pgcode's statement_timeout")


class OptionalTableIn(MaintenanceIn):
    table: str | None = Field(None, min_length=1, max_length=2 * IDENT_MAX + 1,
                              description="Default: every table of the database")
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX, description=arguments.SCHEMA)

    def target(self) -> tuple[str, str] | None:
        return split_name(self.table, self.schema_) if self.table else None


async def start(ctx: ToolContext, args: MaintenanceIn) -> None:
    """Switch to autocommit (VACUUM and friends refuse transaction blocks) and set the time limits.

    The SETs last for the session: the pool's DISCARD ALL undoes them when the connection goes back.
    """
    ctx.use_autocommit()
    await ctx.execute(sql.SQL("SET lock_timeout = {}").format(
        sql.Literal(f"{int(args.lock_timeout_seconds * 1000)}ms")))
    if args.timeout_seconds is not None:
        await ctx.execute(sql.SQL("SET statement_timeout = {}").format(
            sql.Literal(f"{int(args.timeout_seconds * 1000)}ms")))


_TABLE_STATE = """
SELECT c.relkind, s.n_live_tup, s.n_dead_tup, s.n_mod_since_analyze, s.last_vacuum, s.last_autovacuum,
       s.last_analyze, s.last_autoanalyze, s.vacuum_count, s.analyze_count,
       -- measuring the size takes a lock: skip it while another session holds the table exclusively
       CASE WHEN NOT EXISTS (SELECT 1 FROM pg_locks l WHERE l.relation = c.oid AND l.granted
                             AND l.mode = 'AccessExclusiveLock' AND l.pid <> pg_backend_pid())
            THEN pg_total_relation_size(c.oid) END AS size_bytes,
       CASE WHEN c.relkind IN ('r', 'm') THEN age(c.relfrozenxid) END AS xid_age
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid
WHERE n.nspname = %s AND c.relname = %s
"""

_DATABASE_STATE = """
SELECT count(*) AS tables, coalesce(sum(n_dead_tup), 0) AS n_dead_tup, coalesce(sum(n_live_tup), 0) AS n_live_tup,
       max(last_vacuum) AS last_vacuum, max(last_analyze) AS last_analyze,
       pg_database_size(current_database()) AS size_bytes
FROM pg_stat_user_tables
"""


async def table_state(ctx: ToolContext, schema: str, table: str, kinds: str = "rpm") -> dict[str, Any]:
    """Counters and size of a table; NOT_FOUND unless it exists and is one of `kinds` (relkinds)."""
    row = await ctx.fetchone(_TABLE_STATE, (schema, table))
    if row is None:
        raise ToolError(ErrorCode.NOT_FOUND, f'table "{schema}"."{table}" does not exist',
                        hint="pg_list_tables lists the tables")
    kind = row.pop("relkind")
    if kind not in kinds:
        raise ToolError(ErrorCode.INVALID_INPUT, f'"{schema}"."{table}" is not a table or materialized view')
    return row


async def database_state(ctx: ToolContext) -> dict[str, Any]:
    row = await ctx.fetchone(_DATABASE_STATE)
    assert row is not None
    return row


async def run_command(ctx: ToolContext, stmt: sql.Composed) -> dict[str, Any]:
    """Run a maintenance statement; return its text, duration and the warnings the server sent.

    `skipped` is set when SKIP_LOCKED made the server pass over a relation (SQLSTATE 55P03 warning).
    """
    conn = await ctx.conn()
    warnings: list[tuple[str | None, str | None]] = []

    def keep(diag: Diagnostic) -> None:  # a Diagnostic is only readable inside the callback
        if (diag.severity_nonlocalized or diag.severity) == "WARNING":
            warnings.append((diag.sqlstate, diag.message_primary))

    conn.add_notice_handler(keep)
    started = time.perf_counter()
    try:
        await ctx.execute(stmt)
    finally:
        conn.remove_notice_handler(keep)
    return {"command": stmt.as_string(conn).strip(), "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            "skipped": any(state == "55P03" for state, _ in warnings),
            "warnings": [message for _, message in warnings]}


def options(items: list[sql.Composable]) -> sql.Composable:
    return sql.SQL("({}) ").format(sql.SQL(", ").join(items)) if items else sql.SQL("")


def column_list(names: list[str]) -> sql.Composable:
    return sql.SQL(" ({})").format(sql.SQL(", ").join(map(sql.Identifier, names))) if names else sql.SQL("")

