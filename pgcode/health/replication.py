"""Health checks on replication and WAL: standby lag, slots and retained WAL, archiving, checkpoint pressure."""

from __future__ import annotations

from psycopg import sql

from pgcode.core.context import ToolContext
from pgcode.db.queries import load_query
from pgcode.health._base import (
    CheckResult,
    Coverage,
    Status,
    Thresholds,
    check,
    grade,
    items,
    limits,
    result,
    size,
    worst,
)
from pgcode.health.probes import checkpoint_stats

_SLOT_EXTRA = 170000  # PostgreSQL 17 added pg_replication_slots.inactive_since and invalidation_reason


@check("replication_lag", "replication", "standbys", "live")
async def replication_lag(ctx: ToolContext, t: Thresholds, cov: Coverage) -> CheckResult:
    """Standbys streaming from this server, by replay lag in bytes and in seconds."""
    rows = await ctx.fetch(load_query("replication_replicas"))
    statuses: list[Status] = []
    for r in rows:
        r["status"] = worst([
            grade(r["replay_lag_bytes"], t.replication_lag_warning_bytes, t.replication_lag_critical_bytes),
            grade(r["replay_lag_seconds"] or 0.0, t.replication_lag_warning_seconds,
                  t.replication_lag_critical_seconds)])
        statuses.append(r["status"])
    rows.sort(key=lambda r: -(r["replay_lag_bytes"] or 0))
    top = rows[0]["replay_lag_bytes"] if rows else None
    summary = (f"{len(rows)} standbys; the furthest behind is {size(top)} behind in replay" if rows
               else "no standby is streaming from this server")
    return result("replication_lag", "replication", worst(statuses), summary, top,
                  {"bytes": limits(t.replication_lag_warning_bytes, t.replication_lag_critical_bytes, "bytes"),
                   "seconds": limits(t.replication_lag_warning_seconds, t.replication_lag_critical_seconds,
                                     "seconds")},
                  "check the standby's disk and CPU, the network, and long queries on the standby that hold replay "
                  "back (max_standby_streaming_delay, hot_standby_feedback)", items(rows, t))


@check("replication_slots", "replication", "replication slots", "live")
async def replication_slots(ctx: ToolContext, t: Thresholds, cov: Coverage) -> CheckResult:
    """Replication slots that are inactive or retain much WAL (WAL a slot retains is never removed)."""
    extra = (sql.SQL(", s.inactive_since, s.invalidation_reason") if ctx.server_version >= _SLOT_EXTRA
             else sql.SQL(""))
    rows = await ctx.fetch(load_query("replication_slots").format(extra=extra))
    statuses: list[Status] = []
    flagged = []
    for r in rows:
        status = grade(r["retained_wal_bytes"] or 0, t.slot_wal_warning_bytes, t.slot_wal_critical_bytes)
        if r["wal_status"] == "lost":  # the WAL it needs is gone: the slot's consumer cannot resume
            status = "critical"
        elif not r["active"] or r["wal_status"] == "unreserved":
            status = worst([status, "warning"])
        r["status"] = status
        statuses.append(status)
        if status != "ok":
            flagged.append(r)
    retained = sum(r["retained_wal_bytes"] or 0 for r in rows)
    inactive = sum(1 for r in rows if not r["active"])
    return result("replication_slots", "replication", worst(statuses),
                  f"{len(rows)} replication slots, {inactive} inactive, retaining {size(retained)} of WAL",
                  retained, limits(t.slot_wal_warning_bytes, t.slot_wal_critical_bytes, "bytes of retained WAL"),
                  "drop slots nothing will consume again (pg_drop_replication_slot, needs admin), and set "
                  "max_slot_wal_keep_size so a forgotten slot cannot fill the disk",
                  items(flagged, t, slots=len(rows), inactive=inactive))


_ARCHIVER = """
SELECT current_setting('archive_mode') AS archive_mode, archived_count, last_archived_wal, last_archived_time,
       failed_count, last_failed_wal, last_failed_time, stats_reset,
       last_failed_time IS NOT NULL AND (last_archived_time IS NULL OR last_failed_time > last_archived_time)
           AS failing
FROM pg_stat_archiver
"""


@check("archiver", "wal", "server counters", "counters")
async def archiver(ctx: ToolContext, t: Thresholds, cov: Coverage) -> CheckResult:
    """WAL archiving: whether archive_command/archive_library is failing now, and failures since the reset."""
    row = await ctx.fetchone(_ARCHIVER)
    assert row is not None
    if row["archive_mode"] == "off":
        return result("archiver", "wal", "ok", "WAL archiving is off", 0, None, "none", row)
    status: Status = "critical" if row["failing"] else "warning" if row["failed_count"] else "ok"
    return result("archiver", "wal", status,
                  f"{row['failed_count']} archive failures since {row['stats_reset']}"
                  + ("; the last attempt failed" if row["failing"] else ""), row["failed_count"], 0,
                  "read the server log for the archive_command error: WAL piles up in pg_wal until archiving "
                  "succeeds, and point-in-time recovery has a gap", row)


@check("checkpoints", "wal", "server counters", "counters")
async def checkpoints(ctx: ToolContext, t: Thresholds, cov: Coverage) -> CheckResult:
    """Checkpoints forced by WAL volume rather than run on schedule (checkpoint pressure)."""
    # checkpoint_stats reads pg_stat_checkpointer on PostgreSQL 17+ (which took over the checkpoint
    # counters) and pg_stat_bgwriter before, under one set of names.
    cp = await checkpoint_stats(ctx)
    total = cp["checkpoints_timed"] + cp["checkpoints_requested"]
    ratio = cp["requested_ratio"]
    status = grade(ratio, t.checkpoint_warning_ratio, t.checkpoint_critical_ratio) if total >= t.checkpoint_min_count \
        else "ok"
    cp["source"] = "pg_stat_checkpointer" if ctx.server_version >= 170000 else "pg_stat_bgwriter"
    cp["max_wal_size"] = await ctx.fetchval("SELECT current_setting('max_wal_size')")
    return result("checkpoints", "wal", status,
                  f"{cp['checkpoints_requested']} of {total} checkpoints were requested rather than timed"
                  + ("" if total >= t.checkpoint_min_count else " (too few to judge)"), ratio,
                  limits(t.checkpoint_warning_ratio, t.checkpoint_critical_ratio, "share of checkpoints requested"),
                  "raise max_wal_size so checkpoints come from checkpoint_timeout, not from WAL volume: frequent "
                  "checkpoints multiply full-page writes and I/O", cp)
