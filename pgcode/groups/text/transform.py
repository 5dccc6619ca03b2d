"""text: accent removal (unaccent), lexicon sentiment, tsvector/tsquery conversion, search configurations."""

from __future__ import annotations

from typing import Any

from psycopg import sql
from pydantic import Field

from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import IDENT_MAX
from pgcode.groups._extensions import extension_schema
from pgcode.groups.text import _lexicon
from pgcode.groups.text._fts import Syntax, config_field, resolve_config, syntax_field, tsquery
from pgcode.types import Effect

_MAX_TEXT = 1_000_000


class TextsIn(ToolInput):
    text: str | list[str] = Field(max_length=_MAX_TEXT, description="A text or a list of texts")

    @property
    def texts(self) -> list[str]:
        if isinstance(self.text, str):
            return [self.text]
        if len(self.text) > 1000:
            raise ToolError(ErrorCode.INVALID_INPUT, f"{len(self.text)} texts given; at most 1000 per call")
        if any(len(t) > _MAX_TEXT for t in self.text):
            raise ToolError(ErrorCode.INVALID_INPUT, f"a text is longer than {_MAX_TEXT} characters")
        return self.text


class NormalizeIn(TextsIn):
    lowercase: bool = False


@tool(group="text", effect=Effect.READ, extensions=("unaccent",))
async def text_normalize(ctx: ToolContext, args: NormalizeIn) -> dict[str, Any] | list[dict[str, Any]]:
    """Text with accents removed (unaccent: é→e, ß→ss), optionally lower-cased.

    Accents and diacritics go. A list of up to 1000 texts gives the results in the same order. Needs the unaccent
    extension installed in this database; the tool never creates it.
    """
    schema = await extension_schema(ctx, "unaccent")
    result = sql.SQL("{}(u.t)").format(sql.Identifier(schema, "unaccent"))
    if args.lowercase:
        result = sql.SQL("lower({})").format(result)
    rows = await ctx.fetch(sql.SQL("SELECT u.t AS original, {} AS normalized "
                                   "FROM unnest(%s::text[]) WITH ORDINALITY AS u(t, n) ORDER BY u.n").format(result),
                           (args.texts,))
    return rows[0] if isinstance(args.text, str) else rows


@tool(group="text", effect=Effect.READ)
async def text_sentiment(ctx: ToolContext, args: TextsIn) -> dict[str, Any]:
    """Sentiment of English text by a small word list: score, label, matched words.

    A lexicon scorer with a built-in word list; a list of up to 1000 texts gives the results in the same order.
    Not a trained model: each known word has a weight from -3 to +3 (about 140 words), a negator (not, no, never,
    ...n't) flips the words among the next three of its clause, and the score is their sum; the label is positive
    above 0, negative below, neutral at 0; comparative is score per word. Sarcasm, context, intensifiers and other
    languages are not understood.
    """
    results = [_lexicon.score(t) for t in args.texts]
    if isinstance(args.text, str):
        return {**results[0], "method": "lexicon"}
    labels = [r["label"] for r in results]
    return {"results": results, "method": "lexicon",
            "summary": {"count": len(results), "averageScore": sum(r["score"] for r in results) / len(results)
                        if results else 0.0,
                        **{label: labels.count(label) for label in ("positive", "negative", "neutral")}}}


class ToVectorIn(ToolInput):
    text: str = Field(max_length=_MAX_TEXT, description="Text to convert")
    config: str = config_field()


@tool(group="text", effect=Effect.READ)
async def text_to_vector(ctx: ToolContext, args: ToVectorIn) -> dict[str, Any]:
    """The tsvector of a text: normalized lexemes with positions.

    As text and as a lexeme list. config: the text search configuration (english, simple, german, ...;
    pg_text_search_config lists them).
    """
    config = await resolve_config(ctx, args.config)
    params = {"config": config, "text": args.text}
    vector = sql.SQL("to_tsvector(%(config)s::regconfig, %(text)s)")
    text = await ctx.fetchval(sql.SQL("SELECT {}::text").format(vector), params)
    lexemes = await ctx.fetch(sql.SQL("SELECT lexeme, positions, weights FROM unnest({})").format(vector), params)
    return {"tsvector": text, "lexemes": lexemes, "config": config}


class ToQueryIn(ToolInput):
    text: str = Field(max_length=10_000, description="Search text")
    config: str = config_field()
    syntax: Syntax = syntax_field()
    document: str | None = Field(None, max_length=_MAX_TEXT, description="Text to test the query against")


@tool(group="text", effect=Effect.READ)
async def text_to_query(ctx: ToolContext, args: ToQueryIn) -> dict[str, Any]:
    """The tsquery a search text becomes, and whether a document matches it.

    config: the text search configuration (english, simple, german, ...; pg_text_search_config lists them); syntax says
    how text is read: plain (all words), websearch ("quoted phrase", or, -word), phrase (adjacent words in order), raw
    (tsquery: & | ! <-> :*). document: optional text to test the query against (matches says whether it matches).
    """
    config = await resolve_config(ctx, args.config)
    params = {"config": config, "query": args.text, "document": args.document}
    q = tsquery(args.syntax)
    row = await ctx.fetchone(sql.SQL(
        "SELECT {q}::text AS tsquery, numnode({q}) AS nodes, "
        "to_tsvector(%(config)s::regconfig, %(document)s::text) @@ {q} AS matches").format(q=q), params)
    assert row is not None
    out = {"tsquery": row["tsquery"], "nodes": row["nodes"], "syntax": args.syntax.value, "config": config}
    if row["nodes"] == 0:
        out["note"] = "the text has no searchable words (only stop words or punctuation): it matches nothing"
    if args.document is not None:
        out["matches"] = row["matches"]
    return out


class SearchConfigIn(ToolInput):
    name: str | None = Field(None, max_length=2 * IDENT_MAX + 1, pattern=r"^[^\x00]+$")


@tool(group="text", effect=Effect.READ)
async def text_search_config(ctx: ToolContext, args: SearchConfigIn) -> dict[str, Any]:
    """Text search configurations with their parser, and the default.

    english, simple, german, ... With name: that configuration with its token-to-dictionary mappings.
    """
    configs = await ctx.fetch(
        "SELECT c.cfgname AS name, n.nspname AS schema, c.oid::regconfig::text AS config, p.prsname AS parser, "
        "obj_description(c.oid, 'pg_ts_config') AS description, "
        "c.oid = current_setting('default_text_search_config')::regconfig AS \"isDefault\" "
        "FROM pg_ts_config c JOIN pg_namespace n ON n.oid = c.cfgnamespace "
        "JOIN pg_ts_parser p ON p.oid = c.cfgparser ORDER BY n.nspname <> 'pg_catalog', c.cfgname")
    default = await ctx.fetchval("SELECT current_setting('default_text_search_config')")
    if args.name is None:
        return {"configs": configs, "count": len(configs), "default": default}
    config = await resolve_config(ctx, args.name)
    mappings = await ctx.fetch(
        "SELECT tt.alias AS token, tt.description, "
        "array_agg(m.mapdict::regdictionary::text ORDER BY m.mapseqno) AS dictionaries "
        "FROM pg_ts_config c CROSS JOIN LATERAL ts_token_type(c.cfgparser) tt "
        "JOIN pg_ts_config_map m ON m.mapcfg = c.oid AND m.maptokentype = tt.tokid "
        "WHERE c.oid = %s::regconfig GROUP BY tt.tokid, tt.alias, tt.description ORDER BY tt.tokid", (config,))
    detail = next(c for c in configs if c["config"] == config)
    return {**detail, "mappings": mappings, "default": default}
