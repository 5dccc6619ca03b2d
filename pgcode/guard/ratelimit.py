"""Rate limits per principal and tool class (read, write, admin, code) with `limits`: memory or Redis."""

from __future__ import annotations

import logging
import time

from limits import RateLimitItem, parse
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import SlidingWindowCounterRateLimiter

from pgcode.errors import ErrorCode, ToolError
from pgcode.settings import Settings

log = logging.getLogger("pgcode.guard.ratelimit")

CLASSES = ("read", "write", "admin", "code")


class RateLimiter:
    """A sliding window per (principal, class); Redis storage lets several server processes share it."""

    def __init__(self, settings: Settings) -> None:
        self.items: dict[str, RateLimitItem] = {
            cls: parse(getattr(settings, f"rate_limit_{cls}")) for cls in CLASSES}
        storage: Storage
        if settings.redis_url is not None:
            url = settings.redis_url.get_secret_value()
            storage = RedisStorage(url if url.startswith("async+") else f"async+{url}")
        else:
            storage = MemoryStorage()
        # Sliding-window counter: O(1) per key (a moving window keeps one entry per call in the window).
        self._limiter = SlidingWindowCounterRateLimiter(storage)
        self._warned = 0.0

    async def hit(self, subject: str, cls: str) -> None:
        """Count one call; raise RATE_LIMITED with the seconds to wait when the budget is spent."""
        item = self.items[cls]
        try:
            if await self._limiter.hit(item, subject, cls):
                return
            reset_at, _remaining = await self._limiter.get_window_stats(item, subject, cls)
        except Exception as exc:  # the storage is down: serve (limits protect, they must not take us down)
            if time.monotonic() - self._warned > 60:
                self._warned = time.monotonic()
                log.warning("rate limit storage unavailable (%s); calls are not being limited", type(exc).__name__)
            return
        wait = max(0.0, reset_at - time.time())
        raise ToolError(ErrorCode.RATE_LIMITED, f"rate limit for {cls} calls reached ({item})",
                        hint=f"retry in {wait:.0f} s", details={"retryAfterSeconds": round(wait, 1), "class": cls})
