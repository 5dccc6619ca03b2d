"""ltree group: tree-structured labels (a.b.c paths) from the ltree extension: queries, path functions, conversion."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from pydantic import Field, StringConstraints

from pgcode.core import arguments
from pgcode.core.context import ToolContext, savepoint
from pgcode.core.registry import ToolInput, tool
from pgcode.db.queries import SYSTEM_SCHEMAS, load_query
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import IDENT_MAX, TableRef, expression
from pgcode.groups._extensions import create_extension, extension_schema
from pgcode.groups._tabular import TEXT_TYPES, Table, fetch_limited, table_info, where_clause
from pgcode.types import Effect

LTREE = ("ltree",)
PATH_MAX = 65_535  # ltree's own limit on labels per path; a path's text is bounded by this too


class CreateExtensionIn(ToolInput):
    pass


@tool(group="ltree", effect=Effect.ADMIN)
async def ltree_create_extension(ctx: ToolContext, args: CreateExtensionIn) -> dict[str, Any]:
    """Create the ltree extension (paths such as Top.Science).

    Says whether it was already there. Runs in autocommit so that the extension is usable by the next call.
    """
    ctx.use_autocommit()
    return await create_extension(ctx, "ltree", package="the PostgreSQL contrib package")


# ---------------------------------------------------------------- queries on a column


class Relation(StrEnum):
    DESCENDANTS = "descendants"
    ANCESTORS = "ancestors"
    EXACT = "exact"
    LQUERY = "lquery"


class ColumnIn(TableRef):
    column: str = Field(min_length=1, max_length=IDENT_MAX, description="ltree column")
    where: str | None = Field(None, max_length=10_000, description=arguments.WHERE)
    limit: int = Field(100, ge=1, le=10_000, description=arguments.LIMIT)


class _Ltree:
    """The ltree extension's schema, for naming its type and operators without relying on search_path."""

    def __init__(self, schema: str) -> None:
        self.schema = schema

    def type(self, name: str = "ltree") -> sql.Composable:
        return sql.Identifier(self.schema, name)

    def op(self, symbol: str) -> sql.Composable:
        return sql.SQL("OPERATOR({}." + symbol + ")").format(sql.Identifier(self.schema))

    def func(self, name: str) -> sql.Composable:
        return sql.Identifier(self.schema, name)


async def _ltree(ctx: ToolContext) -> _Ltree:
    return _Ltree(await extension_schema(ctx, "ltree"))


async def _ltree_column(ctx: ToolContext, args: TableRef, column: str, *, arrays: bool = False) -> Table:
    table = await table_info(ctx, args)
    col = table.column(column)
    if col.base not in (("ltree", "_ltree") if arrays else ("ltree",)):
        raise ToolError(ErrorCode.INVALID_INPUT, f'column "{column}" of {table.label} is {col.type}, not ltree',
                        hint="pg_ltree_convert_column converts a text column; pg_ltree_list_columns lists ltree "
                             "columns", details={"column": column, "type": col.type})
    return table


async def _checked(ctx: ToolContext, lt: _Ltree, value: str, typ: str, what: str) -> None:
    """Refuse a path or pattern the extension cannot parse, naming it, before any query uses it."""
    try:
        async with savepoint(ctx, "ltree_check"):
            await ctx.execute(sql.SQL("SELECT %s::{}").format(lt.type(typ)), (value,))
    except (pg_errors.SyntaxError, pg_errors.DataException) as exc:
        raise ToolError(ErrorCode.INVALID_INPUT, f"{what} {value!r} is not a valid {typ}: "
                        f"{exc.diag.message_primary}", hint=_SYNTAX_HINT[typ]) from None


_SYNTAX_HINT = {
    "ltree": "labels of letters, digits and underscores (PostgreSQL 16+: also hyphens) joined by dots, "
             "e.g. Top.Science.Astronomy",
    "lquery": "an lquery such as *.Astronomy.*, Top.*{1,2}, Top.Science|Arts.* or *.!Hobbies.*",
}


