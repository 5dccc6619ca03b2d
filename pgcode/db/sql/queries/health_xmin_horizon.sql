-- Everything that holds back the xmin horizon (the oldest transaction whose snapshot VACUUM must honour, so
-- it cannot remove newer dead rows nor freeze past it): sessions' snapshots and transactions, prepared
-- transactions, replication slots (xmin, and catalog_xmin of logical slots), and standbys' hot_standby_feedback.
-- Ages are in transaction IDs; seconds is how long the holder has held it where that is known.
SELECT 'session' AS kind, a.pid::text AS holder, a.pid, a.datname AS database, a.usename, a.application_name,
       host(a.client_addr) AS client_addr, a.state,
       greatest(age(a.backend_xmin), age(a.backend_xid)) AS xid_age,
       round(extract(epoch FROM now() - a.xact_start)::numeric, 1) AS seconds,
       a.xact_start, a.xact_start = a.query_start AS single_statement, left(a.query, 300) AS query,
       NULL::boolean AS active
FROM pg_stat_activity a
WHERE (a.backend_xmin IS NOT NULL OR a.backend_xid IS NOT NULL) AND a.pid <> pg_backend_pid()
  AND a.backend_type = 'client backend'
UNION ALL
SELECT 'prepared transaction', p.gid, NULL, p.database, p.owner, NULL, NULL, NULL, age(p.transaction),
       round(extract(epoch FROM now() - p.prepared)::numeric, 1), p.prepared, NULL, NULL, NULL
FROM pg_prepared_xacts p
UNION ALL
SELECT 'replication slot', s.slot_name, s.active_pid, s.database, NULL, s.plugin, NULL, s.slot_type,
       greatest(age(s.xmin), age(s.catalog_xmin)), NULL, NULL, NULL, NULL, s.active
FROM pg_replication_slots s
WHERE s.xmin IS NOT NULL OR s.catalog_xmin IS NOT NULL
UNION ALL
SELECT 'standby feedback', r.application_name, r.pid, NULL, r.usename, r.application_name,
       host(r.client_addr), r.state, age(r.backend_xmin), NULL, NULL, NULL, NULL, true
FROM pg_stat_replication r
WHERE r.backend_xmin IS NOT NULL
ORDER BY xid_age DESC NULLS LAST, seconds DESC NULLS LAST
