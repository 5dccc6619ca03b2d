-- Sessions from pg_stat_activity, filtered; the tool appends either the list or the grouping.
-- duration: seconds in the current state (an active session: since its query started).
WITH sessions AS (
    SELECT a.pid,
           a.datname,
           a.usename,
           a.application_name,
           host(a.client_addr) AS client_addr,
           a.client_port,
           a.backend_type,
           a.state,
           a.wait_event_type,
           a.wait_event,
           a.backend_start,
           a.xact_start,
           a.query_start,
           a.state_change,
           round(extract(epoch FROM clock_timestamp()
                 - CASE WHEN a.state = 'active' THEN a.query_start ELSE a.state_change END)::numeric, 3)
               AS duration,
           round(extract(epoch FROM clock_timestamp() - a.xact_start)::numeric, 3) AS xact_duration,
           left(a.query, %(query_max)s) AS query,
           length(a.query) > %(query_max)s AS query_truncated,
           -- pg_blocking_pids takes the lock manager's locks: only ask for sessions waiting on a lock
           CASE WHEN a.wait_event_type = 'Lock' THEN pg_blocking_pids(a.pid) END AS blocked_by,
           r.rolsuper AS superuser
    FROM pg_stat_activity a
    LEFT JOIN pg_roles r ON r.oid = a.usesysid
    WHERE (%(include_background)s OR a.backend_type = 'client backend')
      -- pgcode's own sessions (its pool, this call's included) unless asked for
      AND (%(include_self)s OR (a.pid <> pg_backend_pid() AND a.application_name IS DISTINCT FROM %(own_app)s))
      AND (%(state)s::text IS NULL OR a.state = %(state)s)
      AND (%(database)s::text IS NULL OR a.datname = %(database)s)
      AND (%(user)s::text IS NULL OR a.usename = %(user)s)
      AND (%(application)s::text IS NULL OR a.application_name = %(application)s)
)
{tail}
LIMIT %(limit)s
