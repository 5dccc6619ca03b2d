-- pgcode's memo of business insights (pg_append_insight), created by pgcode on first use.
CREATE SCHEMA IF NOT EXISTS pgcode;
CREATE TABLE IF NOT EXISTS pgcode.insights (
    id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    created_at timestamptz NOT NULL DEFAULT now(),
    principal text NOT NULL,
    text text NOT NULL CHECK (length(text) BETWEEN 1 AND 10000),
    tags text[] NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS insights_created_at_idx ON pgcode.insights (created_at);
COMMENT ON TABLE pgcode.insights IS 'Business insights appended with pg_append_insight';
