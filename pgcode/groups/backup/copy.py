"""backup: COPY export and import as CSV, TSV or JSON lines, in the result or in files under PGCODE_BACKUP_DIR."""

from __future__ import annotations

import io
import re
from collections.abc import Iterator
from enum import StrEnum
from typing import IO, Any

from pglast import ast, parse_sql
from pglast.stream import RawStream
from psycopg import AsyncCopy, sql
from pydantic import AliasChoices, Field, model_validator

from pgcode.core import arguments
from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.db.sqlpolicy import check_read, where_fragment
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import IDENT_MAX, TableRef, check_columns, column_types, require_table, split_name
from pgcode.groups.backup._files import open_for_read, open_for_write
from pgcode.types import Effect, Scope

TEXT_MAX_BYTES = 10 * 1024 * 1024  # the result size code mode accepts
_CHUNK = 256 * 1024
_CSV_SPECIAL = re.compile(rb'["\n]')
# JSON text never holds a raw control character, so CSV with \x01 as quote and \x02 as delimiter passes each
# JSON document through untouched, one per line (text format would double every backslash).
_JSON_OPTIONS = sql.SQL("FORMAT csv, QUOTE e'\\x01', DELIMITER e'\\x02'")


class CopyFormat(StrEnum):
    CSV = "csv"
    TSV = "tsv"
    JSONL = "jsonl"


def _options(ctx: ToolContext, fmt: CopyFormat, header: bool) -> sql.Composable:
    if fmt is CopyFormat.JSONL:
        return _JSON_OPTIONS
    if fmt is CopyFormat.TSV and header:
        ctx.caps.require_version(150000, "a header line in TSV (COPY text format with HEADER)")
    return sql.SQL("FORMAT {}, HEADER {}").format(sql.SQL("csv" if fmt is CopyFormat.CSV else "text"),
                                                  sql.SQL("true" if header else "false"))


class _Records:
    """Finds where each record of COPY output ends (CSV values may hold quoted newlines)."""

    def __init__(self, csv: bool) -> None:
        self.csv = csv
        self.quoted = False
        self.offset = 0

    def ends(self, chunk: bytes) -> Iterator[int]:
        base = self.offset
        self.offset += len(chunk)
        if self.csv:
            for m in _CSV_SPECIAL.finditer(chunk):
                if m.group() == b'"':
                    self.quoted = not self.quoted
                elif not self.quoted:
                    yield base + m.end()
        else:
            pos = chunk.find(b"\n")
            while pos >= 0:
                yield base + pos + 1
                pos = chunk.find(b"\n", pos + 1)


async def _stream(copy: AsyncCopy, sink: IO[bytes], *, csv: bool, keep: int,
                  cap: int | None) -> tuple[int, int, bool]:
    """Write at most `keep` records (and `cap` bytes) of COPY output to sink: (bytes, records, truncated)."""
    records = _Records(csv)
    count = last_end = 0
    cut: int | None = None
    truncated = False
    async for chunk in copy:
        if cut is not None:
            truncated = True
            continue
        data = bytes(chunk)
        sink.write(data)
        for end in records.ends(data):
            if cap is not None and end > cap:
                cut = last_end
                break
            count += 1
            last_end = end
            if count == keep:
                cut = end
                break
        if cut is not None:
            truncated = cut < records.offset
            sink.seek(cut)
            sink.truncate()
    return (cut if cut is not None else records.offset), count, truncated


def _rebuilt_query(text: str) -> sql.SQL:
    """A caller's SELECT, checked as a read and rebuilt from its parse tree (so nothing else reaches COPY)."""
    check_read(text)
    node = parse_sql(text)[0].stmt
    if not isinstance(node, ast.SelectStmt):
        raise ToolError(ErrorCode.INVALID_INPUT, "COPY exports a SELECT (or VALUES, TABLE, WITH ... SELECT)")
    return sql.SQL(str(RawStream()(node)))


class CopyExportIn(ToolInput):
    table: str | None = Field(None, min_length=1, max_length=2 * IDENT_MAX + 1, description=arguments.TABLE)
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX, description=arguments.SCHEMA)
    columns: list[str] | None = Field(None, min_length=1, max_length=1600)
    where: str | None = Field(None, max_length=10_000, description=arguments.WHERE)
    query: str | None = Field(None, max_length=1_000_000, validation_alias=AliasChoices("query", "sql"),
                              description="SELECT to export instead")
    format: CopyFormat = CopyFormat.CSV
    header: bool = True
    limit: int | None = Field(None, ge=1, le=100_000_000)
    file: str | None = Field(None, min_length=1, max_length=1024, description="Path under PGCODE_BACKUP_DIR")
    overwrite: bool = False

    @model_validator(mode="after")
    def _one_source(self) -> CopyExportIn:
        if (self.table is None) == (self.query is None):
            raise ValueError("give either `table` or `query`")
        if self.query is not None and (self.columns or self.where or self.schema_):
            raise ValueError("`columns`, `where` and `schema` go with `table`, not `query`")
        return self


