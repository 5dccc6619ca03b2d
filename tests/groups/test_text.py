"""text group: search, ranking, headlines, trigram/fuzzy/pattern matching and conversions on the real server."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo

from pgcode.core.runtime import Runtime
from pgcode.errors import ToolError
from pgcode.settings import Settings
from pgcode.types import LOCAL_PRINCIPAL, Principal, Scope
from tests.fix_db import Call, assert_tool_error

pytestmark = pytest.mark.anyio

READER = Principal.with_scope("reader", Scope.READ)
WRITER = Principal.with_scope("writer", Scope.WRITE)
NOBODY = Principal("nobody", frozenset())

ARTICLES = [
    (1, "PostgreSQL tuning", "Tuning PostgreSQL: postgres memory, postgres vacuum and postgres indexes.", "db"),
    (2, "Cooking rice", "Rinse the rice, boil the water, and let the rice rest. Postgres is not involved.", "food"),
    (3, "Fat rats", "The fat rats ate the cheese while the cats slept.", "animals"),
    (4, "Cats and rats", "Cats chase rats; rats run from cats.", "animals"),
    (5, "Empty", None, "misc"),
]
WORDS = ["apple", "apply", "ample", "maple", "applet", "banana", "bandana", "Robert", "Rupert", "Rubin",
         "Thompson", "Tomson", "Smith", "Smyth", "Schmidt", "Smithe", "Jonson", "Johnson"]
LONG = "a" * 300  # past fuzzystrmatch's 255-character limit


@pytest.fixture(scope="module")
def data(dsn: str, schema: str) -> str:
    """Tables for the whole module (read-only tests); tests that write use their own tables."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"""
            CREATE TABLE {schema}.articles (id int PRIMARY KEY, title text, body text, topic varchar(20));
            CREATE TABLE {schema}.words (id serial PRIMARY KEY, word text, note text);
            CREATE TABLE {schema}.vec (id int PRIMARY KEY, doc tsvector);
            CREATE TABLE {schema}.nums (id int PRIMARY KEY, n int);
            CREATE TABLE {schema}.victim (v text);
            INSERT INTO {schema}.victim VALUES ('still here');
            CREATE VIEW {schema}.article_view AS SELECT id, body FROM {schema}.articles;
            INSERT INTO {schema}.vec VALUES (1, to_tsvector('english', 'rats everywhere')), (2, 'cat'::tsvector);
            INSERT INTO {schema}.nums VALUES (1, 10), (2, 250);
        """)
        with c.cursor() as cur:
            cur.executemany(f"INSERT INTO {schema}.articles VALUES (%s, %s, %s, %s)", ARTICLES)
            cur.executemany(f"INSERT INTO {schema}.words (word) VALUES (%s)", [(w,) for w in [*WORDS, None, LONG]])
    return schema


def q(conn: psycopg.Connection[Any], query: Any, *params: Any) -> list[tuple[Any, ...]]:
    return conn.execute(query, params or None).fetchall()


def state(conn: psycopg.Connection[Any], schema: str) -> dict[str, Any]:
    """Relations, indexes and every table's rows in the schema."""
    rels = q(conn, "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                   "WHERE n.nspname = %s ORDER BY 1", schema)
    out: dict[str, Any] = {"relations": rels, "indexes": q(conn, "SELECT indexname, indexdef FROM pg_indexes "
                                                                  "WHERE schemaname = %s ORDER BY 1", schema)}
    for name, kind in rels:
        if kind == "r":
            out[name] = q(conn, sql.SQL("SELECT t::text FROM {} t ORDER BY 1").format(sql.Identifier(schema, name)))
    return out


def ids(out: dict[str, Any]) -> list[int]:
    return [r["id"] for r in out["rows"]]


# ---------------------------------------------------------------- pg_text_search


async def test_search_ranks_the_densest_match_first(call: Call, data: str) -> None:
    out = await call("pg_text_search", {"table": f"{data}.articles", "column": "body", "query": "postgres",
                                        "returnColumns": ["id"]})
    assert ids(out) == [1, 2]
    assert out["rows"][0]["rank"] > out["rows"][1]["rank"] > 0
    assert out["tsquery"] == "'postgr'" and out["config"] == "english" and out["truncated"] is False


async def test_search_rank_matches_ts_rank(call: Call, conn: psycopg.Connection[Any], data: str) -> None:
    out = await call("pg_text_search", {"table": "articles", "schema": data, "column": "body", "query": "rats"})
    expected = q(conn, f"SELECT id, ts_rank(to_tsvector('english', body), websearch_to_tsquery('english', 'rats')) "
                       f"FROM {data}.articles WHERE to_tsvector('english', body) @@ websearch_to_tsquery('english', "
                       "'rats') ORDER BY 2 DESC, 1")
    assert sorted(((r["id"], r["rank"]) for r in out["rows"]), key=lambda t: (-t[1], t[0])) == [
        (i, pytest.approx(r)) for i, r in expected]
    assert ids(out)[0] == 4  # three mentions of rats beat one
    assert set(out["rows"][0]) == {"id", "title", "body", "topic", "rank"}


@pytest.mark.parametrize(("syntax", "query", "expected"), [
    ("websearch", '"fat rats" -cheese', []),
    ("websearch", '"fat rats" or vacuum', [1, 3]),
    ("phrase", "rats ate", [3]),
    ("phrase", "ate rats", []),
    ("plain", "cats rats", [3, 4]),
    ("raw", "chase & !cheese", [4]),
    ("raw", "postgr:*", [1, 2]),
])
async def test_search_syntaxes(call: Call, data: str, syntax: str, query: str, expected: list[int]) -> None:
    out = await call("pg_text_search", {"table": f"{data}.articles", "column": "body", "query": query,
                                        "syntax": syntax, "returnColumns": ["id"]})
    assert sorted(ids(out)) == expected


async def test_search_configuration_decides_stemming(call: Call, data: str) -> None:
    args = {"table": f"{data}.articles", "column": "body", "query": "rat", "returnColumns": ["id"]}
    assert sorted(ids(await call("pg_text_search", args))) == [3, 4]
    assert ids(await call("pg_text_search", {**args, "config": "simple"})) == []
    assert sorted(ids(await call("pg_text_search", {**args, "config": "pg_catalog.english"}))) == [3, 4]


async def test_search_columns_with_weights_rank_title_hits_higher(call: Call, data: str) -> None:
    args = {"table": f"{data}.articles", "columns": ["title", "body"], "query": "cats", "returnColumns": ["id"]}
    plain = await call("pg_text_search", args)
    assert sorted(ids(plain)) == [3, 4]
    weighted = await call("pg_text_search", {**args, "weights": ["A", "D"]})
    assert ids(weighted) == [4, 3]  # "Cats" in the title of 4
    title_only = await call("pg_text_search", {**args, "columns": ["title"], "query": "tuning"})
    assert ids(title_only) == [1]


async def test_search_tsvector_column_limit_and_where(call: Call, data: str) -> None:
    out = await call("pg_text_search", {"table": f"{data}.vec", "column": "doc", "query": "rat"})
    assert ids(out) == [1]
    out = await call("pg_text_search", {"table": f"{data}.articles", "column": "body", "query": "rats | cats",
                                        "syntax": "raw", "limit": 1, "returnColumns": ["id"]})
    assert out["rowCount"] == 1 and out["truncated"] is True
    out = await call("pg_text_search", {"table": f"{data}.articles", "column": "body", "query": "rats",
                                        "where": "title LIKE '%Fat%'", "returnColumns": ["id"]})
    assert ids(out) == [3]


async def test_search_refuses_bad_input(call: Call, conn: psycopg.Connection[Any], data: str) -> None:
    before = state(conn, data)
    base = {"table": f"{data}.articles", "column": "body", "query": "rats"}
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({**base, "config": "klingon"}, "INVALID_INPUT", "text search configuration"),
        ({**base, "config": "english'; DROP TABLE victim; --"}, "INVALID_INPUT", "configuration"),
        ({**base, "syntax": "raw", "query": "rats & | cats"}, "INVALID_INPUT", "syntax"),
        ({**base, "column": "id"}, "INVALID_INPUT", "integer"),
        ({**base, "column": None, "columns": None}, "INVALID_INPUT", "column"),
        ({**base, "columns": ["title"]}, "INVALID_INPUT", "column"),
        ({**base, "weights": ["A", "B"]}, "INVALID_INPUT", "weights"),
        ({**base, "table": f"{data}.nope"}, "NOT_FOUND", "does not exist"),
        ({**base, "column": "nope"}, "NOT_FOUND", "nope"),
        ({**base, "syntax": "regex"}, "INVALID_INPUT", "syntax"),
        ({**base, "where": "1=1; DROP TABLE victim"}, "INVALID_INPUT", ""),
        ({**base, "where": "pg_read_file('/etc/passwd') IS NOT NULL"}, "INVALID_INPUT", "pg_read_file"),
    ]
    for args, code, fragment in cases:
        with pytest.raises(ToolError) as exc:
            await call("pg_text_search", args)
        assert_tool_error(exc, code, fragment)
    assert state(conn, data) == before


