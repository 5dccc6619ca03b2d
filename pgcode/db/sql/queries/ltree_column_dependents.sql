WITH dep AS (
    SELECT d.classid, d.objid FROM pg_depend d
    WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = %(rel)s AND d.refobjsubid = %(att)s
)
SELECT DISTINCT kind, name, definition FROM (
    SELECT CASE WHEN v.oid = %(rel)s THEN 'rule' WHEN v.relkind = 'm' THEN 'materialized view' ELSE 'view' END AS kind,
           CASE WHEN v.oid = %(rel)s THEN r.rulename::text ELSE v.oid::regclass::text END AS name,
           NULL::text AS definition
    FROM dep JOIN pg_rewrite r ON r.oid = dep.objid JOIN pg_class v ON v.oid = r.ev_class
    WHERE dep.classid = 'pg_rewrite'::regclass
  UNION ALL
    SELECT 'policy', p.polname::text, NULL
    FROM dep JOIN pg_policy p ON p.oid = dep.objid WHERE dep.classid = 'pg_policy'::regclass
  UNION ALL
    SELECT 'index', i.oid::regclass::text, pg_get_indexdef(i.oid)
    FROM dep JOIN pg_class i ON i.oid = dep.objid WHERE dep.classid = 'pg_class'::regclass AND i.relkind IN ('i', 'I')
  UNION ALL
    SELECT CASE c.contype WHEN 'f' THEN 'foreign key' WHEN 'p' THEN 'primary key' WHEN 'u' THEN 'unique'
                          WHEN 'c' THEN 'check' WHEN 'x' THEN 'exclusion' ELSE 'constraint' END,
           CASE WHEN c.conrelid = %(rel)s THEN c.conname::text ELSE c.conname || ' on ' || c.conrelid::regclass END,
           pg_get_constraintdef(c.oid)
    FROM dep JOIN pg_constraint c ON c.oid = dep.objid WHERE dep.classid = 'pg_constraint'::regclass
  UNION ALL
    SELECT 'trigger', t.tgname::text, pg_get_triggerdef(t.oid)
    FROM dep JOIN pg_trigger t ON t.oid = dep.objid WHERE dep.classid = 'pg_trigger'::regclass
  UNION ALL
    SELECT CASE WHEN a.attgenerated <> '' AND a.attnum <> %(att)s THEN 'generated column' ELSE 'default' END,
           a.attname::text, pg_get_expr(ad.adbin, ad.adrelid)
    FROM dep JOIN pg_attrdef ad ON ad.oid = dep.objid
    JOIN pg_attribute a ON a.attrelid = ad.adrelid AND a.attnum = ad.adnum
    WHERE dep.classid = 'pg_attrdef'::regclass
  UNION ALL
    SELECT 'statistics', s.stxname::text, NULL
    FROM dep JOIN pg_statistic_ext s ON s.oid = dep.objid WHERE dep.classid = 'pg_statistic_ext'::regclass
) x
ORDER BY kind, name