def _export_scope(args: CopyExportIn) -> Scope:
    return Scope.READ if args.file is None else Scope.WRITE


async def _export_source(ctx: ToolContext, args: CopyExportIn) -> sql.Composable:
    if args.query is not None:
        return _rebuilt_query(args.query)
    assert args.table is not None
    schema, table = split_name(args.table, args.schema_)
    await require_table(ctx, schema, table)
    if args.columns:
        check_columns(args.columns, await column_types(ctx, schema, table), f"{schema}.{table}")
    cols = sql.SQL(", ").join(map(sql.Identifier, args.columns)) if args.columns else sql.SQL("*")
    where = sql.SQL(" WHERE {}").format(where_fragment(args.where)) if args.where else sql.SQL("")
    return sql.SQL("SELECT {} FROM {}{}").format(cols, sql.Identifier(schema, table), where)


@tool(group="backup", effect=Effect.READ, aliases=("export", "copyToFile"), scope_for=_export_scope)
async def copy_export(ctx: ToolContext, args: CopyExportIn) -> dict[str, Any]:
    """Export rows as CSV, TSV or JSON lines (COPY TO), returned or written to a file.

    Give table (optionally with columns, in their order, and where) or query (`sql` is accepted too). format is csv, tsv
    (COPY text format) or jsonl (JSON lines); header (csv and tsv) puts the column names on the first line.

    The result carries the text in `data` (cut at 10 MB and at `limit` rows, default the server's max_rows, saying
    truncated). With `file`, all rows (or limit) go to that path under PGCODE_BACKUP_DIR (needs the write scope;
    overwrite replaces an existing file); nothing is written elsewhere. pg.backup.export() and pg.backup.copyToFile()
    are this tool.
    """
    source = await _export_source(ctx, args)
    limit = args.limit or (ctx.settings.max_rows if args.file is None else None)
    if args.format is CopyFormat.JSONL:
        source = sql.SQL("SELECT row_to_json(s) FROM ({}) AS s").format(source)
    if limit is not None:  # one row more than asked, to know whether rows were left out
        source = sql.SQL("SELECT * FROM ({}) AS s LIMIT {}").format(source, sql.Literal(limit + 1))
    header = args.header and args.format is not CopyFormat.JSONL
    query = sql.SQL("COPY ({}) TO STDOUT ({})").format(source, _options(ctx, args.format, header))
    keep = (limit + int(header)) if limit is not None else 2**62
    conn = await ctx.conn()
    out: dict[str, Any] = {"format": args.format.value, "header": header}
    async with conn.cursor() as cur, cur.copy(query) as copy:
        if args.file is None:
            buf = io.BytesIO()
            size, records, truncated = await _stream(copy, buf, csv=args.format is CopyFormat.CSV, keep=keep,
                                                     cap=TEXT_MAX_BYTES)
            out["data"] = buf.getvalue().decode("utf-8", "replace")
        else:
            with open_for_write(ctx.settings, args.file, overwrite=args.overwrite) as f:
                size, records, truncated = await _stream(copy, f, csv=args.format is CopyFormat.CSV, keep=keep,
                                                         cap=None)
            out["file"] = args.file
    out.update(rows=max(records - int(header), 0), bytes=size, truncated=truncated)
    return out


class CopyImportIn(TableRef):
    columns: list[str] | None = Field(None, min_length=1, max_length=1600)
    format: CopyFormat = CopyFormat.CSV
    header: bool = True
    data: str | None = Field(None, max_length=50 * 1024 * 1024, description="Rows to import (needs write)")
    file: str | None = Field(None, min_length=1, max_length=1024,
                             description="Path under PGCODE_BACKUP_DIR (needs write)")

    @model_validator(mode="after")
    def _one_source(self) -> CopyImportIn:
        if self.data is not None and self.file is not None:
            raise ValueError("give `data` or `file`, not both")
        return self


def _import_scope(args: CopyImportIn) -> Scope:
    return Scope.READ if args.data is None and args.file is None else Scope.WRITE


