-- Tables, views, materialized views, partitioned and foreign tables with size and row estimate.
SELECT c.relname AS name,
       n.nspname AS schema,
       CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned_table' WHEN 'v' THEN 'view'
                      WHEN 'm' THEN 'materialized_view' WHEN 'f' THEN 'foreign_table' END AS type,
       -- reltuples is -1 before the first VACUUM/ANALYZE (PG 14+); fall back to the live-tuple counter
       CASE WHEN c.reltuples < 0 THEN coalesce(s.n_live_tup, 0) ELSE c.reltuples::bigint END AS row_estimate,
       CASE WHEN c.relkind IN ('r', 'm', 'p') THEN pg_total_relation_size(c.oid) ELSE 0 END AS size_bytes,
       pg_get_userbyid(c.relowner) AS owner,
       c.relispartition AS is_partition,
       obj_description(c.oid, 'pg_class') AS comment
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_all_tables s ON s.relid = c.oid
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s)
  AND (%(include_system)s OR (n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgcode')
                              AND n.nspname NOT LIKE 'pg\_toast%%' AND n.nspname NOT LIKE 'pg\_temp\_%%'
                              -- tables that belong to an extension (spatial_ref_sys, cron.job, ...)
                              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                              AND d.objid = c.oid AND d.deptype = 'e')))
  AND (%(types)s::text[] IS NULL OR CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned_table'
        WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized_view' WHEN 'f' THEN 'foreign_table' END = ANY(%(types)s))
ORDER BY n.nspname, c.relname
LIMIT %(limit)s
