"""Transactions held open across calls: one pooled connection per id, an idle timeout, a cap per principal."""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from dataclasses import dataclass, field

import psycopg
from psycopg import sql

from pgcode.db.pool import Conn, Database
from pgcode.db.pool import commit as commit_transaction
from pgcode.errors import ErrorCode, ToolError
from pgcode.settings import Settings
from pgcode.types import TxMode


@dataclass(eq=False)
class HeldTransaction:
    id: str
    owner: str
    conn: Conn
    isolation: str
    read_only: bool
    started: float = field(default_factory=time.time)
    last_used: float = field(default_factory=time.monotonic)
    savepoints: list[str] = field(default_factory=list)
    statements: int = 0
    closed: bool = False  # set by finish(); a call that waited on `lock` must not use `conn` then
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    def describe(self) -> dict[str, object]:
        return {
            "transactionId": self.id,
            "isolationLevel": self.isolation,
            "readOnly": self.read_only,
            "startedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.started)),
            "ageSeconds": round(time.time() - self.started, 3),
            "idleSeconds": round(time.monotonic() - self.last_used, 3),
            "savepoints": list(self.savepoints),
            "statements": self.statements,
            "state": self.conn.info.transaction_status.name.lower(),
        }


class TransactionStore:
    """Owns held connections: begins, finds (only for their owner), ends and reaps them."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._settings = settings
        self._held: dict[str, HeldTransaction] = {}
        self._reaper: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._reaper is None:
            self._reaper = asyncio.create_task(self._reap_forever(), name="pgcode-tx-reaper")

    async def close(self) -> None:
        if self._reaper is not None:
            self._reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reaper
            self._reaper = None
        for held in list(self._held.values()):
            await self.finish(held, commit=False)

    def owned_by(self, owner: str) -> list[HeldTransaction]:
        return [h for h in self._held.values() if h.owner == owner]

    def count(self, owner: str | None = None) -> int:
        return sum(1 for h in self._held.values() if owner is None or h.owner == owner)

    async def begin(self, owner: str, isolation: str, read_only: bool) -> HeldTransaction:
        if self.count(owner) >= self._settings.tx_max_per_principal:
            raise ToolError(ErrorCode.CONFLICT,
                            f"{self.count(owner)} transactions are already open for this caller "
                            f"(the limit is {self._settings.tx_max_per_principal})",
                            hint="commit or roll back one first; idle ones end after "
                                 f"{self._settings.tx_idle_timeout_s:g} s")
        # Leave at least one pooled connection for ordinary calls.
        if self.count() >= max(1, self._settings.pool_max_size - 1):
            raise ToolError(ErrorCode.CONFLICT, "too many transactions are open on this server",
                            hint="retry after others have ended")
        conn = await self._db.pool.getconn()
        begin = sql.SQL("BEGIN ISOLATION LEVEL {} {}; SET LOCAL statement_timeout = {}").format(
            sql.SQL(isolation), sql.SQL("READ ONLY" if read_only else "READ WRITE"),
            sql.Literal(f"{self._settings.statement_timeout_ms}ms"))
        try:
            await conn.execute(begin)
        except BaseException:
            await self._db.pool.putconn(conn)
            raise
        held = HeldTransaction(secrets.token_urlsafe(16), owner, conn, isolation, read_only)
        self._held[held.id] = held
        return held

    def get(self, tx_id: str, owner: str) -> HeldTransaction:
        held = self._held.get(tx_id)
        if held is None or held.owner != owner:  # another caller's id looks exactly like an unknown one
            raise _not_found(tx_id)
        return held

    @staticmethod
    def require_open(held: HeldTransaction) -> None:
        """Raise NOT_FOUND if `held` ended (commit, rollback, reaper) while the caller waited for its lock."""
        if held.closed:
            raise _not_found(held.id)

    async def finish(self, held: HeldTransaction, *, commit: bool) -> None:
        """COMMIT or ROLLBACK, then hand the connection back to the pool."""
        if self._held.pop(held.id, None) is None:
            return
        held.closed = True
        try:
            if commit:
                await commit_transaction(held.conn, TxMode.READ_ONLY if held.read_only else TxMode.READ_WRITE)
            else:
                await held.conn.execute("ROLLBACK")
        except psycopg.Error:
            if commit:
                raise
        finally:
            await self._db.pool.putconn(held.conn)

    async def _reap_forever(self) -> None:
        while True:
            await asyncio.sleep(min(1.0, self._settings.tx_idle_timeout_s / 4))
            await self.reap()

    async def reap(self) -> list[str]:
        """Roll back transactions idle past the timeout (skipping those in use); return their ids."""
        limit = time.monotonic() - self._settings.tx_idle_timeout_s
        ended = []
        for held in list(self._held.values()):
            if held.last_used < limit and not held.lock.locked():
                await self.finish(held, commit=False)
                ended.append(held.id)
        return ended


def _not_found(tx_id: str) -> ToolError:
    return ToolError(ErrorCode.NOT_FOUND, f"no open transaction with id {tx_id!r}",
                     hint="it was committed, rolled back, or ended after being idle; begin a new one")
