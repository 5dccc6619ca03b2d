-- One row per tool call: who, what, the outcome, and the arguments with secrets redacted.
CREATE TABLE IF NOT EXISTS pgcode.audit_log (
    id           bigserial PRIMARY KEY,
    at           timestamptz NOT NULL DEFAULT now(),
    principal    text NOT NULL,
    tool         text NOT NULL,
    effect       text,
    outcome      text NOT NULL CHECK (outcome IN ('ok', 'error')),
    error_code   text,
    duration_ms  double precision NOT NULL,
    client_addr  text,
    arguments    jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS audit_log_at_idx ON pgcode.audit_log (at);
CREATE INDEX IF NOT EXISTS audit_log_principal_at_idx ON pgcode.audit_log (principal, at);
