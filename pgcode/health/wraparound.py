"""Health checks on running out of IDs: xid and multixact wraparound, xmin horizon, sequence and integer overflow."""

from __future__ import annotations

from typing import Any

from pgcode.core.context import Row, ToolContext
from pgcode.db.queries import SYSTEM_SCHEMAS, load_query
from pgcode.health._base import (
    SEQUENCES,
    XID_SPACE,
    CheckResult,
    Coverage,
    Status,
    Thresholds,
    check,
    grade,
    items,
    limits,
    result,
    worst,
)
from pgcode.health.vacuum import horizon_holders

AREA = "wraparound"

_OLDEST_TABLES = """
SELECT n.nspname AS schema, c.relname AS table, {age}(c.{column}) AS age,
       CASE WHEN c.oid::bigint = ANY (%(locked)s::bigint[])  -- it would wait on the lock: the relpages estimate
            THEN (SELECT sum(r.relpages) FROM pg_class r WHERE r.oid IN (c.oid, c.reltoastrelid)
                  OR r.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = c.oid))::bigint
                 * current_setting('block_size')::bigint
            ELSE pg_total_relation_size(c.oid) END AS size_bytes
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm', 't') AND {age}(c.{column}) > 0
ORDER BY 3 DESC LIMIT 5
"""


async def _wraparound(ctx: ToolContext, t: Thresholds, cov: Coverage, *, name: str, age_fn: str, db_column: str,
                      rel_column: str, setting: str, what: str) -> CheckResult:
    row = await ctx.fetchone(
        f"SELECT {age_fn}({db_column}) AS age, current_setting('{setting}')::bigint AS freeze_max_age "
        "FROM pg_database WHERE datname = current_database()")
    assert row is not None
    age, fma = int(row["age"]), int(row["freeze_max_age"])
    warning, critical = t.wraparound_warning_ratio * fma, t.wraparound_critical_fraction * XID_SPACE
    status = grade(age, min(warning, critical), critical)
    oldest = await ctx.fetch(_OLDEST_TABLES.format(age=age_fn, column=rel_column), {"locked": cov.locks.oids})
    cov.around(oldest, "size (relpages estimate shown)", "table")
    details = {"age": age, setting: fma, "ratio_to_freeze_max_age": round(age / fma, 4),
               "share_of_id_space": round(age / XID_SPACE, 4), "oldest_tables": oldest}
    return result(name, AREA, status,
                  f"{what} age {age:,} is {age / fma:.0%} of {setting} and {age / XID_SPACE:.1%} of the "
                  f"wraparound limit", age, limits(round(min(warning, critical)), round(critical), what),
                  "VACUUM (FREEZE) the oldest tables (details.oldest_tables); end long transactions, prepared "
                  "transactions and stale replication slots that hold the horizon back",
                  details)


@check("xid_wraparound", AREA, "database", "catalog")
async def xid_wraparound(ctx: ToolContext, t: Thresholds, cov: Coverage) -> CheckResult:
    """Transaction-ID age of this database against autovacuum_freeze_max_age and the 2^31 wraparound limit."""
    return await _wraparound(ctx, t, cov, name="xid_wraparound", age_fn="age", db_column="datfrozenxid",
                             rel_column="relfrozenxid", setting="autovacuum_freeze_max_age",
                             what="transaction ID")


@check("multixact_wraparound", AREA, "database", "catalog")
async def multixact_wraparound(ctx: ToolContext, t: Thresholds, cov: Coverage) -> CheckResult:
    """Multixact age of this database against autovacuum_multixact_freeze_max_age and the wraparound limit."""
    return await _wraparound(ctx, t, cov, name="multixact_wraparound", age_fn="mxid_age", db_column="datminmxid",
                             rel_column="relminmxid", setting="autovacuum_multixact_freeze_max_age",
                             what="multixact")


