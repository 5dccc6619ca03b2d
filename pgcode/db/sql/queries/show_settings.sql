-- Server settings with their unit, source and whether a restart is pending.
SELECT name,
       current_setting(name) AS value,
       setting,
       unit,
       category,
       short_desc AS description,
       context,
       vartype,
       source,
       sourcefile,
       sourceline,
       boot_val,
       reset_val,
       min_val,
       max_val,
       enumvals,
       pending_restart
FROM pg_settings
WHERE (%(pattern)s::text IS NULL OR name ILIKE %(pattern)s)
  AND (%(names)s::text[] IS NULL OR name = ANY(%(names)s))
  AND (%(category)s::text IS NULL OR category ILIKE %(category)s)
  AND (NOT %(changed_only)s OR source NOT IN ('default', 'override'))
  AND (NOT %(pending_only)s OR pending_restart)
ORDER BY category, name
LIMIT %(limit)s
