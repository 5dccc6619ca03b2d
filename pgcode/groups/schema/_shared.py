"""Names, filters and list results shared by the schema tools; drops run through _drop.drop()."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from pgcode.core import arguments
from pgcode.core.context import ToolContext
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import IDENT_MAX, split_name

NO_NUL = r"^[^\x00]+$"


def name_field(description: str) -> Any:
    """An object name, `schema.name` accepted when no schema is given."""
    return Field(min_length=1, max_length=2 * IDENT_MAX + 1, pattern=NO_NUL, description=description)


def schema_field(description: str = arguments.SCHEMA_OF_OBJECT) -> Any:
    return Field(None, alias="schema", min_length=1, max_length=IDENT_MAX, pattern=NO_NUL, description=description)


def check_name(name: str, what: str) -> str:
    """Refuse a name PostgreSQL would cut short (more than 63 bytes) rather than create a different one."""
    if len(name.encode()) > IDENT_MAX:
        raise ToolError(ErrorCode.INVALID_INPUT, f"the {what} name {name!r} is longer than {IDENT_MAX} bytes",
                        hint="PostgreSQL would silently shorten it; choose a shorter name")
    return name


def qualified(name: str, schema: str | None, what: str) -> tuple[str, str]:
    """(schema, name) from `name` or `schema.name`, each checked."""
    schema_name, object_name = split_name(name, schema)
    return check_name(schema_name, "schema"), check_name(object_name, what)


async def require_schema(ctx: ToolContext, schema: str) -> int:
    """The oid of a schema, or NOT_FOUND."""
    oid: int | None = await ctx.fetchval("SELECT oid FROM pg_namespace WHERE nspname = %s", (schema,))
    if oid is None:
        raise ToolError(ErrorCode.NOT_FOUND, f'schema "{schema}" does not exist',
                        hint="pg_list_schemas lists the schemas")
    return oid


async def relation(ctx: ToolContext, schema: str, name: str) -> dict[str, Any] | None:
    """oid and relkind of schema.name, or None."""
    return await ctx.fetchone(
        "SELECT c.oid, c.relkind::text AS relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s", (schema, name))


RELKIND_NAMES = {"r": "table", "p": "partitioned table", "v": "view", "m": "materialized view", "S": "sequence",
                 "i": "index", "I": "partitioned index", "f": "foreign table", "c": "composite type",
                 "t": "TOAST table"}


def listing(key: str, rows: list[dict[str, Any]], limit: int) -> dict[str, Any]:
    """A list result: the rows (at most `limit`; the query asked for one more), count and truncated."""
    return {key: rows[:limit], "count": min(len(rows), limit), "truncated": len(rows) > limit}
