-- pg_stats_distribution, its histogram: %(buckets)s equal-width buckets over {values} (one float8 column x, no NULLs),
-- every bucket listed, empty ones with count 0. width_bucket gives the maximum its own bucket: fold it into the last.
WITH v AS MATERIALIZED ({values}),
s AS (SELECT min(x) AS lo, max(x) AS hi FROM v),
h AS (
    SELECT CASE WHEN s.hi = s.lo THEN 1 ELSE least(width_bucket(v.x, s.lo, s.hi, %(buckets)s), %(buckets)s) END AS b,
           count(*) AS count
    FROM v, s
    GROUP BY 1
)
SELECT g.i AS bucket,
       s.lo + (s.hi - s.lo) * (g.i - 1) / %(buckets)s AS lower,
       s.lo + (s.hi - s.lo) * g.i / %(buckets)s AS upper,
       coalesce(h.count, 0) AS count
FROM s
CROSS JOIN generate_series(1, CASE WHEN s.hi = s.lo THEN 1 ELSE %(buckets)s END) AS g(i)
LEFT JOIN h ON h.b = g.i
WHERE s.lo IS NOT NULL
ORDER BY g.i
