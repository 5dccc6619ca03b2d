SELECT s.partition_schemaname AS schema, s.partition_tablename AS table,
       i.child_start_time AS start_time, i.child_end_time AS end_time,
       i.child_start_id AS start_id, i.child_end_id AS end_id,
       pg_get_expr(c.relpartbound, c.oid) AS bound,
       greatest(c.reltuples, 0)::bigint AS estimated_rows
FROM {show_partitions}(%(parent)s, %(order)s) s
CROSS JOIN LATERAL {show_partition_info}(s.partition_schemaname || '.' || s.partition_tablename, NULL,
                                         %(parent)s) i
JOIN pg_namespace n ON n.nspname = s.partition_schemaname
JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = s.partition_tablename
ORDER BY coalesce(extract(epoch FROM i.child_start_time)::numeric, i.child_start_id::numeric) {order}
