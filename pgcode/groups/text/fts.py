"""text: full-text search, ranking, headlines and the GIN index that makes them fast."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from psycopg import sql
from pydantic import Field

from pgcode.core.context import ToolContext
from pgcode.core.registry import tool
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import IDENT_MAX
from pgcode.groups._tabular import (
    ColumnName,
    column_field,
    fetch_limited,
    limit_field,
    return_columns_field,
    select_list,
    table_info,
    where_clause,
    where_field,
)
from pgcode.groups.text._fts import (
    DocumentIn,
    Syntax,
    document,
    joined_text,
    resolve_config,
    syntax_field,
    tsquery,
)
from pgcode.types import Effect


class SearchIn(DocumentIn):
    query: str = Field(min_length=1, max_length=10_000, description="Search text (see syntax)")
    syntax: Syntax = syntax_field()
    return_columns: list[ColumnName] | None = return_columns_field()
    where: str | None = where_field()
    limit: int = limit_field(50)


@tool(group="text", effect=Effect.READ)
async def text_search(ctx: ToolContext, args: SearchIn) -> dict[str, Any]:
    """Full-text search: matching rows, best first, with their rank.

    The rank is ts_rank; the result also shows the parsed query. Uses a GIN index on the same expression
    (pg_create_fts_index with the same config and columns) when present. syntax says how query is read: plain (all
    words), websearch ("quoted phrase", or, -word), phrase (adjacent words in order), raw (tsquery: & | ! <-> :*).

    The document: column (a text or tsvector column) or columns (several text columns searched as one, their
    values joined by spaces), with optional weights (A-D per column in the order of columns, A ranking
    highest, e.g. ['A', 'B'] for title, body). config: the text search configuration (english, simple,
    german, ...; schema.name accepted; pg_text_search_config lists them).
    """
    table = await table_info(ctx, args)
    config = await resolve_config(ctx, args.config)
    doc, q = document(args, table), tsquery(args.syntax)
    rank = sql.SQL("ts_rank({}, {})").format(doc, q)
    query = sql.SQL("SELECT {cols}, {rank} AS rank FROM {table} AS t{where} ORDER BY {rank} DESC").format(
        cols=select_list(args.return_columns, table), rank=rank, table=table.ident,
        where=where_clause(args.where, sql.SQL("{} @@ {}").format(doc, q)))
    params = {"config": config, "query": args.query}
    out = await fetch_limited(ctx, query, params, args.limit)
    parsed = await ctx.fetchval(sql.SQL("SELECT {}::text").format(q), params)
    return {**out, "tsquery": parsed, "config": config}


class RankMethod(StrEnum):
    TS_RANK = "ts_rank"  # frequency of the matching lexemes
    TS_RANK_CD = "ts_rank_cd"  # cover density: how close together the matches are


_RANK_SQL = {RankMethod.TS_RANK: sql.SQL("ts_rank"), RankMethod.TS_RANK_CD: sql.SQL("ts_rank_cd")}


class RankIn(SearchIn):
    method: RankMethod = RankMethod.TS_RANK
    normalization: int = Field(0, ge=0, le=63)
    rank_weights: list[float] | None = Field(None, min_length=4, max_length=4)
    matching_only: bool = True


@tool(group="text", effect=Effect.READ)
async def text_rank(ctx: ToolContext, args: RankIn) -> dict[str, Any]:
    """Rank rows by relevance to a full-text query (ts_rank or ts_rank_cd).

    Highest first.

    method: ts_rank (how often the terms occur) or ts_rank_cd (cover density: how close together they occur).
    normalization: a bit mask, 0 none, 1 divide by 1+log(length), 2 by length, 4 by mean harmonic distance
    between extents (ts_rank_cd only), 8 by unique words, 16 by 1+log(unique words), 32 rank/(rank+1).
    rankWeights: the weights of the labels D, C, B, A (default 0.1, 0.2, 0.4, 1.0). matchingOnly: only rows
    that match the query (false: every row, rank 0 for the others). syntax says how query is read: plain (all words),
    websearch ("quoted phrase", or, -word), phrase (adjacent words in order), raw (tsquery: & | ! <-> :*).

    The document: column (a text or tsvector column) or columns (several text columns searched as one, their
    values joined by spaces), with optional weights (A-D per column in the order of columns, A ranking
    highest, e.g. ['A', 'B'] for title, body). config: the text search configuration (english, simple,
    german, ...; schema.name accepted; pg_text_search_config lists them).
    """
    table = await table_info(ctx, args)
    config = await resolve_config(ctx, args.config)
    doc, q = document(args, table), tsquery(args.syntax)
    weights = (sql.SQL("%(weights)s::float4[], ") if args.rank_weights else sql.SQL(""))
    rank = sql.SQL("{fn}({weights}{doc}, {q}, {norm})").format(
        fn=_RANK_SQL[args.method], weights=weights, doc=doc, q=q, norm=sql.Literal(args.normalization))
    match = [sql.SQL("{} @@ {}").format(doc, q)] if args.matching_only else []
    query = sql.SQL("SELECT {cols}, coalesce({rank}, 0) AS rank FROM {table} AS t{where} "
                    "ORDER BY coalesce({rank}, 0) DESC").format(
        cols=select_list(args.return_columns, table), rank=rank, table=table.ident,
        where=where_clause(args.where, *match))
    params = {"config": config, "query": args.query, "weights": args.rank_weights}
    out = await fetch_limited(ctx, query, params, args.limit)
    parsed = await ctx.fetchval(sql.SQL("SELECT {}::text").format(q), params)
    return {**out, "tsquery": parsed, "config": config, "method": args.method.value,
            "normalization": args.normalization}


def _option(value: str) -> str:
    """A ts_headline option value in double quotes (a quote inside is doubled, as its parser expects)."""
    return '"' + value.replace('"', '""') + '"'


class HeadlineIn(SearchIn):
    start_sel: str = Field("<b>", min_length=1, max_length=100)
    stop_sel: str = Field("</b>", min_length=1, max_length=100)
    max_words: int = Field(35, ge=1, le=1000)
    min_words: int = Field(15, ge=0, le=1000)
    short_word: int = Field(3, ge=0, le=100)
    max_fragments: int = Field(0, ge=0, le=100)
    fragment_delimiter: str = Field(" ... ", max_length=100)
    highlight_all: bool = False


@tool(group="text", effect=Effect.READ, aliases=("highlight",))
async def text_headline(ctx: ToolContext, args: HeadlineIn) -> dict[str, Any]:
    """Matching rows with a highlighted snippet of their text, best first.

    Matches are wrapped in startSel and stopSel (<b>...</b>). A headline has maxWords words at most and minWords
    at least (fewer than maxWords); words of shortWord characters or fewer are dropped at its start and end
    unless they match. maxFragments: most fragments, joined by fragmentDelimiter (0: one headline, not
    fragments). highlightAll uses the whole text as the headline. syntax says how query is read: plain (all words),
    websearch ("quoted phrase", or, -word), phrase (adjacent words in order), raw (tsquery: & | ! <-> :*).

    The document: column (a text or tsvector column) or columns (several text columns searched as one, their
    values joined by spaces), with optional weights (A-D per column in the order of columns, A ranking
    highest, e.g. ['A', 'B'] for title, body). config: the text search configuration (english, simple,
    german, ...; schema.name accepted; pg_text_search_config lists them).
    """
    table = await table_info(ctx, args)
    config = await resolve_config(ctx, args.config)
    doc, q = document(args, table), tsquery(args.syntax)
    text = joined_text([table.text(c) for c in args.names])
    options = ", ".join([
        f"StartSel={_option(args.start_sel)}", f"StopSel={_option(args.stop_sel)}", f"MaxWords={args.max_words}",
        f"MinWords={args.min_words}", f"ShortWord={args.short_word}", f"MaxFragments={args.max_fragments}",
        f"FragmentDelimiter={_option(args.fragment_delimiter)}", f"HighlightAll={str(args.highlight_all).lower()}"])
    rank = sql.SQL("ts_rank({}, {})").format(doc, q)
    query = sql.SQL("SELECT {cols}, ts_headline({cfg}::regconfig, {text}, {q}, %(options)s) AS headline, "
                    "{rank} AS rank FROM {table} AS t{where} ORDER BY {rank} DESC").format(
        cols=select_list(args.return_columns, table), cfg=sql.Placeholder("config"), text=text, q=q, rank=rank,
        table=table.ident, where=where_clause(args.where, sql.SQL("{} @@ {}").format(doc, q)))
    params = {"config": config, "query": args.query, "options": options}
    return {**await fetch_limited(ctx, query, params, args.limit), "config": config}


class CreateFtsIndexIn(DocumentIn):
    name: str | None = column_field("Index name", None)
    concurrently: bool = False
    if_not_exists: bool = False


def _index_name(table: str, columns: list[str]) -> str:
    base = f"{table}_{'_'.join(columns)}_fts_idx"
    return base if len(base) <= IDENT_MAX else base[: IDENT_MAX - 8].rstrip("_") + "_fts_idx"


@tool(group="text", effect=Effect.ADMIN)
async def create_fts_index(ctx: ToolContext, args: CreateFtsIndexIn) -> dict[str, Any]:
    """Create a GIN full-text index on to_tsvector(config, column(s)).

    Returns its name and definition. name defaults to <table>_<columns>_fts_idx; ifNotExists does nothing when an
    index of that name exists; concurrently builds without blocking writes, outside a transaction.

    The document: column (a text or tsvector column) or columns (several text columns searched as one, their
    values joined by spaces), with optional weights (A-D per column in the order of columns, A ranking
    highest, e.g. ['A', 'B'] for title, body). config: the text search configuration (english, simple,
    german, ...; schema.name accepted; pg_text_search_config lists them).

    The text tools use it when called with the same config, columns and weights. With concurrently the build
    runs outside a transaction and does not block writes; a failed concurrent build leaves an invalid index.
    """
    if args.concurrently:
        ctx.use_autocommit()
    table = await table_info(ctx, args)
    if table.kind not in ("r", "p", "m"):
        raise ToolError(ErrorCode.INVALID_INPUT, f"{table.label} is a view or foreign table: only tables and "
                        "materialized views can be indexed")
    config = await resolve_config(ctx, args.config)
    # DDL takes no parameters: the configuration goes in as a quoted literal, after the catalog check above.
    doc = document(args, table, config=sql.Literal(config))
    name = args.name or _index_name(table.name, args.names)
    await ctx.execute(sql.SQL("CREATE INDEX {conc}{ine}{name} ON {table} USING gin (({doc}))").format(
        conc=sql.SQL("CONCURRENTLY ") if args.concurrently else sql.SQL(""),
        ine=sql.SQL("IF NOT EXISTS ") if args.if_not_exists else sql.SQL(""),
        name=sql.Identifier(name), table=table.ident, doc=doc))
    definition = await ctx.fetchval(
        "SELECT pg_get_indexdef(c.oid) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s", (table.schema, name))
    return {"name": name, "table": table.name, "schema": table.schema, "config": config, "definition": definition}
