-- Indexes made redundant by another index on the same table: exact duplicates (same method, key and
-- INCLUDE columns, operator classes, collations, expressions and predicate), and btree indexes whose key
-- columns are a leading prefix of another's. The index that backs a constraint, is unique, or is older is kept.
-- tables and indexes another session locks are left
-- out, because pg_get_expr and pg_get_indexdef take ACCESS SHARE on the table, which would wait.
WITH idx AS MATERIALIZED (  -- materialized: the lock guard filters before the definitions are read
    SELECT x.indexrelid, x.indrelid, n.nspname AS schema, t.relname AS table, i.relname AS name,
           am.amname AS method, x.indkey::text AS keys, x.indnkeyatts,
           (string_to_array(x.indkey::text, ' ')::int[])[1:x.indnkeyatts] AS key_cols,
           string_to_array(x.indclass::text, ' ') AS classes,
           string_to_array(x.indcollation::text, ' ') AS collations,
           coalesce(pg_get_expr(x.indexprs, x.indrelid), '') AS exprs,
           coalesce(pg_get_expr(x.indpred, x.indrelid), '') AS pred,
           x.indisunique OR x.indisexclusion AS is_unique, x.indisvalid AS is_valid,
           EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid
                   AND k.contype IN ('p', 'u', 'x')) AS backs_constraint,
           pg_relation_size(x.indexrelid) AS size_bytes,
           pg_get_indexdef(x.indexrelid) AS definition
    FROM pg_index x
    JOIN pg_class i ON i.oid = x.indexrelid
    JOIN pg_class t ON t.oid = x.indrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
    JOIN pg_am am ON am.oid = i.relam
    WHERE i.relkind = 'i' AND x.indrelid::bigint <> ALL (%(locked)s::bigint[])
      AND x.indexrelid::bigint <> ALL (%(locked)s::bigint[])
      AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s)
      AND (%(table)s::text IS NULL OR t.relname = %(table)s)
      AND (%(schema)s::text IS NOT NULL OR (n.nspname <> ALL (%(system)s) AND n.nspname NOT LIKE 'pg\_toast%%'
                                            AND n.nspname NOT LIKE 'pg\_temp\_%%'))
), pairs AS (
    SELECT 'duplicate' AS kind, a.*, b.name AS redundant_with, b.definition AS redundant_with_definition
    FROM idx a
    JOIN idx b ON b.indrelid = a.indrelid AND b.indexrelid <> a.indexrelid AND b.is_valid
              AND b.method = a.method AND b.keys = a.keys AND b.indnkeyatts = a.indnkeyatts
              AND b.classes = a.classes AND b.collations = a.collations AND b.exprs = a.exprs AND b.pred = a.pred
    WHERE NOT a.backs_constraint
      AND (b.backs_constraint OR (b.is_unique AND NOT a.is_unique)
           OR (b.is_unique = a.is_unique AND b.indexrelid < a.indexrelid))
    UNION ALL
    SELECT 'overlapping', a.*, b.name, b.definition
    FROM idx a
    JOIN idx b ON b.indrelid = a.indrelid AND b.indexrelid <> a.indexrelid AND b.is_valid
              AND a.method = 'btree' AND b.method = 'btree'
              AND a.exprs = '' AND b.exprs = '' AND b.pred = a.pred
              AND cardinality(a.key_cols) < cardinality(b.key_cols)
              AND a.key_cols = b.key_cols[1:cardinality(a.key_cols)]
              AND a.classes = b.classes[1:cardinality(a.classes)]
              AND a.collations = b.collations[1:cardinality(a.collations)]
    WHERE NOT a.is_unique AND NOT a.backs_constraint
)
SELECT d.kind, d.schema, d.table, d.index, d.definition, d.size_bytes, d.redundant_with, d.redundant_with_definition
FROM (SELECT DISTINCT ON (p.indexrelid) p.kind, p.schema, p.table, p.name AS index, p.definition, p.size_bytes,
             p.redundant_with, p.redundant_with_definition
      FROM pairs p
      ORDER BY p.indexrelid, p.kind = 'duplicate' DESC, p.redundant_with) d
ORDER BY d.size_bytes DESC, d.schema, d.table, d.index
LIMIT %(limit)s
