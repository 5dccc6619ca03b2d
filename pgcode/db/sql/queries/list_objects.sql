-- Schema objects of the kinds asked for: relations, functions and procedures, and user-defined types.
WITH objects AS (
    SELECT c.relname AS name, n.nspname AS schema,
           CASE c.relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'table' WHEN 'v' THEN 'view'
                          WHEN 'm' THEN 'materialized_view' WHEN 'S' THEN 'sequence' WHEN 'i' THEN 'index'
                          WHEN 'I' THEN 'index' WHEN 'f' THEN 'foreign_table' END AS type,
           pg_get_userbyid(c.relowner) AS owner, NULL::text AS signature
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'i', 'I', 'f')
      AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid
                      AND d.deptype = 'e')
    UNION ALL
    SELECT p.proname, n.nspname, CASE p.prokind WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate'
                                                WHEN 'w' THEN 'window_function' ELSE 'function' END,
           pg_get_userbyid(p.proowner), p.proname || '(' || pg_get_function_identity_arguments(p.oid) || ')'
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                      AND d.deptype = 'e')
    UNION ALL
    SELECT t.typname, n.nspname, CASE t.typtype WHEN 'e' THEN 'enum' WHEN 'd' THEN 'domain'
                                                WHEN 'c' THEN 'composite_type' WHEN 'r' THEN 'range' ELSE 'type' END,
           pg_get_userbyid(t.typowner), NULL
    FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE t.typtype IN ('e', 'd', 'r') OR (t.typtype = 'c' AND EXISTS (
          SELECT 1 FROM pg_class c WHERE c.oid = t.typrelid AND c.relkind = 'c'))
)
SELECT name, schema, type, owner, signature
FROM objects
WHERE schema NOT IN ('pg_catalog', 'information_schema', 'pgcode') AND schema NOT LIKE 'pg\_toast%%'
  AND schema NOT LIKE 'pg\_temp\_%%'
  AND (%(schema)s::text IS NULL OR schema = %(schema)s)
  AND (%(types)s::text[] IS NULL OR type = ANY(%(types)s))
  AND (%(pattern)s::text IS NULL OR name ILIKE %(pattern)s)
ORDER BY schema, type, name
LIMIT %(limit)s
