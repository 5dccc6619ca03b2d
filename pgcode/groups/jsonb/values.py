"""jsonb: compute on JSON given in the call (build objects and arrays, merge, diff, check JSONPath), in the database."""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg import sql
from pydantic import AliasChoices, Field

from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.db.queries import load_query
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups.jsonb._base import Bind
from pgcode.types import Effect

_MAX_ITEMS = 10_000


class ObjectIn(ToolInput):
    data: dict[str, Any] | list[list[Any]] = Field(validation_alias=AliasChoices("data", "object", "pairs"),
                                                   description="An object, or [key, value] pairs")


@tool(group="jsonb", effect=Effect.READ)
async def jsonb_object(ctx: ToolContext, args: ObjectIn) -> dict[str, Any]:
    """Build a jsonb object from members or [key, value] pairs.

    Returns {object}.

    data is an object {"name": "Ann", "age": 30} or [key, value] pairs (a later duplicate key wins); `object` and
    `pairs` are accepted as its name too. The result is the object as PostgreSQL stores it.
    """
    pairs = list(args.data.items()) if isinstance(args.data, dict) else args.data
    if len(pairs) > _MAX_ITEMS:
        raise ToolError(ErrorCode.INVALID_INPUT, f"at most {_MAX_ITEMS} members are allowed")
    for i, pair in enumerate(pairs):
        if len(pair) != 2 or not isinstance(pair[0], str):
            raise ToolError(ErrorCode.INVALID_INPUT, f"pair {i} must be [key, value] with a string key")
    bind = Bind()
    obj = await ctx.fetchval(sql.SQL(
        "SELECT COALESCE(jsonb_object_agg(e ->> 0, e -> 1 ORDER BY i), '{{}}') "
        "FROM jsonb_array_elements({}) WITH ORDINALITY AS x(e, i)").format(bind.json([list(p) for p in pairs])),
        bind.params)
    return {"object": obj}


class ArrayIn(ToolInput):
    values: list[Any] = Field(max_length=_MAX_ITEMS, validation_alias=AliasChoices("values", "elements"),
                              description="The elements, any JSON values")
    distinct: bool = False
    strip_nulls: bool = False


@tool(group="jsonb", effect=Effect.READ)
async def jsonb_array(ctx: ToolContext, args: ArrayIn) -> dict[str, Any]:
    """Build a jsonb array from the given values, in order.

    Returns {array}.

    `elements` is accepted as the name of values. distinct drops repeated elements, keeping the first of each;
    stripNulls drops null elements.
    """
    bind = Bind()
    keep: list[sql.Composable] = [sql.SQL("true")]
    if args.distinct:
        keep.append(sql.SQL("i = (SELECT min(j) FROM jsonb_array_elements({v}) WITH ORDINALITY AS y(f, j) "
                            "WHERE f = e)").format(v=bind.json(args.values)))
    if args.strip_nulls:
        keep.append(sql.SQL("e <> 'null'::jsonb"))
    arr = await ctx.fetchval(sql.SQL(
        "SELECT COALESCE(jsonb_agg(e ORDER BY i), '[]') FROM jsonb_array_elements({}) WITH ORDINALITY AS x(e, i) "
        "WHERE {}").format(bind.json(args.values), sql.SQL(" AND ").join(keep)), bind.params)
    return {"array": arr}


class ValidatePathIn(ToolInput):
    path: str = Field(min_length=1, max_length=10_000, description="SQL/JSON path, e.g. $.items[*] ? (@.qty > $min)")
    test_value: Any = Field(None, validation_alias=AliasChoices("testValue", "test_value", "sample", "data"))
    vars: dict[str, Any] | None = None
    tz: bool = False
    limit: int = Field(100, ge=1, le=10_000)


_VAR_RE = re.compile(r'\$"((?:[^"\\]|\\.)*)"')


