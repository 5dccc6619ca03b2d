"""schema group: schemas, sequences, views and materialized views; functions, triggers and constraints listed."""

from pgcode.groups.schema import schemas, sequences, views, routines  # noqa: I001  (TOOLS.md order)

__all__ = ["routines", "schemas", "sequences", "views"]
