-- pg_jsonb_stats, after jsonb_walk: per-document types, sizes and depth; per path (gpath) the documents that
-- have it, its occurrences and the JSON types found there.
, depths AS (
    SELECT sid, max(depth) AS depth FROM walk GROUP BY sid
), paths AS (
    SELECT gpath, count(DISTINCT sid) AS docs, count(*) AS occurrences, min(depth) AS depth
    FROM walk
    WHERE depth > 0
    GROUP BY gpath
), path_types AS (
    SELECT gpath, jsonb_object_agg(type, n) AS types
    FROM (SELECT gpath, jsonb_typeof(value) AS type, count(*) AS n FROM walk WHERE depth > 0 GROUP BY 1, 2) AS x
    GROUP BY gpath
)
SELECT
    (SELECT count(*) FROM src) AS sampled,
    (SELECT count(*) FROM src WHERE doc IS NULL) AS null_docs,
    (SELECT COALESCE(jsonb_object_agg(type, n), '{{}}')
     FROM (SELECT jsonb_typeof(doc) AS type, count(*) AS n FROM src WHERE doc IS NOT NULL GROUP BY 1) AS x) AS doc_types,
    (SELECT jsonb_build_object('min', min(b), 'max', max(b), 'avg', round(avg(b), 1), 'total', sum(b),
                               'p50', percentile_disc(0.5) WITHIN GROUP (ORDER BY b),
                               'p95', percentile_disc(0.95) WITHIN GROUP (ORDER BY b))
     FROM (SELECT pg_column_size(doc) AS b FROM src WHERE doc IS NOT NULL) AS x) AS sizes,
    (SELECT jsonb_build_object('max', max(depth), 'avg', round(avg(depth), 2)) FROM depths) AS depth,
    (SELECT count(*) FROM paths) AS path_count,
    (SELECT COALESCE(jsonb_agg(k ORDER BY k.docs DESC, k.path), '[]')
     FROM (SELECT p.gpath AS path, p.docs, p.occurrences, p.depth, t.types
           FROM paths AS p JOIN path_types AS t USING (gpath)
           ORDER BY p.docs DESC, p.gpath
           LIMIT {max_keys}) AS k) AS keys
