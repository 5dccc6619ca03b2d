"""performance group: plans, statistics, indexes, locks, bloat and diagnoses."""

from pgcode.groups.performance import activity, bloat, diagnose, explain, indexes, partition, statements, stats

__all__ = ["activity", "bloat", "diagnose", "explain", "indexes", "partition", "statements", "stats"]
