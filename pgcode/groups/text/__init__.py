"""text group: full-text search, trigram and fuzzy matching, patterns, normalization and sentiment."""

from pgcode.groups.text import fts, matching, transform

__all__ = ["fts", "matching", "transform"]
