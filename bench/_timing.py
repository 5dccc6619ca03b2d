"""Timing helpers shared by the benchmarks."""

from __future__ import annotations

import asyncio
import socket
import statistics
import time
from collections.abc import Awaitable, Callable


async def median_ms(fn: Callable[[], Awaitable[object]], runs: int, *, warmup: int = 30, pause_s: float = 0.0) -> float:
    """Median wall time of `fn` in ms over `runs` calls, after a warm-up."""
    for _ in range(min(warmup, runs)):
        await fn()
    samples = []
    for _ in range(runs):
        if pause_s:
            await asyncio.sleep(pause_s)
        t0 = time.perf_counter()
        await fn()
        samples.append((time.perf_counter() - t0) * 1000)
    return statistics.median(samples)


async def interleaved_medians_ms(fns: dict[str, Callable[[], Awaitable[object]]], runs: int, *,
                                 warmup: int = 30,
                                 between: Callable[[], Awaitable[object]] | None = None) -> dict[str, float]:
    """Median wall time of each of `fns` in ms over `runs` calls each, taken in turn (a, b, a, b, ...) so that
    the machine's drift during the run hits every one alike. `between`, awaited untimed after every call, lets
    the work a call leaves for after its answer finish first, so that it is not timed as part of the next."""
    for _ in range(warmup):
        for fn in fns.values():
            await fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(runs):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            await fn()
            samples[name].append((time.perf_counter() - t0) * 1000)
            if between is not None:
                await between()
    return {name: statistics.median(xs) for name, xs in samples.items()}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port
