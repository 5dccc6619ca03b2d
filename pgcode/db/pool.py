"""The connection pool, the three run modes, and server capabilities (version, extensions)."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import weakref
from collections.abc import AsyncIterator, Coroutine, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
from psycopg import AsyncConnection, AsyncCursor, generators, sql
from psycopg.abc import Params
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.pq import ConnStatus, ExecStatus, TransactionStatus
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from pgcode.db.watched import WatchedConnection
from pgcode.errors import ErrorCode, ToolError, connection_error, from_db_error, in_doubt
from pgcode.settings import Settings
from pgcode.types import TxMode

log = logging.getLogger(__name__)

Conn = AsyncConnection[TupleRow]
Query = str | sql.SQL | sql.Composed

APPLICATION_NAME = "pgcode"
"""application_name of pgcode's own connections (unless the URL sets one): how its sessions are told apart."""
CONNECT_TIMEOUT_S = 10

_CAPABILITIES_SQL = """
SELECT current_setting('server_version_num')::int,
       current_setting('server_version'),
       current_database(),
       (SELECT coalesce(jsonb_object_agg(extname, extversion), '{}') FROM pg_extension),
       (SELECT coalesce(jsonb_object_agg(name, default_version), '{}') FROM pg_available_extensions)
"""

# 'v' > 's' > 'i' as text, so max() is the worst overload of each name.
_VOLATILITY_SQL = "SELECT lower(proname), max(provolatile::text) FROM pg_proc GROUP BY 1"

# PG 14+: the backend notices a vanished client within this interval and stops its query, even
# when a cancelled task could not send a cancel request (anyio cancel scopes, see research notes).
_CHECK_INTERVAL = "-c client_connection_check_interval=2000"


@dataclass(frozen=True)
class Capabilities:
    """What the server offers; refreshed after an extension is created or dropped."""

    server_version_num: int
    server_version: str
    database: str
    installed: dict[str, str] = field(default_factory=dict)
    available: dict[str, str | None] = field(default_factory=dict)
    volatility: dict[str, str] = field(default_factory=dict, repr=False)
    """Per function name, the volatility of its worst overload: 'i', 's' or 'v' (for the volatility gate)."""

    def has_extension(self, name: str) -> bool:
        return name in self.installed

    def require_extension(self, name: str, create_tool: str | None = None) -> None:
        """Raise EXTENSION_MISSING naming the extension and how to get it."""
        if name in self.installed:
            return
        if name in self.available:
            hint = f"create it with {create_tool}" if create_tool else f"CREATE EXTENSION {name} (needs admin)"
        else:
            hint = f"the server does not ship {name}; install its package on the database server first"
        raise ToolError(ErrorCode.EXTENSION_MISSING, f"this tool needs the {name} extension, which is not installed",
                        hint=hint, details={"extension": name, "available": name in self.available})

    def require_version(self, minimum: int, feature: str) -> None:
        """Raise UNSUPPORTED_VERSION naming the feature, the version needed and the one found."""
        if self.server_version_num < minimum:
            raise ToolError(
                ErrorCode.UNSUPPORTED_VERSION,
                f"{feature} needs PostgreSQL {minimum // 10000} or later; this server is {self.server_version}",
                details={"needed": minimum, "found": self.server_version_num},
            )


async def _configure_types(conn: Conn, caps: Capabilities) -> None:
    """Once per new connection: load vector values as lists (DESIGN: vectors as arrays)."""
    if caps.has_extension("vector"):
        await register_vector_types(conn)


async def register_vector_types(conn: Conn, oid: int | None = None) -> bool:
    """Adapt vector (and halfvec, sparsevec where pgvector has them) on `conn`; False without the extension.

    Also called lazily by the vector tools: a connection opened before CREATE EXTENSION has no adapters yet,
    and one opened before the extension was dropped and created again knows the old type oid.
    """
    known = conn.adapters.types.get("vector")
    if known is not None and (oid is None or known.oid == oid):
        return True
    from pgvector.psycopg import register_vector_async

    try:
        await register_vector_async(conn)
    except psycopg.ProgrammingError:  # no vector type visible: the extension is not (or no longer) installed
        return False
    return True


