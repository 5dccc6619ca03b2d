"""text: trigram similarity (pg_trgm), fuzzy and phonetic matching (fuzzystrmatch), regex and LIKE search."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from psycopg import sql
from pydantic import Field

from pgcode.core.context import ToolContext
from pgcode.core.registry import tool
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import TableRef
from pgcode.groups._extensions import extension_schema
from pgcode.groups._tabular import (
    ColumnName,
    OrderBy,
    column_field,
    fetch_limited,
    limit_field,
    order_terms,
    return_columns_field,
    select_list,
    table_info,
    where_clause,
    where_field,
)
from pgcode.types import Effect


class TrigramMode(StrEnum):
    SIMILARITY = "similarity"  # the whole value against the whole search string
    WORD_SIMILARITY = "word_similarity"  # the search string against the best-matching part of the value
    STRICT_WORD_SIMILARITY = "strict_word_similarity"  # ... against whole words of the value


# mode -> (similarity function, operator, the GUC holding the operator's threshold, value first?)
_TRIGRAM: dict[TrigramMode, tuple[str, str, str, bool]] = {
    TrigramMode.SIMILARITY: ("similarity", "%%", "pg_trgm.similarity_threshold", False),
    TrigramMode.WORD_SIMILARITY: ("word_similarity", "<%%", "pg_trgm.word_similarity_threshold", True),
    TrigramMode.STRICT_WORD_SIMILARITY: ("strict_word_similarity", "<<%%",
                                         "pg_trgm.strict_word_similarity_threshold", True),
}


class TrigramIn(TableRef):
    column: str = column_field("Text column")
    value: str = Field(min_length=1, max_length=1000, description="String to compare with")
    mode: TrigramMode = TrigramMode.SIMILARITY
    threshold: float = Field(0.3, ge=0, le=1)
    return_columns: list[ColumnName] | None = return_columns_field()
    where: str | None = where_field()
    limit: int = limit_field(20)


@tool(group="text", effect=Effect.READ, extensions=("pg_trgm",))
async def trigram_similarity(ctx: ToolContext, args: TrigramIn) -> dict[str, Any]:
    """Rows similar to a string by pg_trgm trigrams, most similar first.

    Each with its score. mode: similarity (whole value), word_similarity (best-matching part of the value) or
    strict_word_similarity (whole words of the value); threshold: the least similarity (0-1) a row needs.
    Uses a pg_trgm GIN or GiST index on the column when there is one.
    """
    table = await table_info(ctx, args)
    col = table.text(args.column)
    schema = await extension_schema(ctx, "pg_trgm")
    func, op, guc, value_first = _TRIGRAM[args.mode]
    left, right = (sql.Placeholder("value"), col.of()) if value_first else (col.of(), sql.Placeholder("value"))
    score = sql.SQL("{}({}::text, {}::text)").format(sql.Identifier(schema, func), left, right)
    # The operator finds candidates through a trigram index; it reads its threshold from a setting.
    await ctx.execute("SELECT set_config(%s, %s, true)", (guc, repr(args.threshold)))
    match = sql.SQL("{}::text OPERATOR({}.{}) {}::text").format(left, sql.Identifier(schema), sql.SQL(op), right)
    query = sql.SQL("SELECT {cols}, {score} AS similarity FROM {table} AS t{where} "
                    "ORDER BY {score} DESC, {col}").format(
        cols=select_list(args.return_columns, table), score=score, table=table.ident, col=col.of(),
        where=where_clause(args.where, match, sql.SQL("{} >= %(threshold)s").format(score)))
    out = await fetch_limited(ctx, query, {"value": args.value, "threshold": args.threshold}, args.limit)
    return {**out, "mode": args.mode.value, "threshold": args.threshold}


class FuzzyMethod(StrEnum):
    LEVENSHTEIN = "levenshtein"
    DAMERAU_LEVENSHTEIN = "damerau_levenshtein"
    SOUNDEX = "soundex"
    METAPHONE = "metaphone"
    DMETAPHONE = "dmetaphone"
    DAITCH_MOKOTOFF = "daitch_mokotoff"


_MAX_LEN = 255  # fuzzystrmatch refuses longer arguments to levenshtein and metaphone


class FuzzyIn(TableRef):
    column: str = column_field("Text column")
    value: str = Field(min_length=1, max_length=_MAX_LEN, description="String to match")
    method: FuzzyMethod = FuzzyMethod.LEVENSHTEIN
    max_distance: int = Field(2, ge=0, le=_MAX_LEN)
    min_difference: int = Field(4, ge=0, le=4)
    metaphone_length: int = Field(10, ge=1, le=_MAX_LEN)
    return_columns: list[ColumnName] | None = return_columns_field()
    where: str | None = where_field()
    limit: int = limit_field(20)


@dataclass(frozen=True, slots=True)
class _Terms:
    """The SQL of one fuzzy method: the condition, the distance shown, the row's code, a sort key before distance."""

    match: sql.Composable
    distance: sql.Composable
    code: sql.Composable | None = None
    first: sql.Composable | None = None


