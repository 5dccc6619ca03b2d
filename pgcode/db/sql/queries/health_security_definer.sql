-- SECURITY DEFINER functions outside the system schemas with no search_path of their own (proconfig).
SELECT n.nspname AS schema, p.proname AS function, pg_get_function_identity_arguments(p.oid) AS arguments,
       pg_get_userbyid(p.proowner) AS owner, r.rolsuper AS owner_is_superuser, p.proconfig AS config
FROM pg_proc p
JOIN pg_namespace n ON n.oid = p.pronamespace
JOIN pg_roles r ON r.oid = p.proowner
WHERE p.prosecdef AND n.nspname <> ALL (%(system)s) AND n.nspname NOT LIKE 'pg\_temp\_%%'
  AND NOT EXISTS (SELECT 1 FROM unnest(p.proconfig) c WHERE c LIKE 'search\_path=%%')
  -- functions an extension installed are the extension's business
  AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
                  AND d.deptype = 'e')
ORDER BY r.rolsuper DESC, 1, 2