@functools.lru_cache(maxsize=256)
def framing(mode: TxMode, timeout: str, role: str | None, *, isolation: str | None = None) -> tuple[str, ...]:
    """The statements that open a call's transaction: BEGIN [READ ONLY], its role and its statement timeout.

    SET, not SELECT set_config(): a SET takes no snapshot, so a tool may still choose its isolation level.
    Composed once per (mode, timeout, role): every call sends the same few texts.
    """
    begin = "BEGIN" + (f" ISOLATION LEVEL {isolation}" if isolation else "")
    begin += " READ ONLY" if mode is TxMode.READ_ONLY else ""
    return (begin, *call_settings(timeout, role))


@functools.lru_cache(maxsize=256)
def framing_alone(timeout: str, role: str | None) -> tuple[str, ...]:
    """The opening of a read whose one statement travels with it: no BEGIN and no COMMIT. The message is one
    implicit transaction, which the server commits, or rolls back when a statement fails, as the message ends;
    SET LOCAL holds in it as in BEGIN ... COMMIT. Two statements fewer for the server and for psycopg."""
    return ("SET LOCAL transaction_read_only = on", *call_settings(timeout, role))


@functools.lru_cache(maxsize=256)
def call_settings(timeout: str, role: str | None) -> tuple[str, ...]:
    """SET LOCAL ROLE (NONE: the connecting role) and SET LOCAL statement_timeout."""
    return (sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role) if role else sql.SQL("NONE")).as_string(),
            sql.SQL("SET LOCAL statement_timeout = {}").format(sql.Literal(timeout)).as_string())


