"""monitoring: capacity forecast, system health and alert thresholds derived from the server's settings."""

from __future__ import annotations

import re
from typing import Any, Literal

from psycopg import sql
from pydantic import Field

from pgcode.core import arguments
from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.db.queries import SYSTEM_SCHEMAS, load_query
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import IDENT_MAX
from pgcode.groups._extensions import extension_schema
from pgcode.groups._kcache import kcache_problem
from pgcode.health.locks import locked_relations, set_lock_timeout
from pgcode.health.probes import stats_window
from pgcode.health.vacuum import autovacuum_advice, churn, horizon_holders, id_burn
from pgcode.types import Effect

Status = Literal["ok", "warning", "critical", "unknown"]
_RANK = {"ok": 0, "unknown": 1, "warning": 2, "critical": 3}
XID_LIMIT = 2**31  # transaction IDs wrap around after 2^31; PostgreSQL stops new XIDs 3 million short of it
DAY = 86_400.0

_SETTINGS = (
    "max_connections", "superuser_reserved_connections", "reserved_connections", "shared_buffers", "work_mem",
    "maintenance_work_mem", "effective_cache_size", "autovacuum_freeze_max_age",
    "autovacuum_multixact_freeze_max_age", "statement_timeout", "idle_in_transaction_session_timeout",
    "lock_timeout", "deadlock_timeout", "max_wal_size", "wal_keep_size", "max_slot_wal_keep_size",
    "checkpoint_timeout", "autovacuum_vacuum_scale_factor", "track_io_timing",
)
_UNIT_RE = re.compile(r"^(\d*)(B|kB|MB|GB|TB|ms|s|min|h|d)$")
_UNIT_FACTORS = {"B": 1, "kB": 1024, "MB": 1024**2, "GB": 1024**3, "TB": 1024**4,
                 "ms": 0.001, "s": 1, "min": 60, "h": 3600, "d": DAY}


def _value(setting: str, unit: str | None, vartype: str) -> Any:
    """A pg_settings value in base units: bytes for memory, seconds for time; -1 stays -1 (disabled)."""
    if vartype not in ("integer", "real"):
        return setting
    number = float(setting)
    m = _UNIT_RE.match(unit or "")
    if m is None or number < 0:
        return _round(number)
    return _round(number * (int(m.group(1)) if m.group(1) else 1) * _UNIT_FACTORS[m.group(2)])


async def _settings(ctx: ToolContext) -> dict[str, Any]:
    # reset_val, not setting: pgcode sets statement_timeout locally for each call, and the alerts concern
    # what the server's sessions get.
    rows = await ctx.fetch("SELECT name, reset_val, unit, vartype FROM pg_settings WHERE name = ANY(%s)",
                           (list(_SETTINGS),))
    return {r["name"]: _value(r["reset_val"], r["unit"], r["vartype"]) for r in rows}


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1024 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def _limit(warning: float, critical: float, fraction_w: float, fraction_c: float, setting: float,
           name: str) -> tuple[float, float, str]:
    """Thresholds as fractions of a timeout setting when it is on, fixed defaults otherwise."""
    if setting > 0:
        return setting * fraction_w, setting * fraction_c, f"{fraction_w:.0%} and {fraction_c:.0%} of {name} " \
                                                           f"({setting:g} s), before the server ends them"
    return warning, critical, f"{name} is off, so fixed defaults ({warning:g} s and {critical:g} s)"


