-- Every node of the sampled jsonb documents, one row per object member or array element, to a depth limit.
-- path: the concrete text[] path; gpath: a JSONPath with [*] for array elements (groups nodes across rows);
-- name: the member's key (NULL for array elements and the root). Continued by the file that uses it.
WITH RECURSIVE src AS (
    {source}
), walk AS (
    SELECT s.sid, ARRAY[]::text[] AS path, '$'::text AS gpath, NULL::text AS name, s.doc AS value, 0 AS depth
    FROM src AS s
    WHERE s.doc IS NOT NULL
    UNION ALL
    SELECT w.sid, w.path || e.elem, w.gpath || e.step, e.name, e.value, w.depth + 1
    FROM walk AS w
    CROSS JOIN LATERAL (
        SELECT o.key AS elem, o.key AS name, o.value,
               CASE WHEN o.key ~ '^[A-Za-z_][A-Za-z0-9_]*$' THEN '.' || o.key
                    ELSE '.' || to_jsonb(o.key)::text END AS step
        FROM jsonb_each(CASE WHEN jsonb_typeof(w.value) = 'object' THEN w.value END) AS o
        UNION ALL
        SELECT (a.ord - 1)::text, NULL, a.value, '[*]'
        FROM jsonb_array_elements(CASE WHEN jsonb_typeof(w.value) = 'array' THEN w.value END)
             WITH ORDINALITY AS a(value, ord)
    ) AS e
    WHERE w.depth < {max_depth}
)
