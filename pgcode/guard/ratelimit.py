"""Rate limits per principal and tool class (read, write, admin, code) with `limits`: memory or Redis."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from limits import RateLimitItem, parse
from limits.aio.storage import RedisStorage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from pgcode.errors import ErrorCode, ToolError
from pgcode.settings import Settings

log = logging.getLogger("pgcode.guard.ratelimit")

CLASSES = ("read", "write", "admin", "code")


class RateLimiter:
    """A sliding window per (principal, class). In one process the windows live in memory (a few counters per
    key, checked on every call); with Redis several server processes share them through `limits`."""

    def __init__(self, settings: Settings) -> None:
        self.items: dict[str, RateLimitItem] = {
            cls: parse(getattr(settings, f"rate_limit_{cls}")) for cls in CLASSES}
        self._shared: SlidingWindowCounterRateLimiter | None = None
        if settings.redis_url is not None:
            url = settings.redis_url.get_secret_value()
            # Sliding-window counter: O(1) per key (a moving window keeps one entry per call in the window).
            self._shared = SlidingWindowCounterRateLimiter(
                RedisStorage(url if url.startswith("async+") else f"async+{url}"))
        self._local = SlidingWindows()
        self.clock: Callable[[], float] = time.monotonic  # the in-memory windows' time (tests pin it)
        self._warned = 0.0

    def hit_in_memory(self, subject: str, cls: str) -> bool:
        """Count one call in this process's windows, without a coroutine: True when it is counted (allowed).
        False when the windows are shared (Redis), or the budget is spent: hit() then counts it, or raises (a
        refused call counts nothing, so asking again counts nothing twice)."""
        if self._shared is not None:
            return False
        item = self.items[cls]
        return self._local.hit((subject, cls), item.amount, item.get_expiry(), self.clock()) is None

    async def hit(self, subject: str, cls: str) -> None:
        """Count one call; raise RATE_LIMITED with the seconds to wait when the budget is spent."""
        item = self.items[cls]
        if self._shared is None:
            wait = self._local.hit((subject, cls), item.amount, item.get_expiry(), self.clock())
            if wait is None:
                return
        else:
            try:
                if await self._shared.hit(item, subject, cls):
                    return
                reset_at, _remaining = await self._shared.get_window_stats(item, subject, cls)
            except Exception as exc:  # the storage is down: serve (limits protect, they must not take us down)
                if time.monotonic() - self._warned > 60:
                    self._warned = time.monotonic()
                    log.warning("rate limit storage unavailable (%s); calls are not being limited", type(exc).__name__)
                return
            wait = max(0.0, reset_at - time.time())
        raise ToolError(ErrorCode.RATE_LIMITED, f"rate limit for {cls} calls reached ({item})",
                        hint=f"retry in {wait:.0f} s", details={"retryAfterSeconds": round(wait, 1), "class": cls})


class SlidingWindows:
    """limits' sliding-window counter, in process memory: the previous fixed window's count, weighted by how
    much of it the sliding window still covers, plus the current one's. A hit costs a dict lookup and a few
    additions, not a trip through an async storage on every call."""

    MAX_KEYS = 100_000

    def __init__(self) -> None:
        self._windows: dict[Any, list[float]] = {}  # key -> [window start, previous count, current count]

    def hit(self, key: Any, amount: int, period: float, now: float) -> float | None:
        """Count a hit at `now` and return None, or return the seconds until one would be allowed."""
        start = now - now % period
        window = self._windows.get(key)
        if window is None or window[0] < start - 1.5 * period:  # (half a period: window starts are floats)
            window = [start, 0.0, 0.0]
        elif window[0] < start - 0.5 * period:
            window = [start, window[2], 0.0]
        elapsed = now - start
        previous, current = window[1], window[2]
        if previous * (period - elapsed) / period + current + 1 <= amount:
            window[2] = current + 1
            if key not in self._windows and len(self._windows) >= self.MAX_KEYS:
                self._forget(start - 1.5 * period)
            self._windows[key] = window
            return None
        self._windows[key] = window
        if current + 1 <= amount:  # the previous window's weight must decay enough
            return max(0.0, period * (1 - (amount - current - 1) / previous) - elapsed)
        return period - elapsed + period * max(0.0, 1 - (amount - 1) / current)

    def _forget(self, before: float) -> None:
        """Drop the windows of keys not seen since `before` (they count nothing any more)."""
        for key in [k for k, w in self._windows.items() if w[0] < before]:
            del self._windows[key]
