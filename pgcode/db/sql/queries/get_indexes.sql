-- Indexes with their definition, validity, usage counters and size.
SELECT i.relname AS name,
       t.relname AS table,
       n.nspname AS schema,
       pg_get_indexdef(x.indexrelid) AS definition,
       am.amname AS method,
       x.indisunique AS is_unique,
       x.indisprimary AS is_primary,
       x.indisvalid AS is_valid,
       ARRAY(SELECT pg_get_indexdef(x.indexrelid, k + 1, true)
             FROM generate_subscripts(x.indkey, 1) AS k ORDER BY k) AS columns,
       coalesce(s.idx_scan, 0) AS scans,
       coalesce(s.idx_tup_read, 0) AS tuples_read,
       coalesce(s.idx_tup_fetch, 0) AS tuples_fetched,
       pg_relation_size(x.indexrelid) AS size_bytes
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_am am ON am.oid = i.relam
LEFT JOIN pg_stat_all_indexes s ON s.indexrelid = x.indexrelid
WHERE (%(schema)s::text IS NULL OR n.nspname = %(schema)s)
  AND (%(table)s::text IS NULL OR t.relname = %(table)s)
  AND n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'pgcode')
ORDER BY n.nspname, t.relname, i.relname
LIMIT %(limit)s
