-- Tables, partitioned tables and materialized views by total size: heap, indexes and TOAST apart.
-- A partitioned table's sizes are the sums over its partitions (which are also listed themselves).
-- size_estimated: a locked relation's sizes come from pg_class.relpages (as of its last VACUUM or ANALYZE).
WITH rels AS (
    SELECT c.oid, c.relname, n.nspname, c.relkind, c.relispartition, c.reltuples,
           CASE WHEN c.relkind = 'p'
                -- the leaves from pg_inherits: pg_partition_tree would take a lock on the partitioned table
                THEN ARRAY(WITH RECURSIVE tree(relid) AS (
                               SELECT c.oid UNION ALL
                               SELECT i.inhrelid FROM pg_inherits i JOIN tree ON i.inhparent = tree.relid)
                           SELECT t.relid FROM tree t JOIN pg_class k ON k.oid = t.relid WHERE k.relkind <> 'p')
                ELSE ARRAY[c.oid] END AS parts
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'm')
      AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s)
      AND (%(include_system)s OR (n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgcode')
                                  AND n.nspname NOT LIKE 'pg\_toast%%' AND n.nspname NOT LIKE 'pg\_temp\_%%'))
), parts AS (
    -- per partition (or the table itself): exact sizes, or for a relation another session locks
    -- (the locked oids), whose exact size functions would wait for ACCESS SHARE, estimates from relpages
    SELECT r.oid AS rel, pc.oid, g.locked,
           CASE WHEN g.locked THEN pc.relpages::bigint * bs.bytes END AS heap_estimate,
           CASE WHEN g.locked THEN (SELECT coalesce(sum(ic.relpages), 0) FROM pg_index x
                                    JOIN pg_class ic ON ic.oid = x.indexrelid WHERE x.indrelid = pc.oid)::bigint
                                   * bs.bytes
                ELSE pg_indexes_size(pc.oid) END AS index_bytes,
           CASE WHEN pc.reltoastrelid = 0 THEN 0
                WHEN g.locked THEN (SELECT coalesce(sum(tc.relpages), 0) FROM pg_class tc
                                    WHERE tc.oid = pc.reltoastrelid
                                       OR tc.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = pc.reltoastrelid)
                                   )::bigint * bs.bytes
                ELSE pg_total_relation_size(pc.reltoastrelid) END AS toast_bytes,
           CASE WHEN NOT g.locked THEN pg_total_relation_size(pc.oid) END AS total_bytes
    FROM rels r
    CROSS JOIN LATERAL unnest(r.parts) u(oid)
    JOIN pg_class pc ON pc.oid = u.oid
    CROSS JOIN LATERAL (SELECT pc.oid::bigint = ANY (%(locked)s::bigint[]) AS locked) g
    CROSS JOIN (SELECT current_setting('block_size')::bigint AS bytes) bs
), sized AS (
    SELECT r.*,
           coalesce(sum(coalesce(p.total_bytes, p.heap_estimate + p.index_bytes + p.toast_bytes)), 0) AS size_bytes,
           coalesce(sum(p.index_bytes), 0) AS index_bytes,
           coalesce(sum(p.toast_bytes), 0) AS toast_bytes,
           coalesce(bool_or(p.locked), false) AS estimated
    FROM rels r
    LEFT JOIN parts p ON p.rel = r.oid
    GROUP BY r.oid, r.relname, r.nspname, r.relkind, r.relispartition, r.reltuples, r.parts
)
SELECT relname AS "table",
       nspname AS schema,
       CASE relkind WHEN 'r' THEN 'table' WHEN 'p' THEN 'partitioned_table' ELSE 'materialized_view' END AS kind,
       relispartition AS is_partition,
       size_bytes::bigint AS size_bytes,
       (size_bytes - index_bytes - toast_bytes)::bigint AS table_bytes,
       index_bytes::bigint AS index_bytes,
       toast_bytes::bigint AS toast_bytes,
       pg_size_pretty(size_bytes::bigint) AS size_pretty,
       CASE WHEN reltuples < 0 THEN NULL ELSE reltuples::bigint END AS row_estimate,
       estimated AS size_estimated
FROM sized
WHERE size_bytes >= %(min_bytes)s
ORDER BY size_bytes DESC, nspname, relname
LIMIT %(limit)s
