-- Objects that depend on one object through normal dependencies, followed to any depth: what DROP ... CASCADE
-- would drop with it, and why a plain DROP is refused. Automatic and internal dependents (indexes, a view's
-- rewrite rule, owned sequences) go quietly with their owner and are not listed. A view's _RETURN rule stands
-- for the view itself.
WITH RECURSIVE dep AS (
    SELECT o.classid, o.objid, o.objsubid, 1 AS depth
    FROM pg_depend d
    LEFT JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid AND r.rulename = '_RETURN'
    CROSS JOIN LATERAL (SELECT coalesce(CASE WHEN r.oid IS NOT NULL THEN 'pg_class'::regclass::oid END, d.classid)
                                   AS classid,
                               coalesce(r.ev_class, d.objid) AS objid,
                               CASE WHEN r.oid IS NOT NULL THEN 0 ELSE d.objsubid END AS objsubid) o
    WHERE d.refclassid = %(catalog)s::regclass AND d.refobjid = %(oid)s AND d.deptype = 'n'
    UNION
    SELECT o.classid, o.objid, o.objsubid, dep.depth + 1
    FROM dep
    JOIN pg_depend d ON d.refclassid = dep.classid AND d.refobjid = dep.objid AND d.deptype = 'n'
    LEFT JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid AND r.rulename = '_RETURN'
    CROSS JOIN LATERAL (SELECT coalesce(CASE WHEN r.oid IS NOT NULL THEN 'pg_class'::regclass::oid END, d.classid)
                                   AS classid,
                               coalesce(r.ev_class, d.objid) AS objid,
                               CASE WHEN r.oid IS NOT NULL THEN 0 ELSE d.objsubid END AS objsubid) o
    WHERE dep.depth < 20 AND (o.classid, o.objid) <> (dep.classid, dep.objid)
), found AS (
    SELECT DISTINCT ON (classid, objid, objsubid) classid, objid, objsubid, depth
    FROM dep
    WHERE (classid, objid) <> (%(catalog)s::regclass::oid, %(oid)s::oid)
    ORDER BY classid, objid, objsubid, depth
)
SELECT i.type AS kind, i.schema, coalesce(i.name, i.identity) AS name, i.identity, f.depth
FROM found f
CROSS JOIN LATERAL pg_identify_object(f.classid, f.objid, f.objsubid) i
ORDER BY f.depth, i.type, i.schema NULLS FIRST, i.identity