# ---------------------------------------------------------------- pg_text_rank


async def test_rank_cover_density_and_normalization(call: Call, conn: psycopg.Connection[Any], data: str) -> None:
    args = {"table": f"{data}.articles", "column": "body", "query": "fat rats", "syntax": "plain",
            "returnColumns": ["id"]}
    cd = await call("pg_text_rank", {**args, "method": "ts_rank_cd"})
    expected = q(conn, f"SELECT ts_rank_cd(to_tsvector('english', body), plainto_tsquery('english', 'fat rats')) "
                       f"FROM {data}.articles WHERE id = 3")[0][0]
    assert ids(cd) == [3] and cd["rows"][0]["rank"] == pytest.approx(expected) and cd["method"] == "ts_rank_cd"
    normalized = await call("pg_text_rank", {**args, "method": "ts_rank_cd", "normalization": 32})
    assert normalized["rows"][0]["rank"] == pytest.approx(expected / (expected + 1))
    weighted = await call("pg_text_rank", {**args, "rankWeights": [1.0, 1.0, 1.0, 1.0]})
    default = await call("pg_text_rank", args)
    assert weighted["rows"][0]["rank"] > default["rows"][0]["rank"]  # D-labelled lexemes now weigh 1, not 0.1


async def test_rank_every_row_when_not_matching_only(call: Call, data: str) -> None:
    out = await call("pg_text_rank", {"table": f"{data}.articles", "column": "body", "query": "cheese",
                                      "matchingOnly": False, "returnColumns": ["id"]})
    assert out["rowCount"] == 5 and ids(out)[0] == 3
    assert [r["rank"] for r in out["rows"][1:]] == [0, 0, 0, 0]


async def test_rank_refuses_bad_input(call: Call, conn: psycopg.Connection[Any], data: str) -> None:
    before = state(conn, data)
    base = {"table": f"{data}.articles", "column": "body", "query": "rats"}
    for args, code in [({**base, "normalization": 64}, "INVALID_INPUT"), ({**base, "method": "bm25"}, "INVALID_INPUT"),
                       ({**base, "rankWeights": [1, 2]}, "INVALID_INPUT"), ({**base, "table": "nope"}, "NOT_FOUND")]:
        with pytest.raises(ToolError) as exc:
            await call("pg_text_rank", args)
        assert_tool_error(exc, code)
    assert state(conn, data) == before


