-- Per-table size and insert/delete counters, the raw material of a growth estimate.
SELECT s.relname AS "table",
       s.schemaname AS schema,
       -- a table another session locks: relpages estimates, since pg_total_relation_size would wait on it
       CASE WHEN s.relid::bigint = ANY (%(locked)s::bigint[])
            THEN (SELECT sum(r.relpages) FROM pg_class c JOIN pg_class r ON r.oid IN (c.oid, c.reltoastrelid)
                     OR r.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = c.oid)
                  WHERE c.oid = s.relid)::bigint * current_setting('block_size')::bigint
            ELSE pg_total_relation_size(s.relid) END AS size_bytes,
       s.n_live_tup,
       s.n_dead_tup,
       s.n_tup_ins,
       s.n_tup_upd,
       s.n_tup_del
FROM pg_stat_user_tables s
WHERE (%(schema)s::text IS NULL OR s.schemaname = %(schema)s)
  AND s.schemaname <> 'pgcode'
