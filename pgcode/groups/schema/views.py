"""schema: list, create, refresh and drop views and materialized views."""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pglast import ast, parse_sql
from pglast.parser import ParseError
from pglast.stream import RawStream
from psycopg import sql
from pydantic import Field, StringConstraints, model_validator

from pgcode.core import arguments
from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.db.queries import SYSTEM_SCHEMAS, load_query
from pgcode.db.sqlpolicy import check_read, walk
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import IDENT_MAX
from pgcode.groups.schema._drop import DropTarget, drop
from pgcode.groups.schema._shared import (
    NO_NUL,
    RELKIND_NAMES,
    check_name,
    listing,
    name_field,
    qualified,
    relation,
    require_schema,
    schema_field,
)
from pgcode.types import Effect

_MAX_SQL = 1_000_000


class ListViewsIn(ToolInput):
    schema_: str | None = schema_field(arguments.SCHEMA_FILTER)
    pattern: str | None = Field(None, max_length=200, description="ILIKE pattern on the name")
    include_materialized: bool = True
    include_system: bool = False
    include_definition: bool = True
    definition_max_length: int = Field(2000, ge=1, le=1_000_000)
    limit: int = Field(500, ge=1, le=10_000)


@tool(group="schema", effect=Effect.READ)
async def list_views(ctx: ToolContext, args: ListViewsIn) -> dict[str, Any]:
    """List views and materialized views with owner and definition.

    Materialized views also have is_populated, size_bytes, indexes and can_refresh_concurrently (a usable unique index
    exists). includeMaterialized (default true) keeps materialized views; includeDefinition (default true) adds each
    defining query, cut to definitionMaxLength characters (definition_truncated says so); includeSystem adds system
    schemas, pgcode's own and extension views.
    """
    rows = await ctx.fetch(load_query("schema_list_views"), {
        "schema": args.schema_, "name": None, "pattern": args.pattern,
        "include_materialized": args.include_materialized, "include_system": args.include_system,
        "system": SYSTEM_SCHEMAS, "limit": args.limit + 1})
    for r in rows:
        definition = r.pop("definition")
        if args.include_definition:
            r["definition"] = definition[:args.definition_max_length]
            r["definition_truncated"] = len(definition) > args.definition_max_length
    return listing("views", rows, args.limit)


ColumnName = Annotated[str, StringConstraints(min_length=1, max_length=IDENT_MAX, pattern=NO_NUL)]


class CreateViewIn(ToolInput):
    name: str = name_field("View name (schema.name ok)")
    schema_: str | None = schema_field()
    query: str | None = Field(None, min_length=1, max_length=_MAX_SQL,
                              description="One SELECT/WITH/VALUES/TABLE query (not with refresh)")
    materialized: bool = False
    with_data: bool = True
    or_replace: bool = False
    columns: list[ColumnName] | None = Field(None, min_length=1, max_length=1600,
                                             description="Column names (default: the query's)")
    check_option: Literal["local", "cascaded"] | None = None
    refresh: bool = Field(False, description="Refresh the materialized view name instead")
    concurrently: bool = False

    @model_validator(mode="after")
    def _consistent(self) -> CreateViewIn:
        if self.refresh:
            extra = [n for n, v in (("query", self.query), ("orReplace", self.or_replace or None),
                                    ("columns", self.columns), ("checkOption", self.check_option)) if v]
            if extra:
                raise ValueError(f"refresh re-runs an existing materialized view; {', '.join(extra)} cannot be "
                                 "given with it")
            if self.concurrently and not self.with_data:
                raise ValueError("concurrently and withData: false cannot be combined")
            return self
        if self.query is None:
            raise ValueError("query is required (unless refresh is true)")
        if self.concurrently:
            raise ValueError("concurrently applies to refresh only")
        if self.materialized and self.or_replace:
            raise ValueError("orReplace is for plain views; refresh: true re-runs a materialized view, or drop it "
                             "and create it again")
        if self.materialized and self.check_option:
            raise ValueError("checkOption is for plain views")
        if not self.materialized and not self.with_data:
            raise ValueError("withData: false is for materialized views")
        return self


