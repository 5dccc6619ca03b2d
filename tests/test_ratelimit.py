"""The in-process sliding-window counter behind the rate limits (without Redis)."""

from __future__ import annotations

import pytest

from pgcode.errors import ErrorCode, ToolError
from pgcode.guard.ratelimit import RateLimiter, SlidingWindows
from pgcode.settings import Settings

pytestmark = pytest.mark.anyio


def test_a_window_allows_its_amount_then_says_how_long_to_wait() -> None:
    windows = SlidingWindows()
    assert all(windows.hit("k", 5, 60.0, 600.0 + i) is None for i in range(5))
    wait = windows.hit("k", 5, 60.0, 610.0)
    # all five hits are in the current window: one is allowed again once the next window has weighed them down
    assert wait is not None and 50.0 <= wait <= 62.0
    assert windows.hit("other", 5, 60.0, 610.0) is None  # keys are independent


def test_the_previous_window_counts_by_how_much_the_sliding_window_still_covers() -> None:
    windows = SlidingWindows()
    for i in range(10):
        assert windows.hit("k", 10, 60.0, 600.0 + i) is None
    # 15 s into the next window, 3/4 of the previous window's 10 hits still count: 7.5 + 1 <= 10, 8.5 + 1 <= 10
    assert windows.hit("k", 10, 60.0, 675.0) is None
    assert windows.hit("k", 10, 60.0, 675.0) is None
    wait = windows.hit("k", 10, 60.0, 675.0)
    assert wait is not None and wait > 0
    assert windows.hit("k", 10, 60.0, 675.0 + wait + 0.01) is None  # the wait it named was enough
    # two windows later nothing counts any more
    assert all(windows.hit("k", 10, 60.0, 800.0) is None for _ in range(10))
    assert windows.hit("k", 10, 60.0, 800.0) is not None


def test_idle_keys_are_forgotten_when_there_are_too_many() -> None:
    windows = SlidingWindows()
    windows.MAX_KEYS = 3
    for key in "abc":
        windows.hit(key, 1, 60.0, 0.0)
    windows.hit("d", 1, 60.0, 600.0)  # a, b and c are long idle: dropped to make room
    assert set(windows._windows) == {"d"}


async def test_the_limiter_refuses_past_the_budget_with_retry_after() -> None:
    limiter = RateLimiter(Settings(database_url="postgresql://unused", rate_limit_read="3/minute"))
    for _ in range(3):
        await limiter.hit("alice", "read")
    with pytest.raises(ToolError) as refused:
        await limiter.hit("alice", "read")
    assert refused.value.code is ErrorCode.RATE_LIMITED
    assert 0 < refused.value.details["retryAfterSeconds"] <= 120 and refused.value.details["class"] == "read"
    await limiter.hit("bob", "read")  # positive control: another principal has its own budget
    await limiter.hit("alice", "write")  # and another class its own
