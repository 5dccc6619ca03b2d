-- Indexes never scanned since the statistics were reset. Unique, primary-key and exclusion indexes (and any
-- index backing a constraint) enforce rules and are left out unless asked for. {last_scan}: PostgreSQL 16+.
-- for an index whose table (or itself) another session locks
-- (the locked oids), sizes are estimates from pg_class.relpages and the definition is not read, since
-- pg_relation_size and pg_get_indexdef would wait for ACCESS SHARE on it.
WITH guarded AS (
    SELECT x.*, (x.indrelid::bigint = ANY (%(locked)s::bigint[]) OR x.indexrelid::bigint = ANY (%(locked)s::bigint[]))
               AS locked
    FROM pg_index x
)
SELECT n.nspname AS schema,
       t.relname AS table,
       i.relname AS name,
       CASE WHEN x.locked THEN i.relpages::bigint * current_setting('block_size')::bigint
            ELSE pg_relation_size(x.indexrelid) END AS size_bytes,
       CASE WHEN NOT x.locked THEN pg_get_indexdef(x.indexrelid) END AS definition,
       coalesce(s.idx_scan, 0) AS scans,
       {last_scan} AS last_scan,
       am.amname AS method,
       x.indisunique AS is_unique,
       x.indisvalid AS is_valid,
       CASE WHEN x.locked THEN t.relpages::bigint * current_setting('block_size')::bigint
            ELSE pg_relation_size(x.indrelid) END AS table_bytes,
       coalesce(ts.seq_scan, 0) AS table_seq_scans,
       coalesce(ts.n_tup_ins + ts.n_tup_upd + ts.n_tup_del, 0) AS table_writes
FROM guarded x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_class t ON t.oid = x.indrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_am am ON am.oid = i.relam
LEFT JOIN pg_stat_all_indexes s ON s.indexrelid = x.indexrelid
LEFT JOIN pg_stat_all_tables ts ON ts.relid = x.indrelid
WHERE i.relkind = 'i'  -- a partitioned index's parent ('I') is never scanned itself
  AND coalesce(s.idx_scan, 0) = 0
  AND (%(include_unique)s OR NOT (x.indisunique OR x.indisprimary OR x.indisexclusion
                                  OR EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid
                                             AND k.contype IN ('p', 'u', 'x'))))
  AND CASE WHEN x.locked THEN i.relpages::bigint * current_setting('block_size')::bigint
           ELSE pg_relation_size(x.indexrelid) END >= %(min_size)s
  AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s)
  AND (%(table)s::text IS NULL OR t.relname = %(table)s)
  AND (%(schema)s::text IS NOT NULL OR (n.nspname <> ALL (%(system)s) AND n.nspname NOT LIKE 'pg\_toast%%'
                                        AND n.nspname NOT LIKE 'pg\_temp\_%%'))
ORDER BY size_bytes DESC, n.nspname, t.relname, i.relname
LIMIT %(limit)s