def thresholds(s: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Recommended alert thresholds, each with the settings it was derived from."""
    usable = s["max_connections"] - s["superuser_reserved_connections"] - s.get("reserved_connections", 0)
    fma, mfma = s["autovacuum_freeze_max_age"], s["autovacuum_multixact_freeze_max_age"]
    if s["max_slot_wal_keep_size"] > 0:
        wal_cap, wal_basis = s["max_slot_wal_keep_size"], "max_slot_wal_keep_size (a slot past it is invalidated)"
    elif s["wal_keep_size"] > 0:
        wal_cap, wal_basis = s["wal_keep_size"], "wal_keep_size (a standby further behind needs a slot or archive)"
    else:
        wal_cap, wal_basis = s["max_wal_size"], "max_wal_size (no slot or keep limit is set, so WAL grows unbounded)"
    sf = s["autovacuum_vacuum_scale_factor"]
    lq_w, lq_c, lq_basis = _limit(300, 1800, 0.5, 0.9, s["statement_timeout"], "statement_timeout")
    it_w, it_c, it_basis = _limit(60, 300, 0.5, 0.9, s["idle_in_transaction_session_timeout"],
                                  "idle_in_transaction_session_timeout")
    lw_w, lw_c, lw_basis = _limit(30, 300, 0.5, 0.9, s["lock_timeout"], "lock_timeout")
    rows = [
        ("connection_usage_ratio", 0.8, 0.95, "above", "ratio",
         f"share of the {usable:g} connections left to ordinary roles (max_connections {s['max_connections']:g} "
         "minus the reserved ones)"),
        ("cache_hit_ratio", 0.95, 0.90, "below", "ratio",
         f"buffer cache hits over all block requests; shared_buffers is {_size(s['shared_buffers'])}"),
        ("xid_age", min(1.5 * fma, 1.2e9), 1.5e9, "above", "transactions",
         f"warning at 1.5 x autovacuum_freeze_max_age ({fma:,.0f}): anti-wraparound vacuum is falling behind; "
         f"critical at 1.5 billion, about 70% of the 2^31 wraparound limit"),
        ("mxid_age", min(1.5 * mfma, 1.2e9), 1.5e9, "above", "multixacts",
         f"as xid_age, from autovacuum_multixact_freeze_max_age ({mfma:,.0f})"),
        ("long_running_query_seconds", lq_w, lq_c, "above", "seconds", lq_basis),
        ("idle_in_transaction_seconds", it_w, it_c, "above", "seconds", it_basis),
        ("lock_wait_seconds", lw_w, lw_c, "above", "seconds", lw_basis),
        ("replication_lag_bytes", 0.5 * wal_cap, 0.8 * wal_cap, "above", "bytes", f"50% and 80% of {wal_basis}"),
        ("replication_lag_seconds", 60, 300, "above", "seconds", "fixed: no server setting bounds time lag"),
        ("slot_retained_wal_bytes", 0.5 * wal_cap, 0.8 * wal_cap, "above", "bytes", f"50% and 80% of {wal_basis}"),
        ("checkpoint_requested_ratio", 0.3, 0.6, "above", "ratio",
         f"share of checkpoints forced by WAL volume rather than checkpoint_timeout "
         f"({s['checkpoint_timeout']:g} s); raise max_wal_size ({_size(s['max_wal_size'])}) when high"),
        ("dead_tuple_ratio", min(2 * sf, 0.5), min(max(4 * sf, 2 * sf + 0.1), 0.9), "above", "ratio",
         f"dead over live+dead tuples of a table; autovacuum starts near autovacuum_vacuum_scale_factor ({sf:g})"),
        ("deadlocks_per_hour", 1, 10, "above", "count",
         f"fixed; deadlock_timeout ({s['deadlock_timeout']:g} s) is only how long detection waits"),
        ("temp_bytes_per_hour", 1024**3, 10 * 1024**3, "above", "bytes",
         f"fixed; sorts and hashes spill past work_mem ({_size(s['work_mem'])})"),
    ]
    return {name: {"metric": name, "warning": _round(w), "critical": _round(c), "direction": d, "unit": u,
                   "basis": b} for name, w, c, d, u, b in rows}


def _round(x: float) -> float | int:
    return int(x) if float(x).is_integer() else round(x, 4)


def _status(value: float | None, t: dict[str, Any]) -> Status:
    if value is None:
        return "unknown"
    above = t["direction"] == "above"
    if (value >= t["critical"]) if above else (value <= t["critical"]):
        return "critical"
    if (value >= t["warning"]) if above else (value <= t["warning"]):
        return "warning"
    return "ok"


class CapacityPlanningIn(ToolInput):
    horizon_days: int = Field(365, ge=1, le=3650)
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX, description=arguments.SCHEMA_FILTER)
    limit: int = Field(10, ge=1, le=1000)


@tool(group="monitoring", effect=Effect.READ)
async def capacity_planning(ctx: ToolContext, args: CapacityPlanningIn) -> dict[str, Any]:
    """Growth forecast: database, tables, WAL and transaction IDs.

    Size now and in 30, 90 and 365 days (and horizonDays ahead); limit caps the fast-growing tables listed.

    Every rate is an estimate from the server's cumulative counters (rows inserted minus deleted, WAL bytes,
    transactions) divided by the time since they were reset; the server keeps no history. When the counters
    were never reset, the window starts at the server's start, while PG 15+ keeps counters across clean
    restarts, so rates can be overstated. Growth is assumed linear; free disk space is not visible from SQL.
    """
    await set_lock_timeout(ctx)
    db = await ctx.fetchone(
        "SELECT current_database() AS database, pg_database_size(current_database()) AS size_bytes, "
        "d.stats_reset, coalesce(d.stats_reset, pg_postmaster_start_time()) AS observed_since, "
        "extract(epoch FROM clock_timestamp() - coalesce(d.stats_reset, pg_postmaster_start_time()))::float8 "
        "AS seconds, d.xact_commit + d.xact_rollback AS transactions FROM pg_stat_database d "
        "WHERE d.datname = current_database()")
    assert db is not None
    # A window under a day counts as one: minutes of activity say little about a year.
    days = max(db["seconds"] / DAY, 1.0)
    caveats = [
        "rates are counters divided by the observation window; growth is assumed to continue linearly",
        "bytes per row is each table's current size (with indexes and TOAST) over its live rows",
        "free disk space and filesystem limits are not visible from SQL",
    ]
    if db["stats_reset"] is None:
        caveats.append("statistics were never reset: the window starts at the server's start, but counters may "
                       "be older (kept across clean restarts), so rates may be overstated")
    if db["seconds"] < DAY:
        caveats.append(f"the counters cover only {db['seconds'] / 3600:.1f} hours, counted as one day: the "
                       "forecast is rough")
    tables = []
    locks = await locked_relations(ctx)
    for t in await ctx.fetch(load_query("capacity_tables"), {"schema": args.schema_, "locked": locks.oids}):
        rows_per_day = (t["n_tup_ins"] - t["n_tup_del"]) / days
        per_row = t["size_bytes"] / t["n_live_tup"] if t["n_live_tup"] else 0.0
        growth = rows_per_day * per_row
        tables.append({"table": t["table"], "schema": t["schema"], "size_bytes": t["size_bytes"],
                       "live_rows": t["n_live_tup"], "rows_per_day": round(rows_per_day, 2),
                       "bytes_per_row": round(per_row, 1), "bytes_per_day": round(growth),
                       "projected_size_bytes": max(0, round(t["size_bytes"] + growth * args.horizon_days))})
    tables.sort(key=lambda t: t["bytes_per_day"], reverse=True)
    bytes_per_day = sum(t["bytes_per_day"] for t in tables)
    horizons = sorted({30, 90, 365, args.horizon_days})
    s = await _settings(ctx)
    xid_age = await ctx.fetchval("SELECT age(datfrozenxid) FROM pg_database WHERE datname = current_database()")
    tx_per_day = db["transactions"] / days
    return {
        "database": db["database"], "size_bytes": db["size_bytes"], "size_pretty": _size(db["size_bytes"]),
        "observed_since": db["observed_since"], "observed_days": round(db["seconds"] / DAY, 3),
        "window_basis": "stats_reset" if db["stats_reset"] else "server start",
        "confidence": "low" if db["seconds"] < DAY else "medium" if days < 7 else "high",
        "growth": {"rows_per_day": round(sum(t["rows_per_day"] for t in tables), 2),
                   "bytes_per_day": bytes_per_day, "wal_bytes_per_day": await _wal_per_day(ctx),
                   "transactions_per_day": round(tx_per_day, 1)},
        "forecast": [{"days": h, "size_bytes": max(0, round(db["size_bytes"] + bytes_per_day * h)),
                      "size_pretty": _size(max(0, db["size_bytes"] + bytes_per_day * h))} for h in horizons],
        "xid": {"age": xid_age, "autovacuum_freeze_max_age": s["autovacuum_freeze_max_age"],
                # at most one XID per transaction: the soonest the anti-wraparound vacuum is due
                "days_to_freeze_max_age": (round(max(0, s["autovacuum_freeze_max_age"] - xid_age) / tx_per_day, 1)
                                           if tx_per_day > 0 else None)},
        "tables": tables[: args.limit],
        "estimate": True, "caveats": caveats,
    }


async def _wal_per_day(ctx: ToolContext) -> float | None:
    if ctx.server_version < 140000:  # pg_stat_wal is PG 14+
        return None
    row = await ctx.fetchone(
        "SELECT wal_bytes, extract(epoch FROM clock_timestamp() - coalesce(stats_reset, pg_postmaster_start_time()))"
        "::float8 AS seconds FROM pg_stat_wal")
    if row is None:
        return None
    return float(round(float(row["wal_bytes"]) / (max(float(row["seconds"]), 1.0) / DAY)))


class SystemHealthIn(ToolInput):
    pass


# PG 17 moved the checkpoint counters from pg_stat_bgwriter to pg_stat_checkpointer (and renamed them).
_CHECKPOINTS_17 = ("SELECT num_timed AS timed, num_requested AS requested, write_time AS write_time_ms, "
                   "sync_time AS sync_time_ms, buffers_written, stats_reset FROM pg_stat_checkpointer")
_CHECKPOINTS_OLD = ("SELECT checkpoints_timed AS timed, checkpoints_req AS requested, checkpoint_write_time "
                    "AS write_time_ms, checkpoint_sync_time AS sync_time_ms, buffers_checkpoint AS buffers_written, "
                    "stats_reset FROM pg_stat_bgwriter")


@tool(group="monitoring", effect=Effect.READ)
async def system_health(ctx: ToolContext, args: SystemHealthIn) -> dict[str, Any]:
    """Health now: connections, cache, temp files, deadlocks, wraparound.

    Sections: connections against max_connections, cache hit ratio, temp files, deadlocks, checkpoints and
    wraparound.

    Each section has a status (ok, warning, critical) against pg_alert_threshold_set's thresholds; `status` is
    the worst and `findings` lists the sections that are not ok. Counters are since this database's stats
    reset; per-hour rates over less than an hour count it as one hour. CPU time comes from pg_stat_kcache
    when it is installed and loaded; per-process memory and OS load are not visible from SQL (memory shows
    the configured sizes).
    """
    await set_lock_timeout(ctx)
    s = await _settings(ctx)
    th = thresholds(s)
    row = await ctx.fetchone(load_query("system_health"), {
        "long_query_s": th["long_running_query_seconds"]["warning"],
        "idle_tx_s": th["idle_in_transaction_seconds"]["warning"]})
    assert row is not None
    hours = max(row["stats_seconds"] / 3600, 1.0)  # rates over less than an hour would extrapolate noise
    usable = s["max_connections"] - s["superuser_reserved_connections"] - s.get("reserved_connections", 0)
    blocks = row["blks_hit"] + row["blks_read"]
    hit = row["blks_hit"] / blocks if blocks else None
    cp = await ctx.fetchone(_CHECKPOINTS_17 if ctx.server_version >= 170000 else _CHECKPOINTS_OLD)
    assert cp is not None
    cp_total = cp["timed"] + cp["requested"]
    sections: dict[str, dict[str, Any]] = {
        "connections": {"total": row["connections"], "max_connections": int(s["max_connections"]),
                        "usable": int(usable), "used_ratio": round(row["connections"] / usable, 4),
                        "active": row["active"], "idle": row["idle"],
                        "idle_in_transaction": row["idle_in_transaction"],
                        "waiting_on_locks": row["waiting_on_locks"],
                        "long_running_queries": row["long_running_queries"],
                        "long_idle_in_transaction": row["long_idle_in_transaction"],
                        "status": _status(row["connections"] / usable, th["connection_usage_ratio"])},
        "cache": {"hit_ratio": round(hit, 4) if hit is not None else None, "blks_hit": row["blks_hit"],
                  "blks_read": row["blks_read"],
                  # a nearly idle database has no meaningful ratio yet
                  "status": _status(hit, th["cache_hit_ratio"]) if blocks >= 1000 else "ok"},
        "temp": {"files": row["temp_files"], "bytes": row["temp_bytes"],
                 "bytes_per_hour": round(row["temp_bytes"] / hours),
                 "status": _status(row["temp_bytes"] / hours, th["temp_bytes_per_hour"])},
        "deadlocks": {"count": row["deadlocks"], "per_hour": round(row["deadlocks"] / hours, 3),
                      "status": _status(row["deadlocks"] / hours, th["deadlocks_per_hour"])},
        "checkpoints": {**cp, "source": "pg_stat_checkpointer" if ctx.server_version >= 170000
                        else "pg_stat_bgwriter",
                        "requested_ratio": round(cp["requested"] / cp_total, 4) if cp_total else None,
                        "status": _status(cp["requested"] / cp_total, th["checkpoint_requested_ratio"])
                        if cp_total >= 10 else "ok"},
        "wraparound": {"xid_age": row["xid_age"], "oldest_database": row["oldest_xid_database"],
                       "autovacuum_freeze_max_age": int(s["autovacuum_freeze_max_age"]),
                       "pct_to_wraparound": round(100 * row["xid_age"] / XID_LIMIT, 2),
                       "mxid_age": row["mxid_age"],
                       "status": max(_status(row["xid_age"], th["xid_age"]),
                                     _status(row["mxid_age"], th["mxid_age"]), key=_RANK.__getitem__)},
        "io": await _io(ctx, row, s),
        "cpu": await _cpu(ctx),
        "memory": {"shared_buffers_bytes": s["shared_buffers"], "work_mem_bytes": s["work_mem"],
                   "maintenance_work_mem_bytes": s["maintenance_work_mem"],
                   "effective_cache_size_bytes": s["effective_cache_size"],
                   "note": "configured sizes; per-process memory use is not visible from SQL"},
    }
    findings = [{"section": name, "status": sec["status"]} for name, sec in sections.items()
                if sec.get("status") in ("warning", "critical")]
    worst = max((sec.get("status", "ok") for sec in sections.values()), key=_RANK.__getitem__)
    return {"status": worst, "since": row["stats_reset"], "stats_hours": round(row["stats_seconds"] / 3600, 2),
            **sections,
            "findings": findings}


async def _io(ctx: ToolContext, row: dict[str, Any], s: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"blk_read_time_ms": row["blk_read_time"], "blk_write_time_ms": row["blk_write_time"],
                           "track_io_timing": s["track_io_timing"] == "on"}
    if ctx.server_version >= 160000:  # pg_stat_io is PG 16+
        totals = await ctx.fetchone("SELECT sum(reads) AS reads, sum(writes) AS writes, sum(extends) AS extends, "
                                    "sum(hits) AS hits, sum(evictions) AS evictions, sum(fsyncs) AS fsyncs "
                                    "FROM pg_stat_io")
        out["pg_stat_io"] = totals
    return out


async def _cpu(ctx: ToolContext) -> dict[str, Any]:
    problem = await kcache_problem(ctx)
    if problem is not None:
        return {"available": False, "reason": f"CPU time is not visible from SQL without pg_stat_kcache: {problem}"}
    view = sql.Identifier(await extension_schema(ctx, "pg_stat_kcache"), "pg_stat_kcache")
    row = await ctx.fetchone(sql.SQL(
        "SELECT coalesce(sum(plan_user_time + exec_user_time), 0) AS user_time_s, "
        "coalesce(sum(plan_system_time + exec_system_time), 0) AS system_time_s, "
        "coalesce(sum(plan_reads + exec_reads), 0) AS reads_bytes, "
        "coalesce(sum(plan_writes + exec_writes), 0) AS writes_bytes FROM {} WHERE datname = current_database()"
    ).format(view))
    totals = {k: round(float(v), 3) if k.endswith("_s") else v for k, v in (row or {}).items()}
    return {"available": True, "source": "pg_stat_kcache (since its last reset)", **totals}


class AlertThresholdSetIn(ToolInput):
    metrics: list[str] | None = Field(None, max_length=50)


@tool(group="monitoring", effect=Effect.READ)
async def alert_threshold_set(ctx: ToolContext, args: AlertThresholdSetIn) -> dict[str, Any]:
    """Alert thresholds per metric, derived from this server's settings.

    Recommended warning and critical values.

    metrics keeps only those metrics (default: all).

    Each entry says its direction (alert above or below), unit and basis: the settings it comes from
    (max_connections, autovacuum_freeze_max_age, statement_timeout, max_slot_wal_keep_size, ...). Nothing is
    stored or changed; pg_system_health evaluates the current values against the same thresholds.
    """
    await set_lock_timeout(ctx)
    s = await _settings(ctx)
    th = thresholds(s)
    if args.metrics is not None:
        unknown = [m for m in args.metrics if m not in th]
        if unknown:
            raise ToolError(ErrorCode.INVALID_INPUT, f"unknown metric {', '.join(map(repr, unknown))}",
                            details={"metrics": list(th)})
        th = {m: th[m] for m in args.metrics}
    return {"thresholds": list(th.values()),
            "settings": {k: v for k, v in sorted(s.items()) if k != "track_io_timing"},
            "notes": ["memory and time settings are in bytes and seconds",
                      "disk usage needs an OS-level monitor: free space is not visible from SQL"]}



class VacuumAdvisorIn(ToolInput):
    sample_seconds: float = Field(3, ge=0.5, le=10)
    min_rows: int = Field(100_000, ge=0, le=10**12)
    limit: int = Field(20, ge=1, le=1000)


@tool(group="monitoring", effect=Effect.READ)
async def vacuum_advisor(ctx: ToolContext, args: VacuumAdvisorIn) -> dict[str, Any]:
    """What holds VACUUM back, and time left until wraparound.

    Each holder of the xmin horizon comes with its release command. sampleSeconds is how long transaction-ID and
    multixact consumption are measured; minRows keeps per-table autovacuum advice to tables with at least that many
    live rows; limit caps the holders and tables listed.

    Holders are sessions (long or idle-in-transaction), prepared transactions, replication slots and standbys
    with hot_standby_feedback, oldest first. The ID burn rate is measured over sampleSeconds (two reads of
    the next transaction ID), and gives the time left until autovacuum_freeze_max_age (an anti-wraparound
    vacuum starts) and until the server stops assigning IDs. Per-table advice sets
    autovacuum_vacuum_scale_factor to about an hour of each big table's updates and deletes.
    """
    await set_lock_timeout(ctx)
    holders = await horizon_holders(ctx)
    burn = await id_burn(ctx, args.sample_seconds)
    window = await stats_window(ctx)
    s = await _settings(ctx)
    feedback = await ctx.fetchval("SELECT current_setting('hot_standby_feedback')")
    advice = autovacuum_advice(await churn(ctx, SYSTEM_SCHEMAS, args.min_rows), window["observed_days"] or 1.0,
                               float(s["autovacuum_vacuum_scale_factor"]), args.min_rows, await ctx.conn())
    top = holders[0] if holders else None
    return {"horizon": {"age": top["xid_age"] if top else 0, "held_by": top, "holders": holders[: args.limit],
                        "count": len(holders)},
            "hot_standby_feedback": feedback, "burn": burn,
            "autovacuum": {"tables": advice[: args.limit], "count": len(advice),
                           "global_scale_factor": s["autovacuum_vacuum_scale_factor"],
                           "observed_days": window["observed_days"],
                           "basis": "updates and deletes per hour since the statistics were reset"}}
