"""admin: reload the configuration, set a parameter (never on a pooled session), reset statistics."""

from __future__ import annotations

import asyncio
import re
from enum import StrEnum
from typing import Annotated, Any

from psycopg import sql
from pydantic import Field

from pgcode.core import arguments
from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import IDENT_MAX, split_name
from pgcode.types import Effect


class ReloadConfIn(ToolInput):
    pass


_FILE_ERRORS = ("SELECT sourcefile, sourceline, name, error FROM pg_file_settings WHERE error IS NOT NULL "
                "ORDER BY sourcefile, sourceline")


@tool(group="admin", effect=Effect.ADMIN)
async def reload_conf(ctx: ToolContext, args: ReloadConfIn) -> dict[str, Any]:
    """Reload the configuration files (pg_reload_conf); settings awaiting a restart, errors.

    Reports success, the settings awaiting a restart and the file errors.

    Settings whose context is postmaster only change on a restart: those are listed in pending_restart.
    Lines of the files the server could not apply are listed in file_errors (when the caller may read
    pg_file_settings).
    """
    ctx.use_autocommit()  # each poll below is its own statement, so this session sees the reload
    loaded_before = await ctx.fetchval("SELECT pg_conf_load_time()")
    reloaded = bool(await ctx.fetchval("SELECT pg_reload_conf()"))
    loaded = loaded_before
    for _ in range(40):  # the postmaster signals every backend; this one reloads at its next statement
        loaded = await ctx.fetchval("SELECT pg_conf_load_time()")
        if loaded != loaded_before:
            break
        await asyncio.sleep(0.05)
    pending = [r["name"] for r in await ctx.fetch("SELECT name FROM pg_settings WHERE pending_restart ORDER BY 1")]
    readable = await ctx.fetchval("SELECT has_function_privilege('pg_show_all_file_settings()', 'EXECUTE')")
    return {"reloaded": reloaded, "applied": loaded != loaded_before, "config_loaded_at": loaded,
            "pending_restart": pending, "file_errors": await ctx.fetch(_FILE_ERRORS) if readable else None}


class ConfigScope(StrEnum):
    TRANSACTION = "transaction"
    SYSTEM = "system"
    DATABASE = "database"
    ROLE = "role"


_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")
_SESSION_CONTEXTS = ("user", "superuser")
_CONNECT_CONTEXTS = ("user", "superuser", "backend", "superuser-backend")
Value = str | int | float | bool | list[Annotated[str, Field(max_length=10_000)]]


class SetConfigIn(ToolInput):
    name: str = Field(min_length=1, max_length=2 * IDENT_MAX + 1,
                      description="e.g. work_mem; custom ones need a dot: app.x")
    value: Value | None = Field(None, description="e.g. 64MB, 5min, on; null resets")
    scope: ConfigScope = ConfigScope.TRANSACTION
    transaction_id: str | None = Field(None, max_length=64, description=arguments.TRANSACTION_ID)
    role: str | None = Field(None, min_length=1, max_length=IDENT_MAX)
    reload: bool = False


def _text(value: Value) -> str:
    if isinstance(value, bool):
        return "on" if value else "off"
    if isinstance(value, list):
        return ", ".join(value)
    return str(value)


def _literal(value: Value) -> sql.Composable:
    if isinstance(value, list):
        if not value:
            return sql.Literal("")
        return sql.SQL(", ").join(sql.Literal(v) for v in value)
    return sql.Literal(_text(value))


async def _parameter(ctx: ToolContext, args: SetConfigIn) -> dict[str, Any]:
    if not _NAME_RE.match(args.name):
        raise ToolError(ErrorCode.INVALID_INPUT, f"{args.name!r} is not a parameter name")
    row = await ctx.fetchone("SELECT name, context, vartype, unit, current_setting(name) AS value FROM pg_settings "
                             "WHERE name = lower(%s)", (args.name,))
    if row is not None:
        return {**row, "custom": False}
    if "." not in args.name:
        raise ToolError(ErrorCode.NOT_FOUND, f"there is no parameter named {args.name!r}",
                        hint="pg_show_settings lists them; custom parameters need a dot (app.name)")
    current = await ctx.fetchval("SELECT current_setting(%s, true)", (args.name,))
    return {"name": args.name, "context": "user", "vartype": "string", "unit": None, "value": current,
            "custom": True}


def _refuse(param: dict[str, Any], allowed: tuple[str, ...], scope: ConfigScope) -> None:
    if param["context"] not in allowed:
        raise ToolError(ErrorCode.INVALID_INPUT, f"{param['name']} (context {param['context']}) cannot be set with "
                                                 f"scope {scope.value}",
                        hint="use scope system (then a reload, or a restart for postmaster parameters)"
                        if param["context"] != "internal" else "internal parameters cannot be changed")


