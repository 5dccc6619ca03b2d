SELECT d.runid AS run_id, d.jobid AS job_id, j.jobname AS name, d.status, d.return_message,
       d.start_time, d.end_time,
       round((extract(epoch FROM d.end_time - d.start_time) * 1000)::numeric, 3) AS duration_ms,
       d.database, d.username, d.command, d.job_pid
FROM cron.job_run_details d
LEFT JOIN cron.job j ON j.jobid = d.jobid
WHERE (%(job_id)s::bigint IS NULL OR d.jobid = %(job_id)s)
  AND (%(name)s::text IS NULL OR j.jobname = %(name)s)
  AND (%(status)s::text IS NULL OR d.status = %(status)s)
  AND (%(since)s::interval IS NULL OR d.start_time >= now() - %(since)s::interval)
ORDER BY d.start_time DESC NULLS FIRST, d.runid DESC
LIMIT %(limit)s
