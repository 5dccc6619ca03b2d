-- pg_stats_time_series with gaps filled: every bucket from the first to the last, empty ones with count 0.
-- {data}: (bucket, count[, value]) per non-empty bucket; %(step)s the bucket width; %(cap)s most buckets.
WITH data AS MATERIALIZED ({data}),
series AS (
    SELECT generate_series(min(bucket), max(bucket), %(step)s::interval)::{ts_type} AS bucket
    FROM data
    LIMIT %(cap)s
)
SELECT s.bucket, coalesce(d.count, 0) AS count{value}
FROM series s
LEFT JOIN data d ON d.bucket = s.bucket
ORDER BY s.bucket
