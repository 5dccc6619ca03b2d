"""backup: the pre-mutation snapshots destructive tools keep in pgcode.snapshots: list, diff, restore."""

from __future__ import annotations

import difflib
from datetime import datetime
from typing import Any

from psycopg import sql
from pydantic import Field

from pgcode.core import arguments
from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import IDENT_MAX
from pgcode.groups._snapshots import describe, object_ddl, snapshot_before
from pgcode.types import Effect

_COLUMNS = ("id, taken_at, tool, principal, object_kind, object_schema, object_name, octet_length(ddl) AS ddl_bytes, "
            "data_included, data_bytes, data_rows, note")
_DROP = {"r": "TABLE", "p": "TABLE", "f": "FOREIGN TABLE", "i": "INDEX", "I": "INDEX", "S": "SEQUENCE",
         "v": "VIEW", "m": "MATERIALIZED VIEW"}


def _require_store(ctx: ToolContext) -> None:
    if not ctx.rt.schema_ready:
        raise ToolError(ErrorCode.NOT_FOUND, "no snapshots: pgcode's schema cannot be written on this server",
                        hint="run pgcode with a role that may create the pgcode schema, on a writable server")


async def _snapshot(ctx: ToolContext, snapshot_id: int, *, full: bool) -> dict[str, Any]:
    _require_store(ctx)
    extra = ", ddl, data" if full else ""
    row = await ctx.fetchone(sql.SQL("SELECT " + _COLUMNS + extra + " FROM pgcode.snapshots WHERE id = %s"),
                             (snapshot_id,))
    if row is None:
        raise ToolError(ErrorCode.NOT_FOUND, f"there is no snapshot {snapshot_id}",
                        hint="pg_audit_list_backups lists the snapshots")
    return row


async def _relkind(ctx: ToolContext, schema: str, name: str) -> str | None:
    kind: str | None = await ctx.fetchval(
        "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s", (schema, name))
    return kind


class ListBackupsIn(ToolInput):
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX, description=arguments.SCHEMA_FILTER)
    name: str | None = Field(None, max_length=IDENT_MAX, description="Only objects of this name")
    tool: str | None = Field(None, max_length=200, description="e.g. pg_truncate")
    since: datetime | None = Field(None, description="ISO 8601 time")
    limit: int = Field(100, ge=1, le=10_000)


@tool(group="backup", effect=Effect.READ, own_sql=True)
async def audit_list_backups(ctx: ToolContext, args: ListBackupsIn) -> dict[str, Any]:
    """List the snapshots taken before destructive tools ran.

    Each has id, tool, target object, time, kind and data size, newest first; tool keeps those taken before that
    tool, since those taken at or after that time.
    """
    _require_store(ctx)
    rows = await ctx.fetch(sql.SQL(
        "SELECT " + _COLUMNS + " FROM pgcode.snapshots "
        "WHERE (%(schema)s::text IS NULL OR object_schema = %(schema)s) "
        "AND (%(name)s::text IS NULL OR object_name = %(name)s) AND (%(tool)s::text IS NULL OR tool = %(tool)s) "
        "AND (%(since)s::timestamptz IS NULL OR taken_at >= %(since)s) ORDER BY id DESC LIMIT %(limit)s"),
        {"schema": args.schema_, "name": args.name, "tool": args.tool, "since": args.since, "limit": args.limit + 1})
    return {"snapshots": [describe(r) for r in rows[: args.limit]], "truncated": len(rows) > args.limit,
            "data_limit_bytes": ctx.settings.snapshot_max_bytes}


class RestoreBackupIn(ToolInput):
    id: int = Field(ge=1, description="Snapshot id (pg_audit_list_backups)")
    replace: bool = False
    data: bool = True


@tool(group="backup", effect=Effect.DESTRUCTIVE)
async def audit_restore_backup(ctx: ToolContext, args: RestoreBackupIn) -> dict[str, Any]:
    """Recreate the object of a snapshot (DDL, then its rows).

    An existing object is refused unless replace is set: then it is snapshotted, then dropped (without CASCADE:
    objects that depend on it make the restore fail and change nothing). All in one transaction. Rows are loaded
    (unless data is false) only when the snapshot kept them.
    """
    snap = await _snapshot(ctx, args.id, full=True)
    schema, name, kind = snap["object_schema"], snap["object_name"], snap["object_kind"]
    if not await ctx.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = %s", (schema,)):
        raise ToolError(ErrorCode.NOT_FOUND, f'schema "{schema}" does not exist; create it first, then restore')
    existing = await _relkind(ctx, schema, name)
    replaced_by = None
    if existing is not None:
        if not args.replace:
            raise ToolError(ErrorCode.ALREADY_EXISTS, f'"{schema}"."{name}" exists; nothing was restored',
                            hint="pass replace: true to drop it (a snapshot of it is kept) and restore the snapshot")
        replaced_by = await snapshot_before(ctx, "pg_audit_restore_backup", kind, schema, name)
        await ctx.execute(sql.SQL("DROP {} {}").format(sql.SQL(_DROP[existing]), sql.Identifier(schema, name)))
    await ctx.execute(snap["ddl"])
    rows = 0
    if args.data and snap["data_included"]:
        conn = await ctx.conn()
        async with conn.cursor() as cur:
            async with cur.copy(sql.SQL("COPY {} FROM STDIN").format(sql.Identifier(schema, name))) as copy:
                await copy.write(snap["data"])
            rows = cur.rowcount
    return {"id": args.id, "kind": kind, "schema": schema, "name": name, "restored": True,
            "replaced": existing is not None, "snapshot_of_replaced": replaced_by,
            "rows": rows, "data_included": bool(args.data and snap["data_included"]), "note": snap["note"]}


class DiffBackupIn(ToolInput):
    id: int = Field(ge=1, description="Snapshot id (pg_audit_list_backups)")
    context: int = Field(3, ge=0, le=100)
    ignore_sequence_values: bool = True


def _statements(ddl: str, ignore_sequence_values: bool) -> list[str]:
    lines = [line for line in ddl.split("\n") if line.strip() and not line.startswith("--")]
    if ignore_sequence_values:
        lines = [line for line in lines if not line.startswith("SELECT pg_catalog.setval(")]
    return lines


@tool(group="backup", effect=Effect.READ, own_sql=True)
async def audit_diff_backup(ctx: ToolContext, args: DiffBackupIn) -> dict[str, Any]:
    """Diff a snapshot's DDL against the live object's DDL now.

    A unified diff: what changed since the snapshot, with context unchanged lines around each change;
    ignoreSequenceValues (default true) leaves out setval() lines, since sequence positions move.
    """
    snap = await _snapshot(ctx, args.id, full=True)
    schema, name, kind = snap["object_schema"], snap["object_name"], snap["object_kind"]
    exists = await _relkind(ctx, schema, name) is not None
    live = await object_ddl(ctx, kind, schema, name) if exists else ""
    before = _statements(snap["ddl"], args.ignore_sequence_values)
    after = _statements(live, args.ignore_sequence_values)
    diff = list(difflib.unified_diff(before, after, f"snapshot {args.id} ({snap['taken_at'].isoformat()})",
                                     "live" if exists else "live (does not exist)", n=args.context, lineterm=""))
    return {"id": args.id, "kind": kind, "schema": schema, "name": name, "exists": exists,
            "identical": not diff, "diff": "\n".join(diff),
            "added": sum(1 for d in diff if d.startswith("+") and not d.startswith("+++")),
            "removed": sum(1 for d in diff if d.startswith("-") and not d.startswith("---"))}
