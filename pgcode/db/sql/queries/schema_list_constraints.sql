-- Table constraints with their columns and definition; foreign keys also with the referenced table and columns
-- and their ON UPDATE / ON DELETE actions.
SELECT n.nspname AS schema,
       c.relname AS table,
       con.conname AS name,
       CASE con.contype WHEN 'p' THEN 'primary_key' WHEN 'f' THEN 'foreign_key' WHEN 'u' THEN 'unique'
                        WHEN 'c' THEN 'check' WHEN 'x' THEN 'exclusion' WHEN 'n' THEN 'not_null'
                        WHEN 't' THEN 'trigger' END AS type,
       (SELECT array_agg(a.attname ORDER BY k.ord)
        FROM unnest(con.conkey) WITH ORDINALITY k(attnum, ord)
        JOIN pg_attribute a ON a.attrelid = con.conrelid AND a.attnum = k.attnum) AS columns,
       pg_get_constraintdef(con.oid, true) AS definition,
       fn.nspname AS referenced_schema,
       fc.relname AS referenced_table,
       (SELECT array_agg(a.attname ORDER BY k.ord)
        FROM unnest(con.confkey) WITH ORDINALITY k(attnum, ord)
        JOIN pg_attribute a ON a.attrelid = con.confrelid AND a.attnum = k.attnum) AS referenced_columns,
       CASE WHEN con.contype = 'f' THEN
           CASE con.confupdtype WHEN 'a' THEN 'NO ACTION' WHEN 'r' THEN 'RESTRICT' WHEN 'c' THEN 'CASCADE'
                                WHEN 'n' THEN 'SET NULL' WHEN 'd' THEN 'SET DEFAULT' END END AS on_update,
       CASE WHEN con.contype = 'f' THEN
           CASE con.confdeltype WHEN 'a' THEN 'NO ACTION' WHEN 'r' THEN 'RESTRICT' WHEN 'c' THEN 'CASCADE'
                                WHEN 'n' THEN 'SET NULL' WHEN 'd' THEN 'SET DEFAULT' END END AS on_delete,
       con.condeferrable AS deferrable,
       con.condeferred AS initially_deferred,
       con.convalidated AS validated,
       ci.relname AS index
FROM pg_constraint con
JOIN pg_class c ON c.oid = con.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class fc ON fc.oid = con.confrelid AND con.contype = 'f'
LEFT JOIN pg_namespace fn ON fn.oid = fc.relnamespace
LEFT JOIN pg_class ci ON ci.oid = con.conindid AND con.contype IN ('p', 'u', 'x')
WHERE con.conrelid <> 0
  AND CASE con.contype WHEN 'p' THEN 'primary_key' WHEN 'f' THEN 'foreign_key' WHEN 'u' THEN 'unique'
                       WHEN 'c' THEN 'check' WHEN 'x' THEN 'exclusion' WHEN 'n' THEN 'not_null'
                       WHEN 't' THEN 'trigger' END = ANY (%(types)s)
  AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s)
  AND (%(table)s::text IS NULL OR c.relname = %(table)s)
  AND (%(include_system)s OR (n.nspname <> ALL (%(system)s) AND n.nspname NOT LIKE 'pg\_toast%%'
                              AND n.nspname NOT LIKE 'pg\_temp\_%%'))
ORDER BY n.nspname, c.relname, con.conname
LIMIT %(limit)s