@tool(group="jsonb", effect=Effect.READ)
async def jsonb_validate_path(ctx: ToolContext, args: ValidatePathIn) -> dict[str, Any]:
    """Check that a JSONPath parses, and test it on sample JSON.

    Returns {valid, normalized, mode, variables} and, with testValue (`sample` is accepted too), the results of the
    test run (at most limit). tz allows time-zone-dependent datetime comparisons.

    An invalid path gives valid: false with PostgreSQL's message, not an error; a path that fails while
    running (strict mode, a missing variable) gives valid: true with testError.
    """
    bind = Bind()
    await ctx.savepoint("jsonb_validate_path")
    try:
        normalized = await ctx.fetchval(sql.SQL("SELECT {}::jsonpath::text").format(bind(args.path)), bind.params)
    except psycopg.Error as exc:
        await ctx.execute("ROLLBACK TO SAVEPOINT jsonb_validate_path")
        return {"valid": False, "path": args.path, "error": exc.diag.message_primary or str(exc),
                "sqlstate": exc.sqlstate}
    names = sorted({m.group(1) for m in _VAR_RE.finditer(normalized)})
    out: dict[str, Any] = {"valid": True, "path": args.path, "normalized": normalized,
                           "mode": "strict" if normalized.startswith("strict") else "lax", "variables": names,
                           "missingVariables": [n for n in names if n not in (args.vars or {})]}
    if "test_value" not in args.model_fields_set:
        return out
    func = sql.SQL("jsonb_path_query_tz" if args.tz else "jsonb_path_query")
    try:
        rows = await ctx.fetch(sql.SQL("SELECT r FROM {}({}, {}::jsonpath, {}) AS r LIMIT {}").format(
            func, bind.json(args.test_value), bind(args.path), bind.json(args.vars or {}), bind(args.limit + 1)),
            bind.params)
    except psycopg.Error as exc:
        await ctx.execute("ROLLBACK TO SAVEPOINT jsonb_validate_path")
        return {**out, "results": [], "count": 0, "testError": exc.diag.message_primary or str(exc),
                "sqlstate": exc.sqlstate}
    results = [r["r"] for r in rows[:args.limit]]
    return {**out, "results": results, "count": len(results), "truncated": len(rows) > args.limit}


class MergeIn(ToolInput):
    base: dict[str, Any] = Field(description="Object merged into")
    overlay: dict[str, Any] = Field(description="Object whose values win")
    deep: bool = True
    merge_arrays: bool = False


@tool(group="jsonb", effect=Effect.READ)
async def jsonb_merge(ctx: ToolContext, args: MergeIn) -> dict[str, Any]:
    """Merge two JSON objects, overlay winning.

    Returns {merged}.

    Nested objects merge recursively; with deep false the top-level keys of overlay replace base's (PostgreSQL's
    ||). mergeArrays (deep merge) concatenates arrays found at the same path instead of replacing them.
    """
    bind = Bind()
    base, overlay = bind.json(args.base), bind.json(args.overlay)
    if not args.deep:
        merged = await ctx.fetchval(sql.SQL("SELECT {} || {}").format(base, overlay), bind.params)
        return {"merged": merged, "deep": False, "mergeArrays": False}
    row = await ctx.fetchone(load_query("jsonb_merge").format(base=base, overlay=overlay,
                                                              merge_arrays=bind(args.merge_arrays)), bind.params)
    assert row is not None
    return {"merged": row["merged"], "deep": True, "mergeArrays": args.merge_arrays}


class DiffIn(ToolInput):
    doc1: Any = Field(validation_alias=AliasChoices("doc1", "left", "before"), description="Old JSON value")
    doc2: Any = Field(validation_alias=AliasChoices("doc2", "right", "after"), description="New JSON value")
    deep: bool = True
    limit: int = Field(1000, ge=1, le=10_000)


@tool(group="jsonb", effect=Effect.READ)
async def jsonb_diff(ctx: ToolContext, args: DiffIn) -> dict[str, Any]:
    """Diff two JSON values: paths added, removed and changed.

    The result also says whether they are equal.

    Changed paths carry both values; limit caps the differences listed. deep false compares top-level keys only.

    Objects are compared key by key; arrays and scalars as whole values.
    """
    bind = Bind()
    rows = await ctx.fetch(load_query("jsonb_diff").format(
        a=bind.json(args.doc1), b=bind.json(args.doc2), deep=bind(args.deep), limit=bind(args.limit + 1)),
        bind.params)
    added, removed, changed = [], [], []
    for r in rows[:args.limit]:
        if r["added"]:
            added.append({"path": r["path"], "value": r["b"]})
        elif r["removed"]:
            removed.append({"path": r["path"], "value": r["a"]})
        else:
            changed.append({"path": r["path"], "from": r["a"], "to": r["b"]})
    return {"equal": not rows, "added": added, "removed": removed, "changed": changed, "deep": args.deep,
            "truncated": len(rows) > args.limit}
