-- Every partition below one partitioned table (nested ones too), with its bounds, row estimate and size.
-- total counts them all, before the limit.
SELECT c.relname AS name,
       n.nspname AS schema,
       pc.relname AS parent,
       t.level,
       t.isleaf AS is_leaf,
       CASE c.relkind WHEN 'p' THEN 'partitioned_table' WHEN 'f' THEN 'foreign_table' ELSE 'table' END AS kind,
       pg_get_expr(c.relpartbound, c.oid) AS bounds,
       pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT' AS is_default,
       CASE WHEN c.reltuples < 0 THEN NULL ELSE c.reltuples::bigint END AS row_estimate,
       pg_total_relation_size(c.oid) AS size_bytes,
       count(*) OVER () AS total
FROM pg_partition_tree(%(oid)s::oid::regclass) t
JOIN pg_class c ON c.oid = t.relid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class pc ON pc.oid = t.parentrelid
WHERE t.level > 0
ORDER BY t.level, pg_get_expr(c.relpartbound, c.oid) = 'DEFAULT', n.nspname, c.relname
LIMIT %(limit)s
