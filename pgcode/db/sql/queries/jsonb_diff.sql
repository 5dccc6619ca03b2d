-- Differences between two jsonb values: objects are compared key by key (recursively when deep), anything
-- else as a whole. A path missing on one side has NULL there (added or removed); JSON null is a value.
WITH RECURSIVE pairs AS (
    SELECT ARRAY[]::text[] AS path, {a} AS a, {b} AS b
    UNION ALL
    SELECT p.path || k.key, p.a -> k.key, p.b -> k.key
    FROM pairs AS p
    CROSS JOIN LATERAL (
        SELECT DISTINCT o.key
        FROM (VALUES (p.a), (p.b)) AS x(v)
        CROSS JOIN LATERAL jsonb_object_keys(
            CASE WHEN jsonb_typeof(p.a) = 'object' AND jsonb_typeof(p.b) = 'object' AND p.a <> p.b
                      AND ({deep} OR cardinality(p.path) = 0) THEN x.v END) AS o(key)
    ) AS k
)
SELECT path, a, b, a IS NULL AS added, b IS NULL AS removed
FROM pairs
WHERE a IS DISTINCT FROM b
  AND NOT COALESCE(jsonb_typeof(a) = 'object' AND jsonb_typeof(b) = 'object'
                   AND ({deep} OR cardinality(path) = 0), false)
ORDER BY path
LIMIT {limit}
