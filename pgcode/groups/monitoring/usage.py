"""monitoring: database and table sizes, and the sessions connected to the server."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from psycopg import sql
from pydantic import Field

from pgcode.core import arguments
from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.db.queries import load_query
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import IDENT_MAX
from pgcode.health.locks import locked_relations, set_lock_timeout
from pgcode.types import Effect


class DatabaseSizeIn(ToolInput):
    database: str | None = Field(None, min_length=1, max_length=IDENT_MAX)
    all_databases: bool = False


@tool(group="monitoring", effect=Effect.READ)
async def database_size(ctx: ToolContext, args: DatabaseSizeIn) -> dict[str, Any]:
    """Database size in bytes (and pretty), for one or all databases.

    database defaults to the one pgcode is connected to; allDatabases also lists every database the caller may
    connect to, largest first, under `databases`.
    """
    await set_lock_timeout(ctx)
    row = await ctx.fetchone(
        "SELECT d.datname AS database, pg_database_size(d.oid) AS size_bytes, "
        "pg_size_pretty(pg_database_size(d.oid)) AS size_pretty, d.datname = current_database() AS is_current "
        "FROM pg_database d WHERE d.datname = coalesce(%s, current_database())", (args.database,))
    if row is None:
        raise ToolError(ErrorCode.NOT_FOUND, f"database {args.database!r} does not exist",
                        hint="call with allDatabases: true to list them")
    if args.all_databases:
        row["databases"] = await ctx.fetch(
            "SELECT datname AS database, pg_database_size(oid) AS size_bytes, "
            "pg_size_pretty(pg_database_size(oid)) AS size_pretty FROM pg_database "
            "WHERE datallowconn AND has_database_privilege(oid, 'CONNECT') ORDER BY 2 DESC, 1")
    return row


class TableSizesIn(ToolInput):
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX, description=arguments.SCHEMA_FILTER)
    min_bytes: int = Field(0, ge=0)
    include_system: bool = False
    limit: int = Field(1000, ge=1, le=10_000)


@tool(group="monitoring", effect=Effect.READ)
async def table_sizes(ctx: ToolContext, args: TableSizesIn) -> list[dict[str, Any]]:
    """Table sizes, largest first: heap, index and TOAST bytes.

    Each is {table, schema, size_bytes, table_bytes, index_bytes, toast_bytes, row_estimate}. minBytes leaves out
    smaller relations; includeSystem adds pg_catalog, information_schema and pgcode tables.

    size_bytes = table_bytes + index_bytes + toast_bytes. A partitioned table shows the sums over its
    partitions, which are listed too (is_partition: true). Never waits on a lock: a table another session
    locks (ACCESS EXCLUSIVE) is measured from pg_class.relpages instead (size_estimated: true, locked_by says
    who holds it).
    """
    await set_lock_timeout(ctx)
    locks = await locked_relations(ctx)
    rows = await ctx.fetch(load_query("table_sizes"), {
        "schema": args.schema_, "include_system": args.include_system, "min_bytes": args.min_bytes,
        "limit": args.limit, "locked": locks.oids})
    held = {r.object: r.reason for r in locks.by_oid.values()}
    for row in rows:
        if row["size_estimated"]:
            row["locked_by"] = held.get(f"{row['schema']}.{row['table']}", "a partition is locked")
    return rows


class SessionState(StrEnum):
    ACTIVE = "active"
    IDLE = "idle"
    IDLE_IN_TRANSACTION = "idle in transaction"
    IDLE_IN_TRANSACTION_ABORTED = "idle in transaction (aborted)"
    FASTPATH = "fastpath function call"
    DISABLED = "disabled"


class GroupBy(StrEnum):
    STATE = "state"
    DATABASE = "database"
    USER = "user"
    APPLICATION = "application"
    WAIT_EVENT = "wait_event"


# Constant SQL per grouping key (the enum picks one; no caller text reaches the query).
_GROUP_KEYS: dict[GroupBy, sql.SQL] = {
    GroupBy.STATE: sql.SQL("coalesce(state, backend_type)"),
    GroupBy.DATABASE: sql.SQL("datname"),
    GroupBy.USER: sql.SQL("usename"),
    GroupBy.APPLICATION: sql.SQL("application_name"),
    GroupBy.WAIT_EVENT: sql.SQL("coalesce(wait_event_type || ':' || wait_event, 'not waiting')"),
}

_GROUPED = sql.SQL(
    "SELECT {key} AS {name}, count(*) AS total, "
    "count(*) FILTER (WHERE state = 'active') AS active, "
    "count(*) FILTER (WHERE state = 'idle') AS idle, "
    "count(*) FILTER (WHERE state LIKE 'idle in transaction%%') AS idle_in_transaction, "
    "count(*) FILTER (WHERE wait_event_type = 'Lock') AS waiting_on_locks, "
    "max(duration) AS longest_duration, max(xact_duration) AS oldest_transaction "
    "FROM sessions GROUP BY 1 ORDER BY total DESC, 1")
_LISTED = sql.SQL("SELECT * FROM sessions ORDER BY duration DESC NULLS LAST, pid")


class ConnectionStatsIn(ToolInput):
    state: SessionState | None = None
    database: str | None = Field(None, max_length=IDENT_MAX)
    user: str | None = Field(None, max_length=IDENT_MAX)
    application: str | None = Field(None, max_length=IDENT_MAX)
    group_by: GroupBy | None = Field(None, description="Counts per group instead of sessions")
    include_background: bool = False
    include_self: bool = False
    query_max_length: int = Field(200, ge=0, le=100_000)
    limit: int = Field(1000, ge=1, le=10_000)


@tool(group="monitoring", effect=Effect.READ, aliases=("activeConnections",))
async def connection_stats(ctx: ToolContext, args: ConnectionStatsIn) -> list[dict[str, Any]]:
    """Client sessions, longest in their state first, or counts per group.

    Each has pid, state, usename, datname, application_name, query and duration. state, database, user (usename) and
    application (application_name) keep only those sessions; includeBackground adds background processes
    (autovacuum, walwriter, ...); includeSelf adds pgcode's own sessions (application_name 'pgcode': the one
    answering this call, its pool and held transactions); limit caps the sessions or groups.

    duration is seconds in the current state (for an active session, since its query started);
    query is cut to queryMaxLength (query_truncated says so); blocked_by lists the pids holding a lock the
    session waits for. With groupBy, returns counts per state, database, user, application or wait event
    (total, active, idle, idle_in_transaction, waiting_on_locks, longest_duration) instead.
    pg.monitoring.activeConnections() is this tool with its defaults: the list of client sessions.
    pgcode's own sessions are left out unless includeSelf is true.
    """
    await set_lock_timeout(ctx)
    if args.group_by is None:
        tail: sql.Composable = _LISTED
    else:
        tail = _GROUPED.format(key=_GROUP_KEYS[args.group_by], name=sql.Identifier(args.group_by.value))
    return await ctx.fetch(load_query("connection_stats").format(tail=tail), {
        "include_background": args.include_background, "include_self": args.include_self,
        "own_app": ctx.rt.db.application_name,
        "state": args.state.value if args.state else None, "database": args.database, "user": args.user,
        "application": args.application, "query_max": args.query_max_length, "limit": args.limit})
