-- Triggers with their table, timing, events, level, enabled state and function, decoded from pg_trigger.tgtype
-- (bits: 1 row, 2 before, 4 insert, 8 delete, 16 update, 32 truncate, 64 instead of).
SELECT n.nspname AS schema,
       c.relname AS table,
       t.tgname AS name,
       CASE WHEN t.tgtype::int & 2 <> 0 THEN 'BEFORE' WHEN t.tgtype::int & 64 <> 0 THEN 'INSTEAD OF'
            ELSE 'AFTER' END AS timing,
       array_remove(ARRAY[CASE WHEN t.tgtype::int & 4 <> 0 THEN 'INSERT' END,
                          CASE WHEN t.tgtype::int & 16 <> 0 THEN 'UPDATE' END,
                          CASE WHEN t.tgtype::int & 8 <> 0 THEN 'DELETE' END,
                          CASE WHEN t.tgtype::int & 32 <> 0 THEN 'TRUNCATE' END], NULL) AS events,
       (SELECT array_agg(a.attname ORDER BY k.ord)
        FROM unnest(t.tgattr::int2[]) WITH ORDINALITY k(attnum, ord)
        JOIN pg_attribute a ON a.attrelid = t.tgrelid AND a.attnum = k.attnum) AS update_columns,
       CASE WHEN t.tgtype::int & 1 <> 0 THEN 'ROW' ELSE 'STATEMENT' END AS level,
       t.tgenabled <> 'D' AS enabled,
       CASE t.tgenabled WHEN 'O' THEN 'origin' WHEN 'D' THEN 'disabled' WHEN 'R' THEN 'replica'
                        WHEN 'A' THEN 'always' END AS enabled_mode,
       format('%%I.%%I', pn.nspname, p.proname) AS function,
       pn.nspname AS function_schema,
       p.proname AS function_name,
       t.tgconstraint <> 0 AS is_constraint,
       t.tgisinternal AS is_internal,
       pg_get_triggerdef(t.oid, true) AS definition
FROM pg_trigger t
JOIN pg_class c ON c.oid = t.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_proc p ON p.oid = t.tgfoid
JOIN pg_namespace pn ON pn.oid = p.pronamespace
WHERE (%(include_internal)s OR NOT t.tgisinternal)
  AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s)
  AND (%(table)s::text IS NULL OR c.relname = %(table)s)
  AND (%(include_system)s OR (n.nspname <> ALL (%(system)s) AND n.nspname NOT LIKE 'pg\_toast%%'
                              AND n.nspname NOT LIKE 'pg\_temp\_%%'))
ORDER BY n.nspname, c.relname, t.tgname
LIMIT %(limit)s
