"""What holds VACUUM back (the xmin horizon and its holders), how fast IDs burn, and per-table autovacuum advice."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from psycopg import sql

from pgcode.core.context import Row, ToolContext
from pgcode.db.queries import load_query
from pgcode.health._base import XID_SPACE
from pgcode.health.blocking import release as release_session

# PostgreSQL refuses new transaction IDs 3 million short of wraparound (xidStopLimit; 40 million before 14).
STOP_MARGIN = 3_000_000


async def horizon_holders(ctx: ToolContext) -> list[Row]:
    """Every holder of the xmin horizon, oldest first, each with the command that releases it."""
    rows = await ctx.fetch(load_query("health_xmin_horizon"))
    conn = await ctx.conn()
    for r in rows:
        r.update(_release(r, conn))
    return rows


def _release(r: Row, conn: Any) -> dict[str, Any]:
    kind = r["kind"]
    if kind == "session":
        root = {"pid": r["pid"], "kind": "session", "state": r["state"], "xact_start": r["xact_start"],
                "single_statement": r["single_statement"], "transaction_seconds": float(r["seconds"] or 0)}
        return release_session(root)
    if kind == "prepared transaction":
        gid = sql.Literal(r["holder"]).as_string(conn)
        return {"action": "commit or roll back the prepared transaction, as its transaction manager intended",
                "command": f"ROLLBACK PREPARED {gid}  -- or COMMIT PREPARED {gid}; run in database {r['database']}"}
    if kind == "replication slot":
        name = sql.Literal(r["holder"]).as_string(conn)
        if r["active"]:
            return {"action": "the slot's consumer is connected but behind: let it catch up, or stop it and drop "
                              "the slot if it is no longer needed",
                    "command": f"SELECT pg_drop_replication_slot({name})  -- only once its consumer is gone"}
        return {"action": "drop the slot if nothing will consume it again (its consumer is not connected)",
                "command": f"SELECT pg_drop_replication_slot({name})"}
    return {"action": "a query on this standby holds the horizon through hot_standby_feedback: end it there, "
                      "or turn hot_standby_feedback off on the standby (its queries may then be cancelled)",
            "command": None}


async def id_burn(ctx: ToolContext, sample_seconds: float) -> dict[str, Any]:
    """Transaction-ID and multixact consumption measured over sample_seconds, and the time each has left until
    autovacuum_freeze_max_age and until the server stops assigning IDs. READ COMMITTED gives each statement
    a fresh snapshot, so two reads of the next ID a few seconds apart measure the rate now."""
    query = ("SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS next_xid, "
             "mxid_age(d.datminmxid) AS mxid_age, age(d.datfrozenxid) AS xid_age, clock_timestamp() AS at, "
             "current_setting('autovacuum_freeze_max_age')::bigint AS freeze_max_age, "
             "current_setting('autovacuum_multixact_freeze_max_age')::bigint AS multixact_freeze_max_age "
             "FROM pg_database d WHERE d.datname = current_database()")
    first = await ctx.fetchone(query)
    started = time.monotonic()
    await asyncio.sleep(sample_seconds)
    second = await ctx.fetchone(query)
    assert first is not None and second is not None
    elapsed = max(time.monotonic() - started, 1e-3)
    xid_rate = max(second["next_xid"] - first["next_xid"], 0) / elapsed
    mxid_rate = max(second["mxid_age"] - first["mxid_age"], 0) / elapsed
    return {"sample_seconds": round(elapsed, 2),
            "xid": _runway(second["xid_age"], xid_rate, second["freeze_max_age"]),
            "multixact": _runway(second["mxid_age"], mxid_rate, second["multixact_freeze_max_age"])}


def _runway(age: int, per_second: float, freeze_max_age: int) -> dict[str, Any]:
    def left(limit: int) -> float | None:
        return round(max(limit - age, 0) / per_second) if per_second > 0 else None

    return {"age": age, "per_second": round(per_second, 2), "per_day": round(per_second * 86400),
            "freeze_max_age": freeze_max_age, "seconds_to_freeze_max_age": left(freeze_max_age),
            "seconds_to_exhaustion": left(XID_SPACE - STOP_MARGIN),
            "note": None if per_second > 0 else "no IDs were consumed while sampling: no runway to compute"}


_CHURN = """
SELECT s.schemaname AS schema, s.relname AS table, s.n_live_tup, s.n_tup_upd, s.n_tup_del,
       (SELECT substring(o FROM '=(.*)$')::float8 FROM unnest(c.reloptions) o
        WHERE o LIKE 'autovacuum\\_vacuum\\_scale\\_factor=%%') AS scale_factor
FROM pg_stat_user_tables s
JOIN pg_class c ON c.oid = s.relid
WHERE s.schemaname <> ALL (%(system)s) AND s.n_live_tup >= %(min_rows)s
"""


async def churn(ctx: ToolContext, system: list[str], min_rows: int) -> list[Row]:
    """Tables of at least min_rows live rows with their update/delete counters and own scale factor."""
    return await ctx.fetch(_CHURN, {"system": system, "min_rows": min_rows})


def autovacuum_advice(tables: list[Row], observed_days: float, scale_factor: float, min_rows: int,
                      conn: Any) -> list[Row]:
    """Per-table autovacuum settings from each table's churn: vacuum about hourly's worth of updates and deletes.

    A big table under the global scale factor waits for (scale_factor x rows) dead tuples, which at its churn
    may take days while dead rows pile up; a scale factor of one hour's churn (1 %-20 %) keeps it in step.
    """
    days = max(observed_days, 1.0)  # a window under a day counts as one: minutes of activity say little
    out = []
    for t in tables:
        rows = int(t["n_live_tup"] or 0)
        churn_per_hour = (int(t["n_tup_upd"] or 0) + int(t["n_tup_del"] or 0)) / days / 24
        if rows < min_rows or churn_per_hour <= 0:
            continue
        current = float(t["scale_factor"] or scale_factor)
        wanted = round(min(max(churn_per_hour / rows, 0.01), 0.2), 3)
        hours = current * rows / churn_per_hour
        if wanted * 2 > current:  # the current setting is close enough
            continue
        out.append({"schema": t["schema"], "table": t["table"], "live_rows": rows,
                    "dead_rows_per_hour": round(churn_per_hour), "current_scale_factor": current,
                    "hours_between_vacuums_now": round(hours, 1), "recommended_scale_factor": wanted,
                    "fix": sql.SQL("ALTER TABLE {} SET (autovacuum_vacuum_scale_factor = {})").format(
                        sql.Identifier(t["schema"], t["table"]), sql.Literal(wanted)).as_string(conn)})
    return sorted(out, key=lambda r: -r["hours_between_vacuums_now"])
