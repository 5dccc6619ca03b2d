"""jsonb: change values inside jsonb columns (set, insert, delete, strip nulls), row by row, checked first."""

from __future__ import annotations

from typing import Any, Literal

from psycopg import sql
from pydantic import Field

from pgcode.core.context import ToolContext
from pgcode.core.registry import tool
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups.jsonb._base import (
    PATH_HELP,
    Bind,
    PathArg,
    Target,
    WriteRowsIn,
    is_index,
    nest,
    parse_path,
    resolve,
    selection,
    show_path,
    where_clause,
    write_selection,
)
from pgcode.types import Effect

Mode = Literal["set", "set-existing", "insert", "delete"]
_EMPTY = sql.SQL("'{}'::jsonb")


class SetIn(WriteRowsIn):
    path: PathArg = Field(description=PATH_HELP)
    value: Any = Field(description="Any JSON value")
    create_missing: bool = True


@tool(group="jsonb", effect=Effect.WRITE)
async def jsonb_set(ctx: ToolContext, args: SetIn) -> dict[str, Any]:
    """Set a value at a path in a jsonb column, in the chosen rows.

    Returns rowsChanged and rowsMatched. path takes an array (['a', 0, 'b']; needed when a key contains '.'), a
    dotted string ('a.0.b' or 'a[0].b'), a PostgreSQL text array ('{a,0,b}') or a simple JSONPath ('$.a[0].b');
    empty replaces the whole value. createMissing (default true) creates missing keys, including intermediate
    objects; false only replaces values that exist.

    A NULL column counts as {}. A path that runs through a scalar, names a non-integer array index, or (with
    createMissing false) does not exist is refused with the rows concerned, and nothing is changed.
    """
    path = parse_path(args.path)
    target, bind, cond = await _prepare(ctx, args, "pg_jsonb_set")
    doc = sql.SQL("COALESCE({}, {})").format(target.doc, _EMPTY)
    value = bind.json(args.value)
    new: sql.Composable = value
    if path:
        new = sql.SQL("jsonb_set({}, {}, {}, {})").format(doc, bind.path(path), value, bind(args.create_missing))
        if args.create_missing and len(path) > 1:
            # jsonb_set creates only the last key: create the first missing one holding the rest of the path.
            whens = [sql.SQL("WHEN {doc} #> {prefix} IS NULL THEN jsonb_set({doc}, {prefix}, {rest})").format(
                doc=doc, prefix=bind.path(path[:k]), rest=bind.json(nest(path[k:], args.value)))
                for k in range(1, len(path))]
            new = sql.SQL("CASE {} ELSE {} END").format(sql.SQL(" ").join(whens), new)
    mode: Mode = "set" if args.create_missing else "set-existing"
    matched = await _check(ctx, target, bind, cond, doc, path, mode, "pg_jsonb_set", args.all_rows)
    return await _update(ctx, target, bind, cond, new, matched, path)


class InsertIn(WriteRowsIn):
    path: PathArg = Field(description=PATH_HELP)
    value: Any = Field(description="Any JSON value")
    insert_after: bool = False


@tool(group="jsonb", effect=Effect.WRITE)
async def jsonb_insert(ctx: ToolContext, args: InsertIn) -> dict[str, Any]:
    """Insert into a jsonb array or object, in the chosen rows.

    Returns rowsChanged. path takes an array (['a', 0, 'b']; needed when a key contains '.'), a dotted string
    ('a.0.b' or 'a[0].b'), a PostgreSQL text array ('{a,0,b}') or a simple JSONPath ('$.a[0].b'). In an array the
    value goes before that index (after it with insertAfter; [..., -1] with insertAfter appends); in an object the
    key must not exist yet.

    The array or object that receives the value must exist in every chosen row; inserting a key that already
    exists fails (use pg_jsonb_set to replace it). A NULL column counts as {}.
    """
    path = parse_path(args.path)
    if not path:
        raise ToolError(ErrorCode.INVALID_INPUT, "pg_jsonb_insert needs a path naming where the value goes")
    target, bind, cond = await _prepare(ctx, args, "pg_jsonb_insert")
    doc = sql.SQL("COALESCE({}, {})").format(target.doc, _EMPTY)
    new = sql.SQL("jsonb_insert({}, {}, {}, {})").format(doc, bind.path(path), bind.json(args.value),
                                                        bind(args.insert_after))
    matched = await _check(ctx, target, bind, cond, doc, path, "insert", "pg_jsonb_insert", args.all_rows)
    return await _update(ctx, target, bind, cond, new, matched, path)


