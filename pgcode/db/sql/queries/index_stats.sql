-- Indexes with their usage counters and size; {last_scan} is s.last_idx_scan on PostgreSQL 16+, NULL before.
SELECT i.relname AS name,
       t.relname AS table,
       n.nspname AS schema,
       coalesce(s.idx_scan, 0) AS scans,
       pg_relation_size(x.indexrelid) AS size_bytes,
       pg_get_indexdef(x.indexrelid) AS definition,
       coalesce(s.idx_tup_read, 0) AS tuples_read,
       coalesce(s.idx_tup_fetch, 0) AS tuples_fetched,
       {last_scan} AS last_scan,
       am.amname AS method,
       x.indisunique AS is_unique,
       x.indisprimary AS is_primary,
       x.indisvalid AS is_valid,
       x.indpred IS NOT NULL AS is_partial,
       ARRAY(SELECT pg_get_indexdef(x.indexrelid, k + 1, true)
             FROM generate_subscripts(x.indkey, 1) AS k ORDER BY k) AS columns,
       coalesce(ts.seq_scan, 0) AS table_seq_scans,
       coalesce(ts.idx_scan, 0) AS table_index_scans
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_am am ON am.oid = i.relam
LEFT JOIN pg_stat_all_indexes s ON s.indexrelid = x.indexrelid
LEFT JOIN pg_stat_all_tables ts ON ts.relid = x.indrelid
WHERE (%(schema)s::text IS NULL OR n.nspname = %(schema)s)
  AND (%(table)s::text IS NULL OR t.relname = %(table)s)
  AND (%(schema)s::text IS NOT NULL OR (n.nspname <> ALL (%(system)s) AND n.nspname NOT LIKE 'pg\_toast%%'
                                        AND n.nspname NOT LIKE 'pg\_temp\_%%'))
  AND pg_relation_size(x.indexrelid) >= %(min_size)s
ORDER BY {order}
LIMIT %(limit)s
