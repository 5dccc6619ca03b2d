"""jsonb group: read, change, build and analyze JSON in jsonb columns (20 tools)."""

from pgcode.groups.jsonb import read, scan, suggest, values, write

__all__ = ["read", "scan", "suggest", "values", "write"]