async def _require_function(ctx: ToolContext, schema: str, signature: str) -> None:
    if await ctx.fetchval("SELECT to_regprocedure(%s) IS NOT NULL", (f'"{schema}".{signature}',)):
        return
    if signature.startswith("daitch_mokotoff"):
        ctx.caps.require_version(160000, "daitch_mokotoff")
        raise ToolError(ErrorCode.INVALID_INPUT, "daitch_mokotoff needs fuzzystrmatch 1.2",
                        hint="ALTER EXTENSION fuzzystrmatch UPDATE (needs admin)")
    version = await ctx.fetchval("SELECT extversion FROM pg_extension WHERE extname = 'fuzzystrmatch'")
    raise ToolError(ErrorCode.INVALID_INPUT, f"damerau_levenshtein is not available: fuzzystrmatch {version} on "
                    "this server has no damerau_levenshtein(text, text) function",
                    hint="use method levenshtein (a transposition counts as two edits there)",
                    details={"method": "damerau_levenshtein", "fuzzystrmatchVersion": version})


async def _fuzzy_terms(ctx: ToolContext, method: FuzzyMethod, schema: str, col: sql.Composable) -> _Terms:
    def fn(name: str, *items: sql.Composable) -> sql.Composable:
        return sql.SQL("{}({})").format(sql.Identifier(schema, name), sql.SQL(", ").join(items))

    c, v = sql.SQL("{}::text").format(col), sql.Placeholder("value")
    short = sql.SQL("char_length({}) <= {} AND octet_length({}) <= {}").format(
        c, sql.Literal(_MAX_LEN), c, sql.Literal(_MAX_LEN))
    distance = sql.SQL("CASE WHEN {} THEN {} END").format(short, fn("levenshtein", c, v))
    if method is FuzzyMethod.LEVENSHTEIN:
        return _Terms(sql.SQL("{} <= %(max)s").format(distance), distance)
    if method is FuzzyMethod.DAMERAU_LEVENSHTEIN:
        await _require_function(ctx, schema, "damerau_levenshtein(text,text)")
        damerau = fn("damerau_levenshtein", c, v)
        return _Terms(sql.SQL("{} <= %(max)s").format(damerau), damerau)
    if method is FuzzyMethod.SOUNDEX:
        difference = fn("difference", c, v)
        return _Terms(sql.SQL("{} >= %(mindiff)s").format(difference), distance, fn("soundex", c),
                      sql.SQL("{} DESC").format(difference))
    if method is FuzzyMethod.METAPHONE:
        n = sql.Placeholder("mlen")
        code: sql.Composable = sql.SQL("CASE WHEN {} THEN {} END").format(short, fn("metaphone", c, n))
        return _Terms(sql.SQL("{} = {}").format(code, fn("metaphone", v, n)), distance, code)
    if method is FuzzyMethod.DMETAPHONE:
        # A match when any code of the row (primary or alternate) equals any code of the value.
        codes = sql.SQL("ARRAY[{}, {}]").format(fn("dmetaphone", v), fn("dmetaphone_alt", v))
        code = fn("dmetaphone", c)
        return _Terms(sql.SQL("({} = ANY({}) OR {} = ANY({}))").format(code, codes, fn("dmetaphone_alt", c), codes),
                      distance, code)
    await _require_function(ctx, schema, "daitch_mokotoff(text)")
    code = fn("daitch_mokotoff", c)
    return _Terms(sql.SQL("{} && {}").format(code, fn("daitch_mokotoff", v)), distance, code)


