"""core group: queries, tables, indexes, objects and rows."""

from pgcode.groups.core import advisors, indexes, objects, query, rows, tables

__all__ = ["advisors", "indexes", "objects", "query", "rows", "tables"]
