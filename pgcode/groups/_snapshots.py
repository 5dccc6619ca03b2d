"""Pre-mutation snapshots: an object's DDL and (up to a size limit) its rows, kept in pgcode.snapshots.

Destructive tools call snapshot_before() in their own transaction, before the statement that destroys: the
snapshot commits with the drop or not at all.
"""

from __future__ import annotations

import logging
import weakref
from typing import TYPE_CHECKING, Any

from psycopg import sql

from pgcode.core.context import ToolContext
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._pgdump import base_args, name_pattern, run_pg_dump

if TYPE_CHECKING:
    from pgcode.core.runtime import Runtime

log = logging.getLogger("pgcode.snapshots")

DDL_MAX_BYTES = 10 * 1024 * 1024
# Relation kinds a snapshot keeps rows of: plain tables (a partitioned table's rows live in its partitions).
_DATA_KINDS = ("r",)
_warned: weakref.WeakSet[Runtime] = weakref.WeakSet()


async def snapshot_before(ctx: ToolContext, tool: str, kind: str, schema: str, name: str) -> int | None:
    """Store the DDL and rows of schema.name before `tool` destroys it; return the snapshot id.

    None when the object does not exist, or when pgcode's own schema is not writable here (logged once).
    `kind` is "index" (its pg_get_indexdef) or a relation kind such as "table" or "sequence" (pg_dump).
    """
    if not ctx.rt.schema_ready:
        if ctx.rt not in _warned:
            _warned.add(ctx.rt)
            log.warning("pgcode's schema is not writable: destructive tools run without pre-mutation snapshots")
        return None
    rel = await ctx.fetchone(
        "SELECT c.oid, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s", (schema, name))
    if rel is None:
        return None
    ddl = await object_ddl(ctx, kind, schema, name)
    data: bytes | None = None
    rows: int | None = None
    note = None
    if rel["relkind"] in _DATA_KINDS:
        data, rows, note = await _table_data(ctx, rel["oid"], schema, name)
    elif rel["relkind"] == "p":
        note = "partitions recreated empty: the rows of a partitioned table are not kept"
    elif kind != "index":
        note = "no rows kept for this kind of object"
    snapshot_id: int = await ctx.fetchval(
        "INSERT INTO pgcode.snapshots (tool, principal, object_kind, object_schema, object_name, ddl, data, "
        "data_bytes, data_rows, data_included, note) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
        "RETURNING id",
        (tool, ctx.principal.subject, kind, schema, name, ddl, data, len(data) if data is not None else 0, rows,
         data is not None, note))
    return snapshot_id


async def object_ddl(ctx: ToolContext, kind: str, schema: str, name: str) -> str:
    """The statements that recreate schema.name (without its rows)."""
    if kind == "index":
        definition: str | None = await ctx.fetchval(
            "SELECT pg_get_indexdef(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND c.relkind IN ('i', 'I')", (schema, name))
        if definition is None:
            raise ToolError(ErrorCode.NOT_FOUND, f'index "{schema}"."{name}" does not exist')
        return definition + ";\n"
    pattern = name_pattern(schema, name)
    relkind = await ctx.fetchval(
        "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s", (schema, name))
    # A partitioned table goes with its partitions (as DROP TABLE takes them); pg_dump 16+ has the options.
    children = "-and-children" if relkind == "p" else ""
    # Sequence values (setval) stay in; the rows are kept apart, in COPY format.
    out = await run_pg_dump(ctx, [*base_args(owner=False, privileges=True), f"--table{children}", pattern,
                                  f"--exclude-table-data{children}", pattern], max_bytes=DDL_MAX_BYTES)
    if out.truncated:
        raise ToolError(ErrorCode.CONFLICT, f'the DDL of "{schema}"."{name}" is larger than {DDL_MAX_BYTES} bytes')
    return out.text


async def _table_data(ctx: ToolContext, oid: int, schema: str,
                      name: str) -> tuple[bytes | None, int | None, str | None]:
    """The table's rows in COPY text format, or None with the reason when they exceed the size limit."""
    limit = ctx.settings.snapshot_max_bytes
    size = await ctx.fetchval("SELECT pg_table_size(%s)", (oid,))
    if size > 2 * limit:  # COPY text is rarely more than twice smaller than the heap: do not read it at all
        return None, None, f"rows not kept: the table takes {size} bytes, over twice the {limit}-byte limit"
    buf = bytearray()
    over = False
    conn = await ctx.conn()
    async with conn.cursor() as cur:
        async with cur.copy(sql.SQL("COPY {} TO STDOUT").format(sql.Identifier(schema, name))) as copy:
            async for chunk in copy:
                if not over:
                    buf.extend(chunk)
                    over = len(buf) > limit
        rows = cur.rowcount
    if over:
        return None, rows, f"rows not kept: their COPY text is over the {limit}-byte limit (PGCODE_SNAPSHOT_MAX_BYTES)"
    return bytes(buf), rows, None


def describe(row: dict[str, Any]) -> dict[str, Any]:
    """A snapshot row as callers see it (without the DDL text and the rows)."""
    return {
        "id": row["id"], "taken_at": row["taken_at"], "tool": row["tool"], "principal": row["principal"],
        "kind": row["object_kind"], "schema": row["object_schema"], "name": row["object_name"],
        "target": f'{row["object_schema"]}.{row["object_name"]}', "ddl_bytes": row["ddl_bytes"],
        "data_included": row["data_included"], "data_bytes": row["data_bytes"], "data_rows": row["data_rows"],
        "note": row["note"],
    }
