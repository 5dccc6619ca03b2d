"""Server facts that health checks and monitoring tools read the same way on every version: ratios, counters."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pgcode.core.context import Row, ToolContext

_PERSISTENT_STATS = 150000  # from PostgreSQL 15 statistics survive a clean restart; before, they start over
_CHECKPOINTER = 170000  # PostgreSQL 17 moved checkpoint counters from pg_stat_bgwriter to pg_stat_checkpointer


def ratio(part: float | int | None, whole: float | int | None, digits: int = 4) -> float | None:
    """part / whole rounded, or None when nothing was measured (whole is 0 or unknown)."""
    if part is None or not whole:
        return None
    return round(float(part) / float(whole), digits)


def hit_ratio(hit: float | int | None, read: float | int | None) -> float | None:
    """Buffer cache hit ratio 0-1: hits / (hits + reads); None before any block was touched."""
    return ratio(hit or 0, (hit or 0) + (read or 0))


async def stats_window(ctx: ToolContext) -> dict[str, Any]:
    """Since when the usage counters of this database run: the last reset, or (before PG 15) the last start."""
    row = await ctx.fetchone("SELECT stats_reset, pg_postmaster_start_time() AS started, now() AS now "
                             "FROM pg_stat_database WHERE datname = current_database()")
    assert row is not None
    since: dt.datetime | None = row["stats_reset"]
    if ctx.server_version < _PERSISTENT_STATS and (since is None or row["started"] > since):
        since = row["started"]
    days = (row["now"] - since).total_seconds() / 86400 if since else None
    return {"stats_reset": row["stats_reset"], "observed_since": since,
            "observed_days": round(days, 2) if days is not None else None}


async def checkpoint_stats(ctx: ToolContext) -> Row:
    """Checkpoint and background-writer counters under one set of names on every version."""
    if ctx.server_version >= _CHECKPOINTER:
        row = await ctx.fetchone(
            "SELECT c.num_timed AS checkpoints_timed, c.num_requested AS checkpoints_requested, "
            "c.write_time AS write_time_ms, c.sync_time AS sync_time_ms, c.buffers_written AS buffers_checkpoint, "
            "b.buffers_clean, b.maxwritten_clean, b.buffers_alloc, NULL::bigint AS buffers_backend, "
            "c.stats_reset FROM pg_stat_checkpointer c CROSS JOIN pg_stat_bgwriter b")
    else:
        row = await ctx.fetchone(
            "SELECT checkpoints_timed, checkpoints_req AS checkpoints_requested, "
            "checkpoint_write_time AS write_time_ms, checkpoint_sync_time AS sync_time_ms, buffers_checkpoint, "
            "buffers_clean, maxwritten_clean, buffers_alloc, buffers_backend, stats_reset FROM pg_stat_bgwriter")
    assert row is not None
    row["requested_ratio"] = ratio(row["checkpoints_requested"],
                                   row["checkpoints_timed"] + row["checkpoints_requested"])
    return row


async def connection_counts(ctx: ToolContext) -> Row:
    """Client connections by state, with max_connections and the reserved slots (PG 16 added reserved_connections)."""
    row = await ctx.fetchone(
        "SELECT count(*) AS total, count(*) FILTER (WHERE state = 'active') AS active, "
        "count(*) FILTER (WHERE state = 'idle') AS idle, "
        "count(*) FILTER (WHERE state LIKE 'idle in transaction%%') AS idle_in_transaction, "
        "count(*) FILTER (WHERE wait_event_type = 'Lock') AS waiting_on_locks, "
        "coalesce(max(extract(epoch FROM now() - state_change)) FILTER (WHERE state LIKE 'idle in transaction%%'), 0) "
        "AS longest_idle_in_transaction_seconds, "
        "current_setting('max_connections')::int AS max_connections, "
        "current_setting('superuser_reserved_connections')::int "
        "+ coalesce(current_setting('reserved_connections', true)::int, 0) AS reserved_connections "
        "FROM pg_stat_activity WHERE backend_type = 'client backend'")
    assert row is not None
    usable = row["max_connections"] - row["reserved_connections"]
    row["usage_ratio"] = ratio(row["total"], usable)
    return row
