"""Health snapshots: a report's figures measured now, kept in pgcode.health_snapshots to compare with later.

Measuring never waits on a lock: a relation another session locks is sized from pg_class.relpages. The store
lives behind row-level security, so its statements run as the connecting role (tools declare own_sql).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from psycopg import sql
from psycopg.types.json import Jsonb

from pgcode.core.context import Row, ToolContext
from pgcode.db.queries import SYSTEM_SCHEMAS, load_query
from pgcode.errors import ErrorCode, ToolError
from pgcode.health._base import CheckResult
from pgcode.health.locks import Locks
from pgcode.types import Scope

FIGURES_VERSION = 1
TOP = 20  # the largest tables and indexes, and the top queries, a snapshot keeps unless told otherwise
_OBJECTS_KEPT = 100  # object names kept per finding (a check lists at most maxItems of them)
_NAME_KEYS = ("index", "name", "sequence", "constraint", "function", "table", "slot_name", "role", "setting",
              "gid", "application_name")

_IDS = """
SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint AS next_xid,
       age(d.datfrozenxid)::bigint AS xid_age, mxid_age(d.datminmxid)::bigint AS mxid_age,
       (SELECT max(age(datfrozenxid)) FROM pg_database)::bigint AS cluster_xid_age,
       current_setting('autovacuum_freeze_max_age')::bigint AS freeze_max_age,
       current_setting('autovacuum_multixact_freeze_max_age')::bigint AS multixact_freeze_max_age,
       clock_timestamp() AS at
FROM pg_database d WHERE d.datname = current_database()
"""
_TUPLES = """
SELECT s.schemaname AS schema, s.relname AS "table", s.n_live_tup AS live, s.n_dead_tup AS dead
FROM pg_stat_user_tables s JOIN unnest(%s::text[], %s::text[]) AS w(schema, name)
  ON w.schema = s.schemaname AND w.name = s.relname
"""
_TABLE_COUNT = """
SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname <> ALL (%s)
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'
"""
_COLUMNS = "id, taken_at, principal, database, status"


@asynccontextmanager
async def as_reader(ctx: ToolContext) -> AsyncIterator[None]:
    """Measure as a read call would (pgcode_read), so a snapshot holds what the report sees; then back to the
    connecting role, which may read and write pgcode's schema."""
    role = ctx.rt.roles.role_for(Scope.READ)
    if role is None:
        yield
        return
    await ctx.execute(sql.SQL("SET LOCAL ROLE {}").format(sql.Identifier(role)))
    try:
        yield
    finally:
        await ctx.execute("SET LOCAL ROLE NONE")


async def measure(ctx: ToolContext, locks: Locks, top: int) -> dict[str, Any]:
    """The largest tables (sizes, live and dead tuples, estimated bloat), the largest indexes, and the ID ages."""
    tables = await ctx.fetch(load_query("table_sizes"), {"schema": None, "include_system": False, "min_bytes": 0,
                                                         "limit": top, "locked": locks.oids})
    tuples = {(r["schema"], r["table"]): r for r in await ctx.fetch(
        _TUPLES, ([t["schema"] for t in tables], [t["table"] for t in tables]))}
    bloat = {(r["schema"], r["table"]): r for r in await ctx.fetch(load_query("bloat_check_tables"), {
        "schema": None, "table": None, "system": SYSTEM_SCHEMAS, "min_size": 0, "min_ratio": 0, "limit": 1_000_000})}
    table_items = []
    for t in tables:
        key = (t["schema"], t["table"])
        stats, waste = tuples.get(key, {}), bloat.get(key, {})
        table_items.append({
            "schema": t["schema"], "table": t["table"], "total_bytes": t["size_bytes"], "table_bytes": t["table_bytes"],
            "index_bytes": t["index_bytes"], "toast_bytes": t["toast_bytes"], "estimated": t["size_estimated"],
            "live_tuples": stats.get("live"), "dead_tuples": stats.get("dead"),
            "bloat_bytes": waste.get("bloat_bytes"),
            "bloat_ratio": float(waste["bloat_ratio"]) if waste.get("bloat_ratio") is not None else None})
    indexes = await ctx.fetch(load_query("health_snapshot_indexes"), {"system": SYSTEM_SCHEMAS, "limit": top,
                                                                      "locked": locks.oids})
    ids = await ctx.fetchone(_IDS)
    assert ids is not None
    ids["at"] = ids["at"].isoformat()
    return {
        "tables": {"count": await ctx.fetchval(_TABLE_COUNT, (SYSTEM_SCHEMAS,)), "items": table_items},
        "indexes": {"count": indexes[0]["total"] if indexes else 0,
                    "items": [{k: r[k] for k in ("schema", "table", "index", "bytes", "estimated")} for r in indexes]},
        "ids": ids,
    }


