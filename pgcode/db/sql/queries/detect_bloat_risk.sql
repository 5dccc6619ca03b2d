-- The inputs of the bloat-risk score per table: dead tuples, vacuum recency, size, autovacuum settings, churn.
SELECT n.nspname AS schema,
       c.relname AS table,
       pg_table_size(c.oid) AS size_bytes,
       s.n_live_tup AS live_tuples,
       s.n_dead_tup AS dead_tuples,
       s.n_tup_upd + s.n_tup_del AS updates_and_deletes,
       s.n_tup_hot_upd AS hot_updates,
       s.n_tup_upd AS updates,
       greatest(s.last_vacuum, s.last_autovacuum) AS last_vacuum,
       extract(epoch FROM now() - greatest(s.last_vacuum, s.last_autovacuum)) / 86400 AS days_since_vacuum,
       current_setting('autovacuum')::bool
           AND coalesce((SELECT o.option_value::bool FROM pg_options_to_table(c.reloptions) o
                         WHERE o.option_name = 'autovacuum_enabled'), true) AS autovacuum_enabled,
       coalesce((SELECT o.option_value::float8 FROM pg_options_to_table(c.reloptions) o
                 WHERE o.option_name = 'autovacuum_vacuum_scale_factor'),
                current_setting('autovacuum_vacuum_scale_factor')::float8) AS vacuum_scale_factor
FROM pg_stat_all_tables s
JOIN pg_class c ON c.oid = s.relid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'm')
  AND s.n_live_tup + s.n_dead_tup >= %(min_rows)s
  AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s)
  AND (%(schema)s::text IS NOT NULL OR (n.nspname <> ALL (%(system)s) AND n.nspname NOT LIKE 'pg\_toast%%'
                                        AND n.nspname NOT LIKE 'pg\_temp\_%%'))
ORDER BY s.n_dead_tup DESC, n.nspname, c.relname
LIMIT 5000  -- scored in the tool; the tables with most dead tuples first if there are more
