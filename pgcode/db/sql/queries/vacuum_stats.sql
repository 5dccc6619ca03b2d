-- Dead tuples, vacuum and analyze history, autovacuum thresholds (per-table settings honoured) and
-- transaction-ID / multixact age against the freeze limits, per table. {order} is chosen by the tool.
WITH g AS (
    SELECT current_setting('autovacuum')::bool AS autovacuum,
           current_setting('autovacuum_vacuum_threshold')::float8 AS vac_base,
           current_setting('autovacuum_vacuum_scale_factor')::float8 AS vac_scale,
           current_setting('autovacuum_analyze_threshold')::float8 AS an_base,
           current_setting('autovacuum_analyze_scale_factor')::float8 AS an_scale,
           current_setting('autovacuum_freeze_max_age')::float8 AS freeze_max,
           current_setting('autovacuum_multixact_freeze_max_age')::float8 AS mxid_freeze_max
), t AS (
    SELECT n.nspname AS schema, c.relname AS table, c.reltuples, s.*,
           greatest(age(c.relfrozenxid), coalesce(age(tc.relfrozenxid), 0)) AS xid_age,
           greatest(mxid_age(c.relminmxid), coalesce(mxid_age(tc.relminmxid), 0)) AS mxid_age,
           (SELECT array_agg(o.option_name || '=' || o.option_value) FROM pg_options_to_table(c.reloptions) o
            WHERE o.option_name LIKE 'autovacuum%%') AS options,
           (SELECT o.option_value FROM pg_options_to_table(c.reloptions) o
            WHERE o.option_name = 'autovacuum_enabled') AS opt_enabled,
           (SELECT o.option_value::float8 FROM pg_options_to_table(c.reloptions) o
            WHERE o.option_name = 'autovacuum_vacuum_threshold') AS opt_vac_base,
           (SELECT o.option_value::float8 FROM pg_options_to_table(c.reloptions) o
            WHERE o.option_name = 'autovacuum_vacuum_scale_factor') AS opt_vac_scale,
           (SELECT o.option_value::float8 FROM pg_options_to_table(c.reloptions) o
            WHERE o.option_name = 'autovacuum_analyze_threshold') AS opt_an_base,
           (SELECT o.option_value::float8 FROM pg_options_to_table(c.reloptions) o
            WHERE o.option_name = 'autovacuum_analyze_scale_factor') AS opt_an_scale,
           (SELECT o.option_value::float8 FROM pg_options_to_table(c.reloptions) o
            WHERE o.option_name = 'autovacuum_freeze_max_age') AS opt_freeze_max,
           pg_table_size(c.oid) AS table_bytes
    FROM pg_class c
    JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_stat_all_tables s ON s.relid = c.oid
    LEFT JOIN pg_class tc ON tc.oid = c.reltoastrelid
    WHERE c.relkind IN ('r', 'm')
      AND (%(schema)s::text IS NULL OR n.nspname = %(schema)s)
      AND (%(table)s::text IS NULL OR c.relname = %(table)s)
      AND (%(schema)s::text IS NOT NULL OR (n.nspname <> ALL (%(system)s) AND n.nspname NOT LIKE 'pg\_toast%%'
                                            AND n.nspname NOT LIKE 'pg\_temp\_%%'))
)
SELECT t.schema, t.table, t.table_bytes,
       t.n_live_tup AS live_tuples, t.n_dead_tup AS dead_tuples,
       round((t.n_dead_tup::numeric / nullif(t.n_live_tup + t.n_dead_tup, 0)), 4) AS dead_tuple_ratio,
       t.n_mod_since_analyze, t.n_ins_since_vacuum,
       t.last_vacuum, t.last_autovacuum, t.last_analyze, t.last_autoanalyze,
       greatest(t.last_vacuum, t.last_autovacuum) AS last_any_vacuum,
       greatest(t.last_analyze, t.last_autoanalyze) AS last_any_analyze,
       t.vacuum_count, t.autovacuum_count, t.analyze_count, t.autoanalyze_count,
       g.autovacuum AND coalesce(t.opt_enabled::bool, true) AS autovacuum_enabled,
       round((coalesce(t.opt_vac_base, g.vac_base)
              + coalesce(t.opt_vac_scale, g.vac_scale) * greatest(t.reltuples, 0))::numeric) AS vacuum_threshold,
       round((coalesce(t.opt_an_base, g.an_base)
              + coalesce(t.opt_an_scale, g.an_scale) * greatest(t.reltuples, 0))::numeric) AS analyze_threshold,
       t.n_dead_tup > coalesce(t.opt_vac_base, g.vac_base)
                      + coalesce(t.opt_vac_scale, g.vac_scale) * greatest(t.reltuples, 0) AS vacuum_due,
       t.n_mod_since_analyze > coalesce(t.opt_an_base, g.an_base)
                               + coalesce(t.opt_an_scale, g.an_scale) * greatest(t.reltuples, 0) AS analyze_due,
       t.xid_age,
       least(coalesce(t.opt_freeze_max, g.freeze_max), g.freeze_max)::bigint AS freeze_max_age,
       round((t.xid_age / least(coalesce(t.opt_freeze_max, g.freeze_max), g.freeze_max))::numeric, 4)
           AS wraparound_ratio,
       t.mxid_age,
       round((t.mxid_age / g.mxid_freeze_max)::numeric, 4) AS mxid_wraparound_ratio,
       t.options AS autovacuum_options
FROM t CROSS JOIN g
ORDER BY {order}
LIMIT %(limit)s