# ---------------------------------------------------------------- pg_text_headline


async def test_headline_marks_matches_in_bold(call: Call, data: str) -> None:
    out = await call("pg_text_headline", {"table": f"{data}.articles", "column": "body", "query": "cheese",
                                          "returnColumns": ["id"]})
    assert out["rows"] == [{"id": 3, "headline": "The fat rats ate the <b>cheese</b> while the cats slept.",
                            "rank": pytest.approx(0.0607927, rel=1e-5)}]


async def test_headline_custom_markup_and_fragments(call: Call, data: str) -> None:
    out = await call("pg_text_headline", {"table": f"{data}.articles", "column": "body", "query": "rice",
                                          "startSel": '<mark class="hit">', "stopSel": "</mark>",
                                          "returnColumns": ["id"]})
    assert out["rows"][0]["headline"].count('<mark class="hit">rice</mark>') == 2
    out = await call("pg_text_headline", {"table": f"{data}.articles", "column": "body", "query": "postgres",
                                          "maxFragments": 2, "maxWords": 3, "minWords": 1,
                                          "fragmentDelimiter": " || ", "returnColumns": ["id"]})
    first = out["rows"][0]
    assert first["id"] == 1 and " || " in first["headline"] and "<b>" in first["headline"]
    out = await call("pg_text_headline", {"table": f"{data}.articles", "columns": ["title", "body"],
                                          "query": "tuning", "highlightAll": True, "returnColumns": ["id"]})
    assert out["rows"][0]["headline"].startswith("PostgreSQL <b>tuning</b> <b>Tuning</b> PostgreSQL:")


async def test_headline_is_also_highlight(rt: Runtime) -> None:
    spec = rt.registry.by_method("text", "highlight")
    assert spec is not None and spec.name == "pg_text_headline"


async def test_headline_refuses_bad_input(call: Call, conn: psycopg.Connection[Any], data: str) -> None:
    before = state(conn, data)
    base = {"table": f"{data}.articles", "column": "body", "query": "rats"}
    for args, code, fragment in [
        ({**base, "table": f"{data}.vec", "column": "doc"}, "INVALID_INPUT", "tsvector"),
        ({**base, "minWords": 50, "maxWords": 10}, "INVALID_INPUT", "MinWords"),
        ({**base, "startSel": ""}, "INVALID_INPUT", "startSel"),
    ]:
        with pytest.raises(ToolError) as exc:
            await call("pg_text_headline", args)
        assert_tool_error(exc, code, fragment)
    assert state(conn, data) == before


# ---------------------------------------------------------------- pg_create_fts_index


@pytest.fixture
def docs(conn: psycopg.Connection[Any], data: str) -> Iterator[str]:
    conn.execute(f"DROP TABLE IF EXISTS {data}.docs; CREATE TABLE {data}.docs (id int PRIMARY KEY, title text, "
                 f"body text, n int); INSERT INTO {data}.docs SELECT g, 'title ' || g, md5(g::text) || ' words ' || g "
                 "FROM generate_series(1, 2000) g")
    yield f"{data}.docs"
    conn.execute(f"DROP TABLE IF EXISTS {data}.docs")


async def test_create_fts_index_builds_gin_that_search_uses(call: Call, conn: psycopg.Connection[Any],
                                                            docs: str) -> None:
    out = await call("pg_create_fts_index", {"table": docs, "column": "body"})
    assert out["name"] == "docs_body_fts_idx" and out["config"] == "english"
    assert out["definition"].endswith("USING gin (to_tsvector('english'::regconfig, body))")
    conn.execute(f"ANALYZE {docs}")
    with conn.transaction():
        conn.execute("SET LOCAL enable_seqscan = off")
        # The search tools' expression, with the configuration bound as a parameter as they bind it.
        plan = "\n".join(r[0] for r in q(conn, f"EXPLAIN SELECT id FROM {docs} WHERE to_tsvector(%s::regconfig, "
                                               "body::text) @@ websearch_to_tsquery(%s::regconfig, %s)",
                                         "english", "english", "words"))
    assert "docs_body_fts_idx" in plan
    found = await call("pg_text_search", {"table": docs, "column": "body", "query": "1999", "returnColumns": ["id"]})
    assert ids(found) == [1999]


async def test_create_fts_index_options(call: Call, conn: psycopg.Connection[Any], docs: str) -> None:
    schema = docs.split(".")[0]
    out = await call("pg_create_fts_index", {"table": docs, "columns": ["title", "body"], "weights": ["A", "B"],
                                             "config": "simple", "name": "docs_weighted", "concurrently": True})
    assert out["name"] == "docs_weighted"
    assert "setweight(to_tsvector('simple'::regconfig, COALESCE(title, ''::text)), 'A'::\"char\")" in \
        out["definition"]
    valid = q(conn, "SELECT indisvalid FROM pg_index WHERE indexrelid = %s::regclass", f"{schema}.docs_weighted")
    assert valid == [(True,)]
    again = await call("pg_create_fts_index", {"table": docs, "columns": ["title", "body"], "weights": ["A", "B"],
                                               "config": "simple", "name": "docs_weighted", "ifNotExists": True})
    assert again["name"] == "docs_weighted"
    with pytest.raises(ToolError) as exc:
        await call("pg_create_fts_index", {"table": docs, "column": "body", "name": "docs_weighted"})
    assert_tool_error(exc, "ALREADY_EXISTS")
    evil = 'i"; DROP TABLE victim; --'
    made = await call("pg_create_fts_index", {"table": docs, "column": "title", "name": evil})
    assert made["name"] == evil
    assert q(conn, "SELECT indexname FROM pg_indexes WHERE schemaname = %s AND indexname = %s", schema, evil)
    assert q(conn, f"SELECT v FROM {schema}.victim") == [("still here",)]


