-- Sessions from pg_stat_activity with durations and the pids blocking each one.
SELECT a.pid,
       a.datname AS database,
       a.usename,
       a.application_name,
       host(a.client_addr) AS client_addr,
       a.backend_type,
       a.state,
       a.wait_event_type,
       a.wait_event,
       left(a.query, %(qlen)s) AS query,
       length(a.query) > %(qlen)s AS query_truncated,
       a.backend_start,
       a.xact_start,
       a.query_start,
       a.state_change,
       -- time in the current state: the running query for active sessions, the idle time otherwise
       round(extract(epoch FROM now() - CASE WHEN a.state = 'active' THEN a.query_start
                                             ELSE a.state_change END)::numeric, 3) AS duration_seconds,
       round(extract(epoch FROM now() - a.xact_start)::numeric, 3) AS xact_seconds,
       CASE WHEN a.wait_event_type = 'Lock' THEN pg_blocking_pids(a.pid) ELSE '{}'::int[] END AS blocked_by,
       age(a.backend_xmin) AS xmin_age,
       a.pid = pg_backend_pid() AS is_self
FROM pg_stat_activity a
WHERE (%(all_backends)s OR a.backend_type = 'client backend')
  AND (%(all_databases)s OR a.datname = current_database() OR a.datname IS NULL AND %(all_backends)s)
  AND (%(include_idle)s OR a.state IS DISTINCT FROM 'idle')
  AND (%(state)s::text IS NULL OR a.state = %(state)s)
  AND (%(usename)s::text IS NULL OR a.usename = %(usename)s)
  AND (%(application)s::text IS NULL OR a.application_name = %(application)s)
  -- pgcode's own sessions (its pool, this call's included) unless asked for
  AND (%(include_self)s OR (a.pid <> pg_backend_pid() AND a.application_name IS DISTINCT FROM %(own_app)s))
ORDER BY duration_seconds DESC NULLS LAST, a.pid
LIMIT %(limit)s