async def _rows(ctx: ToolContext, args: ColumnIn, cond: sql.Composable, params: dict[str, Any],
                lt: _Ltree) -> dict[str, Any]:
    table = await _ltree_column(ctx, args, args.column)
    col = sql.Identifier("t", args.column)
    query = sql.SQL("SELECT t.*, {nlevel}({col}) AS _depth FROM {table} t{where} ORDER BY {col}").format(
        nlevel=lt.func("nlevel"), col=col, table=table.ident, where=where_clause(args.where, cond))
    return await fetch_limited(ctx, query, params, args.limit)


class QueryIn(ColumnIn):
    path: str = Field(min_length=0, max_length=PATH_MAX, description="Path such as Top.Science, or an lquery")
    relation: Relation = Relation.DESCENDANTS
    include_self: bool = True


@tool(group="ltree", effect=Effect.READ, extensions=LTREE, aliases=("ltreeQuery",))
async def ltree_query(ctx: ToolContext, args: QueryIn) -> dict[str, Any]:
    """Rows at or below an ltree path (or above, equal, or matching an lquery).

    relation: descendants (default): rows at or below path; ancestors: rows at or above it; exact: equal to it;
    lquery: rows matching path as an lquery pattern. includeSelf (descendants, ancestors): include the row whose
    path equals path itself. Rows come ordered by the path, each with its columns plus _depth (the number of labels);
    rowCount and truncated say how many came back and whether there were more.
    """
    lt = await _ltree(ctx)
    col = sql.Identifier("t", args.column)
    params: dict[str, Any] = {"path": args.path}
    if args.relation is Relation.LQUERY:
        await _checked(ctx, lt, args.path, "lquery", "the pattern")
        cond = sql.SQL("{} {} %(path)s::{}").format(col, lt.op("~"), lt.type("lquery"))
    else:
        await _checked(ctx, lt, args.path, "ltree", "the path")
        path = sql.SQL("%(path)s::{}").format(lt.type())
        op = {Relation.DESCENDANTS: "<@", Relation.ANCESTORS: "@>", Relation.EXACT: "="}[args.relation]
        cond = sql.SQL("{} {} {}").format(col, lt.op(op), path)
        if not args.include_self and args.relation is not Relation.EXACT:
            cond = sql.SQL("{} AND {} {} {}").format(cond, col, lt.op("<>"), path)
    out = await _rows(ctx, args, cond, params, lt)
    return {**out, "relation": args.relation.value, "path": args.path}


class AncestorsIn(ColumnIn):
    path: str = Field(min_length=0, max_length=PATH_MAX, description="Path, e.g. Top.Science")
    include_self: bool = True


@tool(group="ltree", effect=Effect.READ, extensions=LTREE, aliases=("ltreeAncestors",))
async def ltree_ancestors(ctx: ToolContext, args: AncestorsIn) -> dict[str, Any]:
    """Rows whose ltree path is an ancestor of a path, root first.

    column @> path, from the root down. includeSelf: include the row whose path equals path itself. The same as
    pg_ltree_query with relation ancestors.
    """
    query = QueryIn.model_validate({**args.model_dump(by_alias=False), "relation": Relation.ANCESTORS})
    return await ltree_query(ctx, query)


# ---------------------------------------------------------------- path functions


class SubpathIn(ToolInput):
    path: str = Field(min_length=0, max_length=PATH_MAX, description="Path, e.g. Top.Science")
    offset: int = Field(0, ge=-PATH_MAX, le=PATH_MAX)
    length: int | None = Field(None, ge=-PATH_MAX, le=PATH_MAX)


@tool(group="ltree", effect=Effect.READ, extensions=LTREE)
async def ltree_subpath(ctx: ToolContext, args: SubpathIn) -> dict[str, Any]:
    """A slice of an ltree path (subpath()), with both depths.

    length labels from offset on. offset: the first label to keep, from 0; negative counts from the end. length: how
    many labels to keep (default: to the end); negative leaves that many off the end.
    """
    lt = await _ltree(ctx)
    await _checked(ctx, lt, args.path, "ltree", "the path")
    depth = await ctx.fetchval(sql.SQL("SELECT {}(%s::{})").format(lt.func("nlevel"), lt.type()), (args.path,))
    start = args.offset if args.offset >= 0 else depth + args.offset
    end = depth if args.length is None else (start + args.length if args.length >= 0 else depth + args.length)
    if not 0 <= start <= depth or not start <= end <= depth or (start == depth and depth > 0):
        raise ToolError(ErrorCode.INVALID_INPUT, f"offset {args.offset} and length {args.length} do not fit the "
                        f"path {args.path!r}, which has {depth} label(s)", details={"depth": depth})
    row = await ctx.fetchone(sql.SQL("SELECT {sub}(%(p)s::{t}, %(o)s, %(n)s)::text AS subpath").format(
        sub=lt.func("subpath"), t=lt.type()), {"p": args.path, "o": start, "n": end - start})
    assert row is not None
    return {"path": args.path, "subpath": row["subpath"], "offset": start, "length": end - start, "depth": depth}