class ResettingPool(AsyncConnectionPool[Conn]):
    """psycopg_pool's pool, whose putconn() leaves no session state behind: it runs DISCARD ALL on a returned
    connection (temporary tables, session advisory locks, settings, prepared statements, LISTENs).

    Not psycopg_pool's `reset` callback: with one, every return goes through the pool's worker task. A call's
    connection has usually run DISCARD ALL already, with its COMMIT or after it (mark_clean()); it goes straight
    back. Any other is reset in a task of its own, off the caller's path, as the pool's worker would.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._clean: weakref.WeakSet[Conn] = weakref.WeakSet()
        self._resetting: set[asyncio.Task[None]] = set()

    def mark_clean(self, conn: Conn) -> None:
        """`conn` ran DISCARD ALL after its last transaction: its return need not run it again."""
        self._clean.add(conn)

    async def putconn(self, conn: Conn) -> None:
        if conn in self._clean:
            self._clean.discard(conn)
            if conn.pgconn.transaction_status == TransactionStatus.IDLE:
                await super().putconn(conn)
                return
        task = asyncio.get_running_loop().create_task(self._reset_and_return(conn), name="pgcode-pool-reset")
        self._resetting.add(task)
        task.add_done_callback(self._resetting.discard)

    async def _reset_and_return(self, conn: Conn) -> None:
        try:
            if conn.pgconn.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
                await conn.rollback()
            if conn.pgconn.transaction_status == TransactionStatus.IDLE:
                await conn.execute("DISCARD ALL")
        except psycopg.Error as exc:  # a connection that cannot be reset is not reused: the pool replaces it
            log.warning("resetting a returned connection failed (%s); closing it", type(exc).__name__)
            await conn.close()
        try:
            await super().putconn(conn)
        except Exception:
            log.exception("returning a connection to the pool failed")

    async def settle(self, timeout_s: float) -> None:
        """Wait until the connections being reset are back in the pool."""
        if self._resetting:
            await asyncio.wait(set(self._resetting), timeout=timeout_s)


class CallTransaction:
    """A connection whose next statements open a transaction: sent with the first query, in one round trip.

    A first statement without parameters travels in the same simple-query message as the opening statements
    (one round trip, as for a bare query); the failure of any of them raises its own error, with its SQLSTATE
    and, through `position_offset`, its position within the caller's statement. A first statement with
    parameters (extended protocol) follows the opening message. psycopg's pipeline mode would merge those
    too, but costs more in Python than a loopback round trip.

    A read that is one statement (`alone`: its opening without BEGIN, framing_alone()) needs no COMMIT either,
    when the caller knows its statement is the call's last: the message is an implicit transaction that the
    server ends with it, and the call is over in one round trip and one send. DISCARD ALL follows as the
    connection is given back, after the answer: in the same message it would delay the answer by more than the
    send it saves (its statements spelled out cost ~60 us of server time).
    """

    def __init__(self, conn: Conn, opening: Sequence[Query], mode: TxMode, *, alone: Sequence[Query] | None = None,
                 ahead: Sequence[Query] = ()) -> None:
        self.conn = conn
        self.mode = mode
        self._opening = opening
        self._alone = alone
        self._ahead = ahead
        """Statements sent once, before the first opening: what the previous call left to send (a read's COMMIT, a
        RELEASE SAVEPOINT)."""
        self.started = False
        """A transaction is open: the opening statements went out, and the statement did not end it."""
        self.ended = False
        """The statement's message ended the transaction: it is over, the session not reset yet."""
        self.commit_sent = False

    @property
    def sent(self) -> bool:
        """Statements went out on the connection: a transaction is open, or was ended by its statement."""
        return self.started or self.ended

    def _opening_now(self, opening: Sequence[Query] | None = None) -> tuple[str, int]:
        """The text that opens the transaction ahead of a statement, and how many results it yields."""
        opening = self._opening if opening is None else opening
        statements = [*self._ahead, *opening] if self._ahead else opening
        self._ahead = ()
        return "".join(f"{_text(q, self.conn)}; " for q in statements), len(statements)

    async def ready(self) -> Conn:
        """The connection with the transaction open, for callers that use it directly (one round trip)."""
        if not self.started:
            self.started = True
            prefix, _ = self._opening_now()
            await self.conn.execute(prefix.removesuffix("; "))  # a failed statement raises: nothing else to read
        return self.conn

    async def run(self, cur: AsyncCursor[Any], query: Query, params: Params | None, *, last: bool = False) -> None:
        """Execute `query` on `cur` (a cursor of this connection); the first one carries the opening statements.

        With `last` (`query` is a complete statement, and the call's final one), a first statement without
        parameters of a read that has an `alone` opening travels in an implicit transaction: the transaction is
        over when this returns, `cur` stays on the statement's result, and a later statement would open a new
        transaction. When it fails, the server has rolled it back already.
        """
        if self.started:
            await cur.execute(query, params)
            return
        if params is not None:
            await self.ready()
            await cur.execute(query, params)
            return
        self.started = True
        alone = last and self._alone is not None
        prefix, count = self._opening_now(self._alone if alone else None)
        try:
            await cur.execute(prefix + _text(query, self.conn))
        except psycopg.Error as exc:
            exc.position_offset = len(prefix)  # type: ignore[attr-defined]  # read by errors.from_db_error
            raise
        with contextlib.suppress(IndexError):  # a text without a statement (only comments) has no result of its own
            await cur.set_result(count)  # the statement's result: one step over the opening's, not one per result
        if alone:
            self.started, self.ended = False, True

    def send_commit(self) -> None:
        """Send COMMIT and the pool's reset now, and read their answer later (answer_commit()).

        For a read, whose result is final once its statements ran: the server ends the transaction (and frees
        its locks) at once, while the caller has its answer one round trip sooner.
        """
        self.conn.pgconn.send_query(COMMIT_AND_DISCARD.encode())
        self.commit_sent = True

    async def answer_commit(self) -> None:
        """Read what send_commit() started; raise when the server refused or the connection broke."""
        results = await self.conn.wait(generators.execute(self.conn.pgconn))
        failed = next((r for r in results if r.status == ExecStatus.FATAL_ERROR), None)
        if failed is not None:
            raise psycopg.errors.error_from_result(failed, encoding=self.conn.info.encoding)


