"""Health checks on tables: bloat, dead tuples, vacuum/analyze staleness, seq-scan heavy tables, unindexed FKs."""

from __future__ import annotations

from psycopg import sql

from pgcode.core.context import ToolContext
from pgcode.db.queries import SYSTEM_SCHEMAS, load_query
from pgcode.health._base import CheckResult, Coverage, Thresholds, bloat, check, grade, items, limits, result

AREA = "tables"


@check("table_bloat", AREA, "tables", "analyze")
async def table_bloat(ctx: ToolContext, t: Thresholds, cov: Coverage) -> CheckResult:
    """Tables with much estimated wasted space (statistics-based estimate, no scan)."""
    return await bloat(ctx, t, "table_bloat", "bloat_check_tables", "tables",
                        "VACUUM makes dead space reusable but rarely returns it; pg_repack or VACUUM FULL (an ACCESS "
                        "EXCLUSIVE lock for the whole rewrite) shrinks the table")


_DEAD = """
SELECT schemaname AS schema, relname AS table, n_live_tup AS live_tuples, n_dead_tup AS dead_tuples,
       round(n_dead_tup::numeric / nullif(n_live_tup + n_dead_tup, 0), 4) AS dead_ratio,
       greatest(last_vacuum, last_autovacuum) AS last_vacuum,
       -- pg_relation_size waits on a table another session locks: its size is the relpages estimate then
       CASE WHEN relid::bigint = ANY (%(locked)s::bigint[])
            THEN (SELECT relpages FROM pg_class WHERE oid = relid)::bigint * current_setting('block_size')::bigint
            ELSE pg_relation_size(relid) END AS size_bytes
FROM pg_stat_user_tables
WHERE n_dead_tup >= %(min_dead)s AND schemaname <> ALL (%(system)s)
  AND n_dead_tup::numeric / nullif(n_live_tup + n_dead_tup, 0) >= %(ratio)s
ORDER BY dead_ratio DESC, n_dead_tup DESC, 1, 2
"""


@check("dead_tuples", AREA, "tables", "counters")
async def dead_tuples(ctx: ToolContext, t: Thresholds, cov: Coverage) -> CheckResult:
    """Tables where dead tuples make up a large share of the rows: vacuum is behind."""
    rows = await ctx.fetch(_DEAD, {"min_dead": t.dead_tuples_min, "system": SYSTEM_SCHEMAS,
                                   "ratio": t.dead_tuple_warning_ratio, "locked": cov.locks.oids})
    cov.around(rows, "size (relpages estimate shown)", "table")
    top = float(rows[0]["dead_ratio"]) if rows else 0.0
    names = ", ".join(f"{r['schema']}.{r['table']}" for r in rows[:3])
    return result("dead_tuples", AREA, grade(top, t.dead_tuple_warning_ratio, t.dead_tuple_critical_ratio),
                  f"{len(rows)} tables with ≥ {t.dead_tuple_warning_ratio:.0%} dead tuples"
                  + (f" ({names})" if rows else ""), top,
                  limits(t.dead_tuple_warning_ratio, t.dead_tuple_critical_ratio, "share of tuples dead"),
                  "VACUUM (ANALYZE) them (pg_vacuum); if autovacuum keeps falling behind, lower "
                  "autovacuum_vacuum_scale_factor for these tables and look for long transactions",
                  items(rows, t))




@check("vacuum_staleness", AREA, "tables", "counters")
async def vacuum_staleness(ctx: ToolContext, t: Thresholds, cov: Coverage) -> CheckResult:
    """Tables changed a lot since their last analyze or vacuum, which is older than stale_days (or never ran)."""
    rows = await ctx.fetch(load_query("health_vacuum_staleness"), {
        "system": SYSTEM_SCHEMAS, "min_ratio": t.stale_min_modified_ratio, "stale_s": t.stale_days * 86400})
    never = sum(1 for r in rows if r["last_analyze"] is None)
    return result("vacuum_staleness", AREA, "warning" if rows else "ok",
                  f"{len(rows)} tables with stale vacuum or planner statistics ({never} never analyzed)", len(rows),
                  {"stale_days": t.stale_days, "min_modified_ratio": t.stale_min_modified_ratio},
                  "ANALYZE (or VACUUM ANALYZE) them: stale statistics give bad plans; check that autovacuum is on "
                  "and keeps up (autovacuum_naptime, autovacuum_max_workers, per-table scale factors)",
                  items(rows, t))


