-- Functions and procedures with their signature, result, language, volatility and security: SECURITY DEFINER
-- runs as the owner, and search_path (from proconfig) says whether callers can steer its name lookups.
SELECT n.nspname AS schema,
       p.proname AS name,
       CASE p.prokind WHEN 'f' THEN 'function' WHEN 'p' THEN 'procedure' WHEN 'a' THEN 'aggregate'
                      WHEN 'w' THEN 'window' END AS kind,
       format('%%I.%%I(%%s)', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid)) AS signature,
       pg_get_function_identity_arguments(p.oid) AS identity_arguments,
       pg_get_function_arguments(p.oid) AS arguments,
       pg_get_function_result(p.oid) AS returns,
       p.proretset AS returns_set,
       l.lanname AS language,
       CASE p.provolatile WHEN 'i' THEN 'immutable' WHEN 's' THEN 'stable' ELSE 'volatile' END AS volatility,
       CASE p.proparallel WHEN 's' THEN 'safe' WHEN 'r' THEN 'restricted' ELSE 'unsafe' END AS parallel,
       p.prosecdef AS security_definer,
       (SELECT substr(cfg, length('search_path=') + 1) FROM unnest(p.proconfig) cfg
        WHERE cfg LIKE 'search\_path=%%' LIMIT 1) AS search_path,
       coalesce(p.proconfig, '{}') AS config,
       p.proisstrict AS strict,
       p.proleakproof AS leakproof,
       pg_get_userbyid(p.proowner) AS owner,
       x.extname AS extension,
       obj_description(p.oid, 'pg_proc') AS comment,
       CASE WHEN %(definition)s AND p.prokind <> 'a' THEN pg_get_functiondef(p.oid) END AS definition
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_language l ON l.oid = p.prolang
LEFT JOIN pg_depend d ON d.classid = 'pg_proc'::regclass AND d.objid = p.oid AND d.deptype = 'e'
LEFT JOIN pg_extension x ON x.oid = d.refobjid
WHERE (%(schema)s::text IS NULL OR n.nspname = %(schema)s)
  AND (%(pattern)s::text IS NULL OR p.proname ILIKE %(pattern)s)
  AND (%(language)s::text IS NULL OR l.lanname = %(language)s)
  AND (%(kinds)s::text[] IS NULL OR CASE p.prokind WHEN 'f' THEN 'function' WHEN 'p' THEN 'procedure'
       WHEN 'a' THEN 'aggregate' WHEN 'w' THEN 'window' END = ANY (%(kinds)s))
  AND (%(security_definer)s::boolean IS NULL OR p.prosecdef = %(security_definer)s)
  AND (%(include_extensions)s OR x.oid IS NULL)
  AND (%(include_system)s OR (n.nspname <> ALL (%(system)s) AND n.nspname NOT LIKE 'pg\_toast%%'
                              AND n.nspname NOT LIKE 'pg\_temp\_%%'))
ORDER BY n.nspname, p.proname, identity_arguments
LIMIT %(limit)s