class LcaIn(ToolInput):
    paths: list[Annotated[str, StringConstraints(max_length=PATH_MAX)]] = Field(
        min_length=1, max_length=1000, description="ltree paths")


@tool(group="ltree", effect=Effect.READ, extensions=LTREE)
async def ltree_lca(ctx: ToolContext, args: LcaIn) -> dict[str, Any]:
    """The longest common ancestor of ltree paths ('' if none).

    ltree's lca(): '' when they share no root label. As in ltree, an ancestor is strictly above every path: the lca of
    Top.A and Top.A.B is Top.
    """
    lt = await _ltree(ctx)
    for path in args.paths:
        await _checked(ctx, lt, path, "ltree", "the path")
    row = await ctx.fetchone(sql.SQL("SELECT l::text AS lca, {nlevel}(l) AS depth FROM {lca}(%s::{t}[]) l").format(
        nlevel=lt.func("nlevel"), lca=lt.func("lca"), t=lt.type()), (args.paths,))
    assert row is not None
    return {"lca": row["lca"] or "", "depth": row["depth"] or 0, "paths": len(args.paths)}


class ListColumnsIn(ToolInput):
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX, description=arguments.SCHEMA_FILTER)
    limit: int = Field(500, ge=1, le=10_000, description=arguments.LIMIT)


@tool(group="ltree", effect=Effect.READ, extensions=LTREE)
async def ltree_list_columns(ctx: ToolContext, args: ListColumnsIn) -> dict[str, Any]:
    """The ltree columns: table, type, nullability, GiST indexes.

    Every user schema is searched unless schema is given. Columns of type ltree[] or of a domain over ltree count too.
    """
    rows = await ctx.fetch(load_query("ltree_list_columns"),
                           {"system": SYSTEM_SCHEMAS, "schema": args.schema_, "limit": args.limit + 1})
    return {"columns": rows[:args.limit], "count": min(len(rows), args.limit), "truncated": len(rows) > args.limit}


class MatchIn(ColumnIn):
    pattern: str = Field(min_length=1, max_length=PATH_MAX, description="lquery, e.g. *.Astronomy.*")


@tool(group="ltree", effect=Effect.READ, extensions=LTREE)
async def ltree_match(ctx: ToolContext, args: MatchIn) -> dict[str, Any]:
    """Rows whose ltree path matches an lquery pattern, by path.

    column ~ pattern, ordered by path, each row with _depth; patterns such as *.Astronomy.*, Top.*{1,2},
    Top.Science|Arts.*, *.!Hobbies.*
    """
    lt = await _ltree(ctx)
    await _checked(ctx, lt, args.pattern, "lquery", "the pattern")
    cond = sql.SQL("{} {} %(pattern)s::{}").format(sql.Identifier("t", args.column), lt.op("~"), lt.type("lquery"))
    out = await _rows(ctx, args, cond, {"pattern": args.pattern}, lt)
    return {**out, "pattern": args.pattern}


# ---------------------------------------------------------------- structure


class ConvertColumnIn(TableRef):
    column: str = Field(min_length=1, max_length=IDENT_MAX, description="text column")
    lock_timeout_ms: int = Field(5000, ge=1, le=600_000)


# Dependents PostgreSQL cannot carry over a change of column type: ALTER ... TYPE refuses them.
_BLOCKING = frozenset({"view", "materialized view", "rule", "policy", "generated column", "foreign key"})