async def test_create_fts_index_refusals_change_nothing(call: Call, conn: psycopg.Connection[Any],
                                                        docs: str) -> None:
    schema = docs.split(".")[0]
    before = state(conn, schema)
    for args, code in [({"table": docs, "column": "n"}, "INVALID_INPUT"),
                       ({"table": docs, "column": "body", "config": "nope"}, "INVALID_INPUT"),
                       ({"table": docs, "column": "nope"}, "NOT_FOUND"),
                       ({"table": f"{schema}.nope", "column": "body"}, "NOT_FOUND"),
                       ({"table": docs, "column": "body) WITH (fastupdate = off"}, "NOT_FOUND"),
                       ({"table": f"{schema}.article_view", "column": "body"}, "INVALID_INPUT")]:
        with pytest.raises(ToolError) as exc:
            await call("pg_create_fts_index", args)
        assert_tool_error(exc, code)
    for principal in (READER, WRITER):  # an index is structure: admin work
        with pytest.raises(ToolError) as exc:
            await call("pg_create_fts_index", {"table": docs, "column": "body"}, principal=principal)
        assert_tool_error(exc, "FORBIDDEN", "admin")
    with pytest.raises(ToolError) as exc:
        await call("pg_create_fts_index", {"table": docs, "column": "body"}, read_only=True)
    assert_tool_error(exc, "READ_ONLY")
    assert state(conn, schema) == before


# ---------------------------------------------------------------- pg_trigram_similarity


def trigrams(text: str) -> set[str]:
    """pg_trgm's trigrams of a text: each lower-cased word padded with two spaces before and one after."""
    out: set[str] = set()
    for word in re.findall(r"[a-z0-9]+", text.lower()):
        padded = f"  {word} "
        out.update(padded[i:i + 3] for i in range(len(padded) - 2))
    return out


def similarity(a: str, b: str) -> float:
    ta, tb = trigrams(a), trigrams(b)
    return len(ta & tb) / len(ta | tb) if ta | tb else 0.0


async def test_trigram_similarity_matches_an_independent_count(call: Call, data: str) -> None:
    out = await call("pg_trigram_similarity", {"table": f"{data}.words", "column": "word", "value": "aple",
                                               "threshold": 0.3, "returnColumns": ["word"]})
    expected = sorted(((w, similarity(w, "aple")) for w in [*WORDS, LONG] if similarity(w, "aple") >= 0.3),
                      key=lambda t: (-t[1], t[0]))
    assert [(r["word"], r["similarity"]) for r in out["rows"]] == [(w, pytest.approx(s, abs=1e-6))
                                                                   for w, s in expected]
    assert out["rows"][0]["word"] == "apple" and out["threshold"] == 0.3 and out["mode"] == "similarity"


async def test_trigram_threshold_limit_and_word_modes(call: Call, data: str) -> None:
    base = {"table": f"{data}.words", "column": "word", "value": "aple", "returnColumns": ["word"]}
    strict = await call("pg_trigram_similarity", {**base, "threshold": 0.5})
    assert [r["word"] for r in strict["rows"]] == ["apple"]
    one = await call("pg_trigram_similarity", {**base, "threshold": 0.1, "limit": 1})
    assert one["rowCount"] == 1 and one["truncated"] is True
    articles = {"table": f"{data}.articles", "column": "body", "returnColumns": ["id"], "threshold": 0.6}
    whole = await call("pg_trigram_similarity", {**articles, "value": "vacuum"})
    assert whole["rows"] == []
    word = await call("pg_trigram_similarity", {**articles, "value": "vacuum", "mode": "word_similarity"})
    assert ids(word) == [1] and word["rows"][0]["similarity"] == pytest.approx(1.0)
    part = await call("pg_trigram_similarity", {**articles, "value": "vacu", "mode": "strict_word_similarity",
                                                "threshold": 0.3})
    assert ids(part) == [1] and part["rows"][0]["similarity"] < 1


async def test_trigram_refuses_bad_input(call: Call, conn: psycopg.Connection[Any], data: str) -> None:
    before = state(conn, data)
    base = {"table": f"{data}.words", "column": "word", "value": "aple"}
    for args, code in [({**base, "threshold": 1.5}, "INVALID_INPUT"), ({**base, "mode": "cosine"}, "INVALID_INPUT"),
                       ({**base, "table": f"{data}.nums", "column": "n"}, "INVALID_INPUT"),
                       ({**base, "value": ""}, "INVALID_INPUT"), ({**base, "column": "nope"}, "NOT_FOUND")]:
        with pytest.raises(ToolError) as exc:
            await call("pg_trigram_similarity", args)
        assert_tool_error(exc, code)
    assert state(conn, data) == before


# ---------------------------------------------------------------- pg_fuzzy_match


