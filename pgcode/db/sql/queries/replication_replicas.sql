-- Standbys streaming from this server, with lag in bytes (from the LSNs) and in time (as reported).
WITH pos AS (
    SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_receive_lsn() ELSE pg_current_wal_lsn() END AS lsn
)
SELECT r.pid,
       r.usename,
       r.application_name,
       host(r.client_addr) AS client_addr,
       r.state,
       r.sync_state,
       r.sync_priority,
       r.sent_lsn::text AS sent_lsn,
       r.write_lsn::text AS write_lsn,
       r.flush_lsn::text AS flush_lsn,
       r.replay_lsn::text AS replay_lsn,
       pg_wal_lsn_diff(pos.lsn, r.sent_lsn)::bigint AS sent_lag_bytes,
       pg_wal_lsn_diff(pos.lsn, r.write_lsn)::bigint AS write_lag_bytes,
       pg_wal_lsn_diff(pos.lsn, r.flush_lsn)::bigint AS flush_lag_bytes,
       pg_wal_lsn_diff(pos.lsn, r.replay_lsn)::bigint AS replay_lag_bytes,
       extract(epoch FROM r.write_lag)::float8 AS write_lag_seconds,
       extract(epoch FROM r.flush_lag)::float8 AS flush_lag_seconds,
       extract(epoch FROM r.replay_lag)::float8 AS replay_lag_seconds,
       r.backend_start,
       r.reply_time
FROM pg_stat_replication r, pos
ORDER BY r.application_name, r.pid