@tool(group="ltree", effect=Effect.ADMIN, extensions=LTREE)
async def ltree_convert_column(ctx: ToolContext, args: ConvertColumnIn) -> dict[str, Any]:
    """Convert a text column to ltree, keeping its indexes and constraints.

    In place: a text or varchar column, its indexes, constraints and defaults rebuilt as ltree. lockTimeoutMs: give up
    when the table's lock is not granted within this many milliseconds. Refused, with nothing changed, when a value is
    not a valid path (the count and a few of them are named), or when a view, rule, policy, generated column or foreign
    key uses the column (they are named; drop and recreate them around the conversion). Rewrites the table under an
    ACCESS EXCLUSIVE lock.
    """
    lt = await _ltree(ctx)
    table = await table_info(ctx, args)
    col = table.column(args.column)
    if table.kind not in ("r", "p"):
        raise ToolError(ErrorCode.INVALID_INPUT, f"{table.label} is not a table; only a table's column can be "
                        "converted")
    if col.base == "ltree":
        raise ToolError(ErrorCode.INVALID_INPUT, f'column "{args.column}" of {table.label} is already ltree')
    if col.base not in TEXT_TYPES - {"citext"}:
        raise ToolError(ErrorCode.INVALID_INPUT, f'column "{args.column}" of {table.label} is {col.type}, not text',
                        hint="only text, varchar, char and name columns can be converted",
                        details={"column": args.column, "type": col.type})
    await ctx.execute("SELECT set_config('lock_timeout', %s, true)", (f"{args.lock_timeout_ms}ms",))
    await ctx.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(table.ident))
    ident = await ctx.fetchone(
        "SELECT c.oid AS rel, a.attnum AS att FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "JOIN pg_attribute a ON a.attrelid = c.oid WHERE n.nspname = %s AND c.relname = %s AND a.attname = %s",
        (table.schema, table.name, args.column))
    assert ident is not None
    dependents = await ctx.fetch(load_query("ltree_column_dependents"), ident)
    blocking = [d for d in dependents if d["kind"] in _BLOCKING]
    if blocking:
        names = ", ".join(f"{d['kind']} {d['name']}" for d in blocking)
        raise ToolError(ErrorCode.CONFLICT, f'column "{args.column}" of {table.label} cannot change type while '
                        f"these use it: {names}; nothing was changed",
                        hint="drop them, convert the column, then recreate them (for a view, pg_get_viewdef gives "
                             "its definition)", details={"blocking": blocking})
    await _refuse_invalid_values(ctx, lt, table, args.column)
    # ALTER ... TYPE cannot cast a text default on its own: drop it, then set it again cast to ltree.
    default = next((d["definition"] for d in dependents if d["kind"] == "default"), None)
    column = sql.Identifier(args.column)
    alter = sql.SQL("ALTER TABLE {t} ALTER COLUMN {c} TYPE {lt} USING {c}::text::{lt}").format(
        t=table.ident, c=column, lt=lt.type())
    if default is not None:
        alter = sql.SQL("ALTER TABLE {t} ALTER COLUMN {c} DROP DEFAULT, ALTER COLUMN {c} TYPE {lt} USING "
                        "{c}::text::{lt}, ALTER COLUMN {c} SET DEFAULT ({d})::text::{lt}").format(
            t=table.ident, c=column, lt=lt.type(), d=expression(default, "default"))
    try:
        async with savepoint(ctx, "ltree_convert"):
            await ctx.execute(alter)
    except (pg_errors.FeatureNotSupported, pg_errors.DatatypeMismatch, pg_errors.UndefinedFunction,
            pg_errors.UndefinedObject) as exc:
        raise ToolError(ErrorCode.CONFLICT, f'column "{args.column}" of {table.label} could not be converted: '
                        f"{exc.diag.message_primary}; nothing was changed",
                        hint="an index expression, constraint or default that only works on text uses the column; "
                             "details lists what depends on it",
                        details={"dependents": dependents}) from None
    kept = await ctx.fetch(load_query("ltree_column_dependents"), ident)
    rows = await ctx.fetchval(sql.SQL("SELECT count(*) FROM {}").format(table.ident))
    return {"table": f"{table.schema}.{table.name}", "column": args.column, "from": col.type, "to": "ltree",
            "rows": rows, "dependents": kept}


