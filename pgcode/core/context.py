"""ToolContext: what a tool function gets to reach the database, lazily, in the mode invoke() chose."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from types import TracebackType
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from psycopg.abc import Params
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from pgcode.core.callctx import CALL_WATCH
from pgcode.db.pool import Capabilities, Conn
from pgcode.errors import ErrorCode, ToolError
from pgcode.types import Principal, Scope, TxMode

if TYPE_CHECKING:
    from pgcode.core.registry import ToolSpec
    from pgcode.core.runtime import Runtime
    from pgcode.db.txstore import HeldTransaction
    from pgcode.settings import Settings

Row = dict[str, Any]
Query = str | sql.SQL | sql.Composed


class ToolContext:
    """One tool call's view of the database: a connection taken on first use, released on exit."""

    def __init__(self, rt: Runtime, spec: ToolSpec, principal: Principal, *, read_only: bool = False,
                 scope: Scope | None = None) -> None:
        self.rt = rt
        self.spec = spec
        self.principal = principal
        self.read_only = read_only
        self.scope = scope or spec.scope
        self.mode = TxMode.READ_ONLY if read_only and spec.tx is not TxMode.NONE else spec.tx
        self.held: HeldTransaction | None = None
        self.held_rolled_back = False
        self._conn: Conn | None = None
        self._stack = AsyncExitStack()

    @property
    def settings(self) -> Settings:
        return self.rt.settings

    @property
    def caps(self) -> Capabilities:
        return self.rt.db.caps

    @property
    def server_version(self) -> int:
        return self.caps.server_version_num

    def use_autocommit(self) -> None:
        """Run this call's statements outside a transaction block (VACUUM, CONCURRENTLY, ...)."""
        self._before_first_query()
        if self.read_only:
            raise ToolError(ErrorCode.READ_ONLY, f"{self.spec.name} cannot run autocommit in a read-only call")
        self.mode = TxMode.AUTOCOMMIT

    def use_transaction(self, tx_id: str) -> HeldTransaction:
        """Run this call inside a transaction held open by pg_transaction_begin."""
        self._before_first_query()
        held = self.rt.txstore.get(tx_id, self.principal.subject)
        if self.read_only and not held.read_only:
            raise ToolError(ErrorCode.READ_ONLY, "a read-only call cannot use a read-write transaction",
                            details={"transactionId": tx_id})
        self.held = held
        return held

    @property
    def role(self) -> str | None:
        """The database role this call runs as: its scope's role, or None for the connecting role.

        Admin work, and tools that run only their own SQL over records behind row-level security (own_sql),
        run as the connecting role; read and write calls as pgcode_read / pgcode_write, so PostgreSQL refuses
        the rest.
        """
        if self.spec.own_sql:
            return None
        return self.rt.roles.role_for(self.scope)

    def _before_first_query(self) -> None:
        if self._conn is not None:
            raise RuntimeError("the connection mode must be chosen before the first query")

    async def conn(self) -> Conn:
        if self._conn is None:
            if self.held is not None:
                await self._stack.enter_async_context(self.held.lock)
                self.rt.txstore.require_open(self.held)  # it may have ended while this call waited
                self.held.last_used = time.monotonic()
                role = self.role
                # The held transaction serves calls of several scopes: each runs as its own role.
                await self.held.conn.execute(sql.SQL("SET LOCAL ROLE {}").format(
                    sql.Identifier(role) if role else sql.SQL("NONE")))
                self._conn = self.held.conn
            elif self.mode is TxMode.NONE:
                raise RuntimeError(f"{self.spec.name} declared tx=NONE but asked for a connection")
            else:
                admin = self.principal.allows(Scope.ADMIN)
                await self._stack.enter_async_context(self.rt.fairshare.slot(self.principal.subject, admin=admin))
                self._conn = await self._stack.enter_async_context(
                    self.rt.db.transaction(self.mode, role=self.role))
            self._report_to_watch(self._conn)
        return self._conn

    def _report_to_watch(self, conn: Conn) -> None:
        """Tell a face following this call (CALL_WATCH) which backend serves it and what PostgreSQL notices."""
        watch = CALL_WATCH.get()
        if watch is None:
            return
        pid = conn.info.backend_pid

        def notice(diag: pg_errors.Diagnostic) -> None:
            watch.notices.append((diag.severity_nonlocalized or "NOTICE", diag.message_primary or ""))

        watch.backends.add(pid)
        conn.add_notice_handler(notice)
        self._stack.callback(watch.backends.discard, pid)
        self._stack.callback(conn.remove_notice_handler, notice)

    async def fetch(self, query: Query, params: Params | None = None) -> list[Row]:
        conn = await self.conn()
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(query, params)
            return await cur.fetchall() if cur.description else []

    async def fetchone(self, query: Query, params: Params | None = None) -> Row | None:
        rows = await self.fetch(query, params)
        return rows[0] if rows else None

    async def fetchval(self, query: Query, params: Params | None = None) -> Any:
        conn = await self.conn()
        cur = await conn.execute(query, params)
        row = await cur.fetchone()
        return row[0] if row else None

    async def execute(self, query: Query, params: Params | None = None) -> int:
        """Run a statement; return the number of rows it affected (-1 when not applicable)."""
        conn = await self.conn()
        cur = await conn.execute(query, params)
        return cur.rowcount

    async def savepoint(self, name: str) -> None:
        await self.execute(sql.SQL("SAVEPOINT {}").format(sql.Identifier(name)))

    async def __aenter__(self) -> ToolContext:
        return self

    async def __aexit__(self, et: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        held = self.held
        try:
            await self._stack.__aexit__(et, exc, tb)
        finally:
            if held is not None and not held.closed:
                held.last_used = time.monotonic()
                held.statements += 1
                if exc is not None and held.conn.info.transaction_status is TransactionStatus.INERROR:
                    # PostgreSQL aborts the whole transaction on a failed statement: end it now, say so.
                    await self.rt.txstore.finish(held, commit=False)
                    self.held_rolled_back = True


@asynccontextmanager
async def savepoint(ctx: ToolContext, name: str) -> AsyncIterator[None]:
    """Run a block so that a failure undoes only the block (and is re-raised)."""
    ident = sql.Identifier(name)
    await ctx.execute(sql.SQL("SAVEPOINT {}").format(ident))
    try:
        yield
    except Exception:  # a ToolError may follow a failed statement too: the transaction needs the rollback
        await ctx.execute(sql.SQL("ROLLBACK TO SAVEPOINT {}").format(ident))
        raise
    await ctx.execute(sql.SQL("RELEASE SAVEPOINT {}").format(ident))


async def optional(ctx: ToolContext, name: str, query: sql.SQL | sql.Composed | str,
                   params: dict[str, Any] | None = None) -> tuple[list[Row] | None, str | None]:
    """Rows of a query that may fail (privileges, an extension not loaded): (rows, None) or (None, why)."""
    try:
        async with savepoint(ctx, name):
            return await ctx.fetch(query, params), None
    except pg_errors.InsufficientPrivilege as exc:
        return None, f"not permitted: {exc.diag.message_primary}"
    except psycopg.Error as exc:
        return None, exc.diag.message_primary or type(exc).__name__
