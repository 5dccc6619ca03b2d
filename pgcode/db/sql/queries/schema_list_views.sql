-- Views and materialized views. A materialized view can be refreshed CONCURRENTLY only when it has a valid
-- unique index on plain columns, without a WHERE clause.
SELECT n.nspname AS schema,
       c.relname AS name,
       CASE c.relkind WHEN 'v' THEN 'view' ELSE 'materialized_view' END AS type,
       pg_get_userbyid(c.relowner) AS owner,
       pg_get_viewdef(c.oid, true) AS definition,
       CASE WHEN c.relkind = 'm' THEN c.relispopulated END AS is_populated,
       CASE WHEN c.relkind = 'm' THEN pg_total_relation_size(c.oid) END AS size_bytes,
       CASE WHEN c.relkind = 'm' THEN EXISTS (
           SELECT 1 FROM pg_index x
           WHERE x.indrelid = c.oid AND x.indisunique AND x.indisvalid AND x.indimmediate
             AND x.indpred IS NULL AND x.indexprs IS NULL) END AS can_refresh_concurrently,
       (SELECT coalesce(array_agg(i.relname ORDER BY i.relname), '{}')
        FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid WHERE x.indrelid = c.oid) AS indexes,
       coalesce(c.reloptions, '{}') AS options,
       obj_description(c.oid, 'pg_class') AS comment
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('v', 'm')
  AND (%(include_materialized)s OR c.relkind = 'v')
  AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s)
  AND (%(name)s::text IS NULL OR c.relname = %(name)s)
  AND (%(pattern)s::text IS NULL OR c.relname ILIKE %(pattern)s)
  AND (%(include_system)s OR (n.nspname <> ALL (%(system)s) AND n.nspname NOT LIKE 'pg\_toast%%'
                              AND n.nspname NOT LIKE 'pg\_temp\_%%'
                              AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass
                                              AND d.objid = c.oid AND d.deptype = 'e')))
ORDER BY n.nspname, c.relname
LIMIT %(limit)s
