-- Saved scripts keep default limits for their runs: a tool allow-list (NULL: every tool the caller's scopes
-- allow) and a JS heap limit in MB (NULL: the server's default), beside readonly and timeout_ms.
ALTER TABLE pgcode.scripts
    ADD COLUMN IF NOT EXISTS tools text[] CHECK (cardinality(tools) <= 300),
    ADD COLUMN IF NOT EXISTS memory_limit_mb integer CHECK (memory_limit_mb BETWEEN 1 AND 16384);