def levenshtein(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


async def test_fuzzy_levenshtein_matches_an_independent_distance(call: Call, data: str) -> None:
    out = await call("pg_fuzzy_match", {"table": f"{data}.words", "column": "word", "value": "Smith",
                                        "maxDistance": 2, "returnColumns": ["word"]})
    expected = sorted(((w, levenshtein(w, "Smith")) for w in WORDS if levenshtein(w, "Smith") <= 2),
                      key=lambda t: (t[1], t[0]))
    assert [(r["word"], r["distance"]) for r in out["rows"]] == expected == [("Smith", 0), ("Smithe", 1),
                                                                             ("Smyth", 1)]
    assert out["method"] == "levenshtein"
    exact = await call("pg_fuzzy_match", {"table": f"{data}.words", "column": "word", "value": "apple",
                                          "maxDistance": 0, "returnColumns": ["word"]})
    assert [r["word"] for r in exact["rows"]] == ["apple"]


async def test_fuzzy_phonetic_methods(call: Call, data: str) -> None:
    base = {"table": f"{data}.words", "column": "word", "returnColumns": ["word"]}
    soundex = await call("pg_fuzzy_match", {**base, "value": "Robert", "method": "soundex"})
    assert [(r["word"], r["code"]) for r in soundex["rows"]] == [("Robert", "R163"), ("Rupert", "R163")]
    metaphone = await call("pg_fuzzy_match", {**base, "value": "Smyth", "method": "metaphone"})
    assert [r["word"] for r in metaphone["rows"]] == ["Smyth", "Smith", "Smithe"]  # by distance, then word
    assert {r["code"] for r in metaphone["rows"]} == {"SM0"}
    dmeta = await call("pg_fuzzy_match", {**base, "value": "Smith", "method": "dmetaphone"})
    assert [r["word"] for r in dmeta["rows"]] == ["Smith", "Smithe", "Smyth", "Schmidt"]  # Schmidt via XMT
    loose = await call("pg_fuzzy_match", {**base, "value": "Tomson", "method": "soundex", "minDifference": 3})
    assert [r["word"] for r in loose["rows"]] == ["Tomson", "Jonson", "Johnson"]  # J525 shares 3 of 4 with T525


async def test_fuzzy_long_values_do_not_fail(call: Call, data: str) -> None:
    out = await call("pg_fuzzy_match", {"table": f"{data}.words", "column": "word", "value": "a" * 255,
                                        "maxDistance": 255, "returnColumns": ["id", "word"]})
    assert LONG not in [r["word"] for r in out["rows"]]  # NULL distance past 255 characters: never a match
    out = await call("pg_fuzzy_match", {"table": f"{data}.words", "column": "word", "value": "aa",
                                        "method": "metaphone", "limit": 50, "returnColumns": ["word"]})
    assert LONG not in [r["word"] for r in out["rows"]]


async def test_fuzzy_damerau_levenshtein_is_refused_without_the_function(call: Call, data: str) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_fuzzy_match", {"table": f"{data}.words", "column": "word", "value": "Smiht",
                                      "method": "damerau_levenshtein"})
    err = assert_tool_error(exc, "INVALID_INPUT", "damerau_levenshtein is not available")
    assert err.hint and "levenshtein" in err.hint


@pytest.mark.pg(">= 16")
async def test_fuzzy_daitch_mokotoff(call: Call, data: str) -> None:
    out = await call("pg_fuzzy_match", {"table": f"{data}.words", "column": "word", "value": "Jonsen",
                                        "method": "daitch_mokotoff", "returnColumns": ["word"]})
    assert [r["word"] for r in out["rows"]] == ["Jonson", "Johnson"]


@pytest.mark.pg("< 16")
async def test_fuzzy_daitch_mokotoff_needs_pg16(call: Call, data: str) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_fuzzy_match", {"table": f"{data}.words", "column": "word", "value": "Jonsen",
                                      "method": "daitch_mokotoff"})
    assert_tool_error(exc, "UNSUPPORTED_VERSION", "PostgreSQL 16")


async def test_fuzzy_refuses_bad_input(call: Call, conn: psycopg.Connection[Any], data: str) -> None:
    before = state(conn, data)
    base = {"table": f"{data}.words", "column": "word", "value": "Smith"}
    for args, code in [({**base, "value": "x" * 256}, "INVALID_INPUT"), ({**base, "maxDistance": -1}, "INVALID_INPUT"),
                       ({**base, "method": "jaro"}, "INVALID_INPUT"), ({**base, "minDifference": 5}, "INVALID_INPUT"),
                       ({**base, "table": f"{data}.nums", "column": "n"}, "INVALID_INPUT")]:
        with pytest.raises(ToolError) as exc:
            await call("pg_fuzzy_match", args)
        assert_tool_error(exc, code)
    assert state(conn, data) == before


# ---------------------------------------------------------------- pg_regexp_match, pg_like_search


async def test_regexp_match_case_negation_and_captures(call: Call, data: str) -> None:
    base = {"table": f"{data}.articles", "column": "body", "returnColumns": ["id"], "orderBy": "id"}
    assert ids(await call("pg_regexp_match", {**base, "pattern": "^Cats"})) == [4]
    assert ids(await call("pg_regexp_match", {**base, "pattern": "^cats"})) == []
    assert ids(await call("pg_regexp_match", {**base, "pattern": "^cats", "caseInsensitive": True})) == [4]
    assert ids(await call("pg_regexp_match", {**base, "pattern": "rats", "negate": True})) == [1, 2]
    out = await call("pg_regexp_match", {**base, "pattern": r"(\w+) rats", "captures": True,
                                         "orderBy": [{"column": "id", "direction": "desc"}]})
    assert out["rows"] == [{"id": 4, "match": ["chase"]}, {"id": 3, "match": ["fat"]}]
    typed = await call("pg_regexp_match", {"table": f"{data}.nums", "column": "n", "pattern": "^2\\d+$"})
    assert typed["rows"] == [{"id": 2, "n": 250}]


async def test_like_search_wildcards_and_case(call: Call, data: str) -> None:
    base = {"table": f"{data}.words", "column": "word", "returnColumns": ["word"], "orderBy": "word"}
    assert [r["word"] for r in (await call("pg_like_search", {**base, "pattern": "appl_"}))["rows"]] == [
        "apple", "apply"]
    assert [r["word"] for r in (await call("pg_like_search", {**base, "pattern": "s%h"}))["rows"]] == []
    assert [r["word"] for r in (await call("pg_like_search", {**base, "pattern": "s%h", "caseInsensitive": True}))[
        "rows"]] == ["Smith", "Smyth"]
    out = await call("pg_like_search", {**base, "pattern": "%a%", "negate": True, "limit": 3})
    assert out["rowCount"] == 3 and out["truncated"] is True
    literal = await call("pg_like_search", {**base, "pattern": "100\\%"})
    assert literal["rows"] == []


