-- One relation for the jsonb tools: kind, row estimate, columns (name, type without typmod, typname), primary key.
SELECT c.oid::bigint AS oid,
       c.relkind::text AS relkind,
       c.reltuples::float8 AS reltuples,
       COALESCE((SELECT jsonb_agg(jsonb_build_array(a.attname, format_type(a.atttypid, NULL), t.typname)
                                  ORDER BY a.attnum)
                 FROM pg_attribute AS a
                 JOIN pg_type AS t ON t.oid = a.atttypid
                 WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped), '[]') AS columns,
       COALESCE((SELECT jsonb_agg(a.attname ORDER BY k.ord)
                 FROM pg_index AS i
                 CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, ord)
                 JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                 WHERE i.indrelid = c.oid AND i.indisprimary), '[]') AS pk
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE n.nspname = %(schema)s AND c.relname = %(table)s
