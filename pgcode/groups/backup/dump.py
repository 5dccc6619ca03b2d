"""backup: DDL (and data) of a table, sequence or schema, made by pg_dump."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import IDENT_MAX, TableRef
from pgcode.groups._pgdump import base_args, dump_info, name_pattern, run_pg_dump
from pgcode.groups.backup._commands import command, target
from pgcode.types import Effect

_MAX_BYTES = 100 * 1024 * 1024
_KINDS = {"r": "table", "p": "partitioned_table", "v": "view", "m": "materialized_view", "f": "foreign_table",
          "S": "sequence"}


def _content_args(data: bool) -> list[str]:
    # INSERT statements, not COPY blocks: the output then runs in any client, not only psql.
    return ["--rows-per-insert=1000"] if data else ["--schema-only"]


class DumpTableIn(TableRef):
    data: bool = False
    owner: bool = False
    privileges: bool = True
    max_bytes: int = Field(10 * 1024 * 1024, ge=1024, le=_MAX_BYTES)


@tool(group="backup", effect=Effect.READ)
async def dump_table(ctx: ToolContext, args: DumpTableIn) -> dict[str, Any]:
    """DDL of a table or sequence (with pg_dump), and its rows when asked.

    The DDL covers columns, constraints, indexes and owned sequences. data adds the rows (as INSERT statements) or the
    sequence's value; owner adds ALTER ... OWNER TO statements; privileges (default true) GRANT/REVOKE statements.
    pg_dump stops after maxBytes of output (the result then says truncated).

    Made by pg_dump (the PostgreSQL 18 one shipped with pgcode), as SQL that runs in any client.
    """
    schema, name = args.schema_name, args.table_name
    kind = await ctx.fetchval(
        "SELECT c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s", (schema, name))
    if kind not in _KINDS:
        raise ToolError(ErrorCode.NOT_FOUND, f'table or sequence "{schema}"."{name}" does not exist',
                        hint="pg_list_tables lists the tables")
    out = await run_pg_dump(ctx, [*base_args(owner=args.owner, privileges=args.privileges),
                                  "--table", name_pattern(schema, name), *_content_args(args.data)],
                            max_bytes=args.max_bytes)
    return {"schema": schema, "name": name, "kind": _KINDS[kind], "data_included": args.data, "sql": out.text,
            **dump_info(out)}


class DumpSchemaIn(ToolInput):
    schema_: str | None = Field(None, alias="schema", min_length=1, max_length=IDENT_MAX,
                                description="Default: the whole database")
    data: bool = False
    owner: bool = False
    privileges: bool = True
    max_bytes: int = Field(10 * 1024 * 1024, ge=1024, le=_MAX_BYTES)


@tool(group="backup", effect=Effect.READ)
async def dump_schema(ctx: ToolContext, args: DumpSchemaIn) -> dict[str, Any]:
    """DDL of a schema or the whole database (pg_dump), and the command for a file.

    data adds the rows (as INSERT statements); owner adds ALTER ... OWNER TO statements; privileges (default true)
    GRANT/REVOKE statements. pg_dump stops after maxBytes of output (the result then says truncated).

    The command names host, port, user and database only: the password comes from your environment (PGPASSWORD or
    ~/.pgpass).
    """
    selection: list[str] = []
    if args.schema_ is not None:
        found = await ctx.fetchval("SELECT 1 FROM pg_namespace WHERE nspname = %s", (args.schema_,))
        if not found:
            raise ToolError(ErrorCode.NOT_FOUND, f'schema "{args.schema_}" does not exist')
        selection = ["--schema", name_pattern(args.schema_)]
    options = [*base_args(owner=args.owner, privileges=args.privileges), *selection]
    out = await run_pg_dump(ctx, [*options, *_content_args(args.data)], max_bytes=args.max_bytes)
    to = await target(ctx)
    stem = args.schema_ or to.dbname
    file_command = command("pg_dump", *to.args(), *options, *([] if args.data else ["--schema-only"]),
                           "--format=custom", "--file", f"{stem}.dump")
    return {"schema": args.schema_, "database": to.dbname, "data_included": args.data, "sql": out.text,
            **dump_info(out), "command": file_command,
            "restore_command": command("pg_restore", *to.args(), "--exit-on-error", f"{stem}.dump")}
