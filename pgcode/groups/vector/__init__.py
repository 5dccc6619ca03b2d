"""vector group (pgvector): search, hybrid search, indexes and their measured recall, clustering, embeddings."""

from pgcode.groups.vector import analysis, compute, data, index, search

__all__ = ["analysis", "compute", "data", "index", "search"]
