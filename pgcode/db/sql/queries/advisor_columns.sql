-- Columns of the advisor's tables with the statistics its parameter values and size estimates come from.
SELECT a.attrelid, a.attname, a.attnum, t.typname,
       (t.typcategory NOT IN ('A', 'C', 'G', 'P', 'R', 'U', 'X') OR t.typname = 'uuid') AS btree,
       s.null_frac, s.n_distinct, s.avg_width, s.correlation,
       s.most_common_vals::text::text[] AS mcv, s.most_common_freqs AS mcf,
       s.histogram_bounds::text::text[] AS histogram
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = a.attname
                    AND s.inherited = (c.relkind = 'p')  -- a partitioned table has only whole-tree statistics
WHERE a.attrelid = ANY (%(oids)s) AND a.attnum > 0 AND NOT a.attisdropped
