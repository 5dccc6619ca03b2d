-- What the health checks examine, counted from the catalogs (no relation locks), and how old the statistics
-- are that their verdicts rest on: the counters' reset, the last ANALYZE, and pg_stat_statements' reset.
WITH rel AS (
    SELECT c.oid, c.relkind
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname <> ALL (%(system)s) AND n.nspname NOT LIKE 'pg\_toast%%' AND n.nspname NOT LIKE 'pg\_temp\_%%'
), analyzed AS (
    SELECT s.relid, greatest(s.last_analyze, s.last_autoanalyze) AS at
    FROM pg_stat_user_tables s
    WHERE s.schemaname <> ALL (%(system)s)
)
SELECT
    (SELECT count(*) FROM rel WHERE relkind IN ('r', 'p', 'm')) AS tables,
    (SELECT count(*) FROM rel WHERE relkind IN ('i', 'I')) AS indexes,
    (SELECT count(*) FROM rel WHERE relkind = 'S') AS sequences,
    (SELECT count(*) FROM pg_constraint k JOIN rel ON rel.oid = k.conrelid WHERE k.contype IN ('f', 'c'))
        AS constraints,
    (SELECT count(*) FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname <> ALL (%(system)s) AND n.nspname NOT LIKE 'pg\_temp\_%%') AS functions,
    (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> pg_backend_pid())
        AS sessions,
    (SELECT count(*) FROM pg_prepared_xacts) AS prepared_transactions,
    (SELECT count(*) FROM pg_stat_replication) AS standbys,
    (SELECT count(*) FROM pg_replication_slots) AS replication_slots,
    (SELECT count(*) FROM pg_roles) AS roles,
    (SELECT count(*) FROM pg_namespace n WHERE n.nspname <> ALL (%(system)s)
     AND n.nspname NOT LIKE 'pg\_toast%%' AND n.nspname NOT LIKE 'pg\_temp\_%%') AS schemas,
    (SELECT stats_reset FROM pg_stat_database WHERE datname = current_database()) AS stats_reset,
    pg_postmaster_start_time() AS server_started,
    (SELECT min(at) FROM analyzed) AS oldest_analyze,
    (SELECT count(*) FROM analyzed WHERE at IS NULL) AS never_analyzed,
    now() AS now