def checks(results: list[CheckResult]) -> dict[str, dict[str, Any]]:
    """Every check's verdict as a snapshot keeps it: status, summary, value, and the objects a finding names."""
    out: dict[str, dict[str, Any]] = {}
    for r in results:
        entry: dict[str, Any] = {"area": r["area"], "status": r["status"], "summary": r["summary"]}
        value = r["value"]
        if isinstance(value, int | float) and not isinstance(value, bool):
            entry["value"] = value
            entry["higher_is_worse"] = higher_is_worse(r["threshold"])
        if r["status"] in ("warning", "critical"):
            details = r["details"] if isinstance(r["details"], dict) else {}
            rows = details.get("items") or details.get("findings") or []
            names = [n for n in (object_name(row) for row in rows if isinstance(row, dict)) if n]
            entry["objects"] = sorted(set(names))[:_OBJECTS_KEPT]
            entry["count"] = int(details.get("count", len(rows)))
        out[r["check"]] = entry
    return out


def higher_is_worse(threshold: Any) -> bool:
    """Whether a larger value is the worse one: critical above warning (bloat) or below it (cache hit ratio)."""
    if isinstance(threshold, dict):
        w, c = threshold.get("warning"), threshold.get("critical")
        if isinstance(w, int | float) and isinstance(c, int | float):
            return bool(c >= w)
    return True


def object_name(row: dict[str, Any]) -> str | None:
    """The name a finding's row stands for: schema.index, schema.table.column, a slot, a role, pid 123 (app)."""
    for key in _NAME_KEYS:
        if row.get(key) not in (None, ""):
            name = str(row[key])
            if key == "table" and row.get("column"):
                name += f".{row['column']}"
            if key == "constraint" and row.get("table"):  # constraint names are unique per table only
                name = f"{row['table']}.{name}"
            if key == "application_name":
                return f"pid {row['pid']} ({name})" if row.get("pid") else name
            return f"{row['schema']}.{name}" if row.get("schema") else name
    pid = row.get("pid") or row.get("blocked_pid")
    return f"pid {pid}" if pid else None


# -------------------------------------------------------------------------------------------- the store

def require_store(ctx: ToolContext) -> None:
    """Saving needs pgcode's schema written at startup; a server that could not migrate says so."""
    if not ctx.rt.schema_ready:
        raise ToolError(ErrorCode.NOT_FOUND, "health snapshots are off: pgcode's schema cannot be written here",
                        hint="run pgcode with a role that may create the pgcode schema, on a writable server")


async def _store_exists(ctx: ToolContext) -> bool:
    return bool(await ctx.fetchval("SELECT to_regclass('pgcode.health_snapshots') IS NOT NULL"))