async def _refuse_invalid_values(ctx: ToolContext, lt: _Ltree, table: Table, column: str) -> None:
    """Count the values ltree would refuse, and refuse the conversion naming a few of them."""
    col = sql.Identifier(column)
    if ctx.server_version >= 160000:
        # PostgreSQL 16 added pg_input_is_valid(): the type's own parser judges each value.
        invalid = sql.SQL("NOT pg_input_is_valid({}::text, format('%%I.ltree', %(schema)s::text))").format(col)
    else:
        # Before 16: labels of letters, digits and underscores, at most 255 characters each.
        invalid = sql.SQL("{}::text !~ '^([[:alnum:]_]{{1,255}}(\\.[[:alnum:]_]{{1,255}})*)?$'").format(col)
    query = sql.SQL("SELECT count(*) AS n, (array_agg(DISTINCT {c}::text))[1:5] AS examples FROM {t} "
                    "WHERE {c} IS NOT NULL AND {invalid}").format(c=col, t=table.ident, invalid=invalid)
    row = await ctx.fetchone(query, {"schema": lt.schema})
    assert row is not None
    if row["n"]:
        raise ToolError(ErrorCode.INVALID_INPUT, f'{row["n"]} row(s) of {table.label} hold a value of "{column}" '
                        f"that is not a valid ltree path, e.g. {row['examples'][0]!r}; nothing was changed",
                        hint=_SYNTAX_HINT["ltree"] + "; fix or clear those values first",
                        details={"invalidRows": row["n"], "examples": row["examples"]})


class CreateIndexLtreeIn(TableRef):
    column: str = Field(min_length=1, max_length=IDENT_MAX, description="ltree column")
    name: str | None = Field(None, max_length=IDENT_MAX)
    concurrently: bool = False
    if_not_exists: bool = False


@tool(group="ltree", effect=Effect.ADMIN, extensions=LTREE)
async def ltree_create_index(ctx: ToolContext, args: CreateIndexLtreeIn) -> dict[str, Any]:
    """Create a GiST index on an ltree column (for @>, <@, ~, ?).

    The column is ltree or ltree[]; the index serves @>, <@, ~ and ? (ancestors, descendants, lquery). name defaults to
    <table>_<column>_gist_idx; ifNotExists does nothing when an index of that name exists. concurrently builds without
    blocking writes, outside a transaction; a failed concurrent build leaves nothing behind.
    """
    if args.concurrently:
        ctx.use_autocommit()
    table = await _ltree_column(ctx, args, args.column, arrays=True)
    name = args.name or f"{table.name}_{args.column}_gist_idx"[:IDENT_MAX]
    before = await _index_state(ctx, table.schema, name)
    if before is not None and not args.if_not_exists:
        raise ToolError(ErrorCode.ALREADY_EXISTS, f'an index "{table.schema}"."{name}" already exists',
                        hint="pass ifNotExists: true, or choose another name", details={"index": before})
    if before is None:
        stmt = sql.SQL("CREATE INDEX {conc}{name} ON {table} USING gist ({col})").format(
            conc=sql.SQL("CONCURRENTLY ") if args.concurrently else sql.SQL(""), name=sql.Identifier(name),
            table=table.ident, col=sql.Identifier(args.column))
        try:
            await ctx.execute(stmt)
        except psycopg.Error:
            left = await _index_state(ctx, table.schema, name) if args.concurrently else None
            if left is not None and not left["valid"]:
                await ctx.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(
                    sql.Identifier(table.schema, name)))
            raise
    after = await _index_state(ctx, table.schema, name)
    assert after is not None
    return {"index": name, "schema": table.schema, "table": table.name, "column": args.column,
            "created": before is None, **after}


async def _index_state(ctx: ToolContext, schema: str, name: str) -> dict[str, Any] | None:
    return await ctx.fetchone(
        "SELECT pg_get_indexdef(c.oid) AS definition, am.amname AS method, x.indisvalid AS valid FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_index x ON x.indexrelid = c.oid "
        "JOIN pg_am am ON am.oid = c.relam WHERE n.nspname = %s AND c.relname = %s", (schema, name))