def _text(query: Query, conn: Conn) -> str:
    return query if isinstance(query, str) else query.as_string(conn)


_XID_SQL = "SELECT pg_current_xact_id_if_assigned()::text"
# DISCARD ALL, spelled out: it may not run in the implicit transaction of a message that also holds COMMIT.
_DISCARD_ALL = ("CLOSE ALL; SET SESSION AUTHORIZATION DEFAULT; RESET ALL; DEALLOCATE ALL; UNLISTEN *; "
                "SELECT pg_advisory_unlock_all(); DISCARD PLANS; DISCARD TEMP; DISCARD SEQUENCES")
COMMIT_AND_DISCARD = f"COMMIT; {_DISCARD_ALL}"


def connection_lost(conn: Conn, exc: BaseException) -> bool:
    """Whether `exc` means the connection is gone (so a COMMIT sent on it may or may not have happened)."""
    return conn.closed or conn.pgconn.status == ConnStatus.BAD or (
        isinstance(exc, psycopg.OperationalError) and exc.sqlstate is None)


async def commit(conn: Conn, mode: TxMode, *, discard: bool = False) -> None:
    """COMMIT (with DISCARD ALL's statements when `discard`) in one round trip: a call's own transaction, or one
    held open by pg_transaction_begin.

    A transaction that may have written learns its id first: if the connection is lost while its COMMIT is on
    the way, the outcome is unknown, and IN_DOUBT says which transaction to look up (pg_xact_status()). Asking
    first also finds a connection the server already ended (a restart): that transaction was rolled back, and
    the error says so. A read has nothing to lose: its rows stand.
    """
    xid: str | None = None
    if mode is TxMode.READ_WRITE:
        cur = await conn.execute(_XID_SQL)
        row = await cur.fetchone()
        xid = row[0] if row else None
    try:
        await conn.execute(COMMIT_AND_DISCARD if discard else "COMMIT")
    except psycopg.Error as exc:
        if not connection_lost(conn, exc):
            raise
        if xid is not None:
            raise in_doubt(xid) from None
        # Nothing was written (no transaction id was assigned): nothing is in doubt, the call's result stands.


