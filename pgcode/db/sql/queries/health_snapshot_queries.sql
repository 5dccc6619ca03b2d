-- This database's top statements by total execution time, summed per queryid over the roles that ran them
-- (pgcode's own roles, its tools and probes, left out). {total}: the version's total-time column.
SELECT s.queryid::text AS queryid, left(min(s.query), %(qlen)s) AS query, sum(s.calls)::bigint AS calls,
       sum({total})::float8 AS total_ms, sum(s.rows)::bigint AS rows
FROM {pgss} s
WHERE s.dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND s.queryid IS NOT NULL AND s.calls > 0
  AND s.userid NOT IN (SELECT oid FROM pg_roles WHERE rolname = ANY (%(own_roles)s))
GROUP BY s.queryid
ORDER BY total_ms DESC, queryid
LIMIT %(limit)s