async def save(ctx: ToolContext, database: str, status: str, figures: dict[str, Any]) -> tuple[Row, int]:
    """Store a snapshot taken at its ID sample's time; then delete those past the retention (days and count).
    Returns the new row and how many were deleted."""
    row = await ctx.fetchone(
        f"INSERT INTO pgcode.health_snapshots (taken_at, principal, database, status, figures) "
        f"VALUES (%s, %s, %s, %s, %s) RETURNING {_COLUMNS}",
        (figures["ids"]["at"], ctx.principal.subject, database, status, Jsonb(figures)))
    assert row is not None
    deleted = await ctx.execute(
        "DELETE FROM pgcode.health_snapshots WHERE taken_at < now() - make_interval(days => %(days)s) "
        "OR id NOT IN (SELECT id FROM pgcode.health_snapshots ORDER BY taken_at DESC, id DESC LIMIT %(keep)s)",
        {"days": ctx.settings.health_snapshot_retention_days, "keep": ctx.settings.health_snapshot_max_count})
    return row, deleted


async def get(ctx: ToolContext, snapshot_id: int) -> Row:
    """One snapshot with its figures; NOT_FOUND naming the id otherwise."""
    row = await ctx.fetchone(f"SELECT {_COLUMNS}, figures FROM pgcode.health_snapshots WHERE id = %s",
                             (snapshot_id,)) if await _store_exists(ctx) else None
    if row is None:
        raise ToolError(ErrorCode.NOT_FOUND, f"health snapshot {snapshot_id} does not exist",
                        hint="pg_health_snapshot_list lists the snapshots kept", details={"id": snapshot_id})
    return row


async def baseline(ctx: ToolContext, since: dt.timedelta, before: dt.datetime, exclude: int | None = None) -> Row:
    """The newest snapshot taken at least `since` before `before`; when none is that old, the oldest taken before
    `before`. `chosen` says which rule picked it."""
    rows = await ctx.fetch(
        f"SELECT * FROM ((SELECT {_COLUMNS}, figures, 'older' AS rule FROM pgcode.health_snapshots "
        " WHERE taken_at <= %(cut)s AND id IS DISTINCT FROM %(exclude)s ORDER BY taken_at DESC, id DESC LIMIT 1) "
        f"UNION ALL (SELECT {_COLUMNS}, figures, 'within' FROM pgcode.health_snapshots "
        " WHERE taken_at < %(before)s AND id IS DISTINCT FROM %(exclude)s ORDER BY taken_at, id LIMIT 1)) found "
        "ORDER BY rule = 'within' LIMIT 1",
        {"cut": before - since, "before": before, "exclude": exclude}) if await _store_exists(ctx) else []
    if not rows:
        raise ToolError(ErrorCode.NOT_FOUND, "no health snapshot to compare with",
                        hint="save one with `pgcode report --save` or pg_health_snapshot")
    row = rows[0]
    span = describe_span(since)
    row["chosen"] = (f"the newest snapshot at least {span} old" if row.pop("rule") == "older"
                     else f"no snapshot is {span} old: the oldest one, taken within the last {span}")
    return row


def describe_span(span: dt.timedelta) -> str:
    """7 days, 12 hours, 30 minutes."""
    seconds = span.total_seconds()
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if (seconds >= size and seconds % size == 0) or unit == "minute":
            n = seconds / size
            return f"{n:g} {unit}{'' if n == 1 else 's'}"
    raise AssertionError("unreachable")


async def list_snapshots(ctx: ToolContext, limit: int, offset: int) -> dict[str, Any]:
    """Snapshots newest first, without their figures: id, when, who, status, finding counts."""
    if not await _store_exists(ctx):
        return {"snapshots": [], "count": 0, "truncated": False}
    rows = await ctx.fetch(
        f"SELECT {_COLUMNS}, figures->'summary' AS summary, count(*) OVER () AS total "
        "FROM pgcode.health_snapshots ORDER BY taken_at DESC, id DESC LIMIT %s OFFSET %s", (limit, offset))
    total = rows[0]["total"] if rows else await ctx.fetchval("SELECT count(*) FROM pgcode.health_snapshots")
    for r in rows:
        r.pop("total")
    return {"snapshots": rows, "count": total, "truncated": offset + len(rows) < total}
