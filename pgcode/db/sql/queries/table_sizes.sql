-- Tables, partitioned tables and materialized views by total size: heap, indexes and TOAST apart.
-- A partitioned table's sizes are the sums over its partitions (which are also listed themselves).
WITH rels AS (
    SELECT c.oid, c.relname, n.nspname, c.relkind, c.relispartition, c.reltuples,
           CASE WHEN c.relkind = 'p'
                THEN ARRAY(SELECT relid FROM pg_partition_tree(c.oid) WHERE isleaf)
                ELSE ARRAY[c.oid] END AS parts
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relkind IN ('r', 'p', 'm')
      AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s)
      AND (%(include_system)s OR (n.nspname NOT IN ('pg_catalog', 'information_schema', 'pgcode')
                                  AND n.nspname NOT LIKE 'pg\_toast%%' AND n.nspname NOT LIKE 'pg\_temp\_%%'))
), sized AS (
    SELECT r.*,
           (SELECT coalesce(sum(pg_total_relation_size(p)), 0) FROM unnest(r.parts) p) AS size_bytes,
           (SELECT coalesce(sum(pg_indexes_size(p)), 0) FROM unnest(r.parts) p) AS index_bytes,
           (SELECT coalesce(sum(pg_total_relation_size(t.reltoastrelid)), 0)
              FROM unnest(r.parts) p JOIN pg_class t ON t.oid = p WHERE t.reltoastrelid <> 0) AS toast_bytes
    FROM rels r
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
       CASE WHEN reltuples < 0 THEN NULL ELSE reltuples::bigint END AS row_estimate
FROM sized
WHERE size_bytes >= %(min_bytes)s
ORDER BY size_bytes DESC, nspname, relname
LIMIT %(limit)s
