-- One row of health numbers: client sessions, this database's counters since stats_reset, wraparound ages.
WITH a AS (
    SELECT state, wait_event_type, query_start, state_change
    FROM pg_stat_activity
    WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
)
SELECT (SELECT count(*) FROM a) + 1 AS connections,
       (SELECT count(*) FROM a WHERE state = 'active') + 1 AS active,
       (SELECT count(*) FROM a WHERE state = 'idle') AS idle,
       (SELECT count(*) FROM a WHERE state LIKE 'idle in transaction%%') AS idle_in_transaction,
       (SELECT count(*) FROM a WHERE wait_event_type = 'Lock') AS waiting_on_locks,
       (SELECT count(*) FROM a WHERE state = 'active'
               AND clock_timestamp() - query_start > make_interval(secs => %(long_query_s)s)) AS long_running_queries,
       (SELECT count(*) FROM a WHERE state LIKE 'idle in transaction%%'
               AND clock_timestamp() - state_change > make_interval(secs => %(idle_tx_s)s)) AS long_idle_in_transaction,
       d.blks_hit,
       d.blks_read,
       d.temp_files,
       d.temp_bytes,
       d.deadlocks,
       d.conflicts,
       d.xact_commit,
       d.xact_rollback,
       d.blk_read_time,
       d.blk_write_time,
       d.stats_reset,
       extract(epoch FROM clock_timestamp() - coalesce(d.stats_reset, pg_postmaster_start_time()))::float8
           AS stats_seconds,
       x.datname AS oldest_xid_database,
       x.xid_age,
       (SELECT max(mxid_age(datminmxid)) FROM pg_database) AS mxid_age
FROM pg_stat_database d,
     LATERAL (SELECT datname, age(datfrozenxid) AS xid_age FROM pg_database
              ORDER BY age(datfrozenxid) DESC LIMIT 1) x
WHERE d.datname = current_database()