def view_query(text: str) -> sql.SQL:
    """The caller's defining query, checked to be one read query and rebuilt from its parse tree."""
    try:
        stmts = parse_sql(text)
    except ParseError as exc:
        raise ToolError(ErrorCode.INVALID_INPUT, f"the view query does not parse: {exc.args[0]}") from None
    if len(stmts) != 1:
        raise ToolError(ErrorCode.INVALID_INPUT, f"the view query must be exactly one statement, found {len(stmts)}")
    node = stmts[0].stmt
    if not isinstance(node, ast.SelectStmt):
        kind = re.sub(r"(?<!^)(?=[A-Z])", " ", type(node).__name__.removesuffix("Stmt")).upper()
        raise ToolError(ErrorCode.INVALID_INPUT, f"the view query must be a SELECT or WITH query, not {kind}")
    if any(isinstance(n, ast.ParamRef) for n in walk(node)):
        raise ToolError(ErrorCode.INVALID_INPUT, "a view query cannot use $n parameters")
    try:
        check_read(text)  # no data-modifying WITH, SELECT INTO, FOR UPDATE or denied function
    except ToolError as exc:
        raise ToolError(ErrorCode.INVALID_INPUT, f"the view query is refused: {exc.message}",
                        hint="a view is defined by one query that only reads") from None
    return sql.SQL(str(RawStream()(node)))


@tool(group="schema", effect=Effect.ADMIN)
async def create_view(ctx: ToolContext, args: CreateViewIn) -> dict[str, Any]:
    """Create a view or materialized view from one query, or refresh a materialized view.

    Returns the view's columns and state. The query (one SELECT, WITH ... SELECT, VALUES or TABLE query) is checked by a
    parser. materialized stores the result, read until it is refreshed; withData false leaves a materialized view
    unpopulated (WITH NO DATA) until its first refresh. orReplace (plain views) is CREATE OR REPLACE: the new query must
    keep the existing columns, in order, and may add more. checkOption (plain views: local or cascaded) makes writes
    through the view satisfy its WHERE.

    refresh re-runs the query of the existing materialized view name instead of creating one (withData false empties
    it); with concurrently (REFRESH ... CONCURRENTLY) readers are not blocked, which needs a unique index on plain
    columns and a populated view.
    """
    schema, name = qualified(args.name, args.schema_, "view")
    for column in args.columns or ():
        check_name(column, "column")
    await require_schema(ctx, schema)
    existing = await relation(ctx, schema, name)
    if args.refresh:
        return await _refresh(ctx, schema, name, existing, args)
    assert args.query is not None
    query = view_query(args.query)
    replacing = existing is not None and args.or_replace and existing["relkind"] == "v"
    if existing is not None and not replacing:
        kind = RELKIND_NAMES.get(existing["relkind"], "relation")
        hint = {"v": "pass orReplace: true to replace the view",
                "m": "refresh: true re-runs a materialized view's query; to change it, drop it and create it again",
                }.get(existing["relkind"], "choose another name")
        raise ToolError(ErrorCode.ALREADY_EXISTS, f'"{schema}"."{name}" already exists as a {kind}', hint=hint)
    parts: list[sql.Composable] = [
        sql.SQL("CREATE OR REPLACE VIEW" if args.or_replace else
                "CREATE MATERIALIZED VIEW" if args.materialized else "CREATE VIEW"),
        sql.Identifier(schema, name)]
    if args.columns:
        parts.append(sql.SQL("({})").format(sql.SQL(", ").join(map(sql.Identifier, args.columns))))
    parts += [sql.SQL("AS"), query]
    if args.materialized:
        parts.append(sql.SQL("WITH DATA" if args.with_data else "WITH NO DATA"))
    if args.check_option:
        parts.append(sql.SQL(f"WITH {args.check_option.upper()} CHECK OPTION"))
    await ctx.execute(sql.SQL(" ").join(parts))
    return {**await _describe(ctx, schema, name), "created": not replacing, "replaced": replacing}


