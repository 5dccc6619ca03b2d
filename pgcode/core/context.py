"""ToolContext: what a tool function gets to reach the database, lazily, in the mode invoke() chose."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from contextvars import ContextVar
from types import TracebackType
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import AsyncCursor, sql
from psycopg import errors as pg_errors
from psycopg.abc import Params
from psycopg.pq import TransactionStatus
from psycopg.rows import dict_row

from pgcode.core.callctx import CALL_WATCH
from pgcode.db.pool import (
    CallTransaction,
    Capabilities,
    Conn,
    call_settings,
    commit,
    connection_lost,
    framing,
    framing_alone,
)
from pgcode.errors import ErrorCode, ToolError
from pgcode.types import Principal, Scope, TxMode

if TYPE_CHECKING:
    from pgcode.core.registry import ToolSpec
    from pgcode.core.runtime import Runtime
    from pgcode.db.txstore import HeldTransaction
    from pgcode.settings import Settings

Row = dict[str, Any]
Query = str | sql.SQL | sql.Composed


class ExecutionConnection:
    """One pooled connection a code execution keeps for its sequential host calls.

    Each call still takes its principal's fair share slot, opens its own transaction (or, for a readonly
    execution, its own savepoint in one REPEATABLE READ READ ONLY snapshot, so the numbers of a report agree)
    and sets its own role and statement timeout, in the same round trip as its first statement (a one-statement
    read is a transaction of its own that ends with that message); what it saves is the checkout, the reset and
    the round trip of a COMMIT for every call. A call that finds the connection busy (Promise.all) takes a pooled
    connection of its own; in a readonly execution it imports the snapshot.
    """

    def __init__(self, rt: Runtime, principal: Principal, *, snapshot: bool) -> None:
        self._rt = rt
        self._principal = principal
        self.snapshot = snapshot
        self._lock = asyncio.Lock()
        self._stack = AsyncExitStack()
        self._conn: Conn | None = None
        self._pending: list[Query] = []  # sent ahead of the next call's statements (a read's COMMIT, a RELEASE)
        self._in_snapshot = False
        self.snapshot_id: str | None = None
        self.closed = False

    def opening_for_another_connection(self, mode: TxMode, timeout: str, role: str | None) -> Sequence[Query] | None:
        """How a concurrent call opens its own transaction in this execution's snapshot (None: as usual)."""
        if not (self.snapshot and self.snapshot_id and self._lock.locked()):
            return None
        return ["BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY",
                sql.SQL("SET TRANSACTION SNAPSHOT {}").format(sql.Literal(self.snapshot_id)),
                *call_settings(timeout, role)]

    @asynccontextmanager
    async def call(self, mode: TxMode, role: str | None) -> AsyncIterator[CallTransaction | None]:
        """The connection for one call in `mode`, or None when the call should take a pooled one."""
        # Busy: take another connection, but not before a readonly execution's snapshot exists to be shared.
        if self.closed or (self._lock.locked() and not (self.snapshot and self.snapshot_id is None)):
            yield None
            return
        admin = self._principal.allows(Scope.ADMIN)
        async with self._lock, self._rt.fairshare.slot(self._principal.subject, admin=admin):
            if self.closed:
                yield None
                return
            conn = await self._connection()
            timeout = self._rt.db.timeout_literal()
            alone = None
            if self.snapshot:
                if not self._in_snapshot:
                    await self._begin_snapshot(conn)
                opening: Sequence[Query] = ["SAVEPOINT pgcode_call", *call_settings(timeout, role)]
            else:
                opening = framing(mode, timeout, role)
                # A one-statement read ends with its message: no transaction stays open while the code runs.
                alone = framing_alone(timeout, role) if mode is TxMode.READ_ONLY else None
            tx = CallTransaction(conn, opening, TxMode.READ_ONLY if self.snapshot else mode, alone=alone,
                                 ahead=self._pending)
            try:
                yield tx
            except BaseException:
                await self._failed(tx)
                raise
            if tx.sent:  # what was pending went out with the call's first statement
                self._pending = []
            if tx.started:
                await self._succeeded(tx, mode)

    async def _begin_snapshot(self, conn: Conn) -> None:
        """Open the execution's snapshot, exported so that a concurrent call can read from it too."""
        cur = await conn.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY; SELECT pg_export_snapshot()")
        cur.nextset()
        row = await cur.fetchone()
        self.snapshot_id = str(row[0]) if row else None
        self._in_snapshot = True

    async def _connection(self) -> Conn:
        if self._conn is None:
            self._conn = await self._stack.enter_async_context(self._rt.db.pool.connection())
        return self._conn

    async def _succeeded(self, tx: CallTransaction, mode: TxMode) -> None:
        conn = tx.conn
        if self.snapshot:
            self._pending = ["RELEASE SAVEPOINT pgcode_call"]
        elif mode is TxMode.READ_ONLY:
            self._pending = ["COMMIT"]  # a read has nothing to lose: its COMMIT rides with the next call
        else:
            try:
                await commit(conn, tx.mode)
            except (psycopg.Error, ToolError):
                self.closed = conn.closed or conn.info.transaction_status is TransactionStatus.UNKNOWN
                raise

    async def _failed(self, tx: CallTransaction) -> None:
        """Undo the failed call only; a lost connection ends the execution's use of it."""
        if not tx.sent:  # what the next call must send first is still to be sent
            return
        self._pending = []
        if not tx.started:  # its statement ended its transaction: there is nothing to undo
            return
        conn = tx.conn
        try:
            if conn.closed:
                raise psycopg.OperationalError("the connection is closed")
            if conn.info.transaction_status is TransactionStatus.IDLE:  # the server ended it (a read's message)
                self._in_snapshot = False
                self.snapshot_id = None
                return
            if self.snapshot and conn.info.transaction_status is TransactionStatus.INERROR and self._in_snapshot:
                await conn.execute("ROLLBACK TO SAVEPOINT pgcode_call; RELEASE SAVEPOINT pgcode_call")
            elif self.snapshot and conn.info.transaction_status is not TransactionStatus.INERROR:
                await conn.execute("RELEASE SAVEPOINT pgcode_call")  # failed after its statements: keep them
            else:
                await conn.execute("ROLLBACK")
                self._in_snapshot = False
                self.snapshot_id = None
        except psycopg.Error as exc:
            if connection_lost(conn, exc):
                self.closed = True  # the next calls take pooled connections
            else:
                raise

    @property
    def busy(self) -> bool:
        return self._lock.locked()

    async def close(self) -> None:
        """End the snapshot (or the last read's transaction) and give the connection back."""
        async with self._lock:
            self.closed = True
            conn = self._conn
            try:
                if conn is not None and not conn.closed and conn.info.transaction_status is not TransactionStatus.IDLE:
                    with contextlib.suppress(psycopg.Error):
                        await conn.execute("ROLLBACK")  # only reads are left open: nothing to keep
            finally:
                await self._stack.aclose()


