-- Each audit row carries the id its call was given when recorded, and the time of the call: a batch whose
-- COMMIT was cut off (the server restarted) is sent again, and ON CONFLICT (entry_id) DO NOTHING keeps it from
-- being stored twice, so the log holds each call exactly once. Rows written before this have no id.
ALTER TABLE pgcode.audit_log ADD COLUMN IF NOT EXISTS entry_id uuid;
CREATE UNIQUE INDEX IF NOT EXISTS audit_log_entry_id_key ON pgcode.audit_log (entry_id);