async def test_pattern_values_are_never_sql(call: Call, conn: psycopg.Connection[Any], data: str) -> None:
    before = state(conn, data)
    for tool in ("pg_regexp_match", "pg_like_search"):
        out = await call(tool, {"table": f"{data}.words", "column": "word",
                                "pattern": "'; DROP TABLE victim; --"})
        assert out["rows"] == []
    with pytest.raises(ToolError) as exc:
        await call("pg_regexp_match", {"table": f"{data}.words", "column": "word", "pattern": "(unclosed"})
    assert_tool_error(exc, "INVALID_INPUT", "regular expression")
    with pytest.raises(ToolError) as exc:
        await call("pg_like_search", {"table": f"{data}.words", "column": "word", "pattern": "x",
                                      "orderBy": [{"column": "word", "direction": "sideways"}]})
    assert_tool_error(exc, "INVALID_INPUT")
    assert state(conn, data) == before


# ---------------------------------------------------------------- pg_text_normalize


async def test_normalize_without_unaccent_is_extension_missing(call: Call, rt: Runtime) -> None:
    if rt.db.caps.has_extension("unaccent"):
        out = await call("pg_text_normalize", {"text": "Crème"})
        assert out == {"original": "Crème", "normalized": "Creme"}
        return
    with pytest.raises(ToolError) as exc:
        await call("pg_text_normalize", {"text": "Crème brûlée"})
    err = assert_tool_error(exc, "EXTENSION_MISSING", "unaccent")
    assert err.hint and "unaccent" in err.hint
    assert not rt.db.caps.has_extension("unaccent")  # and the call did not create it


@contextmanager
def scratch_database(dsn: str, tag: str) -> Iterator[str]:
    """A database of the test's own (from template0: no extensions), dropped afterwards; yields its URL."""
    name = f"pgcode_text_{tag}_{os.getpid()}"
    drop = sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(drop)
        c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(name)))
    try:
        yield make_conninfo(dsn, dbname=name)
    finally:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(drop)


def _available(dsn: str, extension: str) -> bool:
    with psycopg.connect(dsn) as c:
        return bool(q(c, "SELECT 1 FROM pg_available_extensions WHERE name = %s", extension))


async def test_extensions_absent_give_extension_missing_with_a_hint(dsn: str) -> None:
    with scratch_database(dsn, "bare") as url:
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("CREATE TABLE words (word text); INSERT INTO words VALUES ('apple')")
        async with Runtime(Settings(database_url=url, pool_max_size=2)) as bare:
            cases = [("pg_trigram_similarity", {"table": "words", "column": "word", "value": "aple"}, "pg_trgm"),
                     ("pg_fuzzy_match", {"table": "words", "column": "word", "value": "aple"}, "fuzzystrmatch"),
                     ("pg_text_normalize", {"text": "é"}, "unaccent")]
            for tool, args, extension in cases:
                with pytest.raises(ToolError) as exc:
                    await bare.invoke(tool, args, LOCAL_PRINCIPAL)
                err = assert_tool_error(exc, "EXTENSION_MISSING", extension)
                assert err.hint and extension in err.hint
                assert err.details["extension"] == extension
            # Nothing was created on the way.
            with psycopg.connect(url) as c:
                assert q(c, "SELECT extname FROM pg_extension ORDER BY 1") == [("plpgsql",)]


async def test_extensions_in_their_own_sql_work(dsn: str) -> None:
    """unaccent, pg_trgm and fuzzystrmatch installed in a schema off the search_path; a damerau function beside."""
    missing = [e for e in ("unaccent", "pg_trgm", "fuzzystrmatch") if not _available(dsn, e)]
    if missing:
        pytest.skip(f"needs {', '.join(missing)}, which this server lacks")
    with scratch_database(dsn, "ext") as url:
        with psycopg.connect(url, autocommit=True) as c:
            c.execute("""
                CREATE SCHEMA ext;
                CREATE EXTENSION unaccent SCHEMA ext; CREATE EXTENSION pg_trgm SCHEMA ext;
                CREATE EXTENSION fuzzystrmatch SCHEMA ext;
                -- optimal string alignment distance: Levenshtein plus adjacent transpositions
                CREATE FUNCTION ext.damerau_levenshtein(a text, b text) RETURNS int LANGUAGE plpgsql IMMUTABLE AS $$
                DECLARE d int[][]; i int; j int; cost int;
                BEGIN
                  d := array_fill(0, ARRAY[length(a) + 1, length(b) + 1]);
                  FOR i IN 0..length(a) LOOP d[i + 1][1] := i; END LOOP;
                  FOR j IN 0..length(b) LOOP d[1][j + 1] := j; END LOOP;
                  FOR i IN 1..length(a) LOOP
                    FOR j IN 1..length(b) LOOP
                      cost := CASE WHEN substr(a, i, 1) = substr(b, j, 1) THEN 0 ELSE 1 END;
                      d[i + 1][j + 1] := least(d[i][j + 1] + 1, d[i + 1][j] + 1, d[i][j] + cost);
                      IF i > 1 AND j > 1 AND substr(a, i, 1) = substr(b, j - 1, 1)
                         AND substr(a, i - 1, 1) = substr(b, j, 1) THEN
                        d[i + 1][j + 1] := least(d[i + 1][j + 1], d[i - 1][j - 1] + 1);
                      END IF;
                    END LOOP;
                  END LOOP;
                  RETURN d[length(a) + 1][length(b) + 1];
                END $$;
                CREATE TABLE words (word text);
                INSERT INTO words VALUES ('apple'), ('Smith'), ('Smiht'), ('Crème');
            """)
        async with Runtime(Settings(database_url=url, pool_max_size=2)) as ext:
            async def run(tool: str, args: dict[str, Any]) -> Any:
                return await ext.invoke(tool, args, LOCAL_PRINCIPAL)

            out = await run("pg_text_normalize", {"text": ["Crème Brûlée", "Straße", "plain"]})
            assert [r["normalized"] for r in out] == ["Creme Brulee", "Strasse", "plain"]
            assert await run("pg_text_normalize", {"text": "ÉCOLE", "lowercase": True}) == {
                "original": "ÉCOLE", "normalized": "ecole"}
            out = await run("pg_trigram_similarity", {"table": "words", "column": "word", "value": "aple"})
            assert [r["word"] for r in out["rows"]] == ["apple"]
            out = await run("pg_fuzzy_match", {"table": "words", "column": "word", "value": "Smith",
                                               "method": "damerau_levenshtein", "maxDistance": 1})
            assert [(r["word"], r["distance"]) for r in out["rows"]] == [("Smith", 0), ("Smiht", 1)]
            out = await run("pg_fuzzy_match", {"table": "words", "column": "word", "value": "Smith", "maxDistance": 1})
            assert [r["word"] for r in out["rows"]] == ["Smith"]  # plain levenshtein counts a swap as two edits


