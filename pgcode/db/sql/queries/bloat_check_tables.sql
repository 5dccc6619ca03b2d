-- Table bloat estimate (the statistical method of ioguix/pgsql-bloat-estimation): the expected number of
-- pages from pg_stats (average column widths, null fractions) and reltuples, against the pages on disk.
-- Tables without statistics (never analyzed) cannot be estimated and are left out.
WITH cols AS (
    SELECT c.oid, n.nspname AS schema, c.relname AS table, c.reltuples, c.relpages AS heap_pages,
           coalesce(tc.relpages, 0) AS toast_pages, coalesce(tc.reltuples, 0) AS toast_tuples,
           coalesce(substring(array_to_string(c.reloptions, ' ') FROM 'fillfactor=([0-9]+)')::int, 100) AS fillfactor,
           current_setting('block_size')::numeric AS bs,
           23 + CASE WHEN max(coalesce(s.null_frac, 0)) > 0 THEN (7 + count(*)) / 8 ELSE 0 END AS tpl_hdr_size,
           sum((1 - coalesce(s.null_frac, 0)) * coalesce(s.avg_width, 0)) AS tpl_data_size,
           count(s.attname) = count(*) AS has_stats
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_attribute a ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = a.attname
                        AND NOT s.inherited
    LEFT JOIN pg_class tc ON tc.oid = c.reltoastrelid
    WHERE c.relkind IN ('r', 'm')
      AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s)
      AND (%(table)s::text IS NULL OR c.relname = %(table)s)
      AND (%(schema)s::text IS NOT NULL OR (n.nspname <> ALL (%(system)s) AND n.nspname NOT LIKE 'pg\_toast%%'
                                            AND n.nspname NOT LIKE 'pg\_temp\_%%'))
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
), sized AS (
    -- tuple size: line pointer (4) + header and data, each padded to the 8-byte MAXALIGN of 64-bit servers
    SELECT cols.*,
           4 + ceil(tpl_hdr_size / 8.0) * 8 + ceil(tpl_data_size / 8.0) * 8 AS tpl_size,
           heap_pages + toast_pages AS pages
    FROM cols
    WHERE has_stats AND reltuples >= 0
), est AS (
    SELECT sized.*,
           ceil(reltuples / floor((bs - 24) * fillfactor / (tpl_size * 100))) + ceil(toast_tuples / 4) AS est_pages
    FROM sized
)
SELECT schema, "table", (pages * bs)::bigint AS size_bytes,
       greatest(((pages - est_pages) * bs)::bigint, 0) AS bloat_bytes,
       CASE WHEN pages > 0 THEN round(greatest((pages - est_pages) / pages, 0)::numeric, 4) ELSE 0 END AS bloat_ratio,
       reltuples::bigint AS estimated_rows, fillfactor
FROM est
WHERE (pages * bs) >= %(min_size)s
  AND CASE WHEN pages > 0 THEN greatest((pages - est_pages) / pages, 0) ELSE 0 END >= %(min_ratio)s
ORDER BY bloat_bytes DESC, schema, "table"
LIMIT %(limit)s
