-- Pre-mutation snapshots: what a destructive tool destroyed (DDL, and rows in COPY text format up to a limit).
CREATE TABLE IF NOT EXISTS pgcode.snapshots (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    taken_at       timestamptz NOT NULL DEFAULT now(),
    tool           text NOT NULL,
    principal      text NOT NULL,
    object_kind    text NOT NULL,
    object_schema  text NOT NULL,
    object_name    text NOT NULL,
    ddl            text NOT NULL,
    data           bytea,
    data_bytes     bigint NOT NULL DEFAULT 0,
    data_rows      bigint,
    data_included  boolean NOT NULL DEFAULT false,
    note           text,
    CHECK (data_included = (data IS NOT NULL))
);
CREATE INDEX IF NOT EXISTS snapshots_object_idx ON pgcode.snapshots (object_schema, object_name, taken_at);
CREATE INDEX IF NOT EXISTS snapshots_taken_at_idx ON pgcode.snapshots (taken_at);
