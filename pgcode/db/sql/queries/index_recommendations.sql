-- Sequentially scanned tables and, per table, columns worth a btree index by pg_stats: many distinct values,
-- a btree-friendly type, narrow, mostly not null, and not already the leading column of an index.
WITH t AS (
    SELECT s.relid, s.schemaname, s.relname, s.seq_scan, s.seq_tup_read, coalesce(s.idx_scan, 0) AS idx_scan,
           s.n_live_tup, greatest(c.reltuples, s.n_live_tup, 1) AS rows
    FROM pg_stat_user_tables s
    JOIN pg_class c ON c.oid = s.relid
    WHERE s.seq_scan >= %(min_seq_scans)s AND s.n_live_tup >= %(min_rows)s
      AND (%(schema)s::text IS NULL OR s.schemaname = %(schema)s)
      AND (%(table)s::text IS NULL OR s.relname = %(table)s)
), c AS (
    SELECT t.*, st.attname AS column, format_type(a.atttypid, a.atttypmod) AS type,
           CASE WHEN st.n_distinct < 0 THEN -st.n_distinct * t.rows ELSE st.n_distinct END AS distinct_values,
           st.null_frac, st.avg_width, st.correlation,
           coalesce((st.most_common_vals::text::text[])[1],
                    (st.histogram_bounds::text::text[])[greatest(cardinality(st.histogram_bounds::text::text[]) / 2, 1)])
               AS sample_value
    FROM t
    JOIN pg_attribute a ON a.attrelid = t.relid AND a.attnum > 0 AND NOT a.attisdropped
    JOIN pg_type ty ON ty.oid = a.atttypid
    JOIN pg_stats st ON st.schemaname = t.schemaname AND st.tablename = t.relname AND st.attname = a.attname
                    AND NOT st.inherited
    WHERE (ty.typcategory NOT IN ('A', 'C', 'G', 'P', 'R', 'U', 'X') OR ty.typname = 'uuid')
      AND st.avg_width <= 256 AND st.null_frac < 0.9
      AND NOT EXISTS (SELECT 1 FROM pg_index x WHERE x.indrelid = t.relid AND x.indkey[0] = a.attnum)
)
SELECT c.schemaname AS schema, c.relname AS table, c.column, c.type, c.seq_scan, c.seq_tup_read, c.idx_scan,
       c.n_live_tup AS live_rows, round(c.distinct_values)::bigint AS distinct_values,
       round((c.rows / greatest(c.distinct_values, 1))::numeric, 1) AS rows_per_value,
       c.null_frac, c.correlation, c.sample_value
FROM c
WHERE c.distinct_values >= %(min_distinct)s
ORDER BY c.seq_tup_read DESC, c.schemaname, c.relname, c.distinct_values DESC, c.column
