"""admin: VACUUM, ANALYZE, REINDEX and CLUSTER, run in autocommit and reported with before/after state."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

from psycopg import sql
from pydantic import Field

from pgcode.core import arguments
from pgcode.core.context import ToolContext
from pgcode.core.registry import tool
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import IDENT_MAX, TableRef, split_name
from pgcode.groups.admin._maintenance import (
    MaintenanceIn,
    OptionalTableIn,
    column_list,
    database_state,
    options,
    run_command,
    start,
    table_state,
)
from pgcode.types import Effect

Column = Annotated[str, Field(min_length=1, max_length=IDENT_MAX)]


class IndexCleanup(StrEnum):
    AUTO = "auto"
    ON = "on"
    OFF = "off"


class VacuumIn(OptionalTableIn):
    full: bool = Field(False, description="Rewrite the table; ACCESS EXCLUSIVE lock")
    freeze: bool = False
    skip_locked: bool = False
    index_cleanup: IndexCleanup | None = None
    truncate: bool | None = None
    parallel: int | None = Field(None, ge=0, le=64)


def _vacuum_options(ctx: ToolContext, args: VacuumIn, analyze: bool) -> list[sql.Composable]:
    opts: list[sql.Composable] = []
    for flag, word in ((args.full, "FULL"), (args.freeze, "FREEZE"), (analyze, "ANALYZE"),
                       (args.skip_locked, "SKIP_LOCKED")):
        if flag:
            opts.append(sql.SQL(word))
    if args.index_cleanup is not None:
        if args.index_cleanup is IndexCleanup.AUTO and ctx.server_version < 140000:
            raise ToolError(ErrorCode.UNSUPPORTED_VERSION, "INDEX_CLEANUP auto needs PostgreSQL 14 or later")
        opts.append(sql.SQL("INDEX_CLEANUP {}").format(sql.SQL(args.index_cleanup.value.upper())))
    if args.truncate is not None:
        opts.append(sql.SQL("TRUNCATE {}").format(sql.SQL("true" if args.truncate else "false")))
    if args.parallel is not None:
        if args.full:
            raise ToolError(ErrorCode.INVALID_INPUT, "parallel cannot be combined with full")
        opts.append(sql.SQL("PARALLEL {}").format(sql.Literal(args.parallel)))
    return opts


async def _vacuum(ctx: ToolContext, args: VacuumIn, *, analyze: bool, cols: list[str]) -> dict[str, Any]:
    await start(ctx, args)
    opts = _vacuum_options(ctx, args, analyze)
    target = args.target()
    if target is None:
        if cols:
            raise ToolError(ErrorCode.INVALID_INPUT, "columns need a table")
        before = await database_state(ctx)
        done = await run_command(ctx, sql.SQL("VACUUM {}").format(options(opts)))
        return {"table": None, "scope": "database", **done, "before": before, "after": await database_state(ctx)}
    schema, table = target
    before = await table_state(ctx, schema, table)
    done = await run_command(ctx, sql.SQL("VACUUM {}{}{}").format(
        options(opts), sql.Identifier(schema, table), column_list(cols)))
    return {"table": table, "schema": schema, **done, "before": before,
            "after": await table_state(ctx, schema, table)}


@tool(group="admin", effect=Effect.ADMIN)
async def vacuum(ctx: ToolContext, args: VacuumIn) -> dict[str, Any]:
    """VACUUM a table or the whole database; dead tuples and size before and after.

    Reports dead tuples, last_vacuum and size before and after. timeoutSeconds is the command's statement_timeout
    (default: pgcode's limit). full (VACUUM FULL) rewrites the table to give space back to the OS and takes an
    ACCESS EXCLUSIVE lock: reads and writes wait. freeze freezes every row now (as if vacuum_freeze_min_age were 0);
    skipLocked skips the table instead of waiting when its lock is taken; indexCleanup says whether to vacuum
    indexes (auto needs PostgreSQL 14+) and truncate whether to give empty pages at the end back to the OS (default
    for both: the table's setting); parallel is the number of workers for index vacuuming (PostgreSQL 13+; not with
    full).

    Also the command run and its duration. Runs in autocommit. Plain VACUUM does not block reads or
    writes; full takes an ACCESS EXCLUSIVE lock and rewrites the table. skipped: true when skipLocked
    passed over a locked table.
    """
    return await _vacuum(ctx, args, analyze=False, cols=[])


class VacuumAnalyzeIn(VacuumIn):
    columns: list[Column] = Field(default_factory=list, max_length=1600)


@tool(group="admin", effect=Effect.ADMIN)
async def vacuum_analyze(ctx: ToolContext, args: VacuumAnalyzeIn) -> dict[str, Any]:
    """VACUUM ANALYZE a table or the whole database; dead tuples and times before and after.

    Reports dead tuples and vacuum/analyze times before and after. columns (with a table) analyzes only those
    columns.

    Reclaims dead tuples and refreshes planner statistics in one pass. Runs in autocommit; options as pg_vacuum.
    """
    return await _vacuum(ctx, args, analyze=True, cols=args.columns)


class AnalyzeIn(OptionalTableIn):
    columns: list[Column] = Field(default_factory=list, max_length=1600)
    skip_locked: bool = False


@tool(group="admin", effect=Effect.ADMIN)
async def analyze(ctx: ToolContext, args: AnalyzeIn) -> dict[str, Any]:
    """ANALYZE a table or the whole database; last_analyze and rows changed, before and after.

    timeoutSeconds is the command's statement_timeout (default: pgcode's limit); skipLocked skips the table instead
    of waiting when its lock is taken; columns needs a table.

    Refreshes the planner's statistics. With columns, only those are analyzed and PostgreSQL leaves
    n_mod_since_analyze as it was. Runs in autocommit.
    """
    await start(ctx, args)
    opts = options([sql.SQL("SKIP_LOCKED")] if args.skip_locked else [])
    target = args.target()
    if target is None:
        if args.columns:
            raise ToolError(ErrorCode.INVALID_INPUT, "columns need a table")
        before = await database_state(ctx)
        done = await run_command(ctx, sql.SQL("ANALYZE {}").format(opts))
        return {"table": None, "scope": "database", **done, "before": before, "after": await database_state(ctx)}
    schema, table = target
    before = await table_state(ctx, schema, table)
    done = await run_command(ctx, sql.SQL("ANALYZE {}{}{}").format(
        opts, sql.Identifier(schema, table), column_list(args.columns)))
    return {"table": table, "schema": schema, **done, "before": before,
            "after": await table_state(ctx, schema, table)}


class ReindexTarget(StrEnum):
    INDEX = "index"
    TABLE = "table"
    SCHEMA = "schema"


class ReindexIn(MaintenanceIn):
    target: ReindexTarget = ReindexTarget.TABLE
    name: str = Field(min_length=1, max_length=2 * IDENT_MAX + 1, description="Index, table (schema.name ok) or schema")
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX, description=arguments.SCHEMA_OF_OBJECT)
    concurrently: bool = False


_INDEXES = """
SELECT i.relname AS index, t.relname AS "table", n.nspname AS schema, pg_relation_size(i.oid) AS size_bytes,
       x.indisvalid AS is_valid
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = i.relnamespace
WHERE n.nspname = %(schema)s
  AND (%(index)s::text IS NULL OR i.relname = %(index)s OR i.relname LIKE %(index)s || '\\_ccnew%%')
  AND (%(table)s::text IS NULL OR t.relname = %(table)s)
