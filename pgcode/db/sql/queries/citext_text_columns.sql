-- Text columns (text, varchar, char; a domain counts as its base type) of tables and materialized views that
-- could become citext, with the expression indexes of their table. Partitions are left out: their parent is
-- sampled. total counts before the limit.
SELECT n.nspname AS schema,
       c.relname AS table,
       a.attname AS column,
       a.attnum,
       format_type(a.atttypid, a.atttypmod) AS type,
       coalesce(bt.typname, t.typname) AS base,
       EXISTS (SELECT 1 FROM pg_index x WHERE x.indrelid = c.oid AND x.indisunique
               AND a.attnum = ANY (x.indkey::int2[])) AS unique_indexed,
       ARRAY(SELECT pg_get_indexdef(x.indexrelid) FROM pg_index x
             WHERE x.indrelid = c.oid AND x.indexprs IS NOT NULL) AS expression_indexes,
       count(*) OVER () AS total
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_type bt ON bt.oid = t.typbasetype AND t.typtype = 'd'
WHERE a.attnum > 0 AND NOT a.attisdropped
  AND c.relkind IN ('r', 'p', 'm') AND NOT c.relispartition
  AND coalesce(bt.typname, t.typname) IN ('text', 'varchar', 'bpchar')
  AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s)
  AND (%(table)s::text IS NULL OR c.relname = %(table)s)
  AND (%(schema)s::text IS NOT NULL OR (n.nspname <> ALL (%(system)s) AND n.nspname NOT LIKE 'pg\_%%'))
ORDER BY n.nspname, c.relname, a.attnum
LIMIT %(limit)s
