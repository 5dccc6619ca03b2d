-- Locks with their sessions. A waiting lock lists the pids blocking it (blocked_by); a held lock lists the
-- pids waiting for that same lock target because of it (blocking). {waiting} differs by version.
-- pgcode's own sessions' locks are left out unless asked for (include_self), or unless they block someone.
WITH l AS (
    SELECT l.*, a.datname AS session_database, a.usename, a.application_name, a.state, a.query, a.xact_start,
           a.state_change,
           CASE WHEN NOT l.granted THEN pg_blocking_pids(l.pid) ELSE '{{}}'::int[] END AS blocked_by,
           coalesce(a.application_name = %(own_app)s, false) AS own
    FROM pg_locks l
    LEFT JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE (%(include_self)s OR l.pid IS DISTINCT FROM pg_backend_pid())
), x AS (
    SELECT l.*,
           CASE WHEN l.granted THEN ARRAY(
               SELECT DISTINCT w.pid FROM l w
               WHERE NOT w.granted AND l.pid = ANY (w.blocked_by)
                 AND w.locktype = l.locktype
                 AND w.database IS NOT DISTINCT FROM l.database AND w.relation IS NOT DISTINCT FROM l.relation
                 AND w.page IS NOT DISTINCT FROM l.page AND w.tuple IS NOT DISTINCT FROM l.tuple
                 AND w.virtualxid IS NOT DISTINCT FROM l.virtualxid
                 AND w.transactionid::text IS NOT DISTINCT FROM l.transactionid::text
                 AND w.classid IS NOT DISTINCT FROM l.classid AND w.objid IS NOT DISTINCT FROM l.objid
                 AND w.objsubid IS NOT DISTINCT FROM l.objsubid
               ORDER BY w.pid) ELSE '{{}}'::int[] END AS blocking
    FROM l
)
SELECT x.locktype,
       d.datname AS database,
       n.nspname AS schema,
       c.relname AS relation,
       x.page, x.tuple, x.virtualxid, x.transactionid::text AS transactionid,
       x.mode,
       x.granted,
       x.fastpath,
       x.pid,
       x.usename,
       x.application_name,
       x.state,
       left(x.query, %(qlen)s) AS query,
       {waiting} AS waiting_seconds,
       round(extract(epoch FROM now() - x.xact_start)::numeric, 3) AS xact_seconds,
       x.blocked_by,
       x.blocking
FROM x
LEFT JOIN pg_database d ON d.oid = x.database
LEFT JOIN pg_class c ON c.oid = x.relation AND x.database = (SELECT oid FROM pg_database
                                                             WHERE datname = current_database())
LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE (%(granted)s::bool IS NULL OR x.granted = %(granted)s)
  AND (%(include_self)s OR NOT x.own OR cardinality(x.blocked_by) > 0 OR cardinality(x.blocking) > 0)
  AND (NOT %(blocking_only)s OR cardinality(x.blocked_by) > 0 OR cardinality(x.blocking) > 0)
  AND (%(relation)s::text IS NULL OR c.relname = %(relation)s)
  -- this database's objects, shared catalogs (database 0), and transaction/virtualxid locks of its sessions
  AND (%(all_databases)s
       OR x.database IN (0, (SELECT oid FROM pg_database WHERE datname = current_database()))
       OR (x.database IS NULL AND x.session_database = current_database()))
ORDER BY cardinality(x.blocked_by) + cardinality(x.blocking) > 0 DESC, x.granted, x.pid, x.locktype, x.mode
LIMIT %(limit)s
