-- Geometry and geography columns of ordinary and partitioned tables, with table size and rows, and the
-- spatial (GiST, SP-GiST, BRIN) and other indexes whose first key is the column.
SELECT n.nspname AS schema, c.relname AS table, a.attname AS column, t.typname AS kind,
       format_type(a.atttypid, a.atttypmod) AS type,
       greatest(c.reltuples, 0)::bigint AS estimated_rows,
       coalesce(s.n_live_tup, 0) AS live_rows,
       pg_total_relation_size(c.oid) AS table_bytes,
       coalesce(s.seq_scan, 0) AS seq_scans,
       coalesce(s.idx_scan, 0) AS idx_scans,
       coalesce((SELECT array_agg(i.relname::text ORDER BY i.relname) FROM pg_index x
                 JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_am am ON am.oid = i.relam
                 WHERE x.indrelid = c.oid AND x.indkey[0] = a.attnum AND am.amname IN ('gist', 'spgist', 'brin')),
                '{}') AS spatial_indexes,
       coalesce((SELECT array_agg(i.relname::text ORDER BY i.relname) FROM pg_index x
                 JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_am am ON am.oid = i.relam
                 WHERE x.indrelid = c.oid AND x.indkey[0] = a.attnum AND am.amname NOT IN ('gist', 'spgist', 'brin')),
                '{}') AS other_indexes
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid AND t.typname IN ('geometry', 'geography')
JOIN pg_class c ON c.oid = a.attrelid AND c.relkind IN ('r', 'p', 'm')
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
WHERE a.attnum > 0 AND NOT a.attisdropped
  AND n.nspname <> ALL (%(system)s) AND n.nspname NOT LIKE 'pg\_%%'
  AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s)
ORDER BY n.nspname, c.relname, a.attnum
LIMIT %(limit)s