@tool(group="text", effect=Effect.READ, extensions=("fuzzystrmatch",))
async def fuzzy_match(ctx: ToolContext, args: FuzzyIn) -> dict[str, Any]:
    """Rows close to a string by edit distance or sound (fuzzystrmatch).

    Closest first. method: levenshtein (edit distance), damerau_levenshtein (edits counting transpositions), soundex,
    metaphone, dmetaphone (double metaphone) or daitch_mokotoff (PostgreSQL 16+). maxDistance (Levenshtein methods):
    most edits a match may need; minDifference (soundex): least difference() score, 0-4, 4 meaning the same soundex
    code; metaphoneLength (metaphone): length of the codes compared. Every row carries `distance` (Levenshtein, NULL
    past 255 characters); phonetic methods add the row's `code`. damerau_levenshtein works only where a
    damerau_levenshtein(text, text) function sits beside fuzzystrmatch: no fuzzystrmatch release ships one.
    """
    table = await table_info(ctx, args)
    col = table.text(args.column)
    terms = await _fuzzy_terms(ctx, args.method, await extension_schema(ctx, "fuzzystrmatch"), col.of())
    order = [*([terms.first] if terms.first else []), terms.distance, col.of()]
    query = sql.SQL("SELECT {cols}, {distance} AS distance{code} FROM {table} AS t{where} ORDER BY {order}").format(
        cols=select_list(args.return_columns, table), distance=terms.distance, table=table.ident,
        code=sql.SQL(", {} AS code").format(terms.code) if terms.code is not None else sql.SQL(""),
        where=where_clause(args.where, terms.match), order=sql.SQL(", ").join(order))
    params = {"value": args.value, "max": args.max_distance, "mindiff": args.min_difference,
              "mlen": args.metaphone_length}
    return {**await fetch_limited(ctx, query, params, args.limit), "method": args.method.value}


class PatternIn(TableRef):
    column: str = column_field("Column (read as text)")
    pattern: str = Field(min_length=1, max_length=10_000, description="POSIX regular expression")
    case_insensitive: bool = False
    negate: bool = False
    return_columns: list[ColumnName] | None = return_columns_field()
    order_by: OrderBy | None = Field(None, max_length=16, description="Column names or {column, direction}")
    where: str | None = where_field()
    limit: int = limit_field(100)


async def _pattern_search(ctx: ToolContext, args: PatternIn, operators: tuple[str, str, str, str],
                          extra: sql.Composable | None = None) -> dict[str, Any]:
    table = await table_info(ctx, args)
    col = table.column(args.column)
    op = operators[2 * args.negate + args.case_insensitive]
    order = order_terms(args.order_by, table) if args.order_by else []
    query = sql.SQL("SELECT {cols}{extra} FROM {table} AS t{where}{order}").format(
        cols=select_list(args.return_columns, table), extra=extra or sql.SQL(""), table=table.ident,
        where=where_clause(args.where, sql.SQL("{}::text {} %(pattern)s").format(col.of(), sql.SQL(op))),
        order=sql.SQL(" ORDER BY ") + sql.SQL(", ").join(order) if order else sql.SQL(""))
    return await fetch_limited(ctx, query, {"pattern": args.pattern}, args.limit)


class RegexpIn(PatternIn):
    captures: bool = False


@tool(group="text", effect=Effect.READ)
async def regexp_match(ctx: ToolContext, args: RegexpIn) -> dict[str, Any]:
    """Rows whose column matches a POSIX regular expression, optionally with captures.

    The captured groups come in `match` with captures. The pattern is sent as a value, never as SQL. negate returns the
    rows that do not match; orderBy (default: unordered). captures adds `match`: the captured groups (or the whole
    match) of the first match in each row (not with negate).
    """
    extra: sql.Composable | None = None
    if args.captures and not args.negate:
        extra = sql.SQL(", regexp_match({}::text, %(pattern)s, {}) AS match").format(
            sql.Identifier("t", args.column), sql.Literal("i" if args.case_insensitive else ""))
    return await _pattern_search(ctx, args, ("~", "~*", "!~", "!~*"), extra)


class LikeIn(PatternIn):
    pattern: str = Field(min_length=1, max_length=10_000, description="LIKE pattern: % any run, _ one character")


@tool(group="text", effect=Effect.READ)
async def like_search(ctx: ToolContext, args: LikeIn) -> dict[str, Any]:
    """Rows whose column matches a LIKE (or ILIKE) pattern.

    ILIKE when caseInsensitive. In the pattern % matches any run of characters, _ one character, and \\ escapes them; it
    is sent as a value, never as SQL. negate returns the rows that do not match; orderBy (default: unordered).
    """
    return await _pattern_search(ctx, args, ("LIKE", "ILIKE", "NOT LIKE", "NOT ILIKE"))
