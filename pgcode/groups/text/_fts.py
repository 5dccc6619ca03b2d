"""Full-text search pieces shared by the text tools: configurations, query syntaxes, the document expression."""

from __future__ import annotations

from enum import StrEnum
from typing import Any, Self

from psycopg import sql
from pydantic import Field, model_validator

from pgcode.core.context import ToolContext
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import IDENT_MAX, TableRef
from pgcode.groups._tabular import Column, ColumnName, Table

CONFIG_PARAM = sql.Placeholder("config")
QUERY_PARAM = sql.Placeholder("query")


# How the caller's search text becomes a tsquery.
class Syntax(StrEnum):
    PLAIN = "plain"  # plainto_tsquery: every word must occur (AND)
    WEBSEARCH = "websearch"  # websearch_to_tsquery: "quoted phrases", or, -exclusion
    PHRASE = "phrase"  # phraseto_tsquery: the words in this order, adjacent
    RAW = "raw"  # to_tsquery: tsquery syntax (& | ! <-> :* and parentheses)


_QUERY_FUNCTIONS = {
    Syntax.PLAIN: sql.SQL("plainto_tsquery"),
    Syntax.WEBSEARCH: sql.SQL("websearch_to_tsquery"),
    Syntax.PHRASE: sql.SQL("phraseto_tsquery"),
    Syntax.RAW: sql.SQL("to_tsquery"),
}


class Weight(StrEnum):
    A = "A"
    B = "B"
    C = "C"
    D = "D"


_WEIGHT_SQL = {w: sql.Literal(w.value) for w in Weight}


def config_field() -> Any:
    return Field("english", min_length=1, max_length=2 * IDENT_MAX + 1, pattern=r"^[^\x00]+$")


def syntax_field() -> Any:
    return Field(Syntax.WEBSEARCH)


def tsquery(syntax: Syntax) -> sql.Composable:
    """`websearch_to_tsquery(%(config)s::regconfig, %(query)s)` and the like."""
    return sql.SQL("pg_catalog.{}({}::regconfig, {})").format(_QUERY_FUNCTIONS[syntax], CONFIG_PARAM, QUERY_PARAM)


class DocumentIn(TableRef):
    """A document to search: one text or tsvector column, or several text columns searched as one."""

    column: str | None = Field(None, min_length=1, max_length=IDENT_MAX, pattern=r"^[^\x00]+$")
    columns: list[ColumnName] | None = Field(None, min_length=1, max_length=16, description=(
        "Several text columns, instead of column"))
    weights: list[Weight] | None = None
    config: str = config_field()

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.column is None) == (self.columns is None):
            raise ValueError("give either column or columns")
        if self.weights is not None and len(self.weights) != len(self.names):
            raise ValueError(f"weights needs one letter per column ({len(self.names)})")
        return self

    @property
    def names(self) -> list[str]:
        return self.columns if self.columns is not None else [self.column or ""]


def document(args: DocumentIn, table: Table, config: sql.Composable = CONFIG_PARAM) -> sql.Composable:
    """The tsvector the tools search: the same expression pg_create_fts_index indexes, so the index is used."""
    cols = table.all(args.names)
    if len(cols) == 1 and cols[0].base == "tsvector":
        if args.weights:
            raise ToolError(ErrorCode.INVALID_INPUT, f'column "{cols[0].name}" is already a tsvector; '
                            "weights apply to text columns")
        return cols[0].ident
    for col in cols:
        table.text(col.name)
    if args.weights:
        return sql.SQL(" || ").join(
            sql.SQL("setweight(to_tsvector({}::regconfig, coalesce({}::text, '')), {})").format(
                config, c.ident, _WEIGHT_SQL[w]) for c, w in zip(cols, args.weights, strict=True))
    return sql.SQL("to_tsvector({}::regconfig, {})").format(config, joined_text(cols))


def joined_text(cols: list[Column]) -> sql.Composable:
    """One column as text, or several joined by spaces (a NULL column counts as empty)."""
    if len(cols) == 1:
        return sql.SQL("{}::text").format(cols[0].ident)
    return sql.SQL(" || ' ' || ").join(sql.SQL("coalesce({}::text, '')").format(c.ident) for c in cols)


async def resolve_config(ctx: ToolContext, name: str) -> str:
    """The configuration's name as regconfig prints it; INVALID_INPUT naming the known ones if it is unknown."""
    schema, _, cfg = name.rpartition(".")
    found: str | None = await ctx.fetchval(
        "SELECT c.oid::regconfig::text FROM pg_ts_config c JOIN pg_namespace n ON n.oid = c.cfgnamespace "
        "WHERE c.cfgname = %(cfg)s AND CASE WHEN %(schema)s = '' THEN pg_ts_config_is_visible(c.oid) "
        "ELSE n.nspname = %(schema)s END LIMIT 1", {"cfg": cfg, "schema": schema})
    if found is None:
        known = await ctx.fetchval("SELECT array_agg(c.oid::regconfig::text ORDER BY 1) FROM pg_ts_config c")
        raise ToolError(ErrorCode.INVALID_INPUT, f"there is no text search configuration {name!r}",
                        hint="pg_text_search_config lists them", details={"available": known or []})
    return found
