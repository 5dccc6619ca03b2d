-- pg_jsonb_security_scan, after jsonb_walk: nodes whose key name or value matches a rule (rules are bound
-- as a jsonb array of objects with kind, category, target, pattern). Returns where and what kind, never a value: path
-- elements that themselves match a value rule (maps keyed by e-mail, ...) are redacted.
, rules AS (
    SELECT r.kind, r.category, r.target, r.pattern
    FROM jsonb_to_recordset({rules}) AS r(kind text, category text, target text, pattern text)
), nodes AS (
    SELECT w.sid, w.path, w.name, jsonb_typeof(w.value) AS type,
           CASE jsonb_typeof(w.value) WHEN 'string' THEN w.value #>> '{{}}' WHEN 'number' THEN w.value::text END AS txt,
           w.value IN ('null'::jsonb, '""'::jsonb, '{{}}'::jsonb, '[]'::jsonb) AS empty
    FROM walk AS w
), hits AS (
    SELECT n.sid, n.path, r.kind, r.category, r.target
    FROM nodes AS n
    JOIN rules AS r
      ON CASE WHEN r.target = 'key' THEN n.name ~* r.pattern AND NOT n.empty AND n.type <> 'boolean'
              ELSE n.txt ~ r.pattern
                   AND (r.kind <> 'credit_card' OR (  -- Luhn check on the digits
                        SELECT sum(CASE WHEN g.i %% 2 = 0 THEN (d.v * 2) / 10 + (d.v * 2) %% 10 ELSE d.v END) %% 10 = 0
                        FROM (SELECT regexp_replace(n.txt, '[^0-9]', '', 'g') AS digits) AS x
                        CROSS JOIN LATERAL generate_series(1, length(x.digits)) AS g(i)
                        CROSS JOIN LATERAL (SELECT substr(reverse(x.digits), g.i, 1)::int AS v) AS d))
         END
)
SELECT
    (SELECT count(*) FROM src) AS sampled,
    (SELECT count(*) FROM hits) AS total,
    (SELECT count(DISTINCT sid) FROM hits) AS rows_flagged,
    (SELECT COALESCE(jsonb_object_agg(kind, n), '{{}}')
     FROM (SELECT kind, count(*) AS n FROM hits GROUP BY kind) AS x) AS by_kind,
    (SELECT COALESCE(jsonb_agg(jsonb_build_object('row', f.rk, 'path', f.path, 'kind', f.kind,
                                                  'category', f.category, 'matchedBy', f.target) ORDER BY f.ord), '[]')
     FROM (SELECT s.rk, h.kind, h.category, h.target,
                  COALESCE((SELECT array_agg(CASE WHEN EXISTS (SELECT 1 FROM rules AS r
                                                               WHERE r.target = 'value' AND p.seg ~ r.pattern)
                                                  THEN '(redacted)' ELSE p.seg END ORDER BY p.ord)
                            FROM unnest(h.path) WITH ORDINALITY AS p(seg, ord)), '{{}}') AS path,
                  row_number() OVER (ORDER BY h.sid, h.path, h.kind) AS ord
           FROM hits AS h
           JOIN src AS s ON s.sid = h.sid
           ORDER BY h.sid, h.path, h.kind
           LIMIT {limit}) AS f) AS findings
