-- Schemas with owner, size and what they hold. size_bytes adds up tables, materialized views and sequences with
-- their indexes and TOAST data (pg_total_relation_size), so nothing is counted twice.
SELECT n.nspname AS name,
       pg_get_userbyid(n.nspowner) AS owner,
       coalesce(r.size_bytes, 0) AS size_bytes,
       pg_size_pretty(coalesce(r.size_bytes, 0)) AS size,
       coalesce(r.tables, 0) AS tables,
       coalesce(r.views, 0) AS views,
       coalesce(r.materialized_views, 0) AS materialized_views,
       coalesce(r.sequences, 0) AS sequences,
       coalesce(r.indexes, 0) AS indexes,
       coalesce(r.foreign_tables, 0) AS foreign_tables,
       coalesce(p.functions, 0) AS functions,
       coalesce(p.procedures, 0) AS procedures,
       coalesce(p.aggregates, 0) AS aggregates,
       coalesce(t.types, 0) AS types,
       coalesce(e.extensions, '{}') AS extensions,
       (n.nspname = ANY (%(system)s) OR n.nspname LIKE 'pg\_toast%%' OR n.nspname LIKE 'pg\_temp\_%%')
           AS is_system,
       obj_description(n.oid, 'pg_namespace') AS comment
FROM pg_namespace n
LEFT JOIN LATERAL (
    SELECT sum(pg_total_relation_size(c.oid)) FILTER (WHERE c.relkind IN ('r', 'm', 'S')) AS size_bytes,
           count(*) FILTER (WHERE c.relkind IN ('r', 'p')) AS tables,
           count(*) FILTER (WHERE c.relkind = 'v') AS views,
           count(*) FILTER (WHERE c.relkind = 'm') AS materialized_views,
           count(*) FILTER (WHERE c.relkind = 'S') AS sequences,
           count(*) FILTER (WHERE c.relkind IN ('i', 'I')) AS indexes,
           count(*) FILTER (WHERE c.relkind = 'f') AS foreign_tables
    FROM pg_class c
    WHERE c.relnamespace = n.oid
) r ON true
LEFT JOIN LATERAL (
    SELECT count(*) FILTER (WHERE pr.prokind IN ('f', 'w')) AS functions,
           count(*) FILTER (WHERE pr.prokind = 'p') AS procedures,
           count(*) FILTER (WHERE pr.prokind = 'a') AS aggregates
    FROM pg_proc pr
    WHERE pr.pronamespace = n.oid
) p ON true
LEFT JOIN LATERAL (
    -- enums, domains, ranges and stand-alone composite types; not the row types of tables or array types
    SELECT count(*) AS types
    FROM pg_type ty
    LEFT JOIN pg_class tc ON tc.oid = ty.typrelid
    WHERE ty.typnamespace = n.oid AND ty.typtype IN ('e', 'd', 'r', 'c') AND (ty.typrelid = 0 OR tc.relkind = 'c')
) t ON true
LEFT JOIN LATERAL (
    SELECT array_agg(x.extname ORDER BY x.extname) AS extensions FROM pg_extension x WHERE x.extnamespace = n.oid
) e ON true
WHERE (%(include_system)s OR (n.nspname <> ALL (%(system)s) AND n.nspname NOT LIKE 'pg\_toast%%'
                              AND n.nspname NOT LIKE 'pg\_temp\_%%'))
  AND (%(pattern)s::text IS NULL OR n.nspname ILIKE %(pattern)s)
ORDER BY n.nspname
LIMIT %(limit)s
