-- pg_stats_distribution: count, mean, spread and shape of {values} (one float8 column x, no NULLs).
-- Skewness and kurtosis are population moment estimates; NULL when every value is the same.
WITH v AS MATERIALIZED ({values}),
s AS (SELECT count(*) AS n, avg(x) AS mean, min(x) AS lo, max(x) AS hi, stddev_samp(x) AS sd FROM v),
m AS (
    SELECT avg((v.x - s.mean) ^ 2) AS m2, avg((v.x - s.mean) ^ 3) AS m3, avg((v.x - s.mean) ^ 4) AS m4
    FROM v, s
)
SELECT s.n AS count, s.mean, s.sd AS stddev, s.lo AS min, s.hi AS max,
       CASE WHEN s.hi > s.lo THEN m.m3 / m.m2 ^ 1.5 END AS skewness,
       CASE WHEN s.hi > s.lo THEN m.m4 / m.m2 ^ 2 - 3 END AS kurtosis
FROM s, m
