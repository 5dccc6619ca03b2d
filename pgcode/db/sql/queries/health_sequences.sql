-- Sequences and how much of their range they have used. A sequence that feeds a column (serial, identity,
-- OWNED BY, or a column DEFAULT nextval(...)) runs out at the narrower of its own limit and the column type's:
-- a bigint sequence behind an integer column fails at 2^31 - 1.
WITH seq AS MATERIALIZED (  -- materialized: the lock guard filters before last_value is read
    -- pg_sequence and a guarded pg_sequence_last_value rather than pg_sequences: reading last_value locks the
    -- sequence, so one that another session holds (ALTER SEQUENCE, DROP) is left out
    SELECT c.oid, n.nspname AS schema, c.relname AS sequence, format_type(s.seqtypid, NULL) AS sequence_type,
           CASE WHEN has_sequence_privilege(c.oid, 'SELECT,USAGE') THEN pg_sequence_last_value(c.oid) END
               AS last_value, s.seqincrement AS increment_by, s.seqmin AS min_value,
           s.seqmax AS max_value, s.seqcycle AS cycle
    FROM pg_sequence s
    JOIN pg_class c ON c.oid = s.seqrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname <> ALL (%(system)s) AND n.nspname NOT LIKE 'pg\_temp\_%%'
      AND c.oid::bigint <> ALL (%(locked)s::bigint[])
), fed AS (
    -- columns a sequence feeds: owned (a) and identity (i) dependencies, and defaults that call nextval (n)
    SELECT d.objid AS seq_oid, d.refobjid AS table_oid, d.refobjsubid AS attnum, d.deptype = 'i' AS is_identity
    FROM pg_depend d
    WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')
      AND d.refobjsubid > 0
    UNION
    SELECT d.refobjid, ad.adrelid, ad.adnum, false
    FROM pg_depend d
    JOIN pg_attrdef ad ON ad.oid = d.objid
    WHERE d.classid = 'pg_attrdef'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype = 'n'
)
SELECT seq.schema, seq.sequence, seq.sequence_type, seq.last_value, seq.increment_by, seq.cycle,
       col.table_schema, col.table, col.column, col.column_type, coalesce(col.is_identity, false) AS is_identity,
       CASE WHEN seq.increment_by > 0 THEN least(seq.max_value, coalesce(col.type_max, seq.max_value))
            ELSE greatest(seq.min_value, coalesce(-col.type_max - 1, seq.min_value)) END AS limit_value,
       CASE WHEN col.type_max < CASE WHEN seq.increment_by > 0 THEN seq.max_value ELSE -seq.min_value - 1 END
            THEN 'column type' ELSE 'sequence' END AS limited_by
FROM seq
LEFT JOIN LATERAL (
    SELECT tn.nspname AS table_schema, t.relname AS table, a.attname AS column,
           format_type(a.atttypid, a.atttypmod) AS column_type, fed.is_identity,
           CASE a.atttypid WHEN 'int2'::regtype THEN 32767 WHEN 'int4'::regtype THEN 2147483647
                           WHEN 'int8'::regtype THEN 9223372036854775807 END::numeric AS type_max
    FROM fed
    JOIN pg_class t ON t.oid = fed.table_oid
    JOIN pg_namespace tn ON tn.oid = t.relnamespace
    JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = fed.attnum AND NOT a.attisdropped
    WHERE fed.seq_oid = seq.oid
    ORDER BY type_max NULLS LAST, t.relname, a.attname
    LIMIT 1
) col ON true
WHERE seq.last_value IS NOT NULL