_SEQ = """
SELECT schemaname AS schema, relname AS table, seq_scan, seq_tup_read, coalesce(idx_scan, 0) AS idx_scan,
       n_live_tup AS live_rows,
       CASE WHEN relid::bigint = ANY (%(locked)s::bigint[])
            THEN (SELECT relpages FROM pg_class WHERE oid = relid)::bigint * current_setting('block_size')::bigint
            ELSE pg_relation_size(relid) END AS size_bytes,
       seq_tup_read / nullif(seq_scan, 0) AS rows_per_seq_scan,
       round(seq_scan::numeric / nullif(seq_scan + coalesce(idx_scan, 0), 0), 4) AS seq_scan_ratio
FROM pg_stat_user_tables
WHERE schemaname <> ALL (%(system)s) AND n_live_tup >= %(min_rows)s AND seq_scan >= %(min_scans)s
  AND seq_scan::numeric / nullif(seq_scan + coalesce(idx_scan, 0), 0) >= %(ratio)s
ORDER BY seq_tup_read DESC, 1, 2
"""


@check("seq_scan_heavy", AREA, "tables", "counters")
async def seq_scan_heavy(ctx: ToolContext, t: Thresholds, cov: Coverage) -> CheckResult:
    """Large tables read mostly by sequential scans: likely a missing index."""
    rows = await ctx.fetch(_SEQ, {"system": SYSTEM_SCHEMAS, "min_rows": t.seq_scan_min_rows,
                                  "min_scans": t.seq_scan_min_scans, "ratio": t.seq_scan_ratio,
                                  "locked": cov.locks.oids})
    cov.around(rows, "size (relpages estimate shown)", "table")
    names = ", ".join(f"{r['schema']}.{r['table']}" for r in rows[:3])
    return result("seq_scan_heavy", AREA, "warning" if rows else "ok",
                  f"{len(rows)} tables of ≥ {t.seq_scan_min_rows:,} rows read mostly by sequential scans"
                  + (f" ({names})" if rows else ""), len(rows),
                  {"seq_scan_ratio": t.seq_scan_ratio, "min_rows": t.seq_scan_min_rows,
                   "min_scans": t.seq_scan_min_scans},
                  "find the queries (pg_stat_statements) and let pg_analyze_workload_indexes or "
                  "pg_index_recommendations propose the index they need", items(rows, t))


@check("fk_without_index", AREA, "constraints", "analyze")
async def fk_without_index(ctx: ToolContext, t: Thresholds, cov: Coverage) -> CheckResult:
    """Foreign keys with no index on their referencing columns (slow deletes on the parent, slow joins)."""
    rows = await ctx.fetch(load_query("health_fk_without_index"), {"system": SYSTEM_SCHEMAS,
                                                                   "min_rows": t.fk_min_rows,
                                                                   "locked": cov.locks.oids})
    cov.around(rows, "size (relpages estimate shown)", "table")
    conn = await ctx.conn()
    for r in rows:
        r["fix"] = sql.SQL("CREATE INDEX CONCURRENTLY ON {} ({})").format(
            sql.Identifier(r["schema"], r["table"]), sql.SQL(", ").join(map(sql.Identifier, r["columns"]))
        ).as_string(conn)
    names = ", ".join(f"{r['schema']}.{r['table']}.{r['constraint']}" for r in rows[:3])
    return result("fk_without_index", AREA, "warning" if rows else "ok",
                  f"{len(rows)} foreign keys without an index on their columns" + (f" ({names})" if rows else ""),
                  len(rows), {"min_rows": t.fk_min_rows},
                  "create the index (details.items[].fix): without it every DELETE or key UPDATE on the referenced "
                  f"table scans the referencing one (tables under {t.fk_min_rows:,} rows are left out)",
                  items(rows, t, total_table_bytes=sum(r["table_bytes"] for r in rows)))
