-- B-tree index bloat estimate (ioguix/pgsql-bloat-estimation): expected leaf pages from reltuples and the
-- average width of the indexed columns in pg_stats, against the pages on disk. Other index types are not
-- estimated. Expression columns take their statistics from the index itself (analyzed with the table).
WITH cols AS (
    SELECT x.indexrelid, n.nspname AS schema, t.relname AS table, i.relname AS index,
           i.reltuples, i.relpages AS pages,
           coalesce(substring(array_to_string(i.reloptions, ' ') FROM 'fillfactor=([0-9]+)')::int, 90) AS fillfactor,
           current_setting('block_size')::numeric AS bs,
           max(coalesce(s.null_frac, 0)) > 0 AS has_nulls,
           sum((1 - coalesce(s.null_frac, 0)) * coalesce(s.avg_width, 1024)) AS data_width,
           count(s.attname) = count(*) AS has_stats
    FROM pg_index x
    JOIN pg_class i ON i.oid = x.indexrelid
    JOIN pg_class t ON t.oid = x.indrelid
    JOIN pg_namespace n ON n.oid = t.relnamespace
    JOIN pg_am am ON am.oid = i.relam AND am.amname = 'btree'
    CROSS JOIN LATERAL generate_series(1, x.indnatts) AS k(pos)
    LEFT JOIN pg_attribute ta ON x.indkey[k.pos - 1] <> 0 AND ta.attrelid = x.indrelid
                             AND ta.attnum = x.indkey[k.pos - 1]
    LEFT JOIN pg_attribute ia ON x.indkey[k.pos - 1] = 0 AND ia.attrelid = x.indexrelid AND ia.attnum = k.pos
    LEFT JOIN pg_stats s ON s.schemaname = n.nspname
                        AND s.tablename = CASE WHEN ta.attname IS NULL THEN i.relname ELSE t.relname END
                        AND s.attname = coalesce(ta.attname, ia.attname) AND NOT s.inherited
    WHERE i.relpages > 0
      AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s)
      AND (%(table)s::text IS NULL OR t.relname = %(table)s)
      AND (%(schema)s::text IS NOT NULL OR (n.nspname <> ALL (%(system)s) AND n.nspname NOT LIKE 'pg\_toast%%'
                                            AND n.nspname NOT LIKE 'pg\_temp\_%%'))
    GROUP BY 1, 2, 3, 4, 5, 6, 7, 8
), sized AS (
    -- index tuple: 8-byte header (+ null bitmap), data padded to MAXALIGN 8, and a 4-byte line pointer
    SELECT cols.*,
           4 + (CASE WHEN has_nulls THEN 16 ELSE 8 END) + ceil(data_width / 8.0) * 8 AS tuple_size
    FROM cols
    WHERE has_stats
), est AS (
    -- page header 24 bytes, btree special space 16 bytes, plus the metapage
    SELECT sized.*, 1 + ceil(reltuples / floor((bs - 24 - 16) * fillfactor / (100 * tuple_size))) AS est_pages
    FROM sized
)
SELECT schema, "table", index, (pages * bs)::bigint AS size_bytes,
       greatest(((pages - est_pages) * bs)::bigint, 0) AS bloat_bytes,
       round(greatest((pages - est_pages) / pages, 0)::numeric, 4) AS bloat_ratio,
       reltuples::bigint AS estimated_rows, fillfactor
FROM est
WHERE (pages * bs) >= %(min_size)s AND greatest((pages - est_pages) / pages, 0) >= %(min_ratio)s
ORDER BY bloat_bytes DESC, schema, "table", index
LIMIT %(limit)s
