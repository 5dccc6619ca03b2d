"""postgis group: geometries in tables and in calls, spatial indexes and clustering (PostGIS extension)."""

from pgcode.groups.postgis import analysis, geometry, queries, structure

__all__ = ["analysis", "geometry", "queries", "structure"]
