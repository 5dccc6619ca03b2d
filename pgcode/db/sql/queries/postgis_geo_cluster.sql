-- Cluster ids for (at most maxRows) rows: per cluster its size and centroid, and the rows themselves
-- (as JSON, without the working geometry), both from one clustering run.
WITH src AS (
    SELECT {cols} FROM {table} AS t WHERE {cond}
), c AS (
    SELECT src.*, {fn} OVER () AS cluster FROM src
)
SELECT
    (SELECT coalesce(json_agg(s ORDER BY s.cluster NULLS LAST), '[]')
       FROM (SELECT cluster, count(*) AS size, ST_AsGeoJSON(ST_Centroid(ST_Collect(__geom)))::json AS centroid
               FROM c GROUP BY cluster) s) AS clusters,
    (SELECT coalesce(json_agg(to_jsonb(r) - '__geom' ORDER BY r.cluster NULLS LAST), '[]')
       FROM (SELECT * FROM c ORDER BY cluster NULLS LAST LIMIT {limit}) r) AS rows
