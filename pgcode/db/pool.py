"""The connection pool, the three run modes, and server capabilities (version, extensions)."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import psycopg
from psycopg import AsyncConnection, sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from psycopg.rows import TupleRow
from psycopg_pool import AsyncConnectionPool, PoolTimeout

from pgcode.errors import ErrorCode, ToolError, connection_error, from_db_error
from pgcode.settings import Settings
from pgcode.types import TxMode

Conn = AsyncConnection[TupleRow]

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


async def _reset(conn: Conn) -> None:
    # Runs on every return to the pool: no tool leaves session state behind. DISCARD ALL, not just
    # RESET ALL: temporary tables, session advisory locks, sequence state and LISTENs go too.
    await conn.execute("DISCARD ALL")


class Database:
    """One AsyncConnectionPool and the ways pgcode runs statements on it."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._pool: AsyncConnectionPool[Conn] | None = None
        self._caps: Capabilities | None = None

    @property
    def pool(self) -> AsyncConnectionPool[Conn]:
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
        self._pool = AsyncConnectionPool(
            self._conninfo(check_interval=self.caps.server_version_num >= 140000),
            min_size=s.pool_min_size,
            max_size=s.pool_max_size,
            timeout=s.pool_timeout_s,
            kwargs={"autocommit": True, "prepare_threshold": None},
            configure=lambda conn: _configure_types(conn, self.caps),
            reset=_reset,
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
        try:
            conn = await self.pool.getconn()
        except PoolTimeout:
            await self.check_reachable()
            raise
        try:
            yield conn
        finally:
            await self.pool.putconn(conn)

    async def close(self) -> None:
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

    @asynccontextmanager
    async def transaction(self, mode: TxMode, *, timeout_ms: int | None = None,
                          role: str | None = None) -> AsyncIterator[Conn]:
        """A pooled connection in `mode`, running as `role` when given; committed on success, rolled back on error."""
        timeout = sql.Literal(f"{timeout_ms or self.settings.statement_timeout_ms}ms")
        as_role = sql.SQL("SET {} ROLE {}; ").format(sql.SQL("" if mode is TxMode.AUTOCOMMIT else "LOCAL"),
                                                     sql.Identifier(role)) if role else sql.SQL("")
        async with self.connection() as conn:
            if mode is TxMode.AUTOCOMMIT:  # session-level settings: undone by DISCARD ALL on return
                await conn.execute(sql.SQL("{}SET statement_timeout = {}").format(as_role, timeout))
                yield conn
                return
            begin = sql.SQL("BEGIN READ ONLY; " if mode is TxMode.READ_ONLY else "BEGIN; ")
            # One round trip: the simple-query protocol takes the statements at once.
            await conn.execute(sql.SQL("{}{}SET LOCAL statement_timeout = {}").format(begin, as_role, timeout))
            try:
                yield conn
            except BaseException:
                await _rollback_quietly(conn)
                raise
            await conn.execute("COMMIT")


async def _rollback_quietly(conn: Conn) -> None:
    """Roll back after a failure; if the connection is broken the pool discards it anyway."""
    if not conn.closed:
        with contextlib.suppress(psycopg.Error):
            await conn.execute("ROLLBACK")
