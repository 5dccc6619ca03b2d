-- pg_jsonb_index_suggest, after jsonb_walk: object key paths (no array steps) of the sample with how many
-- documents have them, their distinct values and the JSON types found there.
, keys AS (
    SELECT gpath, min(path) AS path, min(depth) AS depth, count(DISTINCT sid) AS docs,
           count(DISTINCT value) AS distinct_values,
           count(*) FILTER (WHERE jsonb_typeof(value) = 'string') AS strings,
           count(*) FILTER (WHERE jsonb_typeof(value) = 'number') AS numbers,
           count(*) FILTER (WHERE jsonb_typeof(value) = 'boolean') AS booleans,
           count(*) FILTER (WHERE jsonb_typeof(value) IN ('object', 'array')) AS containers
    FROM walk
    WHERE depth > 0 AND strpos(gpath, '[*]') = 0
    GROUP BY gpath
)
SELECT
    (SELECT count(*) FROM src) AS sampled,
    (SELECT count(*) FROM src WHERE doc IS NOT NULL) AS documents,
    (SELECT COALESCE(jsonb_agg(k ORDER BY k.docs DESC, k.gpath), '[]')
     FROM (SELECT * FROM keys ORDER BY docs DESC, gpath LIMIT 200) AS k) AS keys