# ---------------------------------------------------------------- pg_text_sentiment


async def test_sentiment_scores_with_negation(call: Call) -> None:
    out = await call("pg_text_sentiment", {"text": "I love this product, the support was excellent!"})
    assert out["score"] == 6 and out["label"] == "positive" and out["method"] == "lexicon"
    assert [m["word"] for m in out["matches"]] == ["love", "excellent"]
    out = await call("pg_text_sentiment", {"text": "This is not good."})
    assert out["score"] == -2 and out["label"] == "negative"
    assert out["matches"] == [{"word": "good", "weight": -2, "negated": True}]
    out = await call("pg_text_sentiment", {"text": "It isn't bad, it's terrible"})
    assert out["score"] == -1  # "isn't" flips bad (+2); the comma ends its reach before terrible (-3)
    out = await call("pg_text_sentiment", {"text": "Never would I say the food was good"})
    assert out["score"] == 2  # good is five words after never: outside the three-word window
    out = await call("pg_text_sentiment", {"text": "The table is made of wood."})
    assert out == {"score": 0, "comparative": 0.0, "label": "neutral", "words": 6, "matches": [], "method": "lexicon"}


async def test_sentiment_of_many_texts_and_its_description(call: Call, rt: Runtime) -> None:
    out = await call("pg_text_sentiment", {"text": ["great", "awful service", "ok", "Don\u2019t hate it"]})
    assert [r["label"] for r in out["results"]] == ["positive", "negative", "neutral", "positive"]
    assert out["summary"] == {"count": 4, "averageScore": pytest.approx((2 - 3 + 0 + 3) / 4), "positive": 2,
                              "negative": 1, "neutral": 1}
    spec = rt.registry.get("pg_text_sentiment")
    assert spec is not None and "lexicon" in spec.description and "Not a trained model" in spec.description
    with pytest.raises(ToolError) as exc:
        await call("pg_text_sentiment", {"text": ["x"] * 1001})
    assert_tool_error(exc, "INVALID_INPUT", "1000")


# ---------------------------------------------------------------- pg_text_to_vector, pg_text_to_query


async def test_to_vector_lexemes_and_positions(call: Call) -> None:
    out = await call("pg_text_to_vector", {"text": "The fat rats ate fat cheese"})
    assert out["tsvector"] == "'ate':4 'chees':6 'fat':2,5 'rat':3"
    assert out["lexemes"][2] == {"lexeme": "fat", "positions": [2, 5], "weights": ["D", "D"]}
    simple = await call("pg_text_to_vector", {"text": "The rats", "config": "simple"})
    assert simple["tsvector"] == "'rats':2 'the':1" and simple["config"] == "simple"


@pytest.mark.parametrize(("syntax", "text", "expected"), [
    ("plain", "fat rats", "'fat' & 'rat'"),
    ("phrase", "fat rats", "'fat' <-> 'rat'"),
    ("websearch", '"fat rats" or -cheese', "'fat' <-> 'rat' | !'chees'"),
    ("raw", "fat & (rat | cat:*)", "'fat' & ( 'rat' | 'cat':* )"),
])
async def test_to_query_syntaxes(call: Call, syntax: str, text: str, expected: str) -> None:
    out = await call("pg_text_to_query", {"text": text, "syntax": syntax})
    assert out["tsquery"] == expected and out["syntax"] == syntax and "matches" not in out


async def test_to_query_matches_and_stop_words(call: Call) -> None:
    out = await call("pg_text_to_query", {"text": "fat rats", "document": "A rat that is fat"})
    assert out["matches"] is True
    out = await call("pg_text_to_query", {"text": "fat rats", "syntax": "phrase", "document": "A rat that is fat"})
    assert out["matches"] is False
    out = await call("pg_text_to_query", {"text": "the and of"})
    assert out["tsquery"] == "" and out["nodes"] == 0 and "no searchable words" in out["note"]
    with pytest.raises(ToolError) as exc:
        await call("pg_text_to_query", {"text": "fat & & rats", "syntax": "raw"})
    assert_tool_error(exc, "INVALID_INPUT", "syntax")


# ---------------------------------------------------------------- pg_text_search_config


