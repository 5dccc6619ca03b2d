"""Health checks on indexes and constraints: invalid, not validated, duplicate, unused and bloated."""

from __future__ import annotations

from psycopg import sql

from pgcode.core.context import ToolContext
from pgcode.db.queries import SYSTEM_SCHEMAS, load_query
from pgcode.health._base import (
    INDEXES,
    TABLES,
    CheckResult,
    Coverage,
    Status,
    Thresholds,
    bloat,
    check,
    items,
    limits,
    result,
    size,
)
from pgcode.health.probes import stats_window

AREA = "indexes"
_LAST_IDX_SCAN = 160000  # pg_stat_*_indexes.last_idx_scan arrived in PostgreSQL 16

_INVALID = """
SELECT n.nspname AS schema, t.relname AS table, i.relname AS index,
       CASE WHEN NOT g.locked THEN pg_get_indexdef(x.indexrelid) END AS definition,
       x.indisunique AS is_unique, x.indisready AS is_ready,
       CASE WHEN g.locked THEN i.relpages::bigint * current_setting('block_size')::bigint
            ELSE pg_relation_size(x.indexrelid) END AS size_bytes
FROM pg_index x
-- pg_get_indexdef and pg_relation_size would wait on a table or index another session locks
CROSS JOIN LATERAL (SELECT x.indrelid::bigint = ANY (%(locked)s::bigint[])
                           OR x.indexrelid::bigint = ANY (%(locked)s::bigint[]) AS locked) g
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE NOT x.indisvalid AND n.nspname <> ALL (%(system)s)
  -- an index being built CONCURRENTLY right now is invalid until the build ends
  AND NOT EXISTS (SELECT 1 FROM pg_stat_progress_create_index p WHERE p.relid = x.indrelid)
ORDER BY 1, 2, 3
"""


@check("invalid_indexes", AREA, "indexes", "catalog")
async def invalid_indexes(ctx: ToolContext, t: Thresholds, cov: Coverage) -> CheckResult:
    """Indexes left invalid by a failed CREATE INDEX CONCURRENTLY or REINDEX: maintained on writes, never used."""
    rows = await ctx.fetch(_INVALID, {"system": SYSTEM_SCHEMAS, "locked": cov.locks.oids})
    cov.around(rows, "definition, and size (relpages estimate shown)", "index", "table")
    conn = await ctx.conn()
    for r in rows:
        r["fix"] = sql.SQL("DROP INDEX CONCURRENTLY {}; then create it again").format(
            sql.Identifier(r["schema"], r["index"])).as_string(conn)
    names = ", ".join(f"{r['schema']}.{r['index']}" for r in rows[:3])
    return result("invalid_indexes", AREA, "warning" if rows else "ok",
                  f"{len(rows)} invalid indexes" + (f" ({names})" if rows else ""), len(rows), 0,
                  "an invalid index slows every write and serves no read (an invalid unique index still rejects "
                  "duplicates): drop it and build it again, or REINDEX INDEX CONCURRENTLY once the cause (such as "
                  "duplicate values) is fixed", items(rows, t))


_NOT_VALIDATED = """
SELECT n.nspname AS schema, t.relname AS table, k.conname AS constraint,
       CASE k.contype WHEN 'f' THEN 'foreign key' WHEN 'c' THEN 'check' ELSE k.contype::text END AS kind,
       CASE WHEN k.conrelid::bigint <> ALL (%(locked)s::bigint[]) THEN pg_get_constraintdef(k.oid) END AS definition
FROM pg_constraint k
JOIN pg_class t ON t.oid = k.conrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
WHERE NOT k.convalidated AND n.nspname <> ALL (%(system)s)
ORDER BY 1, 2, 3
"""


@check("unvalidated_constraints", AREA, "constraints", "catalog")
async def unvalidated_constraints(ctx: ToolContext, t: Thresholds, cov: Coverage) -> CheckResult:
    """Foreign-key and check constraints added NOT VALID and never validated: existing rows are unchecked."""
    # pg_get_constraintdef waits on a table another session locks: such a constraint is listed without it
    rows = await ctx.fetch(_NOT_VALIDATED, {"system": SYSTEM_SCHEMAS, "locked": cov.locks.oids})
    cov.around(rows, "definition", "table")
    conn = await ctx.conn()
    for r in rows:
        r["fix"] = sql.SQL("ALTER TABLE {} VALIDATE CONSTRAINT {}").format(
            sql.Identifier(r["schema"], r["table"]), sql.Identifier(r["constraint"])).as_string(conn)
    names = ", ".join(f"{r['schema']}.{r['table']}.{r['constraint']}" for r in rows[:3])
    return result("unvalidated_constraints", AREA, "warning" if rows else "ok",
                  f"{len(rows)} constraints not validated" + (f" ({names})" if rows else ""), len(rows), 0,
                  "ALTER TABLE ... VALIDATE CONSTRAINT (details.items[].fix): it checks the existing rows under "
                  "a SHARE UPDATE EXCLUSIVE lock, which does not block reads or writes", items(rows, t))


