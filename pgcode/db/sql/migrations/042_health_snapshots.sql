-- Health snapshots: a health report's figures (findings per check, the largest tables and indexes with their
-- dead tuples and bloat, transaction-ID ages and the next ID, top queries by queryid), kept so that a later
-- report can say what changed since. Pruned by age and count each time one is saved.
CREATE TABLE IF NOT EXISTS pgcode.health_snapshots (
    id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    taken_at   timestamptz NOT NULL DEFAULT now(),
    principal  text NOT NULL,
    database   text NOT NULL,
    status     text NOT NULL CHECK (status IN ('ok', 'warning', 'critical', 'unknown')),
    figures    jsonb NOT NULL
);
CREATE INDEX IF NOT EXISTS health_snapshots_taken_at_idx ON pgcode.health_snapshots (taken_at);
