-- Sequences with their settings, last value (NULL until the first nextval) and the column that owns them
-- (OWNED BY, serial or identity), if any.
SELECT s.schemaname AS schema,
       s.sequencename AS name,
       format_type(s.data_type, NULL) AS data_type,
       s.start_value,
       s.increment_by AS increment,
       s.min_value,
       s.max_value,
       s.cache_size,
       s.cycle,
       s.last_value,
       pg_get_userbyid(c.relowner) AS owner,
       own.table_schema AS owned_by_schema,
       own.table_name AS owned_by_table,
       own.column_name AS owned_by_column,
       coalesce(own.is_identity, false) AS is_identity,
       obj_description(c.oid, 'pg_class') AS comment
FROM pg_sequences s
JOIN pg_namespace n ON n.nspname = s.schemaname
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = s.sequencename
LEFT JOIN LATERAL (
    SELECT tn.nspname AS table_schema, t.relname AS table_name, a.attname AS column_name,
           d.deptype = 'i' AS is_identity
    FROM pg_depend d
    JOIN pg_class t ON t.oid = d.refobjid
    JOIN pg_namespace tn ON tn.oid = t.relnamespace
    JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.refclassid = 'pg_class'::regclass
      AND d.deptype IN ('a', 'i') AND d.refobjsubid > 0
    LIMIT 1
) own ON true
WHERE (%(schema)s::text IS NULL OR s.schemaname = %(schema)s)
  AND (%(name)s::text IS NULL OR s.sequencename = %(name)s)
  AND (%(pattern)s::text IS NULL OR s.sequencename ILIKE %(pattern)s)
  AND (%(include_system)s OR (s.schemaname <> ALL (%(system)s) AND s.schemaname NOT LIKE 'pg\_toast%%'
                              AND s.schemaname NOT LIKE 'pg\_temp\_%%'))
ORDER BY s.schemaname, s.sequencename
LIMIT %(limit)s
