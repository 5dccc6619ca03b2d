"""backup group: pg_dump output, COPY export and import, backup command planners, pre-mutation snapshots."""

from pgcode.groups.backup import copy, dump, planners, snapshots

__all__ = ["copy", "dump", "planners", "snapshots"]