async def test_search_config_lists_and_details(call: Call, conn: psycopg.Connection[Any]) -> None:
    out = await call("pg_text_search_config")
    names = {c["name"] for c in out["configs"]}
    assert {"english", "simple", "german"} <= names and out["count"] == len(out["configs"])
    default = q(conn, "SELECT current_setting('default_text_search_config')")[0][0]
    assert out["default"] == default
    assert [c["config"] for c in out["configs"] if c["isDefault"]] == [default.removeprefix("pg_catalog.")]
    detail = await call("pg_text_search_config", {"name": "english"})
    assert detail["parser"] == "default" and detail["schema"] == "pg_catalog"
    mapping = {m["token"]: m["dictionaries"] for m in detail["mappings"]}
    assert mapping["asciiword"] == ["english_stem"] and mapping["email"] == ["simple"]
    with pytest.raises(ToolError) as exc:
        await call("pg_text_search_config", {"name": "klingon"})
    err = assert_tool_error(exc, "INVALID_INPUT", "klingon")
    assert "english" in err.details["available"]


# ---------------------------------------------------------------- every tool: identifiers, scope


_CYRILLIC = str.maketrans("aceopxyi", "\u0430\u0441\u0435\u043e\u0440\u0445\u0443\u0456")


def _lookalike(name: str) -> str:
    """The name with Latin letters swapped for Cyrillic or full-width twins: a different identifier."""
    twin = name.translate(_CYRILLIC)
    return twin if twin != name else name.translate({ord(c): ord(c) + 0xFEE0 for c in "abdhnrstw"})


def _evil(name: str) -> list[str]:
    return [f'{name}"; DROP TABLE victim; --', f"{name}); DROP TABLE victim; --", f"{name} /* c */",
            f"{name} -- c", f'"{name}"', f"{name}'", _lookalike(name), f"{name};", f"{name}\x00"]


def _tools(schema: str) -> list[tuple[str, dict[str, Any], list[str]]]:
    art = {"table": "articles", "schema": schema}
    words = {"table": "words", "schema": schema, "column": "word"}
    return [
        ("pg_text_search", {**art, "column": "body", "query": "rats", "returnColumns": ["id"]},
         ["table", "schema", "column", "returnColumns.0"]),
        ("pg_text_search", {**art, "columns": ["title", "body"], "query": "rats"}, ["columns.1"]),
        ("pg_text_rank", {**art, "column": "body", "query": "rats", "returnColumns": ["id"]},
         ["table", "schema", "column", "returnColumns.0"]),
        ("pg_text_headline", {**art, "column": "body", "query": "rats", "returnColumns": ["id"]},
         ["table", "schema", "column", "returnColumns.0"]),
        ("pg_create_fts_index", {**art, "column": "body", "ifNotExists": True, "name": "articles_body_fts_idx"},
         ["table", "schema", "column"]),
        ("pg_trigram_similarity", {**words, "value": "aple", "returnColumns": ["id"]},
         ["table", "schema", "column", "returnColumns.0"]),
        ("pg_fuzzy_match", {**words, "value": "aple", "returnColumns": ["id"]},
         ["table", "schema", "column", "returnColumns.0"]),
        ("pg_regexp_match", {**words, "pattern": "a", "returnColumns": ["id"], "orderBy": [{"column": "id"}]},
         ["table", "schema", "column", "returnColumns.0", "orderBy.0.column"]),
        ("pg_like_search", {**words, "pattern": "a%", "returnColumns": ["id"], "orderBy": [{"column": "id"}]},
         ["table", "schema", "column", "returnColumns.0", "orderBy.0.column"]),
        ("pg_text_to_vector", {"text": "x", "config": "english"}, ["config"]),
        ("pg_text_to_query", {"text": "x", "config": "english"}, ["config"]),
        ("pg_text_search_config", {"name": "english"}, ["name"]),
    ]


def _get(args: dict[str, Any], path: str) -> str:
    value: Any = args
    for part in path.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return str(value)


def _with(args: dict[str, Any], path: str, value: str) -> dict[str, Any]:
    out = {k: (list(v) if isinstance(v, list) else v) for k, v in args.items()}
    key, *rest = path.split(".")
    if not rest:
        out[key] = value
    elif len(rest) == 1:
        out[key][int(rest[0])] = value
    else:
        out[key][int(rest[0])] = {**out[key][int(rest[0])], rest[1]: value}
    return out


async def test_every_identifier_argument_resists_injection(call: Call, conn: psycopg.Connection[Any],
                                                           data: str) -> None:
    """Each evil name is a name that does not exist (NOT_FOUND) or is refused (INVALID_INPUT); nothing changes."""
    before = state(conn, data)
    for tool, args, paths in _tools(data):
        await call(tool, args)  # the base arguments are valid
        for path in paths:
            for evil in _evil(_get(args, path)):
                with pytest.raises(ToolError) as exc:
                    await call(tool, _with(args, path, evil))
                assert exc.value.code.value in ("NOT_FOUND", "INVALID_INPUT"), (tool, path, evil, exc.value)
    after = state(conn, data)
    before["indexes"] = after["indexes"] = [i for i in after["indexes"] if i[0] != "articles_body_fts_idx"]
    after["relations"] = [r for r in after["relations"] if r[0] != "articles_body_fts_idx"]
    assert after == before


READ_TOOLS = ["pg_text_search", "pg_text_rank", "pg_trigram_similarity", "pg_fuzzy_match", "pg_regexp_match",
              "pg_like_search", "pg_text_headline", "pg_text_normalize", "pg_text_sentiment", "pg_text_to_vector",
              "pg_text_to_query", "pg_text_search_config"]


async def test_the_group_is_complete_and_scoped(call: Call, rt: Runtime) -> None:
    specs = [s for s in rt.registry if s.group == "text"]
    assert len(specs) == 13
    assert {s.name for s in specs if s.effect.value == "read"} == set(READ_TOOLS)
    for name in READ_TOOLS:
        with pytest.raises(ToolError) as exc:
            await call(name, {}, principal=NOBODY)
        assert_tool_error(exc, "FORBIDDEN", "read")
