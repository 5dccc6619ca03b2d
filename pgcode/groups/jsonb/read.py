"""jsonb: read values out of jsonb columns (extract, contains, path queries, keys, types, normal forms, pretty)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from psycopg import sql
from pydantic import Field

from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.db.queries import load_query
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import IDENT_MAX, TableRef, check_columns
from pgcode.groups.jsonb._base import (
    PATH_HELP,
    WHERE_HELP,
    Bind,
    MaybeColumnIn,
    PathArg,
    RowsIn,
    fragment,
    parse_path,
    resolve,
    selection,
    table_info,
    where_clause,
)
from pgcode.types import Effect

LIMIT_HELP = "Most rows to return (the result says truncated when there were more)"


def _limited(rows: list[dict[str, Any]], limit: int, **extra: Any) -> dict[str, Any]:
    return {"rows": rows[:limit], "count": min(len(rows), limit), "truncated": len(rows) > limit, **extra}


class ExtractIn(RowsIn):
    path: PathArg = Field(description=PATH_HELP)
    limit: int = Field(100, ge=1, le=10_000, description=LIMIT_HELP)


@tool(group="jsonb", effect=Effect.READ)
async def jsonb_extract(ctx: ToolContext, args: ExtractIn) -> dict[str, Any]:
    """Values at a path in a jsonb column, per row.

    Returns {rows: [{row, value}], missing, path, truncated}: row is the primary key, value is null where the path
    does not exist, and missing counts those rows among the ones returned. path takes an array (['a', 0, 'b'];
    needed when a key contains '.'), a dotted string ('a.0.b' or 'a[0].b'), a PostgreSQL text array ('{a,0,b}') or
    a simple JSONPath ('$.a[0].b'); empty returns the whole value.
    """
    target, bind = await resolve(ctx, args), Bind()
    path = parse_path(args.path)
    cond = selection(target, bind, args.where, args.key)
    value = sql.SQL("{} #> {}").format(target.doc, bind.path(path))
    rows = await ctx.fetch(sql.SQL("SELECT {} AS row, {} AS value, {} IS NULL AS _missing FROM {}{}{} LIMIT {}").format(
        target.row_key(bind), value, value, target.ident, where_clause(cond), target.order, bind(args.limit + 1)),
        bind.params)
    missing = sum(1 for r in rows[:args.limit] if r.pop("_missing"))
    return _limited(rows, args.limit, missing=missing, path=path)


class ContainsIn(RowsIn):
    value: Any = Field(description="e.g. {\"status\": \"active\"}")
    path: PathArg | None = Field(None, description=PATH_HELP)
    limit: int = Field(100, ge=1, le=10_000, description=LIMIT_HELP)


@tool(group="jsonb", effect=Effect.READ)
async def jsonb_contains(ctx: ToolContext, args: ContainsIn) -> dict[str, Any]:
    """Rows whose jsonb column contains the given JSON (@>).

    Rows come back with all their columns; the column may be json too.

    A GIN index on the column serves it. With path the value at that path is tested instead of the whole document;
    path takes an array (['a', 0, 'b']; needed when a key contains '.'), a dotted string ('a.0.b' or 'a[0].b'), a
    PostgreSQL text array ('{a,0,b}') or a simple JSONPath ('$.a[0].b').
    """
    target, bind = await resolve(ctx, args), Bind()
    doc = target.doc
    if args.path is not None:
        doc = sql.SQL("({} #> {})").format(doc, bind.path(parse_path(args.path)))
    conds = [sql.SQL("{} @> {}").format(doc, bind.json(args.value))]
    cond = selection(target, bind, args.where, args.key)
    if cond is not None:
        conds.append(sql.SQL("({})").format(cond))
    rows = await ctx.fetch(sql.SQL("SELECT * FROM {} WHERE {}{} LIMIT {}").format(
        target.ident, sql.SQL(" AND ").join(conds), target.order, bind(args.limit + 1)), bind.params)
    return _limited(rows, args.limit)


class PathMode(StrEnum):
    QUERY = "query"
    FIRST = "first"
    EXISTS = "exists"
    MATCH = "match"


_PATH_FUNCS = {PathMode.QUERY: "jsonb_path_query", PathMode.FIRST: "jsonb_path_query_first",
               PathMode.EXISTS: "jsonb_path_exists", PathMode.MATCH: "jsonb_path_match"}


class PathQueryIn(RowsIn):
    path: str = Field(min_length=1, max_length=10_000, description="SQL/JSON path, e.g. $.items[*] ? (@.price > $min)")
    vars: dict[str, Any] | None = Field(None, description="e.g. {\"min\": 10}")
    mode: PathMode = PathMode.QUERY
    silent: bool = False
    tz: bool = False
    limit: int = Field(100, ge=1, le=10_000, description=LIMIT_HELP)


@tool(group="jsonb", effect=Effect.READ)
async def jsonb_path_query(ctx: ToolContext, args: PathQueryIn) -> dict[str, Any]:
    """Run an SQL/JSON path query over a jsonb column.

    mode query returns every item, first the first item per row (both as rows [{row, item}]); exists returns the
    rows where the path finds something, match the rows where the path's predicate is true (both as [{row, value}]).
    `strict` or `lax` may lead the path; vars are bound, never pasted into the path. silent suppresses structural
    errors (missing keys in strict mode, ...); tz allows time-zone-dependent datetime comparisons (the *_tz
    functions).
    """
    target, bind = await resolve(ctx, args), Bind()
    func = sql.SQL(_PATH_FUNCS[args.mode] + ("_tz" if args.tz else ""))
    call = sql.SQL("{}({}, {}::jsonpath, {}, {})").format(func, target.doc, bind(args.path), bind.json(args.vars or {}),
                                                         bind(args.silent))
    cond = selection(target, bind, args.where, args.key)
    key = target.row_key(bind)
    limit = bind(args.limit + 1)
    if args.mode is PathMode.QUERY:
        order = sql.SQL(", ").join([*map(sql.Identifier, target.pk), sql.SQL("q.ord")])
        query = sql.SQL("SELECT {} AS row, q.item FROM {} CROSS JOIN LATERAL {} WITH ORDINALITY AS q(item, ord){} "
                        "ORDER BY {} LIMIT {}").format(key, target.ident, call, where_clause(cond), order, limit)
    elif args.mode is PathMode.FIRST:
        query = sql.SQL("SELECT row, item FROM (SELECT {} AS row, {} AS item FROM {}{}{}) AS x "
                        "WHERE item IS NOT NULL LIMIT {}").format(key, call, target.ident, where_clause(cond),
                                                                  target.order, limit)
    else:
        conds = [call] if cond is None else [sql.SQL("({})").format(cond), call]
        query = sql.SQL("SELECT {} AS row, {} AS value FROM {} WHERE {}{} LIMIT {}").format(
            key, target.doc, target.ident, sql.SQL(" AND ").join(conds), target.order, limit)
    rows = await ctx.fetch(query, bind.params)
    return _limited(rows, args.limit, mode=args.mode.value)


class Direction(StrEnum):
    ASC = "asc"
    DESC = "desc"


class OrderItem(ToolInput):
    column: str = Field(min_length=1, max_length=IDENT_MAX, description="Column to sort by")
    direction: Direction = Direction.ASC


class AggIn(TableRef):
    columns: list[str] | None = Field(None, min_length=1, max_length=50)
    where: str | None = Field(None, max_length=10_000, description=WHERE_HELP)
    order_by: list[OrderItem] | None = Field(None, max_length=8)
    group_by: str | None = Field(None, min_length=1, max_length=IDENT_MAX)
    limit: int = Field(1000, ge=1, le=10_000)


@tool(group="jsonb", effect=Effect.READ)
async def jsonb_agg(ctx: ToolContext, args: AggIn) -> dict[str, Any]:
    """Rows as one jsonb array of objects (or one per groupBy value).

    Returns {result, count}, or {groups: [{group, items}]} with groupBy. orderBy orders the array's elements
    ([{column, direction: asc or desc}]); limit caps the rows aggregated (truncated says when cut).
    """
    info = await table_info(ctx, args.schema_name, args.table_name)
    known = {c[0]: c[1] for c in info["columns"]}
    names = [*(args.columns or []), *(o.column for o in args.order_by or [])]
    names += [args.group_by] if args.group_by else []
    check_columns(names, known, args.table)
    bind = Bind()
    alias = sql.Identifier("_pgcode_r")
    obj = sql.SQL("to_jsonb({}.*)").format(alias) if not args.columns else sql.SQL("jsonb_build_object({})").format(
        sql.SQL(", ").join(sql.SQL("{}::text, {}.{}").format(bind(c), alias, sql.Identifier(c)) for c in args.columns))
    keys = [sql.SQL("{}.{}").format(alias, sql.Identifier(args.group_by))] if args.group_by else []
    keys += [sql.SQL("{}.{} {}").format(alias, sql.Identifier(o.column), sql.SQL(o.direction.value.upper()))
             for o in args.order_by or []]
    order = sql.SQL(", ").join(keys) if keys else sql.SQL("(SELECT NULL)")
    where = where_clause(fragment(args.where) if args.where is not None else None)
    inner = sql.SQL("SELECT {group} AS g, {obj} AS obj, row_number() OVER (ORDER BY {order}) AS ord "
                    "FROM {table} AS {alias}{where} ORDER BY ord LIMIT {limit}").format(
        group=keys[0] if args.group_by else sql.SQL("NULL"), obj=obj, order=order, table=sql.Identifier(
            args.schema_name, args.table_name), alias=alias, where=where, limit=bind(args.limit + 1))
    n = bind(args.limit)
    if not args.group_by:
        row = await ctx.fetchone(sql.SQL(
            "SELECT COALESCE(jsonb_agg(obj ORDER BY ord) FILTER (WHERE ord <= {n}), '[]') AS result, "
            "count(*) FILTER (WHERE ord <= {n}) AS count, COALESCE(max(ord), 0) > {n} AS truncated FROM ({inner}) AS x"
        ).format(n=n, inner=inner), bind.params)
        assert row is not None
        return row
    groups = await ctx.fetch(sql.SQL(
        "SELECT g AS group, jsonb_agg(obj ORDER BY ord) AS items, count(*) AS count, max(ord) AS last "
        "FROM ({inner}) AS x WHERE ord <= {n} GROUP BY g ORDER BY min(ord)").format(inner=inner, n=n), bind.params)
    total = await ctx.fetchval(sql.SQL("SELECT count(*) FROM ({}) AS x").format(inner), bind.params)
    for g in groups:
        g.pop("last")
    return {"groups": groups, "count": sum(g["count"] for g in groups), "truncated": total > args.limit}


class KeysIn(RowsIn):
    path: PathArg | None = Field(None, description=PATH_HELP)
    limit: int = Field(1000, ge=1, le=10_000)


@tool(group="jsonb", effect=Effect.READ)
async def jsonb_keys(ctx: ToolContext, args: KeysIn) -> dict[str, Any]:
    """Distinct keys in a jsonb column (or at a path), with row counts.

    path (default: the top level) takes an array (['a', 0, 'b']; needed when a key contains '.'), a dotted string
    ('a.0.b' or 'a[0].b'), a PostgreSQL text array ('{a,0,b}') or a simple JSONPath ('$.a[0].b').

    Reads every matching row (exact); pg_jsonb_stats samples instead and goes into nested keys.
    """
    target, bind = await resolve(ctx, args), Bind()
    value = sql.SQL("({} #> {})").format(target.doc, bind.path(parse_path(args.path)))
    cond = selection(target, bind, args.where, args.key)
    rows = await ctx.fetch(sql.SQL(
        "SELECT k.key, count(*) AS rows FROM {t} CROSS JOIN LATERAL jsonb_object_keys("
        "CASE WHEN jsonb_typeof({v}) = 'object' THEN {v} END) AS k(key){w} GROUP BY k.key "
        "ORDER BY count(*) DESC, k.key LIMIT {n}").format(t=target.ident, v=value, w=where_clause(cond),
                                                          n=bind(args.limit + 1)), bind.params)
    scanned = await ctx.fetchone(sql.SQL(
        "SELECT count(*) AS rows, count(*) FILTER (WHERE jsonb_typeof({v}) = 'object') AS objects FROM {t}{w}").format(
        v=value, t=target.ident, w=where_clause(cond)), bind.params)
    assert scanned is not None
    keys = rows[:args.limit]
    return {"keys": [k["key"] for k in keys], "occurrences": keys, "rowsScanned": scanned["rows"],
            "objectRows": scanned["objects"], "truncated": len(rows) > args.limit}


class TypeofIn(MaybeColumnIn):
    value: Any = None
    path: PathArg | None = Field(None, description=PATH_HELP)
    limit: int = Field(100, ge=1, le=10_000)


@tool(group="jsonb", effect=Effect.READ)
async def jsonb_typeof(ctx: ToolContext, args: TypeofIn) -> dict[str, Any]:
    """The JSON type at a path, of a value or per row of a column.

    value is a JSON value to inspect instead of a table's column.

    Returns {type} for a value, {types: counts, rows: [{row, type}]} for a column (limit caps the rows listed). path
    (default: the whole value) takes an array (['a', 0, 'b']; needed when a key contains '.'), a dotted string
    ('a.0.b' or 'a[0].b'), a PostgreSQL text array ('{a,0,b}') or a simple JSONPath ('$.a[0].b').

    Types are object, array, string, number, boolean, null, and missing where the path does not exist.
    """
    target = await args.target(ctx, ("value",))
    bind = Bind()
    path = parse_path(args.path)
    if target is None:
        kind = await ctx.fetchval(sql.SQL("SELECT jsonb_typeof({} #> {})").format(bind.json(args.value),
                                                                                  bind.path(path)), bind.params)
        return {"type": kind or "missing", "path": path}
    kind_sql = sql.SQL("COALESCE(jsonb_typeof({} #> {}), 'missing')").format(target.doc, bind.path(path))
    cond = selection(target, bind, args.where, args.key)
    counts = await ctx.fetch(sql.SQL("SELECT {} AS type, count(*) AS n FROM {}{} GROUP BY 1 ORDER BY 2 DESC, 1").format(
        kind_sql, target.ident, where_clause(cond)), bind.params)
    rows = await ctx.fetch(sql.SQL("SELECT {} AS row, {} AS type FROM {}{}{} LIMIT {}").format(
        target.row_key(bind), kind_sql, target.ident, where_clause(cond), target.order, bind(args.limit + 1)),
        bind.params)
    return _limited(rows, args.limit, types={c["type"]: c["n"] for c in counts}, path=path)


class NormalizeMode(StrEnum):
    KEYS = "keys"
    PAIRS = "pairs"
    ARRAY = "array"
    FLATTEN = "flatten"


class NormalizeIn(RowsIn):
    mode: NormalizeMode = NormalizeMode.KEYS
    path: PathArg | None = Field(None, description=PATH_HELP)
    max_depth: int = Field(32, ge=1, le=100)
    limit: int = Field(1000, ge=1, le=100_000)


@tool(group="jsonb", effect=Effect.READ)
async def jsonb_normalize(ctx: ToolContext, args: NormalizeIn) -> dict[str, Any]:
    """A jsonb column as rows: key/value pairs, array elements or leaves.

    mode keys gives the top-level key and value as text; pairs the key, jsonb value and type; array the array
    elements with their index; flatten every leaf with its full path, down to maxDepth. path (default: the whole
    value) takes an array (['a', 0, 'b']; needed when a key contains '.'), a dotted string ('a.0.b' or 'a[0].b'), a
    PostgreSQL text array ('{a,0,b}') or a simple JSONPath ('$.a[0].b').

    Rows whose value does not fit the mode (an array in keys mode, ...) contribute nothing.
    """
    target, bind = await resolve(ctx, args), Bind()
    value = sql.SQL("({} #> {})").format(target.doc, bind.path(parse_path(args.path)))
    cond = selection(target, bind, args.where, args.key)
    key, limit = target.row_key(bind), bind(args.limit + 1)
    order: list[sql.Composable] = [*map(sql.Identifier, target.pk)]
    if args.mode is NormalizeMode.FLATTEN:
        source = sql.SQL("SELECT row_number() OVER ({}) AS sid, {} AS rk, {} AS doc FROM {}{}").format(
            sql.SQL("ORDER BY {}").format(sql.SQL(", ").join(order)) if order else sql.SQL(""), key, value,
            target.ident, where_clause(cond))
        query = load_query("jsonb_walk").format(source=source, max_depth=bind(args.max_depth)) + sql.SQL(
            "SELECT s.rk AS row, w.path, w.value, jsonb_typeof(w.value) AS type FROM walk AS w "
            "JOIN src AS s ON s.sid = w.sid WHERE jsonb_typeof(w.value) NOT IN ('object', 'array') "
            "OR w.value IN ('{{}}'::jsonb, '[]'::jsonb) ORDER BY w.sid, w.path LIMIT {}").format(limit)
        rows = await ctx.fetch(query, bind.params)
        for r in rows:
            r["key"] = ".".join(r["path"])
        return _limited(rows, args.limit, mode=args.mode.value)
    if args.mode is NormalizeMode.ARRAY:
        func = sql.SQL("jsonb_array_elements(CASE WHEN jsonb_typeof({v}) = 'array' THEN {v} END) "
                       "WITH ORDINALITY AS e(value, ord)").format(v=value)
        cols = sql.SQL("e.ord - 1 AS index, e.value, jsonb_typeof(e.value) AS type")
        order.append(sql.SQL("e.ord"))
    else:
        each = "jsonb_each_text" if args.mode is NormalizeMode.KEYS else "jsonb_each"
        func = sql.SQL(each + "(CASE WHEN jsonb_typeof({v}) = 'object' THEN {v} END) AS e(key, value)").format(v=value)
        cols = sql.SQL("e.key, e.value") if args.mode is NormalizeMode.KEYS else sql.SQL(
            "e.key, e.value, jsonb_typeof(e.value) AS type")
        order.append(sql.SQL("e.key"))
    rows = await ctx.fetch(sql.SQL("SELECT {} AS row, {} FROM {} CROSS JOIN LATERAL {}{} ORDER BY {} LIMIT {}").format(
        key, cols, target.ident, func, where_clause(cond), sql.SQL(", ").join(order), limit), bind.params)
    return _limited(rows, args.limit, mode=args.mode.value)


class PrettyIn(MaybeColumnIn):
    json_: str | None = Field(None, alias="json", max_length=10_000_000)
    value: Any = None
    path: PathArg | None = Field(None, description=PATH_HELP)
    limit: int = Field(20, ge=1, le=1000)


@tool(group="jsonb", effect=Effect.READ)
async def jsonb_pretty(ctx: ToolContext, args: PrettyIn) -> dict[str, Any]:
    """JSON indented for reading (text, a value, or a column's rows).

    Give json (JSON text), value (a JSON value) or table and column.

    Returns {pretty}, or {rows: [{row, pretty}]} for a column (limit caps the rows formatted). With a table, path
    picks the value to format: an array (['a', 0, 'b']; needed when a key contains '.'), a dotted string ('a.0.b' or
    'a[0].b'), a PostgreSQL text array ('{a,0,b}') or a simple JSONPath ('$.a[0].b').

    PostgreSQL's jsonb_pretty formats it: four-space indents, keys in jsonb order, duplicate keys removed.
    """
    target = await args.target(ctx, ("json_", "value"))
    bind = Bind()
    if target is None:
        if "json_" in args.model_fields_set and "value" in args.model_fields_set:
            raise ToolError(ErrorCode.INVALID_INPUT, "give json (text) or value, not both")
        given = sql.SQL("{}::jsonb").format(bind(args.json_)) if "json_" in args.model_fields_set else bind.json(
            args.value)
        text = await ctx.fetchval(sql.SQL("SELECT jsonb_pretty({})").format(given), bind.params)
        return {"pretty": text}
    value = sql.SQL("{} #> {}").format(target.doc, bind.path(parse_path(args.path)))
    cond = selection(target, bind, args.where, args.key)
    rows = await ctx.fetch(sql.SQL("SELECT {} AS row, jsonb_pretty({}) AS pretty FROM {}{}{} LIMIT {}").format(
        target.row_key(bind), value, target.ident, where_clause(cond), target.order, bind(args.limit + 1)),
        bind.params)
    return _limited(rows, args.limit)

