"""core: pg_read_query and pg_write_query, the two tools that take caller SQL."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from pgcode.core import arguments
from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.db.sqlpolicy import analyze_write, check_read, read_scope
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import run_sql
from pgcode.types import Effect, Scope

_MAX_SQL = 1_000_000


class ReadQueryIn(ToolInput):
    sql: str = Field(max_length=_MAX_SQL, description="SELECT, WITH, VALUES, TABLE, SHOW or EXPLAIN; $1, $2 ...")
    params: list[Any] = Field(default_factory=list, max_length=10_000, description="Bound values for $1, $2 ...")
    limit: int | None = Field(None, ge=1, le=100_000, description="Default: the server's max_rows (1000)")
    transaction_id: str | None = Field(None, max_length=64, description=arguments.TRANSACTION_ID)


def _read_scope(args: ReadQueryIn) -> Scope:
    return read_scope(args.sql)


@tool(group="core", effect=Effect.READ, scope_for=_read_scope)
async def read_query(ctx: ToolContext, args: ReadQueryIn) -> dict[str, Any]:
    """Run one read-only SQL statement; returns {rows, rowCount, fields, truncated}.

    params are always sent as bound parameters, never pasted into the text. With transactionId the statement runs
    inside that open transaction (pg_transaction_begin). Checked by a parser (one statement, no writes, no
    file/session/server functions) and run in a READ ONLY transaction with a statement timeout, as the read role.
    Naming pgcode's own schema or a catalog that holds credentials (pg_authid, pg_shadow, pg_user_mapping) needs the
    admin scope.
    """
    check_read(args.sql)
    if args.transaction_id:
        ctx.use_transaction(args.transaction_id)
    out = await run_sql(ctx, args.sql, args.params, args.limit or ctx.settings.max_rows, last=True)
    out.pop("command", None)
    return out


class WriteQueryIn(ToolInput):
    sql: str = Field(max_length=_MAX_SQL, description="INSERT, UPDATE, DELETE, MERGE or DDL; $1, $2 ...")
    params: list[Any] = Field(default_factory=list, max_length=10_000, description="Bound values for $1, $2 ...")
    limit: int | None = Field(None, ge=1, le=100_000, description="Most RETURNING rows (default 1000)")
    transaction_id: str | None = Field(None, max_length=64, description=arguments.TRANSACTION_ID)


def _write_scope(args: WriteQueryIn) -> Scope:
    return analyze_write(args.sql).scope_now()


@tool(group="core", effect=Effect.WRITE, scope_for=_write_scope)
async def write_query(ctx: ToolContext, args: WriteQueryIn) -> dict[str, Any]:
    """Run one DML or DDL statement; returns {command, rowCount} and RETURNING rows.

    params are always sent as bound parameters. With transactionId the statement runs inside that open transaction
    (pg_transaction_begin). DML needs the write scope, DDL the admin scope, and so does DML calling a function that
    is not IMMUTABLE or STABLE (beyond random(), nextval() and the like). DO, COPY, SET and transaction control are
    refused. VACUUM, CREATE INDEX CONCURRENTLY and the like run outside a transaction.
    """
    stmt = analyze_write(args.sql)
    if stmt.autocommit:
        if args.transaction_id:
            raise ToolError(ErrorCode.INVALID_INPUT,
                            f"{stmt.kind} cannot run inside a transaction block, so not in a held transaction")
        ctx.use_autocommit()
    elif args.transaction_id:
        ctx.use_transaction(args.transaction_id)
    return await run_sql(ctx, args.sql, args.params, args.limit or ctx.settings.max_rows, last=True)
