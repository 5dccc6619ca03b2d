-- Client sessions of every database with what a chain of lock waits needs: who blocks each waiting session
-- (pg_blocking_pids, called only for sessions waiting on a lock: each call reads the whole lock table), how
-- long it has waited ({wait_start} differs by version), and each session's transaction. A blocking pid of 0
-- is a prepared transaction.
SELECT a.pid, a.datname AS database, a.usename, a.application_name, host(a.client_addr) AS client_addr, a.state,
       a.wait_event_type, a.wait_event, a.backend_xid IS NOT NULL AS has_xid,
       CASE WHEN a.wait_event_type = 'Lock' THEN pg_blocking_pids(a.pid) ELSE '{{}}'::int[] END AS blocked_by,
       CASE WHEN a.wait_event_type = 'Lock'
            THEN round(extract(epoch FROM now() - coalesce({wait_start}, a.state_change))::numeric, 1) END
           AS waiting_seconds,
       round(extract(epoch FROM now() - a.xact_start)::numeric, 1) AS transaction_seconds,
       round(extract(epoch FROM now() - a.state_change)::numeric, 1) AS state_seconds,
       a.xact_start, a.xact_start = a.query_start AS single_statement,
       left(a.query, %(qlen)s) AS query
FROM pg_stat_activity a
WHERE a.backend_type = 'client backend' AND a.pid <> pg_backend_pid()
