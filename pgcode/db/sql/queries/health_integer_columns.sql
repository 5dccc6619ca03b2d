-- smallint and integer columns whose largest sampled value (pg_stats: histogram bounds and most common
-- values, from the last ANALYZE) comes near the type's limit. Columns fed by a sequence are the sequence
-- check's business and are left out.
WITH ints AS MATERIALIZED (  -- only integer columns reach the casts below
    SELECT s.schemaname, s.tablename, s.attname, t.typname, s.histogram_bounds::text AS bounds,
           s.most_common_vals::text AS common
    FROM pg_stats s
    JOIN pg_namespace n ON n.nspname = s.schemaname
    JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = s.tablename
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attname = s.attname AND NOT a.attisdropped
    JOIN pg_type t ON t.oid = a.atttypid
    WHERE t.typname IN ('int2', 'int4') AND NOT s.inherited AND a.attidentity = ''
      AND s.schemaname <> ALL (%(system)s) AND s.schemaname NOT LIKE 'pg\_temp\_%%'
      -- a default that depends on a sequence (nextval), read from pg_depend: pg_get_expr would lock the table
      AND NOT EXISTS (SELECT 1 FROM pg_attrdef ad
                      JOIN pg_depend d ON d.classid = 'pg_attrdef'::regclass AND d.objid = ad.oid
                                      AND d.refclassid = 'pg_class'::regclass
                      JOIN pg_class sq ON sq.oid = d.refobjid AND sq.relkind = 'S'
                      WHERE ad.adrelid = c.oid AND ad.adnum = a.attnum)
)
SELECT i.schemaname AS schema, i.tablename AS table, i.attname AS column, i.typname AS column_type,
       m.largest, CASE i.typname WHEN 'int2' THEN 32767 ELSE 2147483647 END AS limit_value
FROM ints i
CROSS JOIN LATERAL (
    SELECT max(abs(v)) AS largest
    FROM unnest(coalesce(i.bounds::bigint[], '{}') || coalesce(i.common::bigint[], '{}')) v
) m
WHERE m.largest >= %(min_ratio)s * CASE i.typname WHEN 'int2' THEN 32767 ELSE 2147483647 END
ORDER BY m.largest::numeric / CASE i.typname WHEN 'int2' THEN 32767 ELSE 2147483647 END DESC, 1, 2, 3
