-- The tables the advisor's statements name, by name as the search_path resolves them. A partitioned table's size
-- is its leaf partitions' (plans scan those), listed as "schema.name". Writes per second since the statistics
-- began (the database's stats_reset, else the server start) price the upkeep of one more index.
SELECT q.name, c.oid, n.nspname AS schema, c.relname AS table, c.relkind,
       coalesce(p.reltuples, greatest(c.reltuples, 0)) AS reltuples, coalesce(p.relpages, c.relpages) AS relpages,
       coalesce(p.leaves, '{}') AS leaves,
       (coalesce(s.n_tup_ins, 0) + coalesce(s.n_tup_upd, 0) + coalesce(s.n_tup_del, 0))
           / greatest(extract(epoch FROM now() - coalesce(
               (SELECT d.stats_reset FROM pg_stat_database d WHERE d.datname = current_database()),
               pg_postmaster_start_time())), 1) AS writes_per_second
FROM unnest(%(names)s::text[]) AS q(name)
JOIN pg_class c ON c.oid = to_regclass(q.name)
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
LEFT JOIN LATERAL (
    SELECT sum(greatest(lc.reltuples, 0)) AS reltuples, sum(lc.relpages) AS relpages,
           array_agg(ln.nspname || '.' || lc.relname) AS leaves
    FROM pg_partition_tree(c.oid) t JOIN pg_class lc ON lc.oid = t.relid
    JOIN pg_namespace ln ON ln.oid = lc.relnamespace
    WHERE c.relkind = 'p' AND t.isleaf
) p ON true
WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname <> ALL (%(system)s) AND n.nspname NOT LIKE 'pg\_toast%%'