async def _refresh(ctx: ToolContext, schema: str, name: str, existing: dict[str, Any] | None,
                   args: CreateViewIn) -> dict[str, Any]:
    if existing is None or existing["relkind"] != "m":
        what = "does not exist" if existing is None else f"is a {RELKIND_NAMES.get(existing['relkind'])}"
        raise ToolError(ErrorCode.NOT_FOUND if existing is None else ErrorCode.INVALID_INPUT,
                        f'materialized view "{schema}"."{name}" {what}; only materialized views are refreshed',
                        hint="pg_list_views lists them")
    if args.concurrently:
        state = await ctx.fetchone(
            "SELECT c.relispopulated AS populated, EXISTS (SELECT 1 FROM pg_index x WHERE x.indrelid = c.oid "
            "AND x.indisunique AND x.indisvalid AND x.indimmediate AND x.indpred IS NULL AND x.indexprs IS NULL) "
            "AS has_unique_index FROM pg_class c WHERE c.oid = %s", (existing["oid"],))
        assert state is not None
        if not state["populated"]:
            raise ToolError(ErrorCode.CONFLICT, f'materialized view "{schema}"."{name}" has never been populated, '
                            "so it cannot be refreshed concurrently; nothing was refreshed",
                            hint="refresh it once without concurrently")
        if not state["has_unique_index"]:
            raise ToolError(ErrorCode.CONFLICT, f'materialized view "{schema}"."{name}" has no unique index on '
                            "plain columns (without WHERE), which a concurrent refresh needs to match rows; "
                            "nothing was refreshed",
                            hint="create a unique index on its key columns (pg_create_index with unique: true), "
                                 "or refresh without concurrently (readers wait meanwhile)")
    await ctx.execute(sql.SQL("REFRESH MATERIALIZED VIEW {}{}{}").format(
        sql.SQL("CONCURRENTLY ") if args.concurrently else sql.SQL(""), sql.Identifier(schema, name),
        sql.SQL("" if args.with_data else " WITH NO DATA")))
    return {**await _describe(ctx, schema, name), "refreshed": True, "concurrently": args.concurrently}


async def _describe(ctx: ToolContext, schema: str, name: str) -> dict[str, Any]:
    row = await ctx.fetchone(load_query("schema_list_views"), {
        "schema": schema, "name": name, "pattern": None, "include_materialized": True, "include_system": True,
        "system": SYSTEM_SCHEMAS, "limit": 1})
    rel = await relation(ctx, schema, name)
    assert row is not None and rel is not None
    row["columns"] = await ctx.fetch(
        "SELECT a.attname AS name, format_type(a.atttypid, a.atttypmod) AS type FROM pg_attribute a "
        "WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum", (rel["oid"],))
    return row


class DropViewIn(ToolInput):
    name: str = name_field("View name (schema.name ok)")
    schema_: str | None = schema_field()
    materialized: bool | None = Field(None, description="Expect this kind (default: either)")
    if_exists: bool = False
    cascade: bool = False


@tool(group="schema", effect=Effect.DESTRUCTIVE)
async def drop_view(ctx: ToolContext, args: DropViewIn) -> dict[str, Any]:
    """Drop a view or materialized view (CASCADE drops its dependents too).

    One that other objects use is refused (CONFLICT, dependents listed) unless cascade is true; then those go too, and
    dropped_dependents names them. materialized true or false expects that kind (default: whichever it is). With
    ifExists a missing view is no error and dropped is false.
    """
    schema, name = qualified(args.name, args.schema_, "view")
    rel = await relation(ctx, schema, name)
    result = {"schema": schema, "view": name}
    if rel is None:
        if args.if_exists:
            return {**result, "type": None, "dropped": False, "cascade": args.cascade, "dropped_dependents": [],
                    "dependent_count": 0}
        raise ToolError(ErrorCode.NOT_FOUND, f'view "{schema}"."{name}" does not exist',
                        hint="pg_list_views lists them")
    kind = rel["relkind"]
    if kind not in ("v", "m") or (args.materialized is not None and args.materialized != (kind == "m")):
        raise ToolError(ErrorCode.INVALID_INPUT, f'"{schema}"."{name}" is a {RELKIND_NAMES.get(kind, kind)}; '
                                                 "nothing was dropped",
                        hint="pg_drop_table, pg_drop_sequence and pg_drop_index drop other kinds" if kind not in (
                            "v", "m") else "leave materialized out to drop either kind")
    keyword = "MATERIALIZED VIEW" if kind == "m" else "VIEW"
    target = DropTarget(keyword, sql.Identifier(schema, name), "pg_class", rel["oid"],
                        f'{keyword.lower()} "{schema}"."{name}"')
    kind_name = "materialized_view" if kind == "m" else "view"
    return {**result, "type": kind_name, **await drop(ctx, target, cascade=args.cascade)}
