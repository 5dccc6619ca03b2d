-- The valid indexes of the advisor's tables: key and INCLUDE columns (attnums, 0 for an expression), directions,
-- and what keeps an index even when another covers its columns (uniqueness, a constraint, a predicate).
SELECT i.indrelid, i.indexrelid, n.nspname AS schema, c.relname AS name, am.amname AS method,
       string_to_array(i.indkey::text, ' ')::int2[] AS columns, i.indnkeyatts AS key_count,
       string_to_array(i.indoption::text, ' ')::int2[] AS options,
       i.indisunique AS is_unique, i.indpred IS NOT NULL AS partial, i.indexprs IS NOT NULL AS expressions,
       EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = i.indexrelid) AS constraint_backed,
       pg_relation_size(i.indexrelid) AS size_bytes
FROM pg_index i
JOIN pg_class c ON c.oid = i.indexrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_am am ON am.oid = c.relam
WHERE i.indrelid = ANY (%(oids)s) AND i.indisvalid
ORDER BY i.indexrelid