@tool(group="backup", effect=Effect.READ, scope_for=_import_scope)
async def copy_import(ctx: ToolContext, args: CopyImportIn) -> dict[str, Any]:
    """Load CSV, TSV or JSON lines into a table (COPY FROM), or just build the command.

    The command is given for COPY FROM and psql \\copy. columns are those the data holds, in order (default: all, in
    table order; for jsonl: the keys found). format is csv, tsv (COPY text format) or jsonl (JSON lines); header
    (csv and tsv) means the first line names the columns and is skipped. Without data or file only the COPY command
    is returned.

    Generating the command needs the read scope and runs read-only; importing rows (from `data`, or a file under
    PGCODE_BACKUP_DIR) needs write, and runs in a transaction of its own: all rows or none.
    """
    if args.data is None and args.file is None:
        return await _import_command(ctx, args)
    if ctx.read_only or ctx.settings.read_only:
        raise ToolError(ErrorCode.READ_ONLY, "importing rows changes the database and this call is read-only",
                        hint="leave out `data` and `file` to get the COPY command only")
    ctx.use_autocommit()  # out of the read-only transaction of a read tool, into one that may write
    conn = await ctx.conn()
    async with conn.transaction():
        known = await _columns(ctx, args)
        if args.format is CopyFormat.JSONL:
            rows = await _import_json(ctx, args, known)
        else:
            cols = sql.SQL(" ({})").format(sql.SQL(", ").join(map(sql.Identifier, args.columns))) if args.columns \
                else sql.SQL("")
            query = sql.SQL("COPY {}{} FROM STDIN ({})").format(
                sql.Identifier(args.schema_name, args.table_name), cols, _options(ctx, args.format, args.header))
            rows = await _copy_in(ctx, query, args)
    return {"schema": args.schema_name, "table": args.table_name, "format": args.format.value, "rows": rows,
            "source": "file" if args.file else "data", **({"file": args.file} if args.file else {})}


async def _columns(ctx: ToolContext, args: CopyImportIn) -> dict[str, str]:
    await require_table(ctx, args.schema_name, args.table_name)
    known = await column_types(ctx, args.schema_name, args.table_name)
    if args.columns:
        check_columns(args.columns, known, f"{args.schema_name}.{args.table_name}")
    return known


async def _copy_in(ctx: ToolContext, query: sql.Composed, args: CopyImportIn) -> int:
    conn = await ctx.conn()
    async with conn.cursor() as cur:
        async with cur.copy(query) as copy:
            if args.data is not None:
                await copy.write(args.data.encode("utf-8"))
            else:
                assert args.file is not None
                with open_for_read(ctx.settings, args.file) as f:
                    while chunk := f.read(_CHUNK):
                        await copy.write(chunk)
        return cur.rowcount


async def _import_json(ctx: ToolContext, args: CopyImportIn, known: dict[str, str]) -> int:
    """JSON lines go through a temporary jsonb table, then jsonb_populate_record() into the table's types."""
    staging = sql.Identifier("pgcode_copy_import")
    await ctx.execute(sql.SQL("CREATE TEMP TABLE {} (line jsonb) ON COMMIT DROP").format(staging))
    await _copy_in(ctx, sql.SQL("COPY {} (line) FROM STDIN ({})").format(staging, _JSON_OPTIONS), args)
    if args.columns:
        columns = args.columns
    else:
        keys = {r["k"] for r in await ctx.fetch(sql.SQL(
            "SELECT DISTINCT jsonb_object_keys(line) AS k FROM {} WHERE line IS NOT NULL").format(staging))}
        check_columns(sorted(keys), known, f"{args.schema_name}.{args.table_name}")
        columns = [c for c in known if c in keys]
    if not columns:
        return 0
    target = sql.Identifier(args.schema_name, args.table_name)
    return await ctx.execute(sql.SQL(
        "INSERT INTO {t} ({cols}) SELECT {picked} FROM {s} i, jsonb_populate_record(NULL::{t}, i.line) r "
        "WHERE i.line IS NOT NULL").format(
        t=target, cols=sql.SQL(", ").join(map(sql.Identifier, columns)), s=staging,
        picked=sql.SQL(", ").join(sql.Identifier("r", c) for c in columns)))


async def _import_command(ctx: ToolContext, args: CopyImportIn) -> dict[str, Any]:
    await _columns(ctx, args)
    conn = await ctx.conn()
    target = sql.Identifier(args.schema_name, args.table_name)
    cols = sql.SQL(" ({})").format(sql.SQL(", ").join(map(sql.Identifier, args.columns))) if args.columns \
        else sql.SQL("")
    out: dict[str, Any] = {"schema": args.schema_name, "table": args.table_name, "format": args.format.value}
    if args.format is CopyFormat.JSONL:
        out["command"] = sql.SQL(
            "CREATE TEMP TABLE pgcode_copy_import (line jsonb); COPY pgcode_copy_import (line) FROM STDIN ({o}); "
            "INSERT INTO {t} SELECT r.* FROM pgcode_copy_import i, jsonb_populate_record(NULL::{t}, i.line) r;"
        ).format(o=_JSON_OPTIONS, t=target).as_string(conn)
        out["hint"] = "or pass the lines as `data` (write scope) and this tool loads them"
        return out
    options = _options(ctx, args.format, args.header)
    out["command"] = sql.SQL("COPY {}{} FROM STDIN ({})").format(target, cols, options).as_string(conn)
    out["psql"] = sql.SQL("\\copy {}{} FROM 'data.{}' WITH ({})").format(
        target, cols, sql.SQL(args.format.value), options).as_string(conn)
    out["hint"] = "pass the rows as `data` (or a file under PGCODE_BACKUP_DIR as `file`) to load them now"
    return out
