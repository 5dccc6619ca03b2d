-- Indexes whose first key is a geometry or geography column: method, size, scans since the statistics
-- were reset, validity, and the table's size and rows.
SELECT n.nspname AS schema, c.relname AS table, i.relname AS index, a.attname AS column, t.typname AS kind,
       am.amname AS method, pg_get_indexdef(i.oid) AS definition,
       pg_relation_size(i.oid) AS index_bytes, pg_total_relation_size(c.oid) AS table_bytes,
       greatest(c.reltuples, 0)::bigint AS estimated_rows,
       coalesce(s.idx_scan, 0) AS idx_scan, coalesce(s.idx_tup_read, 0) AS idx_tup_read,
       coalesce(s.idx_tup_fetch, 0) AS idx_tup_fetch, x.indisvalid AS is_valid, x.indisunique AS is_unique,
       x.indpred IS NOT NULL AS is_partial
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class c ON c.oid = x.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_am am ON am.oid = i.relam
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = x.indkey[0]
JOIN pg_type t ON t.oid = a.atttypid AND t.typname IN ('geometry', 'geography')
LEFT JOIN pg_stat_user_indexes s ON s.indexrelid = i.oid
WHERE n.nspname <> ALL (%(system)s) AND n.nspname NOT LIKE 'pg\_%%'
  AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s)
ORDER BY n.nspname, c.relname, i.relname
LIMIT %(limit)s
