"""core group: queries, tables, indexes, objects and rows."""

from pgcode.groups.core import indexes, objects, query, rows, tables

__all__ = ["indexes", "objects", "query", "rows", "tables"]
