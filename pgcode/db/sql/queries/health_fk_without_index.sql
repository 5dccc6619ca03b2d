-- Foreign keys whose referencing columns lead no valid, non-partial index of their table: deleting or
-- updating a referenced row then scans the referencing table, and joins on the key cannot use an index.
SELECT n.nspname AS schema, t.relname AS table, k.conname AS constraint,
       array_agg(a.attname ORDER BY u.ord) AS columns,
       rn.nspname AS referenced_schema, r.relname AS referenced_table,
       greatest(t.reltuples, coalesce(s.n_live_tup, 0))::bigint AS rows,
       -- pg_relation_size waits on a table another session locks: the relpages estimate then
       CASE WHEN t.oid::bigint = ANY (%(locked)s::bigint[]) THEN t.relpages::bigint * current_setting('block_size')::bigint
            ELSE pg_relation_size(t.oid) END AS table_bytes
FROM pg_constraint k
JOIN pg_class t ON t.oid = k.conrelid
JOIN pg_namespace n ON n.oid = t.relnamespace
JOIN pg_class r ON r.oid = k.confrelid
JOIN pg_namespace rn ON rn.oid = r.relnamespace
CROSS JOIN LATERAL unnest(k.conkey) WITH ORDINALITY AS u(attnum, ord)
JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = u.attnum
LEFT JOIN pg_stat_all_tables s ON s.relid = t.oid
WHERE k.contype = 'f' AND t.relkind IN ('r', 'p')
  AND n.nspname <> ALL (%(system)s) AND n.nspname NOT LIKE 'pg\_temp\_%%'
  AND greatest(t.reltuples, coalesce(s.n_live_tup, 0)) >= %(min_rows)s
  AND NOT EXISTS (
      SELECT 1 FROM pg_index x
      WHERE x.indrelid = k.conrelid AND x.indisvalid AND x.indpred IS NULL
        AND (string_to_array(x.indkey::text, ' ')::int2[])[1:cardinality(k.conkey)] @> k.conkey
        AND (string_to_array(x.indkey::text, ' ')::int2[])[1:cardinality(k.conkey)] <@ k.conkey)
GROUP BY k.oid, n.nspname, t.relname, k.conname, rn.nspname, r.relname, t.reltuples, s.n_live_tup, t.oid, t.relpages
ORDER BY table_bytes DESC, 1, 2, 3