class Database:
    """One AsyncConnectionPool and the ways pgcode runs statements on it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pool: ResettingPool | None = None
        self._caps: Capabilities | None = None
        self._finishing: set[asyncio.Task[None]] = set()
        self._checking: asyncio.Task[None] | None = None

    @property
    def pool(self) -> ResettingPool:
        if self._pool is None:
            raise RuntimeError("Database.open() has not been called")
        return self._pool

    @property
    def caps(self) -> Capabilities:
        if self._caps is None:
            raise RuntimeError("Database.open() has not been called")
        return self._caps

    @property
    def application_name(self) -> str:
        """application_name of pgcode's own connections (the URL's, else 'pgcode').

        What pgcode reports about sessions, locks and connections leaves these out unless the caller asks
        (includeSelf): filter with `a.application_name IS DISTINCT FROM %(own_app)s` bound to this value.
        """
        try:
            name = conninfo_to_dict(self._url).get("application_name")
        except psycopg.Error:
            name = None
        return str(name) if name else APPLICATION_NAME

    @property
    def _url(self) -> str:
        return self.settings.database_url.get_secret_value() if self.settings.database_url else ""

    def _conninfo(self, *, check_interval: bool) -> str:
        url = self._url
        try:
            params = conninfo_to_dict(url)
            port = str(params.get("port") or "")
            if port and not all(p.strip().isdigit() for p in port.split(",")):
                # psycopg resolves hosts itself and would report a bad port as an unknown host
                raise psycopg.ProgrammingError(f'invalid integer value "{port}" for connection option "port"')
        except psycopg.Error as exc:
            raise connection_error(exc, url) from None
        extra: dict[str, str] = {}
        if "application_name" not in params:
            extra["application_name"] = APPLICATION_NAME
        if "connect_timeout" not in params:  # an unanswering host fails in seconds, not after the OS gives up
            extra["connect_timeout"] = str(CONNECT_TIMEOUT_S)
        if check_interval:
            extra["options"] = f"{params.get('options', '')} {_CHECK_INTERVAL}".strip()
        return make_conninfo(url, **extra)

    async def open(self) -> None:
        """Connect once to learn the server, then open the pool."""
        conninfo = self._conninfo(check_interval=False)
        try:
            async with await AsyncConnection.connect(conninfo, autocommit=True) as conn:
                self._caps = await self._read_capabilities(conn)
        except psycopg.OperationalError as exc:
            if exc.sqlstate is None:  # connecting failed; a query error after connecting keeps its SQLSTATE
                raise connection_error(exc, self._url) from None
            raise from_db_error(exc) from None
        except psycopg.Error as exc:
            raise from_db_error(exc) from None
        s = self.settings
        self._pool = ResettingPool(
            self._conninfo(check_interval=self.caps.server_version_num >= 140000),
            min_size=s.pool_min_size,
            max_size=s.pool_max_size,
            timeout=s.pool_timeout_s,
            connection_class=WatchedConnection,
            kwargs={"autocommit": True, "prepare_threshold": None},
            configure=lambda conn: _configure_types(conn, self.caps),
            open=False,
            name="pgcode",
        )
        await self._pool.open(wait=s.pool_min_size > 0, timeout=s.pool_timeout_s)

    async def check_reachable(self) -> None:
        """Raise the typed connection error (CONNECTION_FAILED, AUTH_FAILED, ...) when a new connection fails now."""
        try:
            conn = await AsyncConnection.connect(self._conninfo(check_interval=False), autocommit=True)
        except psycopg.OperationalError as exc:
            raise connection_error(exc, self._url) from None
        await conn.close()

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Conn]:
        """A pooled connection; when none comes in time because the database is down, say why, not BUSY."""
        conn = await self._checkout()
        try:
            yield conn
        finally:
            await self.pool.putconn(conn)

    async def _checkout(self) -> Conn:
        try:
            return await self.pool.getconn()
        except PoolTimeout:
            await self.check_reachable()
            raise

    def finish_later(self, ending: Coroutine[Any, Any, Any]) -> None:
        """Run `ending` (a read's COMMIT and the return of its connection) without the caller waiting for it."""
        task = asyncio.get_running_loop().create_task(_quietly(ending), name="pgcode-finish-read")
        self._finishing.add(task)
        task.add_done_callback(self._finishing.discard)

    def check_soon(self) -> None:
        """A connection was found lost: the server may have restarted and ended every pooled one. Check them all
        now (psycopg_pool's check()) so that the next calls get live ones, not one failure per stale connection."""
        if self._pool is None or (self._checking is not None and not self._checking.done()):
            return
        self._checking = asyncio.get_running_loop().create_task(_quietly(self._pool.check()),
                                                                name="pgcode-pool-check")

    async def settle(self, timeout_s: float = 5.0) -> None:
        """Wait until the reads that finish later have given their connections back, those connections are reset
        and back in the pool, and a pool check is done."""
        waiting = set(self._finishing) | ({self._checking} if self._checking is not None else set())
        if waiting:
            await asyncio.wait(waiting, timeout=timeout_s)
        if self._pool is not None:
            await self._pool.settle(timeout_s)

    async def close(self) -> None:
        await self.settle()
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def refresh_capabilities(self, conn: Conn | None = None) -> Capabilities:
        """Read the capabilities again, on `conn` when the caller holds one (a second could wait on a full pool)."""
        if conn is not None:
            self._caps = await self._read_capabilities(conn)
            return self._caps
        async with self.pool.connection() as pooled:
            self._caps = await self._read_capabilities(pooled)
        return self._caps

    @staticmethod
    async def _read_capabilities(conn: Conn) -> Capabilities:
        cur = await conn.execute(_CAPABILITIES_SQL)
        row = await cur.fetchone()
        assert row is not None
        installed, available = (json.loads(v) if isinstance(v, str) else v for v in row[3:5])
        cur = await conn.execute(_VOLATILITY_SQL)
        volatility = {name: kind for name, kind in await cur.fetchall()}
        return Capabilities(row[0], row[1], row[2], installed, available, volatility)

    def timeout_literal(self, timeout_ms: int | None = None) -> str:
        return f"{timeout_ms or self.settings.statement_timeout_ms}ms"

    @asynccontextmanager
    async def transaction(self, mode: TxMode, *, timeout_ms: int | None = None,
                          role: str | None = None) -> AsyncIterator[Conn]:
        """A pooled connection in `mode`, running as `role` when given; committed on success, rolled back on error."""
        async with self.call_transaction(mode, timeout_ms=timeout_ms, role=role) as tx:
            yield await tx.ready()

    @asynccontextmanager
    async def call_transaction(self, mode: TxMode, *, timeout_ms: int | None = None, role: str | None = None,
                               opening: Sequence[Query] | None = None) -> AsyncIterator[CallTransaction]:
        """Like transaction(), but the opening statements wait for the first query (one round trip for both).
        A read's COMMIT may travel with its last statement (CallTransaction.run); otherwise COMMIT and the pool's
        reset share one round trip. `opening` replaces the usual statements (a code execution's concurrent read
        joins its snapshot)."""
        timeout = self.timeout_literal(timeout_ms)
        conn = await self._checkout()  # not connection(): one context manager less on every call's path
        try:
            if mode is TxMode.AUTOCOMMIT:  # session-level settings: undone by DISCARD ALL on return
                as_role = sql.SQL("SET ROLE {}; ").format(sql.Identifier(role)) if role else sql.SQL("")
                await conn.execute(sql.SQL("{}SET statement_timeout = {}").format(as_role, sql.Literal(timeout)))
                tx = CallTransaction(conn, [], mode)
                tx.started = True
                yield tx
                return
            # A one-statement read needs no BEGIN and no COMMIT: it has nothing to lose.
            alone = framing_alone(timeout, role) if mode is TxMode.READ_ONLY and opening is None else None
            tx = CallTransaction(conn, opening or framing(mode, timeout, role), mode, alone=alone)
            try:
                yield tx
            except BaseException as exc:
                if tx.started:
                    if connection_lost(conn, exc):
                        self.check_soon()
                    await _rollback_quietly(conn)
                raise
            if not tx.started:  # nothing is open: the call sent nothing, or its statement ended its transaction
                # A read's ending runs after its answer (ToolContext): its reset may as well run here.
                if not tx.ended or await _discarded(conn):
                    self.pool.mark_clean(conn)
                return
            if tx.commit_sent:
                await tx.answer_commit()
            else:
                await commit(conn, tx.mode, discard=True)
            self.pool.mark_clean(conn)
        finally:
            await self.pool.putconn(conn)


async def _quietly(ending: Coroutine[Any, Any, Any]) -> None:
    """Work after the answer (a read's COMMIT, a pool check): its failure changes nothing a caller was told, and a
    broken connection is replaced by the pool."""
    try:
        await ending
    except Exception as exc:
        log.debug("ending a read's transaction failed: %r", exc)


async def _discarded(conn: Conn) -> bool:
    """Run DISCARD ALL; False when it failed (the pool then resets the connection again, or replaces it)."""
    try:
        await conn.execute("DISCARD ALL")
    except psycopg.Error:
        return False
    return True


async def _rollback_quietly(conn: Conn) -> None:
    """Roll back after a failure, unless the server ended the transaction itself (a read's implicit transaction);
    if the connection is broken the pool discards it anyway."""
    if not conn.closed and conn.pgconn.transaction_status in (TransactionStatus.INTRANS, TransactionStatus.INERROR):
        with contextlib.suppress(psycopg.Error):
            await conn.execute("ROLLBACK")
