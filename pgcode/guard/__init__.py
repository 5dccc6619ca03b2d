"""Guards around every call: bearer tokens, per-scope roles, rate limits, the audit log. Imports db and the leaves."""
