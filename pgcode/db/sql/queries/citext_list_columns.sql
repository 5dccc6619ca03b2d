-- Columns whose type is citext, a domain over it, or an array of it; partitions are left out (their parent
-- is listed). Catalog only: works whether or not the extension is installed. total counts before the limit.
SELECT n.nspname AS schema,
       c.relname AS table,
       a.attname AS column,
       format_type(a.atttypid, a.atttypmod) AS type,
       CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned_table' WHEN 'v' THEN 'view'
                      WHEN 'm' THEN 'materialized_view' ELSE 'foreign_table' END AS table_type,
       NOT a.attnotnull AS nullable,
       EXISTS (SELECT 1 FROM pg_index x WHERE x.indrelid = c.oid AND a.attnum = ANY (x.indkey::int2[])) AS indexed,
       count(*) OVER () AS total
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type bt ON bt.oid = t.typbasetype
LEFT JOIN pg_type et ON et.oid = t.typelem AND t.typcategory = 'A'
WHERE a.attnum > 0 AND NOT a.attisdropped
  AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition
  AND 'citext' IN (t.typname, bt.typname, et.typname)
  AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s)
  AND (%(schema)s::text IS NOT NULL OR (n.nspname <> ALL (%(system)s) AND n.nspname NOT LIKE 'pg\_%%'))
ORDER BY n.nspname, c.relname, a.attnum
LIMIT %(limit)s
