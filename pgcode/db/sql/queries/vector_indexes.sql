-- The HNSW and IVFFlat indexes whose first column is the given vector column: operator class, options, size.
SELECT i.relname AS name, am.amname AS method, opc.opcname AS opclass,
       coalesce(i.reloptions, '{}') AS options, pg_relation_size(i.oid) AS size_bytes, x.indisvalid AS valid,
       pg_get_indexdef(i.oid) AS definition
FROM pg_index x
JOIN pg_class i ON i.oid = x.indexrelid
JOIN pg_am am ON am.oid = i.relam
JOIN pg_class c ON c.oid = x.indrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum = x.indkey[0]
JOIN pg_opclass opc ON opc.oid = x.indclass[0]
WHERE n.nspname = %(schema)s AND c.relname = %(table)s AND a.attname = %(column)s
  AND am.amname IN ('hnsw', 'ivfflat')
ORDER BY i.relname
