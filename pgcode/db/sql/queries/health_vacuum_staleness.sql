-- Tables changed a lot since their last analyze, where that analyze (or, with dead tuples, the last vacuum)
-- is older than the staleness limit or never ran.
SELECT schemaname AS schema, relname AS table, n_live_tup AS live_tuples, n_mod_since_analyze AS modified_since_analyze,
       greatest(last_vacuum, last_autovacuum) AS last_vacuum, greatest(last_analyze, last_autoanalyze) AS last_analyze,
       round((extract(epoch FROM now() - greatest(last_analyze, last_autoanalyze)) / 86400)::numeric, 2)
           AS days_since_analyze,
       round((extract(epoch FROM now() - greatest(last_vacuum, last_autovacuum)) / 86400)::numeric, 2)
           AS days_since_vacuum
FROM pg_stat_user_tables
WHERE schemaname <> ALL (%(system)s) AND n_live_tup + n_dead_tup >= 1000
  AND n_mod_since_analyze >= %(min_ratio)s * greatest(n_live_tup, 1)
  AND (greatest(last_analyze, last_autoanalyze) IS NULL
       OR greatest(last_analyze, last_autoanalyze) < now() - make_interval(secs => %(stale_s)s)
       OR (n_dead_tup > 0
           AND (greatest(last_vacuum, last_autovacuum) IS NULL
                OR greatest(last_vacuum, last_autovacuum) < now() - make_interval(secs => %(stale_s)s))))
ORDER BY n_mod_since_analyze DESC, 1, 2