class DeleteIn(WriteRowsIn):
    path: PathArg = Field(description=PATH_HELP)


@tool(group="jsonb", effect=Effect.WRITE)
async def jsonb_delete(ctx: ToolContext, args: DeleteIn) -> dict[str, Any]:
    """Remove a key or array element from a jsonb column's chosen rows.

    Returns rowsChanged (the rows that had it). path takes an array (['a', 0, 'b']; needed when a key contains '.'),
    a dotted string ('a.0.b' or 'a[0].b'), a PostgreSQL text array ('{a,0,b}') or a simple JSONPath ('$.a[0].b').
    """
    path = parse_path(args.path)
    if not path:
        raise ToolError(ErrorCode.INVALID_INPUT, "pg_jsonb_delete needs a path naming the key or element to remove",
                        hint="to clear the whole value use pg_jsonb_set with an empty path")
    target, bind, cond = await _prepare(ctx, args, "pg_jsonb_delete")
    new = sql.SQL("{} #- {}").format(target.doc, bind.path(path))
    matched = await _check(ctx, target, bind, cond, target.doc, path, "delete", "pg_jsonb_delete", args.all_rows)
    return await _update(ctx, target, bind, cond, new, matched, path)


class StripNullsIn(WriteRowsIn):
    preview: bool = False
    preview_limit: int = Field(20, ge=1, le=1000)
    strip_in_arrays: bool = False


@tool(group="jsonb", effect=Effect.WRITE)
async def jsonb_strip_nulls(ctx: ToolContext, args: StripNullsIn) -> dict[str, Any]:
    """Remove null object fields from a jsonb column, in the chosen rows.

    Fields are removed at every depth.

    Returns rowsChanged. stripInArrays also removes null array elements (PostgreSQL 18 and later). previewLimit caps
    the rows shown before/after in a preview.

    With preview: true nothing is written; the counts and a few rows' before/after come back instead.
    """
    if args.strip_in_arrays:
        # PostgreSQL 18 added jsonb_strip_nulls(target, strip_in_arrays).
        ctx.caps.require_version(180000, "stripInArrays of pg_jsonb_strip_nulls")
    target, bind = await _target(ctx, args)
    extra = sql.SQL(", true") if args.strip_in_arrays else sql.SQL("")
    new = sql.SQL("jsonb_strip_nulls({}{})").format(target.doc, extra)
    if args.preview:
        return await _preview(ctx, target, bind, selection(target, bind, args.where, args.key), new, args.preview_limit)
    cond = write_selection(target, bind, args, "pg_jsonb_strip_nulls")
    matched = await _check(ctx, target, bind, cond, target.doc, [], "delete", "pg_jsonb_strip_nulls", args.all_rows)
    return await _update(ctx, target, bind, cond, new, matched, None)


class ArrayAppendIn(WriteRowsIn):
    path: PathArg = Field(description=PATH_HELP)
    value: Any = Field(description="Any JSON value")


@tool(group="jsonb", effect=Effect.WRITE)
async def jsonb_array_append(ctx: ToolContext, args: ArrayAppendIn) -> dict[str, Any]:
    """Append a value to the jsonb array at a path, in the chosen rows.

    Returns rowsChanged and rowsMatched. An array value is appended as one element. path takes an array (['a', 0,
    'b']; needed when a key contains '.'), a dotted string ('a.0.b' or 'a[0].b'), a PostgreSQL text array
    ('{a,0,b}') or a simple JSONPath ('$.a[0].b'); empty means the column's value itself.

    Every chosen row must hold an array there: a missing path, or a value that is not an array (an object,
    a string, null, a NULL column) in any chosen row, is refused with the rows concerned, and nothing is changed.
    """
    path = parse_path(args.path)
    target, bind, cond = await _prepare(ctx, args, "pg_jsonb_array_append")
    matched = await _check(ctx, target, bind, cond, target.doc, path, "set-existing", "pg_jsonb_array_append",
                           args.all_rows)
    found = sql.SQL("jsonb_typeof({} #> {})").format(target.doc, bind.path(path))
    not_array = sql.SQL("{} IS DISTINCT FROM 'array'").format(found)
    rows = await ctx.fetch(sql.SQL("SELECT {found} AS found, count(*) AS n, (array_agg({key}))[1:3] AS examples "
                                   "FROM {t} WHERE {cond}{not_array} GROUP BY 1 ORDER BY 2 DESC").format(
        found=found, key=target.row_key(bind), t=target.ident, not_array=not_array,
        cond=sql.SQL("({}) AND ").format(cond) if cond is not None else sql.SQL("")), bind.params)
    if rows:
        total = sum(r["n"] for r in rows)
        kinds = ", ".join(f"{r['found'] or 'SQL NULL'} in {r['n']}" for r in rows)
        raise ToolError(ErrorCode.INVALID_INPUT,
                        f"pg_jsonb_array_append: the value at {show_path(path)} is not an array in {total} row(s) "
                        f"of {target.name} ({kinds}); nothing was changed",
                        hint="narrow where/key to rows holding an array there, or use pg_jsonb_set to create one",
                        details={"rows": total, "found": [{"type": r["found"], "rows": r["n"],
                                                           "examples": r["examples"]} for r in rows]})
    appended = sql.SQL("jsonb_build_array({})").format(bind.json(args.value))
    new: sql.Composable = sql.SQL("{} || {}").format(target.doc, appended)
    if path:
        new = sql.SQL("jsonb_set({doc}, {path}, ({doc} #> {path}) || {appended})").format(
            doc=target.doc, path=bind.path(path), appended=appended)
    return await _update(ctx, target, bind, cond, new, matched, path)