EXECUTION_CONNECTION: ContextVar[ExecutionConnection | None] = ContextVar("pgcode_execution_connection",
                                                                          default=None)
"""Set by code mode for the host calls of one execution."""


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
        self._tx: CallTransaction | None = None
        self._own_read = False  # a READ ONLY transaction on a pooled connection of this call's own
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
        """The call's connection, its transaction open: for tools that drive the connection themselves."""
        if self._conn is None:
            tx = await self._open()
            self._conn = await tx.ready() if tx is not None else await self._held_conn()
        return self._conn

    async def _held_conn(self) -> Conn:
        held = self.held
        assert held is not None
        await self._stack.enter_async_context(held.lock)
        self.rt.txstore.require_open(held)  # it may have ended while this call waited
        held.last_used = time.monotonic()
        role = self.role
        # The held transaction serves calls of several scopes: each runs as its own role.
        await held.conn.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role) if role else sql.SQL("NONE")))
        self._report_to_watch(held.conn)
        return held.conn

    async def _open(self) -> CallTransaction | None:
        """This call's transaction, its opening statements not sent yet; None inside a held transaction."""
        if self._tx is not None or self.held is not None:
            return self._tx
        if self.mode is TxMode.NONE:
            raise RuntimeError(f"{self.spec.name} declared tx=NONE but asked for a connection")
        shared = EXECUTION_CONNECTION.get()
        if shared is not None and self.mode is not TxMode.AUTOCOMMIT:
            self._tx = await self._stack.enter_async_context(shared.call(self.mode, self.role))
        if self._tx is None:
            admin = self.principal.allows(Scope.ADMIN)
            await self._stack.enter_async_context(self.rt.fairshare.slot(self.principal.subject, admin=admin))
            opening = shared.opening_for_another_connection(self.mode, self.rt.db.timeout_literal(), self.role) \
                if shared is not None else None
            self._tx = await self._stack.enter_async_context(
                self.rt.db.call_transaction(self.mode, role=self.role, opening=opening))
            self._own_read = self.mode is TxMode.READ_ONLY
        self._report_to_watch(self._tx.conn)
        return self._tx

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

    async def execute_on(self, cur: AsyncCursor[Any], query: Query, params: Params | None, *,
                         last: bool = False) -> None:
        """Run `query` on `cur`, a cursor of `cursor_connection()`: a call's first statement goes out with its
        transaction's opening statements, in one round trip (for tools that need their own cursor class).

        `last`: `query` is one complete statement and the call's final one. A read then runs it in a transaction
        that ends with its message (no BEGIN, no COMMIT): the call is over in that round trip (a statement after
        it opens a new transaction)."""
        await self._executed(cur, query, params, last=last)

    async def cursor_connection(self) -> Conn:
        """The connection to make a cursor on for execute_on(); its transaction may not be open yet."""
        return await self._cursor_conn()

    async def _executed(self, cur: AsyncCursor[Any], query: Query, params: Params | None, *,
                        last: bool = False) -> None:
        """Run `query` on `cur`; a call's first statement goes out with its transaction's opening statements."""
        tx = await self._open() if self._conn is None else None
        if tx is not None:
            self._conn = tx.conn
            await tx.run(cur, query, params, last=last)
            if not tx.started:  # the statement ended the transaction: the next one opens another
                self._conn = None
        else:
            await cur.execute(query, params)

    async def _cursor_conn(self) -> Conn:
        if self._conn is not None:
            return self._conn
        tx = await self._open()
        return tx.conn if tx is not None else await self.conn()

    async def fetch(self, query: Query, params: Params | None = None) -> list[Row]:
        conn = await self._cursor_conn()
        async with conn.cursor(row_factory=dict_row) as cur:
            await self._executed(cur, query, params)
            return await cur.fetchall() if cur.description else []

    async def fetchone(self, query: Query, params: Params | None = None) -> Row | None:
        rows = await self.fetch(query, params)
        return rows[0] if rows else None

    async def fetchval(self, query: Query, params: Params | None = None) -> Any:
        conn = await self._cursor_conn()
        async with conn.cursor() as cur:
            await self._executed(cur, query, params)
            row = await cur.fetchone()
            return row[0] if row else None

    async def execute(self, query: Query, params: Params | None = None) -> int:
        """Run a statement; return the number of rows it affected (-1 when not applicable)."""
        conn = await self._cursor_conn()
        async with conn.cursor() as cur:
            await self._executed(cur, query, params)
            return cur.rowcount

    async def savepoint(self, name: str) -> None:
        await self.execute(sql.SQL("SAVEPOINT {}").format(sql.Identifier(name)))

    async def __aenter__(self) -> ToolContext:
        return self

    async def __aexit__(self, et: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        held = self.held
        tx = self._tx
        if exc is None and self._own_read and tx is not None and tx.sent:
            # A read has nothing to lose: its result is final once its statements ran. Its transaction ended with
            # its last statement's message, or its COMMIT goes out now (with the pool's reset); reading the answer,
            # the reset and returning the connection and the fair share happen after the caller has its result.
            if tx.started:
                with contextlib.suppress(psycopg.Error):  # a broken connection: the ending below finds out
                    tx.send_commit()
            self.rt.db.finish_later(self._stack.aclose())
            return
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
