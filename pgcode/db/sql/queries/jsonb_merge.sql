-- Deep merge of two jsonb objects: where both hold an object at a path the objects merge, anywhere else the
-- overlay's value wins (arrays concatenate when merge_arrays). Each replaced path is applied to the base in
-- order with jsonb_set; its parent is an object in both by construction, so every set lands.
WITH RECURSIVE pairs AS (
    SELECT ARRAY[]::text[] AS path, {base} AS l, {overlay} AS r
    UNION ALL
    SELECT p.path || e.key, p.l -> e.key, e.value
    FROM pairs AS p
    CROSS JOIN LATERAL jsonb_each(
        CASE WHEN jsonb_typeof(p.l) = 'object' AND jsonb_typeof(p.r) = 'object' THEN p.r END) AS e
), ops AS (
    SELECT path,
           CASE WHEN {merge_arrays} AND jsonb_typeof(l) = 'array' AND jsonb_typeof(r) = 'array' THEN l || r
                ELSE r END AS value,
           row_number() OVER (ORDER BY path) AS n
    FROM pairs
    WHERE cardinality(path) > 0 AND NOT COALESCE(jsonb_typeof(l) = 'object' AND jsonb_typeof(r) = 'object', false)
), folded AS (
    SELECT 0::bigint AS n, {base} AS doc
    UNION ALL
    SELECT o.n, jsonb_set(f.doc, o.path, o.value)
    FROM folded AS f
    JOIN ops AS o ON o.n = f.n + 1
)
SELECT doc AS merged, (SELECT count(*) FROM ops) AS replaced
FROM folded
ORDER BY n DESC
LIMIT 1
