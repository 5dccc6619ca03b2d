"""partman group: partition sets managed by pg_partman (4.x and 5.x APIs)."""

from pgcode.groups.partman import parents, reports, data  # noqa: I001  (TOOLS.md order)

__all__ = ["data", "parents", "reports"]
