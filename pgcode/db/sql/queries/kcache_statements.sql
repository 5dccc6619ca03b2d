-- pg_stat_kcache counters (plan + execution) joined to their pg_stat_statements entries, one row per statement.
-- Times: pg_stat_statements in milliseconds, pg_stat_kcache (getrusage) in seconds; reads/writes in bytes.
-- Only columns that pg_stat_statements 1.8 (PG 13) to 1.12 (PG 18) all have; 1.11 renamed blk_read_time.
SELECT s.queryid::text AS queryid,
       left(s.query, %(query_max)s) AS query,
       length(s.query) > %(query_max)s AS query_truncated,
       d.datname AS database,
       r.rolname AS "user",
       s.toplevel,
       s.calls,
       s.rows,
       s.total_exec_time AS exec_time_ms,
       s.total_plan_time AS plan_time_ms,
       k.plan_user_time + k.exec_user_time AS user_time_s,
       k.plan_system_time + k.exec_system_time AS system_time_s,
       k.plan_user_time + k.exec_user_time + k.plan_system_time + k.exec_system_time AS cpu_time_s,
       k.plan_reads + k.exec_reads AS reads_bytes,
       k.plan_writes + k.exec_writes AS writes_bytes,
       k.plan_minflts + k.exec_minflts AS minor_faults,
       k.plan_majflts + k.exec_majflts AS major_faults,
       k.plan_nvcsws + k.exec_nvcsws AS voluntary_switches,
       k.plan_nivcsws + k.exec_nivcsws AS involuntary_switches,
       s.shared_blks_hit,
       s.shared_blks_read,
       s.temp_blks_written
FROM {kcache}() k
JOIN {statements} s ON s.queryid = k.queryid AND s.dbid = k.dbid AND s.userid = k.userid AND s.toplevel = k.top
JOIN pg_database d ON d.oid = s.dbid
LEFT JOIN pg_roles r ON r.oid = s.userid
WHERE (%(all_databases)s OR d.datname = current_database())
  AND (NOT %(toplevel_only)s OR s.toplevel)
  AND s.calls >= %(min_calls)s
