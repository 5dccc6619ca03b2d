WITH lt AS (
    SELECT t.oid FROM pg_type t JOIN pg_extension x ON x.extnamespace = t.typnamespace
    WHERE x.extname = 'ltree' AND t.typname = 'ltree'
)
SELECT n.nspname AS schema, c.relname AS table, a.attname AS column,
       format_type(a.atttypid, a.atttypmod) AS type,
       CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned table' WHEN 'v' THEN 'view'
                      WHEN 'm' THEN 'materialized view' WHEN 'f' THEN 'foreign table' END AS kind,
       NOT a.attnotnull AS nullable,
       CASE WHEN c.reltuples >= 0 THEN c.reltuples::bigint END AS row_estimate,
       COALESCE((SELECT array_agg(i.relname::text ORDER BY i.relname)
                 FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid JOIN pg_am am ON am.oid = i.relam
                 WHERE x.indrelid = c.oid AND a.attnum = ANY (x.indkey) AND am.amname = 'gist'),
                '{}') AS gist_indexes
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type e ON e.oid = t.typelem AND t.typcategory = 'A'
LEFT JOIN pg_type b ON b.oid = t.typbasetype
WHERE a.attnum > 0 AND NOT a.attisdropped AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND (SELECT oid FROM lt) IN (t.oid, e.oid, b.oid)
  AND n.nspname <> ALL (%(system)s) AND n.nspname !~ '^pg_(toast|temp)'
  AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s)
ORDER BY n.nspname, c.relname, a.attnum
LIMIT %(limit)s
