"""Fair shares of a scarce resource: no principal takes all of it, and a part can stay free for admin.

The pool: a call takes a slot before it takes a pooled connection, one of its principal's
(PGCODE_MAX_CALLS_PER_PRINCIPAL, default pool size - 2) and, unless the principal holds the admin scope, one of
the pool size - 1 that non-admin calls share. Code mode: an execution takes one of its principal's before it
takes a sandbox worker. A wait that outlasts the timeout answers BUSY (HTTP 503 with Retry-After), never a 500.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from pgcode.errors import busy
from pgcode.settings import Settings


class _Slots:
    """A counting semaphore that knows how many hold it, so idle ones can be forgotten."""

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

    @asynccontextmanager
    async def slot(self, principal: str, *, admin: bool) -> AsyncIterator[None]:
        """Hold a share of the pool for one call of `principal`."""
        own = self._principals.get(principal)
        if own is None:
            own = self._principals[principal] = _Slots(self.per_principal)
        own.holders += 1
        shared = None if admin else self._shared
        try:
            await self._take(own, f"{principal} already runs {self.per_principal} at once")
            try:
                if shared is not None:
                    await self._take(shared, "every share non-admin callers may use is taken")
                try:
                    yield
                finally:
                    if shared is not None:
                        shared.semaphore.release()
            finally:
                own.semaphore.release()
        finally:
            own.holders -= 1
            if own.holders == 0:
                self._principals.pop(principal, None)

    async def _take(self, slots: _Slots, why: str) -> None:
        if not slots.semaphore.locked():  # free: acquire() returns at once (no timer, no task)
            await slots.semaphore.acquire()
            return
        try:
            await asyncio.wait_for(slots.semaphore.acquire(), self.timeout_s)
        except TimeoutError:
            raise busy(why) from None
