-- What the backends serving one call are doing, from the pg_stat_progress_* views (PostgreSQL 13+).
-- done/total count blocks, or the sessions CREATE INDEX CONCURRENTLY waits for while it waits.
SELECT 'VACUUM' AS command, phase, relid::regclass::text AS relation,
       heap_blks_scanned AS done, heap_blks_total AS total, 'blocks' AS unit
FROM pg_stat_progress_vacuum WHERE pid = ANY(%(pids)s)
UNION ALL
SELECT command, phase, relid::regclass::text,
       CASE WHEN blocks_total > 0 THEN blocks_done ELSE lockers_done END,
       CASE WHEN blocks_total > 0 THEN blocks_total ELSE lockers_total END,
       CASE WHEN blocks_total > 0 THEN 'blocks' ELSE 'sessions' END
FROM pg_stat_progress_create_index WHERE pid = ANY(%(pids)s)
UNION ALL
SELECT 'ANALYZE', phase, relid::regclass::text, sample_blks_scanned, sample_blks_total, 'blocks'
FROM pg_stat_progress_analyze WHERE pid = ANY(%(pids)s)
UNION ALL
SELECT command, phase, relid::regclass::text, heap_blks_scanned, heap_blks_total, 'blocks'
FROM pg_stat_progress_cluster WHERE pid = ANY(%(pids)s)
