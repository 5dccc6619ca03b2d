"""What the backup planners measure on the server: sizes, write and WAL rates, and what backups need."""

from __future__ import annotations

import asyncio
from typing import Any

from pgcode.core.context import ToolContext
from pgcode.db.queries import load_query

GB = 1024**3


async def activity(ctx: ToolContext, sample_seconds: float) -> dict[str, Any]:
    """One sample of backup_activity, and rates over `sample_seconds` (and since the statistics were reset)."""
    first = await ctx.fetchone(load_query("backup_activity"))
    assert first is not None
    out: dict[str, Any] = {k: first[k] for k in (
        "database", "database_bytes", "cluster_bytes", "tables", "in_recovery", "active_sessions", "wal_level",
        "archive_mode", "archiving_configured", "max_wal_senders", "data_checksums", "summarize_wal",
        "can_replicate")}
    since = (first["sampled_at"] - first["stats_since"]).total_seconds()
    out["stats_seconds"] = round(since, 1)
    out["avg_xacts_per_s"] = round(first["xacts"] / since, 3) if since > 0 else None
    out["avg_tuples_written_per_s"] = round(first["tuples_written"] / since, 3) if since > 0 else None
    if ctx.server_version >= 140000:  # pg_stat_wal appeared in PostgreSQL 14
        wal = await ctx.fetchone("SELECT wal_bytes::bigint AS wal_bytes, "
                                 "extract(epoch FROM clock_timestamp() - stats_reset) AS seconds FROM pg_stat_wal")
        if wal and wal["seconds"]:
            out["avg_wal_bytes_per_s"] = round(float(wal["wal_bytes"]) / float(wal["seconds"]), 1)
    if sample_seconds > 0:
        await asyncio.sleep(sample_seconds)
        second = await ctx.fetchone(load_query("backup_activity"))
        assert second is not None
        elapsed = (second["sampled_at"] - first["sampled_at"]).total_seconds()
        wal_bytes = await ctx.fetchval("SELECT pg_wal_lsn_diff(%s::pg_lsn, %s::pg_lsn)::bigint",
                                       (second["wal_lsn"], first["wal_lsn"]))
        out["sample"] = {
            "seconds": round(elapsed, 3),
            "wal_bytes_per_s": round((wal_bytes or 0) / elapsed, 1),
            "xacts_per_s": round((second["xacts"] - first["xacts"]) / elapsed, 3),
            "tuples_written_per_s": round((second["tuples_written"] - first["tuples_written"]) / elapsed, 3),
        }
    return out


def wal_rate(measured: dict[str, Any]) -> float:
    """The WAL rate to plan with: the larger of the long-run average and the live sample (bytes/s)."""
    rates = [measured.get("avg_wal_bytes_per_s") or 0.0, (measured.get("sample") or {}).get("wal_bytes_per_s", 0.0)]
    return float(max(rates))


def human(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TB"


def dump_compress(major: int, level: int) -> list[str]:
    """pg_dump compression: PostgreSQL 16 added METHOD[:DETAIL]; before, -Z takes a gzip level only."""
    return [f"--compress=gzip:{level}"] if major >= 16 else ["-Z", str(level)]


def basebackup_compress(major: int, level: int, *, tar: bool) -> list[str]:
    """pg_basebackup compression: PostgreSQL 15 added [client-|server-]METHOD[:DETAIL]; before, -Z LEVEL
    (gzip, tar format only)."""
    if major >= 15:
        return [f"--compress=client-gzip:{level}"] if tar else [f"--compress=server-gzip:{level}"]
    return ["-Z", str(level)] if tar else []
