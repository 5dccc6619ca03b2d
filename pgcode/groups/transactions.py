"""transactions group: transactions held open across calls, savepoints, and atomic statement lists."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import psycopg
from psycopg import sql
from pydantic import Field

from pgcode.core import arguments
from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.db.sqlpolicy import analyze_write, statements_scope
from pgcode.errors import ErrorCode, ToolError, from_db_error
from pgcode.groups._common import IDENT_MAX, run_sql
from pgcode.types import Effect, Scope, TxMode


class Isolation(StrEnum):
    READ_COMMITTED = "read committed"
    REPEATABLE_READ = "repeatable read"
    SERIALIZABLE = "serializable"


class BeginIn(ToolInput):
    isolation_level: Isolation = Isolation.READ_COMMITTED
    read_only: bool = False


@tool(group="transactions", effect=Effect.WRITE, tx=TxMode.NONE)
async def transaction_begin(ctx: ToolContext, args: BeginIn) -> dict[str, Any]:
    """Begin a transaction held across calls; returns transactionId.

    isolationLevel is the transaction isolation level; readOnly starts a READ ONLY transaction.

    Pass the id as transactionId to pg_read_query, pg_write_query or pg_transaction_execute. A transaction
    idle longer than the server's timeout (60 s by default) is rolled back; a failed statement rolls it back.
    """
    held = await ctx.rt.txstore.begin(ctx.principal.subject, args.isolation_level.value, args.read_only)
    return {**held.describe(), "idleTimeoutSeconds": ctx.settings.tx_idle_timeout_s}


class StatusIn(ToolInput):
    transaction_id: str | None = Field(None, max_length=64)


@tool(group="transactions", effect=Effect.READ, tx=TxMode.NONE)
async def transaction_status(ctx: ToolContext, args: StatusIn) -> dict[str, Any] | list[dict[str, Any]]:
    """Show an open transaction (or list yours) without touching it.

    Shows state, age, idle time and savepoints; without transactionId, lists all of yours.
    """
    store = ctx.rt.txstore
    if args.transaction_id is None:
        return [h.describe() for h in store.owned_by(ctx.principal.subject)]
    return store.get(args.transaction_id, ctx.principal.subject).describe()


class TxIdIn(ToolInput):
    transaction_id: str = Field(min_length=1, max_length=64, description=arguments.TRANSACTION_ID)


async def _finish(ctx: ToolContext, tx_id: str, *, commit: bool) -> dict[str, Any]:
    store = ctx.rt.txstore
    held = store.get(tx_id, ctx.principal.subject)
    async with held.lock:  # wait for a statement still running in it
        store.require_open(held)  # and refuse if that wait ended with someone else finishing it
        await store.finish(held, commit=commit)
    return {"transactionId": tx_id, "committed" if commit else "rolledBack": True,
            "statements": held.statements}


@tool(group="transactions", effect=Effect.WRITE, tx=TxMode.NONE)
async def transaction_commit(ctx: ToolContext, args: TxIdIn) -> dict[str, Any]:
    """Commit an open transaction.

    Its changes become permanent and its connection is released.
    """
    return await _finish(ctx, args.transaction_id, commit=True)


@tool(group="transactions", effect=Effect.WRITE, tx=TxMode.NONE)
async def transaction_rollback(ctx: ToolContext, args: TxIdIn) -> dict[str, Any]:
    """Roll back an open transaction.

    All its changes are undone and its connection is released.
    """
    return await _finish(ctx, args.transaction_id, commit=False)


class SavepointIn(TxIdIn):
    name: str = Field(min_length=1, max_length=IDENT_MAX, description="Savepoint name")


@tool(group="transactions", effect=Effect.WRITE, tx=TxMode.NONE)
async def transaction_savepoint(ctx: ToolContext, args: SavepointIn) -> dict[str, Any]:
    """Create a savepoint in an open transaction.

    Roll back to it later without losing earlier work.
    """
    held = ctx.use_transaction(args.transaction_id)
    await ctx.execute(sql.SQL("SAVEPOINT {}").format(sql.Identifier(args.name)))
    held.savepoints.append(args.name)
    return {"transactionId": args.transaction_id, "savepoint": args.name, "savepoints": list(held.savepoints)}


def _require_savepoint(held_savepoints: list[str], name: str) -> int:
    if name not in held_savepoints:
        raise ToolError(ErrorCode.NOT_FOUND, f"no savepoint {name!r} in this transaction",
                        details={"savepoints": list(held_savepoints)})
    return len(held_savepoints) - 1 - held_savepoints[::-1].index(name)


@tool(group="transactions", effect=Effect.WRITE, tx=TxMode.NONE)
async def transaction_release(ctx: ToolContext, args: SavepointIn) -> dict[str, Any]:
    """Release a savepoint, keeping the changes made since it.

    Later savepoints are released too.
    """
    held = ctx.use_transaction(args.transaction_id)
    at = _require_savepoint(held.savepoints, args.name)
    await ctx.execute(sql.SQL("RELEASE SAVEPOINT {}").format(sql.Identifier(args.name)))
    del held.savepoints[at:]
    return {"transactionId": args.transaction_id, "released": args.name, "savepoints": list(held.savepoints)}


@tool(group="transactions", effect=Effect.WRITE, tx=TxMode.NONE)
async def transaction_rollback_to(ctx: ToolContext, args: SavepointIn) -> dict[str, Any]:
    """Roll back to a savepoint; the savepoint stays usable."""
    held = ctx.use_transaction(args.transaction_id)
    at = _require_savepoint(held.savepoints, args.name)
    await ctx.execute(sql.SQL("ROLLBACK TO SAVEPOINT {}").format(sql.Identifier(args.name)))
    del held.savepoints[at + 1:]
    return {"transactionId": args.transaction_id, "rolledBackTo": args.name, "savepoints": list(held.savepoints)}


class Statement(ToolInput):
    sql: str = Field(min_length=1, max_length=1_000_000, description="One statement; $1, $2 ...")
    params: list[Any] = Field(default_factory=list, max_length=10_000)


class ExecuteIn(ToolInput):
    statements: list[Statement] = Field(min_length=1, max_length=100, description="Statements to run in order")
    transaction_id: str | None = Field(None, max_length=64)
    isolation_level: Isolation = Isolation.READ_COMMITTED


def _execute_scope(args: ExecuteIn) -> Scope:
    return statements_scope([s.sql for s in args.statements])


@tool(group="transactions", effect=Effect.WRITE, scope_for=_execute_scope)
async def transaction_execute(ctx: ToolContext, args: ExecuteIn) -> dict[str, Any]:
    """Run several statements atomically, in one transaction.

    All commit together, or the first failure rolls every one back.

    Each statement is {sql, params}: params are the values for $1, $2 .... transactionId runs them in that open
    transaction instead of a new one; isolationLevel is the isolation of the new transaction.

    The scope needed is the highest any statement needs (DML write, DDL admin).
    """
    for i, stmt in enumerate(args.statements):
        if analyze_write(stmt.sql).autocommit:
            raise ToolError(ErrorCode.INVALID_INPUT, f"statement {i + 1} cannot run inside a transaction block",
                            hint="run it alone with pg_write_query")
    if args.transaction_id:
        if args.isolation_level is not Isolation.READ_COMMITTED:
            raise ToolError(ErrorCode.INVALID_INPUT, "isolationLevel applies to a new transaction only; "
                            "the held one keeps the level it began with")
        ctx.use_transaction(args.transaction_id)
    elif args.isolation_level is not Isolation.READ_COMMITTED:
        await ctx.execute(sql.SQL("SET TRANSACTION ISOLATION LEVEL {}").format(
            sql.SQL(args.isolation_level.value.upper())))
    results = []
    for i, stmt in enumerate(args.statements):
        try:
            results.append(await run_sql(ctx, stmt.sql, stmt.params, ctx.settings.max_rows))
        except psycopg.Error as exc:
            err = from_db_error(exc)
            err.message = f"statement {i + 1} failed, nothing was committed: {err.message}"
            err.details["statementIndex"] = i + 1
            raise err from None
    return {"committed": args.transaction_id is None, "statements": len(results), "results": results}
