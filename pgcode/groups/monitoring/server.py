"""monitoring: replication, version, settings, uptime and recovery state of the server."""

from __future__ import annotations

from typing import Annotated, Any

from psycopg import sql
from pydantic import Field

from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.db.queries import load_query
from pgcode.groups._common import IDENT_MAX
from pgcode.health.locks import set_lock_timeout
from pgcode.types import Effect


class ReplicationStatusIn(ToolInput):
    pass


_WAL_RECEIVER = (
    "SELECT status, sender_host, sender_port, slot_name, flushed_lsn::text AS flushed_lsn, "
    "latest_end_lsn::text AS latest_end_lsn, latest_end_time, last_msg_receipt_time FROM pg_stat_wal_receiver")


@tool(group="monitoring", effect=Effect.READ)
async def replication_status(ctx: ToolContext, args: ReplicationStatusIn) -> dict[str, Any]:
    """Standbys with their replication lag, and every replication slot.

    Standbys are those streaming from this server, with their lag in bytes and seconds.

    slots include inactive ones, with the WAL each retains (retained_wal_bytes) and wal_status. On a
    standalone server both lists are empty and `note` says so; on a standby, wal_receiver and standby_lag
    describe its upstream. Byte lags are exact (LSN differences); time lags are as the standby last reported.
    """
    await set_lock_timeout(ctx)
    in_recovery = bool(await ctx.fetchval("SELECT pg_is_in_recovery()"))
    lsn = await ctx.fetchval("SELECT (CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() "
                             "ELSE pg_current_wal_lsn() END)::text")
    replicas = await ctx.fetch(load_query("replication_replicas"))
    # PG 17 added inactive_since (when an unused slot was last released) and invalidation_reason.
    extra = (sql.SQL(", s.inactive_since, s.invalidation_reason") if ctx.server_version >= 170000
             else sql.SQL(""))
    slots = await ctx.fetch(load_query("replication_slots").format(extra=extra))
    out: dict[str, Any] = {
        "role": "standby" if in_recovery else "primary", "in_recovery": in_recovery, "wal_lsn": lsn,
        "replicas": replicas, "slots": slots,
        "inactive_slots": sum(1 for s in slots if not s["active"]),
        "wal_receiver": None, "standby_lag": None,
    }
    if in_recovery:
        out["wal_receiver"] = await ctx.fetchone(_WAL_RECEIVER)
        out["standby_lag"] = await ctx.fetchone(
            "SELECT pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint "
            "AS receive_replay_lag_bytes, extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())"
            "::float8 AS replay_lag_seconds, pg_last_xact_replay_timestamp() AS last_replayed_at")
    if not replicas and not slots:
        out["note"] = ("no standby is streaming from this server and it has no replication slots"
                       + ("" if in_recovery else ": a standalone server"))
    return out


class ServerVersionIn(ToolInput):
    pass


@tool(group="monitoring", effect=Effect.READ)
async def server_version(ctx: ToolContext, args: ServerVersionIn) -> dict[str, Any]:
    """The PostgreSQL version: full string, number, major and minor.

    Returns the version() string, server_version, server_version_num, major and minor.
    """
    await set_lock_timeout(ctx)
    row = await ctx.fetchone("SELECT version() AS version, current_setting('server_version') AS server_version, "
                             "current_setting('server_version_num')::int AS server_version_num")
    assert row is not None
    num = row["server_version_num"]
    row.update(major=num // 10000, minor=num % 10000, installed_extensions=dict(ctx.caps.installed))
    return row


class ShowSettingsIn(ToolInput):
    pattern: str | None = Field(None, min_length=1, max_length=200,
                                description="Part of the name, any case; * or % wildcards")
    names: list[Annotated[str, Field(max_length=IDENT_MAX)]] | None = Field(None, max_length=500)
    category: str | None = Field(None, min_length=1, max_length=200)
    changed_only: bool = False
    pending_restart_only: bool = False
    limit: int = Field(500, ge=1, le=2000)


def _like(text: str) -> str:
    escaped = text.replace("\\", "\\\\").replace("_", "\\_").replace("*", "%")
    return f"%{escaped}%"


@tool(group="monitoring", effect=Effect.READ)
async def show_settings(ctx: ToolContext, args: ShowSettingsIn) -> list[dict[str, Any]]:
    """Server settings with value, unit, source and pending_restart.

    Each also has its category, context and defaults.

    Defaults are included. pattern matches part of the name, case-insensitively, with * or % matching anything (e.g.
    mem, autovacuum*scale); names picks exactly those settings; category matches part of the category (e.g. Memory,
    Vacuum); changedOnly keeps settings not at their built-in default; pendingRestartOnly those changed in the files
    that need a restart.

    value is what SHOW prints (e.g. 4MB); setting and unit are the raw pg_settings pair. source says where a
    value comes from (default, configuration file, database, user, ...). Note that pgcode's own connection
    sets statement_timeout for each call, so that one shows pgcode's limit.
    """
    await set_lock_timeout(ctx)
    return await ctx.fetch(load_query("show_settings"), {
        "pattern": _like(args.pattern) if args.pattern else None, "names": args.names,
        "category": _like(args.category) if args.category else None, "changed_only": args.changed_only,
        "pending_only": args.pending_restart_only, "limit": args.limit})


class UptimeIn(ToolInput):
    pass


@tool(group="monitoring", effect=Effect.READ)
async def uptime(ctx: ToolContext, args: UptimeIn) -> dict[str, Any]:
    """Server start time, uptime, and configuration load time.

    Uptime is given in seconds and as text.
    """
    await set_lock_timeout(ctx)
    row = await ctx.fetchone(
        "SELECT pg_postmaster_start_time() AS started_at, "
        "extract(epoch FROM clock_timestamp() - pg_postmaster_start_time())::float8 AS uptime_seconds, "
        "date_trunc('second', clock_timestamp() - pg_postmaster_start_time())::text AS uptime, "
        "pg_conf_load_time() AS config_loaded_at, clock_timestamp() AS now")
    assert row is not None
    row["uptime_seconds"] = round(row["uptime_seconds"], 3)
    return row


class RecoveryStatusIn(ToolInput):
    pass


@tool(group="monitoring", effect=Effect.READ)
async def recovery_status(ctx: ToolContext, args: RecoveryStatusIn) -> dict[str, Any]:
    """Whether the server is a standby in recovery, and its replay lag."""
    await set_lock_timeout(ctx)
    if not await ctx.fetchval("SELECT pg_is_in_recovery()"):
        return {"in_recovery": False, "role": "primary",
                "note": "this server is not in recovery: it accepts writes (a primary or standalone server)"}
    row = await ctx.fetchone(
        "SELECT pg_last_wal_receive_lsn()::text AS last_receive_lsn, pg_last_wal_replay_lsn()::text "
        "AS last_replay_lsn, pg_last_xact_replay_timestamp() AS last_replayed_at, "
        "extract(epoch FROM clock_timestamp() - pg_last_xact_replay_timestamp())::float8 AS replay_lag_seconds, "
        "pg_wal_lsn_diff(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::bigint AS replay_backlog_bytes, "
        "pg_is_wal_replay_paused() AS replay_paused")
    assert row is not None
    if ctx.server_version >= 140000:  # PG 14: a pause can be requested but not yet in effect
        row["pause_state"] = await ctx.fetchval("SELECT pg_get_wal_replay_pause_state()")
    return {"in_recovery": True, "role": "standby", **row,
            "wal_receiver": await ctx.fetchone(_WAL_RECEIVER),
            "note": "replay_lag_seconds counts from the last replayed transaction, so it also grows while the "
                    "primary is idle"}

