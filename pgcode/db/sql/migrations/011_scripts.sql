-- Saved code-mode scripts: named per owner (the principal that saved them), run with pg_script_run.
CREATE TABLE pgcode.scripts (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    owner        text NOT NULL,
    name         text NOT NULL CHECK (name ~ '^[A-Za-z][A-Za-z0-9_.-]{0,99}$'),
    description  text NOT NULL DEFAULT '',
    code         text NOT NULL CHECK (octet_length(code) <= 1048576),
    language     text,
    readonly     boolean NOT NULL DEFAULT false,
    timeout_ms   integer CHECK (timeout_ms BETWEEN 1 AND 300000),
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now(),
    runs         integer NOT NULL DEFAULT 0,
    last_run_at  timestamptz,
    CONSTRAINT scripts_owner_name_key UNIQUE (owner, name)
);
COMMENT ON TABLE pgcode.scripts IS 'pgcode code mode: saved scripts, unique by (owner, name)';