# ---------------------------------------------------------------- shared steps

Cond = sql.Composable | None  # None: every row, as allRows asked


async def _target(ctx: ToolContext, args: WriteRowsIn) -> tuple[Target, Bind]:
    target = await resolve(ctx, args)
    return target, Bind()


async def _prepare(ctx: ToolContext, args: WriteRowsIn, tool: str) -> tuple[Target, Bind, Cond]:
    target, bind = await _target(ctx, args)
    return target, bind, write_selection(target, bind, args, tool)


async def _check(ctx: ToolContext, target: Target, bind: Bind, cond: Cond, doc: sql.Composable,
                 path: list[str], mode: Mode, tool: str, all_rows: bool) -> int:
    """Count the chosen rows and refuse, before any change, a path that does not fit some of them.

    One scan groups the rows by the JSON type found at each prefix of the path; each group is then judged.
    Also refuses a condition that matches every row (of two or more) unless allRows was given.
    """
    types = [sql.SQL("jsonb_typeof({} #> {}) AS {}").format(doc, bind.path(path[:i]), sql.Identifier(f"t{i}"))
             for i in range(len(path) + 1)] if path else []
    group = sql.SQL(" GROUP BY {}").format(sql.SQL(", ").join(
        sql.Literal(i + 1) for i in range(len(types)))) if types else sql.SQL("")
    query = sql.SQL("SELECT {}count(*) AS n FROM {}{}{}").format(
        sql.SQL("").join(t + sql.SQL(", ") for t in types), target.ident, where_clause(cond), group)
    groups = await ctx.fetch(query, bind.params)
    matched = int(sum(g["n"] for g in groups))
    if matched == 0 and cond is not None:
        raise ToolError(ErrorCode.NOT_FOUND, f"no row of {target.name} matches the where/key given to {tool}",
                        hint="nothing was changed; check the condition with pg_count")
    problems = []
    for g in groups:
        found = [g[f"t{i}"] for i in range(len(types))]
        problem = _problem(found, path, mode)
        if problem is not None:
            problems.append(_Problem(problem[0], problem[1], found, g["n"]))
    if problems:
        raise await _path_error(ctx, target, bind, cond, doc, path, problems, tool)
    if cond is not None and not all_rows and matched >= 2:
        everything: bool = await ctx.fetchval(sql.SQL(
            "SELECT NOT EXISTS (SELECT 1 FROM {} WHERE ({}) IS NOT TRUE)").format(target.ident, cond), bind.params)
        if everything:
            raise ToolError(ErrorCode.INVALID_INPUT,
                            f"the condition matches every row of {target.name} ({matched}); {tool} changes every "
                            "row only with allRows: true", hint="nothing was changed")
    return matched


def _problem(found: list[str | None], path: list[str], mode: Mode) -> tuple[str, int] | None:
    """Why `path` cannot be applied to a document whose prefixes hold the JSON types `found`, or None."""
    for i, kind in enumerate(found[:len(path)]):
        if kind is None:
            if mode == "delete":
                return None  # nothing there to remove
            if mode == "set" and found[i - 1] == "object":
                return None  # the first missing key: created, holding the rest of the path
            return ("missing", i)
        if kind == "array":
            if not is_index(path[i]):
                return ("not_index", i)
        elif kind != "object":
            return ("scalar", i)
    if mode == "set-existing" and path and found[len(path)] is None:
        return ("missing", len(path))
    return None


