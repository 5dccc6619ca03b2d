"""admin group: maintenance commands, sessions, configuration, statistics resets and the insights memo."""

from pgcode.groups.admin import maintenance, backends, config, insights  # noqa: I001  (TOOLS.md order)

__all__ = ["backends", "config", "insights", "maintenance"]
