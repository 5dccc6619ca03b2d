-- Tables with sizes, row estimates and access statistics. A partitioned table adds up its partitions.
-- {last_scans} is max(last_seq_scan)/max(last_idx_scan) on PostgreSQL 16+ and NULLs before.
WITH rel AS (
    SELECT c.oid, c.relname, c.relkind, n.nspname,
           CASE WHEN c.relkind = 'p' THEN ARRAY(SELECT p.relid FROM pg_partition_tree(c.oid) p WHERE p.isleaf)
                ELSE ARRAY[c.oid] END AS parts
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'm', 'v', 'f')
      AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s)
      AND (%(table)s::text IS NULL OR c.relname = %(table)s)
      AND (%(schema)s::text IS NOT NULL OR (n.nspname <> ALL (%(system)s) AND n.nspname NOT LIKE 'pg\_toast%%'
                                            AND n.nspname NOT LIKE 'pg\_temp\_%%'))
)
SELECT r.nspname AS schema,
       r.relname AS table,
       CASE r.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned_table' WHEN 'm' THEN 'materialized_view'
                      WHEN 'v' THEN 'view' ELSE 'foreign_table' END AS kind,
       -- reltuples is -1 until the first VACUUM or ANALYZE (PostgreSQL 14+): no estimate then
       (SELECT CASE WHEN bool_and(pc.reltuples >= 0) THEN sum(pc.reltuples)::bigint END
        FROM pg_class pc WHERE pc.oid = ANY(r.parts)) AS estimated_rows,
       (SELECT coalesce(sum(pg_total_relation_size(p)), 0) FROM unnest(r.parts) p)::bigint AS size_bytes,
       (SELECT coalesce(sum(pg_table_size(p)), 0) FROM unnest(r.parts) p)::bigint AS table_bytes,
       (SELECT coalesce(sum(pg_indexes_size(p)), 0) FROM unnest(r.parts) p)::bigint AS index_bytes,
       has_table_privilege(r.oid, 'SELECT') AS readable,
       s.*
FROM rel r
LEFT JOIN LATERAL (
    SELECT sum(t.seq_scan)::bigint AS seq_scan, sum(t.seq_tup_read)::bigint AS seq_tup_read,
           sum(t.idx_scan)::bigint AS idx_scan, sum(t.idx_tup_fetch)::bigint AS idx_tup_fetch,
           sum(t.n_tup_ins)::bigint AS n_tup_ins, sum(t.n_tup_upd)::bigint AS n_tup_upd,
           sum(t.n_tup_del)::bigint AS n_tup_del, sum(t.n_tup_hot_upd)::bigint AS n_tup_hot_upd,
           sum(t.n_live_tup)::bigint AS live_tuples, sum(t.n_dead_tup)::bigint AS dead_tuples,
           sum(t.n_mod_since_analyze)::bigint AS n_mod_since_analyze,
           max(t.last_vacuum) AS last_vacuum, max(t.last_autovacuum) AS last_autovacuum,
           max(t.last_analyze) AS last_analyze, max(t.last_autoanalyze) AS last_autoanalyze,
           sum(t.vacuum_count)::bigint AS vacuum_count, sum(t.autovacuum_count)::bigint AS autovacuum_count,
           sum(t.analyze_count)::bigint AS analyze_count, sum(t.autoanalyze_count)::bigint AS autoanalyze_count,
           {last_scans}
    FROM pg_stat_all_tables t
    WHERE t.relid = ANY(r.parts) AND r.relkind <> 'v'
) s ON true
ORDER BY size_bytes DESC, r.nspname, r.relname
LIMIT %(limit)s
