"""monitoring group: sizes, sessions, replication, settings, server state, health and capacity."""

from pgcode.groups.monitoring import usage, server, health  # noqa: I001  (TOOLS.md order)

__all__ = ["health", "server", "usage"]
