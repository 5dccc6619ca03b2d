"""Fair shares of a scarce resource: no principal takes all of it, and a part can stay free for admin.

The pool: a call takes a slot before it takes a pooled connection, one of its principal's
(PGCODE_MAX_CALLS_PER_PRINCIPAL, default pool size - 2) and, unless the principal holds the admin scope, one of
the pool size - 1 that non-admin calls share. Code mode: an execution takes one of its principal's before it
takes a sandbox worker. A wait that outlasts the timeout answers BUSY (HTTP 503 with Retry-After), never a 500.
"""

from __future__ import annotations

import asyncio
from types import TracebackType

from pgcode.errors import busy
from pgcode.settings import Settings

KEEP_IDLE = 1000
"""Idle principals whose slots are kept for their next call; beyond that, idle ones are forgotten."""


class _Slots:
    """A counting semaphore that knows how many hold it or wait for it, so idle ones can be forgotten."""

    __slots__ = ("holders", "semaphore")

    def __init__(self, size: int) -> None:
        self.semaphore = asyncio.Semaphore(size)
        self.holders = 0


class FairShare:
    def __init__(self, per_principal: int, shared: int, timeout_s: float) -> None:
        self.per_principal = per_principal
        self.timeout_s = timeout_s
        self._shared = _Slots(shared)
        self._principals: dict[str, _Slots] = {}

    @classmethod
    def for_pool(cls, settings: Settings) -> FairShare:
        """The pool's shares: one connection always left for admin."""
        return cls(settings.calls_per_principal, max(1, settings.pool_max_size - 1), settings.pool_timeout_s)

    def slot(self, principal: str, *, admin: bool) -> Slot:
        """Hold a share of the pool for one call of `principal` (async with)."""
        return Slot(self, principal, admin)

    def _own(self, principal: str) -> _Slots:
        own = self._principals.get(principal)
        if own is None:
            if len(self._principals) >= KEEP_IDLE:
                self._forget_idle()
            own = self._principals[principal] = _Slots(self.per_principal)
        own.holders += 1
        return own

    def _forget_idle(self) -> None:
        for principal in [p for p, slots in self._principals.items() if slots.holders == 0]:
            del self._principals[principal]

    async def _take(self, slots: _Slots, why: str) -> None:
        if not slots.semaphore.locked():  # free: acquire() returns at once (no timer, no task)
            await slots.semaphore.acquire()
            return
        try:
            await asyncio.wait_for(slots.semaphore.acquire(), self.timeout_s)
        except TimeoutError:
            raise busy(why) from None


class Slot:
    """One call's share: its principal's slot and, unless it holds the admin scope, one of the shared ones.

    A class, not a generator-based context manager: every tool call enters one.
    """

    __slots__ = ("_own", "_principal", "_share", "_shared")

    def __init__(self, share: FairShare, principal: str, admin: bool) -> None:
        self._share = share
        self._principal = principal
        self._own: _Slots | None = None
        self._shared = None if admin else share._shared

    async def __aenter__(self) -> None:
        share = self._share
        own = self._own = share._own(self._principal)
        if not own.semaphore.locked():  # free (the usual case): acquire() returns at once
            await own.semaphore.acquire()
        else:
            try:
                await share._take(own, f"{self._principal} already runs {share.per_principal} at once")
            except BaseException:
                own.holders -= 1
                raise
        if self._shared is not None:
            try:
                await share._take(self._shared, "every share non-admin callers may use is taken")
            except BaseException:
                own.semaphore.release()
                own.holders -= 1
                raise

    async def __aexit__(self, et: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        own = self._own
        assert own is not None
        if self._shared is not None:
            self._shared.semaphore.release()
        own.semaphore.release()
        own.holders -= 1
