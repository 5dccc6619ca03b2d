-- Per-table size and insert/delete counters, the raw material of a growth estimate.
SELECT s.relname AS "table",
       s.schemaname AS schema,
       pg_total_relation_size(s.relid) AS size_bytes,
       s.n_live_tup,
       s.n_dead_tup,
       s.n_tup_ins,
       s.n_tup_upd,
       s.n_tup_del
FROM pg_stat_user_tables s
WHERE (%(schema)s::text IS NULL OR s.schemaname = %(schema)s)
  AND s.schemaname <> 'pgcode'
