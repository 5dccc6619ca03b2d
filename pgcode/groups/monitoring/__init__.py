"""monitoring group: sizes, sessions, replication, settings, server state, health and capacity."""

from pgcode.groups.monitoring import usage, server, health, trends  # noqa: I001  (TOOLS.md order, then ours)

__all__ = ["health", "server", "trends", "usage"]