@tool(group="admin", effect=Effect.ADMIN)
async def set_config(ctx: ToolContext, args: SetConfigIn) -> dict[str, Any]:
    """Set a configuration parameter in a scope (transaction, system, database, role).

    It is never left on pgcode's pooled sessions. name is a parameter such as work_mem (a custom one must have a
    dot: app.tenant); value is text as in postgresql.conf (64MB, 5min, on), a number, a boolean, or a list for list
    parameters (search_path). transactionId (scope transaction) sets it in that transaction from
    pg_transaction_begin; role (scope role) defaults to the role pgcode connects as.

    scope transaction (default): set_config(name, value, true) inside this call's transaction, so it lasts
    only for this call: mainly useful with transactionId (from pg_transaction_begin), where it lasts until that
    transaction ends. scope system: ALTER SYSTEM SET (written to postgresql.auto.conf, applied by a reload,
    reload: true does it; postmaster parameters need a restart). scope database: ALTER DATABASE <current> SET,
    scope role: ALTER ROLE <role> SET: both apply to sessions started afterwards. The name is checked against
    pg_settings (unknown: NOT_FOUND); the value is always passed as a literal. value null resets the
    parameter in scopes system, database and role.
    """
    if args.transaction_id is not None and args.scope is not ConfigScope.TRANSACTION:
        raise ToolError(ErrorCode.INVALID_INPUT, "transactionId goes with scope transaction")
    if args.role is not None and args.scope is not ConfigScope.ROLE:
        raise ToolError(ErrorCode.INVALID_INPUT, "role goes with scope role")
    if args.reload and args.scope is not ConfigScope.SYSTEM:
        raise ToolError(ErrorCode.INVALID_INPUT, "reload goes with scope system")
    if args.value is None and args.scope is ConfigScope.TRANSACTION:
        raise ToolError(ErrorCode.INVALID_INPUT, "a value is needed with scope transaction")
    if args.scope is ConfigScope.TRANSACTION and args.transaction_id is not None:
        ctx.use_transaction(args.transaction_id)
    elif args.scope is ConfigScope.SYSTEM:
        ctx.use_autocommit()  # ALTER SYSTEM cannot run inside a transaction block
    param = await _parameter(ctx, args)
    name: str = param["name"]
    out: dict[str, Any] = {"name": name, "scope": args.scope.value, "previous": param["value"],
                           "custom": param["custom"]}
    if args.scope is ConfigScope.TRANSACTION:
        assert args.value is not None
        _refuse(param, _SESSION_CONTEXTS, args.scope)
        value = await ctx.fetchval("SELECT set_config(%s, %s, true)", (name, _text(args.value)))
        lasts = (f"until transaction {args.transaction_id} ends" if args.transaction_id
                 else "this call only: its transaction has ended (pass transactionId to keep it for a transaction)")
        return {**out, "value": value, "lasts": lasts}
    ident = sql.Identifier(*name.split("."))
    assignment = (sql.SQL("RESET {}").format(ident) if args.value is None
                  else sql.SQL("SET {} = {}").format(ident, _literal(args.value)))
    if args.scope is ConfigScope.SYSTEM:
        if param["context"] == "internal":
            _refuse(param, (), args.scope)
        await ctx.execute(sql.SQL("ALTER SYSTEM {}").format(assignment))
        reloaded = bool(await ctx.fetchval("SELECT pg_reload_conf()")) if args.reload else False
        restart = param["context"] == "postmaster"
        applies = ("after a server restart" if restart else "now (configuration reloaded)" if reloaded
                   else "after the next configuration reload (pg_reload_conf)")
        return {**out, "value": None if args.value is None else _text(args.value), "reset": args.value is None,
                "reloaded": reloaded, "restart_required": restart, "applies": applies}
    _refuse(param, _CONNECT_CONTEXTS, args.scope)
    if args.scope is ConfigScope.DATABASE:
        target: str = await ctx.fetchval("SELECT current_database()")
        await ctx.execute(sql.SQL("ALTER DATABASE {} {}").format(sql.Identifier(target), assignment))
    else:
        target = args.role or await ctx.fetchval("SELECT current_user")
        if not await ctx.fetchval("SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s)", (target,)):
            raise ToolError(ErrorCode.NOT_FOUND, f"role {target!r} does not exist")
        await ctx.execute(sql.SQL("ALTER ROLE {} {}").format(sql.Identifier(target), assignment))
    return {**out, args.scope.value: target, "value": None if args.value is None else _text(args.value),
            "reset": args.value is None, "applies": "to sessions started from now on"}


class StatsTarget(StrEnum):
    TABLE = "table"
    DATABASE = "database"
    SHARED = "shared"
    STATEMENTS = "statements"


class SharedKind(StrEnum):
    BGWRITER = "bgwriter"
    ARCHIVER = "archiver"
    WAL = "wal"
    RECOVERY_PREFETCH = "recovery_prefetch"
    IO = "io"
    CHECKPOINTER = "checkpointer"
    SLRU = "slru"


