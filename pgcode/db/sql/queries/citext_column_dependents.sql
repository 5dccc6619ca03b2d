-- What depends on one column, and whether it stops ALTER COLUMN ... TYPE citext:
-- views, materialized views and rules, policies, trigger conditions and generated columns do;
-- indexes, constraints, defaults and statistics objects are rebuilt by PostgreSQL (a default that depends
-- on the column is its own; one of another column is that column's generation expression). A foreign key blocks
-- unless the column at its other end is citext already (citext and text keys cannot be compared).
WITH deps AS (
    SELECT DISTINCT d.classid, d.objid, d.objsubid
    FROM pg_depend d
    WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = %(oid)s AND d.refobjsubid = %(attnum)s
      AND d.deptype IN ('n', 'a')
)
SELECT CASE
         WHEN d.classid = 'pg_rewrite'::regclass THEN
           CASE WHEN rc.oid = %(oid)s THEN 'rule' WHEN rc.relkind = 'm' THEN 'materialized_view' ELSE 'view' END
         WHEN d.classid = 'pg_attrdef'::regclass AND ad.adnum <> %(attnum)s THEN 'generated_column'
         WHEN d.classid = 'pg_class'::regclass AND dc.relkind IN ('i', 'I') THEN 'index'
         WHEN d.classid = 'pg_class'::regclass THEN 'relation'
         WHEN d.classid = 'pg_constraint'::regclass AND con.contype = 'f' THEN 'foreign_key'
         WHEN d.classid = 'pg_constraint'::regclass THEN 'constraint'
         WHEN d.classid = 'pg_attrdef'::regclass THEN 'default'
         WHEN d.classid = 'pg_policy'::regclass THEN 'policy'
         WHEN d.classid = 'pg_trigger'::regclass THEN 'trigger'
         WHEN d.classid = 'pg_statistic_ext'::regclass THEN 'statistics'
         ELSE pg_describe_object(d.classid, d.objid, d.objsubid)
       END AS kind,
       CASE
         WHEN d.classid = 'pg_rewrite'::regclass THEN
           CASE WHEN rc.oid = %(oid)s THEN r.rulename::text ELSE format('%%I.%%I', rn.nspname, rc.relname) END
         WHEN d.classid = 'pg_attrdef'::regclass THEN
           (SELECT attname::text FROM pg_attribute WHERE attrelid = ad.adrelid AND attnum = ad.adnum)
         WHEN d.classid = 'pg_statistic_ext'::regclass THEN (
           SELECT format('%%I.%%I', sn.nspname, s.stxname) FROM pg_statistic_ext s
           JOIN pg_namespace sn ON sn.oid = s.stxnamespace WHERE s.oid = d.objid)
         WHEN d.classid = 'pg_class'::regclass THEN format('%%I.%%I', dn.nspname, dc.relname)
         WHEN d.classid = 'pg_constraint'::regclass THEN con.conname::text
         WHEN d.classid = 'pg_policy'::regclass THEN (SELECT polname::text FROM pg_policy WHERE oid = d.objid)
         WHEN d.classid = 'pg_trigger'::regclass THEN (SELECT tgname::text FROM pg_trigger WHERE oid = d.objid)
         ELSE pg_describe_object(d.classid, d.objid, d.objsubid)
       END AS name,
       CASE
         WHEN d.classid = 'pg_constraint'::regclass AND con.contype = 'f' THEN (
           SELECT format_type(pa.atttypid, NULL) FROM pg_attribute pa
           WHERE (con.conrelid = %(oid)s AND %(attnum)s = ANY (con.conkey)
                  AND pa.attrelid = con.confrelid AND pa.attnum = con.confkey[array_position(con.conkey, %(attnum)s::int2)])
              OR (NOT (con.conrelid = %(oid)s AND %(attnum)s = ANY (con.conkey))
                  AND pa.attrelid = con.conrelid AND pa.attnum = con.conkey[array_position(con.confkey, %(attnum)s::int2)]))
       END AS peer_type
FROM deps d
LEFT JOIN pg_rewrite r ON d.classid = 'pg_rewrite'::regclass AND r.oid = d.objid
LEFT JOIN pg_class rc ON rc.oid = r.ev_class
LEFT JOIN pg_namespace rn ON rn.oid = rc.relnamespace
LEFT JOIN pg_class dc ON d.classid = 'pg_class'::regclass AND dc.oid = d.objid
LEFT JOIN pg_namespace dn ON dn.oid = dc.relnamespace
LEFT JOIN pg_attrdef ad ON d.classid = 'pg_attrdef'::regclass AND ad.oid = d.objid
LEFT JOIN pg_constraint con ON d.classid = 'pg_constraint'::regclass AND con.oid = d.objid
ORDER BY 1, 2