@check("xmin_horizon", AREA, "sessions", "live")
async def xmin_horizon(ctx: ToolContext, t: Thresholds, cov: Coverage) -> CheckResult:
    """Who holds back the xmin horizon (VACUUM can neither remove newer dead rows nor freeze past it)."""
    holders = await horizon_holders(ctx)
    fma = int(await ctx.fetchval("SELECT current_setting('autovacuum_freeze_max_age')::bigint"))
    statuses: list[Status] = []
    for h in holders:
        seconds = float(h["seconds"]) if h["seconds"] is not None else None
        by_time = grade(seconds, t.xmin_horizon_warning_seconds, t.xmin_horizon_critical_seconds) \
            if seconds is not None else "ok"
        by_age = grade(h["xid_age"] or 0, t.xmin_horizon_warning_xids, fma)
        inactive_slot: Status = "warning" if h["kind"] == "replication slot" and not h["active"] else "ok"
        h["status"] = worst([by_time, by_age, inactive_slot])
        statuses.append(h["status"])
    top = holders[0] if holders else None
    summary = (f"the xmin horizon is {top['xid_age']:,} transactions old, held by {_who(top)}" if top
               else "nothing holds the xmin horizon back")
    advice = (f"{top['action']}: {top['command']}" if top and top["command"] else top["action"] if top else "none")
    return result("xmin_horizon", AREA, worst(statuses), summary, top["xid_age"] if top else 0,
                  {"seconds": limits(t.xmin_horizon_warning_seconds, t.xmin_horizon_critical_seconds, "seconds"),
                   "xids": limits(t.xmin_horizon_warning_xids, fma, "transactions")},
                  advice + "; until then VACUUM leaves the dead rows newer than the horizon in place",
                  items(holders, t, horizon_age=top["xid_age"] if top else 0))


def _who(h: Row) -> str:
    if h["kind"] == "session":
        return (f"pid {h['pid']} ({h['state']}, {h['usename']}, {h['application_name'] or 'no application_name'}, "
                f"transaction open {float(h['seconds'] or 0):g} s)")
    if h["kind"] == "prepared transaction":
        return f"prepared transaction {h['holder']!r} ({float(h['seconds'] or 0):g} s old)"
    if h["kind"] == "replication slot":
        return f"replication slot {h['holder']!r} ({'active' if h['active'] else 'inactive'})"
    return f"standby {h['holder']!r} (hot_standby_feedback)"


def _usage(r: Row) -> float:
    limit = float(r["limit_value"])
    return round(float(r["last_value"]) / limit, 4) if limit else 0.0


@check("sequence_overflow", AREA, "sequences", "catalog")
async def sequence_overflow(ctx: ToolContext, t: Thresholds, cov: Coverage) -> CheckResult:
    """Sequences near their limit: their own maximum or the column type they feed (smallint, integer, identity)."""
    rows = await ctx.fetch(load_query("health_sequences"), {"system": SYSTEM_SCHEMAS, "locked": cov.locks.oids})
    cov.skip_locked(SEQUENCES)  # reading last_value would wait on the lock
    found: list[dict[str, Any]] = []
    for r in rows:
        used = _usage(r)
        if used >= t.overflow_warning_ratio:
            found.append({**r, "used_ratio": used, "remaining": int(r["limit_value"]) - int(r["last_value"])})
    found.sort(key=lambda r: -r["used_ratio"])
    top = found[0]["used_ratio"] if found else max((_usage(r) for r in rows), default=0.0)
    status: Status = grade(top, t.overflow_warning_ratio, t.overflow_critical_ratio)
    names = ", ".join(f"{r['schema']}.{r['sequence']}" for r in found[:3])
    return result("sequence_overflow", AREA, status,
                  f"{len(found)} sequences have used ≥ {t.overflow_warning_ratio:.0%} of their range"
                  + (f" ({names})" if found else ""), top,
                  limits(t.overflow_warning_ratio, t.overflow_critical_ratio, "share of range used"),
                  "widen the column and sequence to bigint (ALTER TABLE ... ALTER COLUMN ... TYPE bigint; "
                  "ALTER SEQUENCE ... AS bigint) before it runs out; inserts fail once it does",
                  items(found, t, sequences_checked=len(rows)))


@check("integer_column_overflow", AREA, "tables", "analyze")
async def integer_column_overflow(ctx: ToolContext, t: Thresholds, cov: Coverage) -> CheckResult:
    """smallint and integer columns whose sampled values (pg_stats) approach the type's limit."""
    rows = await ctx.fetch(load_query("health_integer_columns"), {"system": SYSTEM_SCHEMAS,
                                                                  "min_ratio": t.overflow_warning_ratio})
    for r in rows:
        r["used_ratio"] = round(float(r["largest"]) / float(r["limit_value"]), 4)
    top = rows[0]["used_ratio"] if rows else 0.0
    return result("integer_column_overflow", AREA, grade(top, t.overflow_warning_ratio, t.overflow_critical_ratio),
                  f"{len(rows)} smallint/integer columns hold values ≥ {t.overflow_warning_ratio:.0%} of the "
                  "type's maximum", top,
                  limits(t.overflow_warning_ratio, t.overflow_critical_ratio, "share of range used"),
                  "ALTER TABLE ... ALTER COLUMN ... TYPE bigint (rewrites the table: plan the lock)",
                  items(rows, t, source="pg_stats sample from the last ANALYZE"))
