-- Code-mode execution history: one row per pg_execute_code / pg_script_run call, kept for
-- PGCODE_CODEMODE_HISTORY_DAYS (30 by default). The code is stored whole (at most 64 KB).
CREATE TABLE pgcode.executions (
    id            uuid PRIMARY KEY,
    principal     text NOT NULL,
    code_hash     text NOT NULL,
    code          text NOT NULL,
    language      text,
    input_bytes   integer NOT NULL DEFAULT 0,
    readonly      boolean NOT NULL DEFAULT false,
    script_id     bigint,
    started_at    timestamptz NOT NULL,
    duration_ms   double precision NOT NULL,
    outcome       text NOT NULL CHECK (outcome IN ('success', 'error', 'timeout')),
    error_code    text,
    error_message text,
    tool_calls    integer NOT NULL DEFAULT 0,
    result_bytes  integer NOT NULL DEFAULT 0
);
CREATE INDEX executions_started_at_idx ON pgcode.executions (started_at);
CREATE INDEX executions_principal_started_at_idx ON pgcode.executions (principal, started_at);
COMMENT ON TABLE pgcode.executions IS 'pgcode code mode: who ran what, how long, outcome (retention 30 days by default)';