# The first version each shared counter set exists in (pg_stat_reset_shared / pg_stat_reset_slru).
_SHARED_SINCE = {SharedKind.BGWRITER: 0, SharedKind.ARCHIVER: 0, SharedKind.WAL: 140000,
                 SharedKind.RECOVERY_PREFETCH: 150000, SharedKind.IO: 160000, SharedKind.CHECKPOINTER: 170000,
                 SharedKind.SLRU: 130000}


class ResetStatsIn(ToolInput):
    target: StatsTarget = Field(description="Which counters to reset")
    table: str | None = Field(None, min_length=1, max_length=2 * IDENT_MAX + 1, description=arguments.TABLE)
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX, description=arguments.SCHEMA)
    kinds: list[SharedKind] | None = None
    queryid: Annotated[str, Field(pattern=r"^-?\d{1,20}$")] | int | None = None
    all_databases: bool = False


@tool(group="admin", effect=Effect.DESTRUCTIVE)
async def reset_stats(ctx: ToolContext, args: ResetStatsIn) -> dict[str, Any]:
    """Reset statistics counters to zero, and say exactly which.

    Returns {target, reset: [...], skipped: [...]}. target table resets one table's counters; database every counter
    of this database (pg_stat_database, tables, indexes, functions); shared server-wide counters, of the kinds given
    (default: all this server has); statements pg_stat_statements entries: only queryid's when given, and every
    database's with allDatabases.

    Needs a superuser or the EXECUTE grant on the reset functions. Counters are what the performance and health
    tools read (scans, dead tuples, cache hits, ...): after a reset they start over. shared kinds: bgwriter
    (before PG 17 it also holds the checkpoint counters), archiver, wal (14+), recovery_prefetch (15+), io (16+),
    checkpointer (17+), slru. statements needs pg_stat_statements.
    """
    if args.target is not StatsTarget.TABLE and args.table is not None:
        raise ToolError(ErrorCode.INVALID_INPUT, "table goes with target table")
    if args.target is not StatsTarget.SHARED and args.kinds is not None:
        raise ToolError(ErrorCode.INVALID_INPUT, "kinds go with target shared")
    if args.target is not StatsTarget.STATEMENTS and (args.queryid is not None or args.all_databases):
        raise ToolError(ErrorCode.INVALID_INPUT, "queryid and allDatabases go with target statements")
    reset: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    if args.target is StatsTarget.TABLE:
        if args.table is None:
            raise ToolError(ErrorCode.INVALID_INPUT, "target table needs table")
        schema, table = split_name(args.table, args.schema_)
        oid = await ctx.fetchval("SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                                 "WHERE n.nspname = %s AND c.relname = %s", (schema, table))
        if oid is None:
            raise ToolError(ErrorCode.NOT_FOUND, f'table "{schema}"."{table}" does not exist')
        await ctx.execute("SELECT pg_stat_reset_single_table_counters(%s::oid)", (oid,))
        reset.append({"what": f"{schema}.{table}", "function": "pg_stat_reset_single_table_counters"})
    elif args.target is StatsTarget.DATABASE:
        await ctx.execute("SELECT pg_stat_reset()")
        reset.append({"what": f"database {ctx.caps.database}", "function": "pg_stat_reset"})
    elif args.target is StatsTarget.SHARED:
        for kind in args.kinds or list(SharedKind):
            since = _SHARED_SINCE[kind]
            if ctx.server_version < since:
                skipped.append({"what": kind.value, "reason": f"needs PostgreSQL {since // 10000}"})
            elif kind is SharedKind.SLRU:
                await ctx.execute("SELECT pg_stat_reset_slru(NULL)")
                reset.append({"what": "slru", "function": "pg_stat_reset_slru"})
            else:
                await ctx.execute("SELECT pg_stat_reset_shared(%s)", (kind.value,))
                reset.append({"what": kind.value, "function": "pg_stat_reset_shared"})
    else:
        reset.append(await _reset_statements(ctx, args))
    return {"target": args.target.value, "reset": reset, "skipped": skipped,
            "at": await ctx.fetchval("SELECT clock_timestamp()")}


async def _reset_statements(ctx: ToolContext, args: ResetStatsIn) -> dict[str, Any]:
    ctx.caps.require_extension("pg_stat_statements")
    schema = await ctx.fetchval("SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON "
                                "n.oid = e.extnamespace WHERE e.extname = 'pg_stat_statements'")
    dbid = 0 if args.all_databases else await ctx.fetchval(
        "SELECT oid FROM pg_database WHERE datname = current_database()")
    queryid = int(args.queryid) if args.queryid is not None else 0
    # pg_stat_statements 1.7+: reset(userid, dbid, queryid), 0 meaning any
    reset = sql.Identifier(schema, "pg_stat_statements_reset")
    await ctx.execute(sql.SQL("SELECT {}(0, %s::oid, %s::bigint)").format(reset), (dbid, queryid))
    what = (f"query {queryid}" if queryid else "every statement") + (
        " in every database" if args.all_databases else f" of database {ctx.caps.database}")
    return {"what": f"pg_stat_statements: {what}", "function": "pg_stat_statements_reset"}