@check("duplicate_indexes", AREA, "indexes", "catalog")
async def duplicate_indexes(ctx: ToolContext, t: Thresholds, cov: Coverage) -> CheckResult:
    """Duplicate indexes (same definition) and redundant ones (their columns lead another btree index)."""
    rows = await ctx.fetch(load_query("duplicate_indexes"), {
        "schema": None, "table": None, "system": SYSTEM_SCHEMAS, "limit": 10_000, "locked": cov.locks.oids})
    cov.skip_locked(TABLES + INDEXES)  # comparing definitions needs the lock-taking pg_get_expr
    conn = await ctx.conn()
    for r in rows:
        r["fix"] = sql.SQL("DROP INDEX CONCURRENTLY {}").format(sql.Identifier(r["schema"], r["index"])).as_string(conn)
    wasted = sum(r["size_bytes"] for r in rows)
    dupes = sum(1 for r in rows if r["kind"] == "duplicate")
    return result("duplicate_indexes", AREA, "warning" if rows else "ok",
                  f"{dupes} duplicate and {len(rows) - dupes} redundant indexes ({size(wasted)})", len(rows), 0,
                  "drop the redundant index (details.items[].fix) after checking nothing names it in a hint or "
                  "relies on its uniqueness; the index it duplicates (redundant_with) stays",
                  items(rows, t, reclaimable_bytes=wasted))


@check("unused_indexes", AREA, "indexes", "counters")
async def unused_indexes(ctx: ToolContext, t: Thresholds, cov: Coverage) -> CheckResult:
    """Never-scanned indexes over the size limit, largest first, judged against how long statistics have run."""
    last_scan = "s.last_idx_scan" if ctx.server_version >= _LAST_IDX_SCAN else "NULL::timestamptz"
    rows = await ctx.fetch(load_query("unused_indexes").format(last_scan=sql.SQL(last_scan)), {
        "include_unique": False, "min_size": t.unused_index_min_bytes, "schema": None, "table": None,
        "system": SYSTEM_SCHEMAS, "limit": 10_000, "locked": cov.locks.oids})
    cov.around(rows, "definition, and sizes (relpages estimates shown)", "name", "table")
    window = await stats_window(ctx)
    days = window["observed_days"]
    confident = days is None or days >= t.min_observed_days
    total = sum(r["size_bytes"] for r in rows)
    # A young statistics window cannot tell unused from not-yet-used: at most a warning then.
    status: Status = ("ok" if not rows else "critical" if total >= t.unused_index_critical_bytes and confident
                      else "warning")
    note = None if confident else (f"statistics cover only {days:.1f} days: an index used by weekly or monthly "
                                   "jobs may look unused; low confidence")
    conn = await ctx.conn()
    for r in rows:
        r["fix"] = sql.SQL("DROP INDEX CONCURRENTLY {}").format(sql.Identifier(r["schema"], r["name"])).as_string(conn)
    return result("unused_indexes", AREA, status,
                  f"{len(rows)} indexes of at least {size(t.unused_index_min_bytes)} never scanned, {size(total)} "
                  f"in all", total, limits(t.unused_index_min_bytes, t.unused_index_critical_bytes, "bytes"),
                  "confirm on every replica (scans there are not counted here) and over a full business cycle, "
                  "then drop them (details.items[].fix): each one slows writes and takes space",
                  items(rows, t, confidence="ok" if confident else "low", note=note, **window))


@check("index_bloat", AREA, "indexes", "analyze")
async def index_bloat(ctx: ToolContext, t: Thresholds, cov: Coverage) -> CheckResult:
    """B-tree indexes with much estimated wasted space (statistics-based estimate, no scan)."""
    return await bloat(ctx, t, "index_bloat", "bloat_check_indexes", "indexes",
                        "REINDEX INDEX CONCURRENTLY rebuilds an index without blocking writes")

