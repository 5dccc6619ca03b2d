-- Replication slots with the WAL each one holds back; the tool adds the columns of newer versions.
WITH pos AS (
    SELECT CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END AS lsn
)
SELECT s.slot_name,
       s.slot_type,
       s.plugin,
       s.database,
       s.temporary,
       s.active,
       s.active_pid,
       s.wal_status,
       s.safe_wal_size,
       s.restart_lsn::text AS restart_lsn,
       s.confirmed_flush_lsn::text AS confirmed_flush_lsn,
       pg_wal_lsn_diff(pos.lsn, s.restart_lsn)::bigint AS retained_wal_bytes,
       pg_size_pretty(pg_wal_lsn_diff(pos.lsn, s.restart_lsn)) AS retained_wal,
       age(s.xmin) AS xmin_age,
       age(s.catalog_xmin) AS catalog_xmin_age{extra}
FROM pg_replication_slots s, pos
ORDER BY s.active, retained_wal_bytes DESC NULLS LAST, s.slot_name
