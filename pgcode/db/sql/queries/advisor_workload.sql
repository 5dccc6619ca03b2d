-- The statements of this database by total execution time, with the role that ran them (pgcode's own roles are
-- left out by the advisor); {total} is the total-time column of this pg_stat_statements version.
SELECT s.queryid::text AS queryid, s.query, r.rolname AS username, s.calls, s.rows, {total} AS total_ms
FROM {pgss} s
LEFT JOIN pg_roles r ON r.oid = s.userid
WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND (%(search)s::text IS NULL OR strpos(lower(s.query), lower(%(search)s)) > 0)
ORDER BY {total} DESC NULLS LAST, s.queryid
LIMIT %(limit)s
