-- pgcode's own schema. Everything pgcode stores lives here; callers' tools never list it.
COMMENT ON SCHEMA pgcode IS 'pgcode: execution history, saved scripts, audit log, insights';
