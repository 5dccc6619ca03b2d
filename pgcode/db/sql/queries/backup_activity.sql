-- Sizes, write activity and WAL position of this server, for the backup planners (one sample).
SELECT current_database() AS database,
       pg_database_size(current_database()) AS database_bytes,
       (SELECT sum(pg_database_size(oid))::bigint FROM pg_database WHERE datallowconn) AS cluster_bytes,
       (SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
           AND n.nspname NOT LIKE 'pg_toast%%') AS tables,
       pg_is_in_recovery() AS in_recovery,
       CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END AS wal_lsn,
       clock_timestamp() AS sampled_at,
       d.xact_commit + d.xact_rollback AS xacts,
       d.tup_inserted + d.tup_updated + d.tup_deleted AS tuples_written,
       coalesce(d.stats_reset, pg_postmaster_start_time()) AS stats_since,
       (SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND backend_type = 'client backend')
         AS active_sessions,
       current_setting('wal_level') AS wal_level,
       current_setting('archive_mode') AS archive_mode,
       current_setting('archive_mode') <> 'off'
         AND (current_setting('archive_command') NOT IN ('', '(disabled)')
              OR coalesce(current_setting('archive_library', true), '') <> '') AS archiving_configured,
       current_setting('max_wal_senders')::int AS max_wal_senders,
       current_setting('data_checksums') AS data_checksums,
       coalesce(current_setting('summarize_wal', true), 'off') AS summarize_wal,
       (SELECT rolreplication OR rolsuper FROM pg_roles WHERE rolname = current_user) AS can_replicate
FROM pg_stat_database d
WHERE d.datname = current_database()
