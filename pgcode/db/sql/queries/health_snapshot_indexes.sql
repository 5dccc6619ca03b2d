-- The largest indexes of user tables, with the count of them all. An index another session locks (or whose
-- table it locks: the locked oids), whose pg_relation_size would wait for ACCESS SHARE, is measured from
-- pg_class.relpages (as of its last VACUUM or ANALYZE) instead.
WITH sized AS (
    SELECT n.nspname AS schema, t.relname AS "table", i.relname AS index,
           (i.oid::bigint = ANY (%(locked)s::bigint[]) OR t.oid::bigint = ANY (%(locked)s::bigint[])) AS estimated,
           i.oid, i.relpages
    FROM pg_index x
    JOIN pg_class i ON i.oid = x.indexrelid
    JOIN pg_class t ON t.oid = x.indrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
    WHERE n.nspname <> ALL (%(system)s) AND n.nspname NOT LIKE 'pg\_toast%%' AND n.nspname NOT LIKE 'pg\_temp\_%%'
)
SELECT schema, "table", index, estimated,
       CASE WHEN estimated THEN relpages::bigint * current_setting('block_size')::bigint
            ELSE pg_relation_size(oid) END AS bytes,
       count(*) OVER () AS total
FROM sized
ORDER BY bytes DESC, schema, index
LIMIT %(limit)s