ORDER BY t.relname, i.relname
"""


@tool(group="admin", effect=Effect.ADMIN)
async def reindex(ctx: ToolContext, args: ReindexIn) -> dict[str, Any]:
    """Rebuild an index, a table's indexes or a schema's indexes; sizes before and after.

    target says what name is: an index, a table (all its indexes) or a schema (every index in it). concurrently
    rebuilds without blocking writes (PostgreSQL 12+; slower; a failure leaves an invalid index behind, which is
    reported). timeoutSeconds is the command's statement_timeout (default: pgcode's limit).

    Runs in autocommit. Without concurrently, REINDEX blocks writes to the table (and reads that would use
    the index) while it runs.
    """
    await start(ctx, args)
    if args.target is ReindexTarget.SCHEMA:
        schema, name = args.name, args.name
        if not await ctx.fetchval("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = %s)", (schema,)):
            raise ToolError(ErrorCode.NOT_FOUND, f'schema "{schema}" does not exist')
        ident = sql.Identifier(schema)
        params: dict[str, Any] = {"schema": schema, "index": None, "table": None}
    else:
        schema, name = split_name(args.name, args.schema_)
        ident = sql.Identifier(schema, name)
        params = {"schema": schema, "index": name if args.target is ReindexTarget.INDEX else None,
                  "table": name if args.target is ReindexTarget.TABLE else None}
    before = await ctx.fetch(_INDEXES, params)
    if args.target is not ReindexTarget.SCHEMA and not [r for r in before if name in (r["index"], r["table"])]:
        kind = "index" if args.target is ReindexTarget.INDEX else "table with indexes"
        raise ToolError(ErrorCode.NOT_FOUND, f'no {kind} "{schema}"."{name}"', hint="pg_get_indexes lists them")
    if args.concurrently and ctx.server_version < 120000:
        raise ToolError(ErrorCode.UNSUPPORTED_VERSION, "REINDEX CONCURRENTLY needs PostgreSQL 12 or later")
    done = await run_command(ctx, sql.SQL("REINDEX {} {}{}").format(
        sql.SQL(args.target.value.upper()), sql.SQL("CONCURRENTLY ") if args.concurrently else sql.SQL(""), ident))
    after = await ctx.fetch(_INDEXES, params)
    sizes = {(r["table"], r["index"]): r["size_bytes"] for r in before}
    indexes = [{**r, "size_before_bytes": sizes.get((r["table"], r["index"]))} for r in after]
    return {"target": args.target.value, "name": name, "schema": schema, **done, "indexes": indexes,
            "invalid_indexes": [r["index"] for r in after if not r["is_valid"]]}


class ClusterIn(TableRef, MaintenanceIn):
    index: str | None = Field(None, min_length=1, max_length=IDENT_MAX,
                              description="Default: the table's clustering index")


@tool(group="admin", effect=Effect.ADMIN)
async def cluster(ctx: ToolContext, args: ClusterIn) -> dict[str, Any]:
    """Rewrite a table in the order of one of its indexes (CLUSTER); size before and after.

    Reports the index used. index must be in the table's schema; by default the table's clustering index (the one it
    was last clustered on). timeoutSeconds is the command's statement_timeout (default: pgcode's limit).

    Takes an ACCESS EXCLUSIVE lock for the whole rewrite: reads and writes wait. The index becomes the
    table's clustering index, so a later call without `index` uses it again. Runs in autocommit.
    """
    await start(ctx, args)
    schema, table = args.schema_name, args.table_name
    before = await table_state(ctx, schema, table, kinds="rpm")
    indexes = await ctx.fetch(
        "SELECT i.relname AS name, x.indisclustered AS clustered FROM pg_index x "
        "JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_class t ON t.oid = x.indrelid "
        "JOIN pg_namespace n ON n.oid = t.relnamespace WHERE n.nspname = %s AND t.relname = %s ORDER BY i.relname",
        (schema, table))
    names = [r["name"] for r in indexes]
    index = args.index or next((r["name"] for r in indexes if r["clustered"]), None)
    if index is None:
        raise ToolError(ErrorCode.INVALID_INPUT, f'"{schema}"."{table}" has no clustering index yet: name one',
                        hint="pass index (one of: " + (", ".join(names) or "none; create an index first") + ")",
                        details={"indexes": names})
    if index not in names:
        raise ToolError(ErrorCode.NOT_FOUND, f'"{schema}"."{table}" has no index named "{index}"',
                        details={"indexes": names})
    done = await run_command(ctx, sql.SQL("CLUSTER {} USING {}").format(
        sql.Identifier(schema, table), sql.Identifier(index)))
    return {"table": table, "schema": schema, "index": index, **done, "before": before,
            "after": await table_state(ctx, schema, table)}