class _Problem:
    def __init__(self, kind: str, at: int, found: list[str | None], rows: int) -> None:
        self.kind, self.at, self.found, self.rows = kind, at, found, rows

    def why(self, path: list[str]) -> str:
        at = show_path(path[:self.at])
        if self.kind == "scalar":
            found = self.found[self.at] or ""
            what = "null" if found == "null" else f"a {found}"
            return f"at {at} the value is {what}, not an object or array, so the path cannot go on"
        if self.kind == "not_index":
            return f"at {at} the value is an array and {path[self.at]!r} is not an array index"
        if self.at > 0 and self.found[self.at - 1] == "array":
            return f"{at} does not exist (the array is shorter)"
        return f"{at} does not exist"


async def _path_error(ctx: ToolContext, target: Target, bind: Bind, cond: Cond, doc: sql.Composable,
                      path: list[str], problems: list[_Problem], tool: str) -> ToolError:
    details = []
    for p in problems[:5]:
        same = [sql.SQL("jsonb_typeof({} #> {}) IS NOT DISTINCT FROM {}::text").format(
            doc, bind.path(path[:i]), bind(t)) for i, t in enumerate(p.found)]
        if cond is not None:
            same.insert(0, sql.SQL("({})").format(cond))
        rows = await ctx.fetch(sql.SQL("SELECT {} AS row FROM {} WHERE {}{} LIMIT 3").format(
            target.row_key(bind), target.ident, sql.SQL(" AND ").join(same), target.order), bind.params)
        details.append({"problem": p.kind, "at": path[:p.at], "found": p.found[p.at] if p.at < len(p.found) else None,
                        "rows": p.rows, "why": p.why(path), "examples": [r["row"] for r in rows]})
    total = sum(p.rows for p in problems)
    return ToolError(ErrorCode.INVALID_INPUT,
                     f"{tool}: the path {show_path(path)} does not fit {total} row(s) of {target.name}: "
                     f"{problems[0].why(path)}; nothing was changed",
                     hint="narrow where/key to rows the path fits, or fix the path "
                          "(pg_jsonb_typeof shows the types at a path)",
                     details={"problems": details})


async def _update(ctx: ToolContext, target: Target, bind: Bind, cond: Cond, new: sql.Composable,
                  matched: int, path: list[str] | None) -> dict[str, Any]:
    stored = sql.SQL("({})::json").format(new) if target.is_json else new
    changed = sql.SQL("{} IS DISTINCT FROM {}").format(target.doc, new)
    rows = await ctx.execute(sql.SQL("UPDATE {} SET {} = {} WHERE {}").format(
        target.ident, target.col, stored,
        sql.SQL("({}) AND {}").format(cond, changed) if cond is not None else changed), bind.params)
    out: dict[str, Any] = {"rowsChanged": rows, "rowsMatched": matched, "table": target.name,
                           "column": target.column}
    if path is not None:
        out["path"] = path
    return out


async def _preview(ctx: ToolContext, target: Target, bind: Bind, cond: Cond, new: sql.Composable,
                   limit: int) -> dict[str, Any]:
    counts = await ctx.fetchone(sql.SQL(
        "SELECT count(*) AS matched, count(*) FILTER (WHERE {doc} IS DISTINCT FROM {new}) AS changes FROM {t}{w}"
    ).format(doc=target.doc, new=new, t=target.ident, w=where_clause(cond)), bind.params)
    assert counts is not None
    rows = await ctx.fetch(sql.SQL(
        "SELECT {key} AS row, {doc} AS before, {new} AS after FROM {t} WHERE {cond}{doc} IS DISTINCT FROM {new}"
        "{order} LIMIT {limit}").format(
            key=target.row_key(bind), doc=target.doc, new=new, t=target.ident,
            cond=sql.SQL("({}) AND ").format(cond) if cond is not None else sql.SQL(""), order=target.order,
            limit=bind(limit)), bind.params)
    return {"preview": True, "rowsMatched": counts["matched"], "rowsWouldChange": counts["changes"],
            "rows": rows, "truncated": counts["changes"] > len(rows), "table": target.name, "column": target.column,
            "note": "preview only: nothing was changed"}
