"""jsonb group: every tool against the real server, values checked against Python, refusals, injection, scopes."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.types.json import Jsonb

from pgcode.core.registry import load_registry
from pgcode.errors import ToolError
from pgcode.groups.jsonb._base import parse_path
from pgcode.types import Principal, Scope
from tests.fix_db import Call, assert_tool_error

pytestmark = pytest.mark.anyio

READER = Principal.with_scope("reader", Scope.READ)
NOBODY = Principal("nobody", frozenset())

TAGS = ["garden", "kitchen", "tools", "toys"]


def product(g: int) -> dict[str, Any]:
    """The demo's products.data, rebuilt in Python (pgcode/sql/demo/demo.sql)."""
    return {"name": f"Product {g}", "sku": f"SKU-{g:05d}", "price": 5 + (g * 7919) % 500,
            "status": "pending" if g % 10 == 0 else "archived" if g % 10 == 1 else "active",
            "tags": [TAGS[g % 4]], "stock": (g * 31) % 200}


PRODUCTS = {g: product(g) for g in range(1, 51)}
DOCS: dict[int, Any] = {
    1: {"name": "a", "meta": {"color": "red", "size": 3}, "tags": ["x", "y"], "n": None},
    2: {"name": "b", "meta": {"color": "blue"}, "tags": [], "price": 9.5},
    3: {"name": "c", "meta": "plain", "tags": ["z"], "n": None, "nested": {"deep": {"er": 1}}},
    4: None,
    5: [1, 2, 3],
    6: "scalar",
}


# ---------------------------------------------------------------- fixtures and helpers


def q(conn: psycopg.Connection[Any], query: Any, *params: Any) -> list[tuple[Any, ...]]:
    return conn.execute(query, params or None).fetchall()


def docs(conn: psycopg.Connection[Any], schema: str, table: str = "docs", column: str = "doc") -> dict[int, Any]:
    return dict(q(conn, sql.SQL("SELECT id, {} FROM {} ORDER BY id").format(
        sql.Identifier(column), sql.Identifier(schema, table))))


def state(conn: psycopg.Connection[Any], schema: str) -> dict[str, Any]:
    """Every relation of the schema with its rows, and its indexes."""
    rels = q(conn, "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                   "WHERE n.nspname = %s ORDER BY 1", schema)
    out: dict[str, Any] = {"relations": rels, "indexes": q(
        conn, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s ORDER BY 1", schema)}
    for name, kind in rels:
        if kind == "r":
            out[name] = q(conn, sql.SQL("SELECT t::text FROM {} t ORDER BY 1").format(sql.Identifier(schema, name)))
    return out


@pytest.fixture
def db(conn: psycopg.Connection[Any], schema: str) -> Iterator[psycopg.Connection[Any]]:
    """A fresh schema per test: products (the demo's shape), docs (mixed documents), nopk, jdocs (json), victim."""
    conn.execute("SET lock_timeout = '5s'")
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {0} CASCADE; CREATE SCHEMA {0}").format(sql.Identifier(schema)))
    s = sql.Identifier(schema)
    conn.execute(sql.SQL("""
        CREATE TABLE {s}.products (id serial PRIMARY KEY, data jsonb NOT NULL);
        CREATE TABLE {s}.docs (id integer PRIMARY KEY, doc jsonb, label text);
        CREATE TABLE {s}.nopk (doc jsonb);
        CREATE TABLE {s}.jdocs (id integer PRIMARY KEY, doc json);
        CREATE TABLE {s}.victim (v text);
        INSERT INTO {s}.victim VALUES ('still here');
    """).format(s=s))
    with conn.cursor() as cur:
        cur.executemany(sql.SQL("INSERT INTO {}.products (id, data) VALUES (%s, %s)").format(s),
                        [(g, Jsonb(d)) for g, d in PRODUCTS.items()])
        cur.executemany(sql.SQL("INSERT INTO {}.docs (id, doc, label) VALUES (%s, %s, %s)").format(s),
                        [(i, None if d is None else Jsonb(d), f"l{i}") for i, d in DOCS.items()])
        cur.executemany(sql.SQL("INSERT INTO {}.nopk (doc) VALUES (%s)").format(s),
                        [(Jsonb({"k": i}),) for i in range(3)])
        cur.execute(sql.SQL("INSERT INTO {}.jdocs VALUES (1, %s)").format(s), ('{"a": {"b": 1}, "z": null}',))
    yield conn


def assert_victim(conn: psycopg.Connection[Any], schema: str) -> None:
    assert q(conn, sql.SQL("SELECT v FROM {}").format(sql.Identifier(schema, "victim"))) == [("still here",)]


async def refused(call: Call, name: str, args: dict[str, Any], code: str, *fragments: str, **kw: Any) -> ToolError:
    with pytest.raises(ToolError) as exc:
        await call(name, args, **kw)
    return assert_tool_error(exc, code, *fragments)


# ---------------------------------------------------------------- paths


def test_paths_in_every_accepted_form() -> None:
    expected = ["a", "0", "b"]
    forms: list[Any] = [["a", 0, "b"], "a.0.b", "a[0].b", "{a,0,b}", "$.a[0].b", '$."a"[0]."b"', " { a , 0 , b } "]
    for form in forms:
        assert parse_path(form) == expected, form
    assert parse_path(["key.with.dots"]) == ["key.with.dots"]
    assert parse_path('$."key.with.dots".x') == ["key.with.dots", "x"]
    assert parse_path('{"a,b",c}') == ["a,b", "c"]
    assert parse_path("") == [] and parse_path("$") == [] and parse_path("{}") == [] and parse_path([]) == []
    for bad in ("a..b", "a.", "a[x]", "a[0", "{a,,b}", "{a,NULL}", '$."unterminated', "{a,{b}}"):
        with pytest.raises(ToolError) as exc:
            parse_path(bad)
        assert_tool_error(exc, "INVALID_INPUT", "bad path")
    with pytest.raises(ToolError):
        parse_path(["x"] * 65)


# ---------------------------------------------------------------- pg_jsonb_extract


async def test_extract_values_per_row_in_every_path_form(call: Call, db: Any, schema: str) -> None:
    for path in (["meta", "color"], "meta.color", "{meta,color}", "$.meta.color"):
        out = await call("pg_jsonb_extract", {"table": f"{schema}.docs", "column": "doc", "path": path})
        assert [(r["row"]["id"], r["value"]) for r in out["rows"]] == [
            (i, d.get("meta", {}).get("color") if isinstance(d, dict) and isinstance(d.get("meta"), dict) else None)
            for i, d in DOCS.items()]
        assert out["missing"] == 4 and out["count"] == 6 and out["truncated"] is False
    arr = await call("pg_jsonb_extract", {"table": "docs", "schema": schema, "column": "doc", "path": "tags[1]",
                                          "key": {"id": 1}})
    assert arr["rows"] == [{"row": {"id": 1}, "value": "y"}]
    whole = await call("pg_jsonb_extract", {"table": "docs", "schema": schema, "column": "doc", "path": [],
                                            "where": "id IN (2, 5)"})
    assert [r["value"] for r in whole["rows"]] == [DOCS[2], DOCS[5]]
    cut = await call("pg_jsonb_extract", {"table": "products", "schema": schema, "column": "data", "path": "sku",
                                          "limit": 3})
    assert [r["value"] for r in cut["rows"]] == ["SKU-00001", "SKU-00002", "SKU-00003"] and cut["truncated"]


async def test_extract_rows_without_primary_key_are_named_by_ctid(call: Call, db: Any, schema: str) -> None:
    out = await call("pg_jsonb_extract", {"table": "nopk", "schema": schema, "column": "doc", "path": "k"})
    assert sorted(r["value"] for r in out["rows"]) == [0, 1, 2]
    assert all(set(r["row"]) == {"ctid"} for r in out["rows"])


async def test_extract_refuses_missing_table_column_and_non_json_column(call: Call, db: Any, schema: str) -> None:
    await refused(call, "pg_jsonb_extract", {"table": "nope", "schema": schema, "column": "doc", "path": "a"},
                  "NOT_FOUND", "does not exist")
    await refused(call, "pg_jsonb_extract", {"table": "docs", "schema": schema, "column": "nope", "path": "a"},
                  "NOT_FOUND", "no column")
    await refused(call, "pg_jsonb_extract", {"table": "docs", "schema": schema, "column": "label", "path": "a"},
                  "INVALID_INPUT", "not jsonb")
    await refused(call, "pg_jsonb_extract", {"table": "docs", "schema": schema, "column": "doc", "path": "a..b"},
                  "INVALID_INPUT", "bad path")


# ---------------------------------------------------------------- pg_jsonb_set: the batch example


async def test_set_runs_the_batch_example_shape(call: Call, db: Any, schema: str) -> None:
    """../shared/examples/04-batch-jsonb.js, call for call: read the pending products, set each one's status."""
    items = await call("pg_read_query", {
        "sql": f"SELECT id, data FROM {schema}.products WHERE data->>'status' = 'pending'"})
    pending = [g for g, d in PRODUCTS.items() if d["status"] == "pending"]
    assert [r["id"] for r in items["rows"]] == pending
    updates = []
    for item in items["rows"]:
        out = await call("pg_jsonb_set", {"table": f"{schema}.products", "column": "data", "path": ["status"],
                                          "value": "processed", "where": f"id = {item['id']}"})
        assert out["rowsChanged"] == 1 and out["rowsMatched"] == 1
        updates.append(item["id"])
    assert updates == pending
    after = docs(db, schema, "products", "data")
    assert not [g for g, d in after.items() if d["status"] == "pending"]
    assert after == {g: {**d, "status": "processed"} if g in pending else d for g, d in PRODUCTS.items()}


async def test_set_in_a_read_only_call_fails_first_and_changes_nothing(call: Call, db: Any, schema: str) -> None:
    before = state(db, schema)
    await refused(call, "pg_jsonb_set", {"table": f"{schema}.products", "column": "data", "path": ["status"],
                                         "value": "processed", "where": "id = 10"}, "READ_ONLY", read_only=True)
    assert state(db, schema) == before


# ---------------------------------------------------------------- pg_jsonb_set


@pytest.mark.parametrize("value", ["processed", 42, 2.5, True, False, None, {"a": [1, {"b": None}]}, [1, "x", None],
                                   "", "it's \"quoted\"; DROP TABLE victim --"])
async def test_set_takes_any_json_value(call: Call, db: Any, schema: str, value: Any) -> None:
    out = await call("pg_jsonb_set", {"table": f"{schema}.products", "column": "data", "path": "status",
                                      "value": value, "key": {"id": 3}})
    assert out == {"rowsChanged": 1, "rowsMatched": 1, "table": f"{schema}.products", "column": "data",
                   "path": ["status"]}
    after = docs(db, schema, "products", "data")
    assert after[3] == {**PRODUCTS[3], "status": value}
    assert {g: d for g, d in after.items() if g != 3} == {g: d for g, d in PRODUCTS.items() if g != 3}
    assert_victim(db, schema)


async def test_set_nested_creates_missing_objects_and_counts_real_changes(call: Call, db: Any, schema: str) -> None:
    base = {"table": "docs", "schema": schema, "column": "doc"}
    out = await call("pg_jsonb_set", {**base, "path": "meta.size", "value": 7, "key": {"id": [1, 2]}})
    assert out["rowsChanged"] == 2 and out["rowsMatched"] == 2
    out = await call("pg_jsonb_set", {**base, "path": ["x", "y", "z"], "value": 1, "where": "id <= 2"})
    assert out["rowsChanged"] == 2
    out = await call("pg_jsonb_set", {**base, "path": "nested.deep.er", "value": 1, "key": {"id": 3}})
    assert out == {**out, "rowsChanged": 0, "rowsMatched": 1}  # already 1: matched, not changed
    out = await call("pg_jsonb_set", {**base, "path": "tags[0]", "value": "first", "key": {"id": 1}})
    assert out["rowsChanged"] == 1
    out = await call("pg_jsonb_set", {**base, "path": "status", "value": "new", "key": {"id": 4}})  # NULL -> {}
    assert out["rowsChanged"] == 1
    out = await call("pg_jsonb_set", {**base, "path": "1", "value": 20, "key": {"id": 5}})  # array element
    assert out["rowsChanged"] == 1
    got = docs(db, schema)
    assert got[1] == {**DOCS[1], "meta": {"color": "red", "size": 7}, "x": {"y": {"z": 1}}, "tags": ["first", "y"]}
    assert got[2] == {**DOCS[2], "meta": {"color": "blue", "size": 7}, "x": {"y": {"z": 1}}}
    assert got[3] == DOCS[3] and got[4] == {"status": "new"} and got[5] == [1, 20, 3] and got[6] == "scalar"


async def test_set_whole_value_with_empty_path_and_json_columns(call: Call, db: Any, schema: str) -> None:
    out = await call("pg_jsonb_set", {"table": "docs", "schema": schema, "column": "doc", "path": [],
                                      "value": {"fresh": True}, "key": {"id": 6}})
    assert out["rowsChanged"] == 1 and docs(db, schema)[6] == {"fresh": True}
    out = await call("pg_jsonb_set", {"table": "jdocs", "schema": schema, "column": "doc", "path": "a.c",
                                      "value": [1], "key": {"id": 1}})
    assert out["rowsChanged"] == 1
    assert json.loads(q(db, f"SELECT doc::text FROM {schema}.jdocs")[0][0]) == {"a": {"b": 1, "c": [1]}, "z": None}


async def test_set_type_clashes_and_bad_paths_change_nothing(call: Call, db: Any, schema: str) -> None:
    base = {"table": "docs", "schema": schema, "column": "doc", "value": 1}
    before = state(db, schema)
    err = await refused(call, "pg_jsonb_set", {**base, "path": "meta.color", "where": "id IN (1, 3)"},
                        "INVALID_INPUT", "does not fit 1 row", "string", "nothing was changed")
    assert err.details["problems"] == [{"problem": "scalar", "at": ["meta"], "found": "string", "rows": 1,
                                        "why": err.details["problems"][0]["why"], "examples": [{"id": 3}]}]
    await refused(call, "pg_jsonb_set", {**base, "path": "tags.first", "key": {"id": 1}},
                  "INVALID_INPUT", "not an array index")
    await refused(call, "pg_jsonb_set", {**base, "path": "name.x", "key": {"id": 1}}, "INVALID_INPUT", "string")
    await refused(call, "pg_jsonb_set", {**base, "path": "a", "key": {"id": 6}}, "INVALID_INPUT", "string")
    await refused(call, "pg_jsonb_set", {**base, "path": "n.x", "key": {"id": 1}}, "INVALID_INPUT", "null")
    await refused(call, "pg_jsonb_set", {**base, "path": "tags[5].x", "key": {"id": 1}}, "INVALID_INPUT",
                  "array is shorter")
    await refused(call, "pg_jsonb_set", {**base, "path": "meta.weight", "createMissing": False, "key": {"id": 1}},
                  "INVALID_INPUT", "does not exist")
    await refused(call, "pg_jsonb_set", {**base, "path": "x.y", "createMissing": False, "key": {"id": 1}},
                  "INVALID_INPUT", "does not exist")
    await refused(call, "pg_jsonb_set", {**base, "path": "a..b", "key": {"id": 1}}, "INVALID_INPUT", "bad path")
    await refused(call, "pg_jsonb_set", {"table": "docs", "schema": schema, "column": "doc", "path": "a",
                                         "key": {"id": 1}}, "INVALID_INPUT", "value")
    assert state(db, schema) == before


async def test_set_missing_rows_and_bad_keys(call: Call, db: Any, schema: str) -> None:
    base = {"table": "docs", "schema": schema, "column": "doc", "path": "a", "value": 1}
    before = state(db, schema)
    await refused(call, "pg_jsonb_set", {**base, "where": "id = 9999"}, "NOT_FOUND", "no row")
    await refused(call, "pg_jsonb_set", {**base, "key": {"id": 9999}}, "NOT_FOUND", "no row")
    await refused(call, "pg_jsonb_set", {**base, "key": {"id": "x"}}, "INVALID_INPUT")
    await refused(call, "pg_jsonb_set", {**base, "key": {"id": []}}, "INVALID_INPUT", "empty")
    await refused(call, "pg_jsonb_set", {**base, "key": {"nope": 1}}, "NOT_FOUND", "no column")
    assert state(db, schema) == before


async def test_writes_refuse_every_row_without_all_rows(call: Call, db: Any, schema: str) -> None:
    base = {"table": "docs", "schema": schema, "column": "doc", "path": "a", "value": 1}
    before = state(db, schema)
    for tool in ("pg_jsonb_set", "pg_jsonb_insert", "pg_jsonb_delete", "pg_jsonb_strip_nulls"):
        args: dict[str, Any] = dict(base)
        if tool in ("pg_jsonb_delete", "pg_jsonb_strip_nulls"):
            args.pop("value")
        if tool == "pg_jsonb_strip_nulls":
            args.pop("path")
        await refused(call, tool, args, "INVALID_INPUT", "every row", "allRows")
        await refused(call, tool, {**args, "where": "true"}, "INVALID_INPUT", "names no column")
        await refused(call, tool, {**args, "where": "1 = 1"}, "INVALID_INPUT", "names no column")
    await refused(call, "pg_jsonb_set", {**base, "table": "products", "column": "data", "path": "flag",
                                         "where": "id > 0 OR id IS NULL"},
                  "INVALID_INPUT", "matches every row of", "(50)", "allRows")
    assert state(db, schema) == before
    out = await call("pg_jsonb_set", {**base, "table": "products", "column": "data", "path": "seen", "value": True,
                                      "allRows": True})
    assert out["rowsChanged"] == 50 and out["rowsMatched"] == 50
    assert all(d["seen"] is True for d in docs(db, schema, "products", "data").values())
    out = await call("pg_jsonb_set", {**base, "table": "products", "column": "data", "path": "seen", "value": 2,
                                      "where": "id > 0", "allRows": True})
    assert out["rowsChanged"] == 50


async def test_writes_refuse_policy_breaking_where_fragments(call: Call, db: Any, schema: str) -> None:
    before = state(db, schema)
    for where in (f"1=1; DROP TABLE {schema}.victim", "pg_read_file('/etc/passwd') IS NOT NULL",
                  f"id IN (WITH d AS (DELETE FROM {schema}.victim RETURNING 1) SELECT 1 FROM d)",
                  "id = 1) OR (true", "id = 1 /* x */ ; SELECT 1"):
        with pytest.raises(ToolError) as exc:
            await call("pg_jsonb_set", {"table": "docs", "schema": schema, "column": "doc", "path": "a", "value": 1,
                                        "where": where})
        assert exc.value.code.value == "INVALID_INPUT", where
    out = await call("pg_jsonb_set", {"table": "docs", "schema": schema, "column": "doc", "path": "hit", "value": 1,
                                      "where": "label LIKE 'l1%' AND doc->>'name' = 'a'"})
    assert out["rowsChanged"] == 1
    before["docs"] = state(db, schema)["docs"]
    assert state(db, schema) == before


# ---------------------------------------------------------------- pg_jsonb_insert


async def test_insert_into_arrays_and_objects(call: Call, db: Any, schema: str) -> None:
    base = {"table": "docs", "schema": schema, "column": "doc"}
    assert (await call("pg_jsonb_insert", {**base, "path": "tags[0]", "value": "w", "key": {"id": 1}}))[
        "rowsChanged"] == 1
    await call("pg_jsonb_insert", {**base, "path": ["tags", -1], "value": "end", "insertAfter": True,
                                   "key": {"id": 1}})
    await call("pg_jsonb_insert", {**base, "path": "tags.0", "value": {"o": 1}, "key": {"id": 2}})
    await call("pg_jsonb_insert", {**base, "path": "meta.new", "value": [1], "key": {"id": 2}})
    await call("pg_jsonb_insert", {**base, "path": "1", "value": 9, "insertAfter": True, "key": {"id": 5}})
    got = docs(db, schema)
    assert got[1]["tags"] == ["w", "x", "y", "end"]
    assert got[2] == {**DOCS[2], "tags": [{"o": 1}], "meta": {"color": "blue", "new": [1]}}
    assert got[5] == [1, 2, 9, 3]


async def test_insert_refusals_change_nothing(call: Call, db: Any, schema: str) -> None:
    base = {"table": "docs", "schema": schema, "column": "doc", "value": 1}
    before = state(db, schema)
    await refused(call, "pg_jsonb_insert", {**base, "path": "name", "key": {"id": 1}}, "INVALID_INPUT",
                  "cannot replace existing key")
    await refused(call, "pg_jsonb_insert", {**base, "path": "missing.0", "key": {"id": 1}}, "INVALID_INPUT",
                  "does not exist")
    await refused(call, "pg_jsonb_insert", {**base, "path": "name.0", "key": {"id": 1}}, "INVALID_INPUT", "string")
    await refused(call, "pg_jsonb_insert", {**base, "path": "tags.x", "key": {"id": 1}}, "INVALID_INPUT",
                  "not an array index")
    await refused(call, "pg_jsonb_insert", {**base, "path": [], "key": {"id": 1}}, "INVALID_INPUT", "path")
    await refused(call, "pg_jsonb_insert", {**base, "path": "a", "key": {"id": 77}}, "NOT_FOUND")
    assert state(db, schema) == before


# ---------------------------------------------------------------- pg_jsonb_delete


async def test_delete_keys_and_elements_only_where_present(call: Call, db: Any, schema: str) -> None:
    base = {"table": "docs", "schema": schema, "column": "doc"}
    out = await call("pg_jsonb_delete", {**base, "path": "n", "where": "id IN (1, 2, 3, 4)"})
    assert out["rowsChanged"] == 2 and out["rowsMatched"] == 4  # 2 has no n; 4 is NULL
    out = await call("pg_jsonb_delete", {**base, "path": "tags[0]", "key": {"id": 1}})
    assert out["rowsChanged"] == 1
    out = await call("pg_jsonb_delete", {**base, "path": "nested.deep.er", "key": {"id": 3}})
    assert out["rowsChanged"] == 1
    got = docs(db, schema)
    assert got[1] == {"name": "a", "meta": {"color": "red", "size": 3}, "tags": ["y"]}
    assert got[3] == {"name": "c", "meta": "plain", "tags": ["z"], "nested": {"deep": {}}}
    assert got[2] == DOCS[2] and got[4] is None


async def test_delete_refusals_change_nothing(call: Call, db: Any, schema: str) -> None:
    base = {"table": "docs", "schema": schema, "column": "doc"}
    before = state(db, schema)
    await refused(call, "pg_jsonb_delete", {**base, "path": "meta.color", "where": "id IN (1, 3)"},
                  "INVALID_INPUT", "string")
    await refused(call, "pg_jsonb_delete", {**base, "path": "tags.x", "key": {"id": 1}}, "INVALID_INPUT",
                  "not an array index")
    await refused(call, "pg_jsonb_delete", {**base, "path": "a", "key": {"id": 6}}, "INVALID_INPUT", "string")
    await refused(call, "pg_jsonb_delete", {**base, "path": [], "key": {"id": 1}}, "INVALID_INPUT", "path")
    await refused(call, "pg_jsonb_delete", {**base, "path": "a", "where": "id = -1"}, "NOT_FOUND")
    assert state(db, schema) == before


# ---------------------------------------------------------------- pg_jsonb_strip_nulls


async def test_strip_nulls_preview_then_write(call: Call, db: Any, schema: str) -> None:
    base = {"table": "docs", "schema": schema, "column": "doc"}
    before = state(db, schema)
    preview = await call("pg_jsonb_strip_nulls", {**base, "preview": True})
    assert preview["preview"] is True and preview["rowsMatched"] == 6 and preview["rowsWouldChange"] == 2
    assert [(r["row"]["id"], r["before"], r["after"]) for r in preview["rows"]] == [
        (1, DOCS[1], {k: v for k, v in DOCS[1].items() if v is not None}),
        (3, DOCS[3], {k: v for k, v in DOCS[3].items() if v is not None})]
    assert state(db, schema) == before
    out = await call("pg_jsonb_strip_nulls", {**base, "where": "id IN (1, 2)"})
    assert out["rowsChanged"] == 1 and out["rowsMatched"] == 2
    got = docs(db, schema)
    assert got[1] == {k: v for k, v in DOCS[1].items() if v is not None} and got[3] == DOCS[3]


@pytest.mark.pg(">= 18")
async def test_strip_nulls_in_arrays_on_18(call: Call, db: Any, schema: str) -> None:
    db.execute(f"""INSERT INTO {schema}.docs VALUES (7, '{{"a": [1, null, {{"b": null}}]}}')""")
    out = await call("pg_jsonb_strip_nulls", {"table": "docs", "schema": schema, "column": "doc", "key": {"id": 7},
                                              "stripInArrays": True})
    assert out["rowsChanged"] == 1 and docs(db, schema)[7] == {"a": [1, {}]}


@pytest.mark.pg("< 18")
async def test_strip_nulls_in_arrays_needs_18(call: Call, db: Any, schema: str) -> None:
    await refused(call, "pg_jsonb_strip_nulls", {"table": "docs", "schema": schema, "column": "doc",
                                                 "key": {"id": 1}, "stripInArrays": True},
                  "UNSUPPORTED_VERSION", "PostgreSQL 18")


# ---------------------------------------------------------------- pg_jsonb_contains, pg_jsonb_path_query


async def test_contains_returns_whole_rows(call: Call, db: Any, schema: str) -> None:
    out = await call("pg_jsonb_contains", {"table": "products", "schema": schema, "column": "data",
                                           "value": {"status": "pending", "tags": ["tools"]}})
    expect = [g for g, d in PRODUCTS.items() if d["status"] == "pending" and "tools" in d["tags"]]
    assert expect == [10, 30, 50]
    assert [r["id"] for r in out["rows"]] == expect and out["rows"][0]["data"] == PRODUCTS[expect[0]]
    sub = await call("pg_jsonb_contains", {"table": "docs", "schema": schema, "column": "doc", "path": "meta",
                                           "value": {"color": "blue"}})
    assert [r["id"] for r in sub["rows"]] == [2]
    elem = await call("pg_jsonb_contains", {"table": "docs", "schema": schema, "column": "doc", "value": 2,
                                            "where": "label <> 'x'"})
    assert [r["id"] for r in elem["rows"]] == [5]


async def test_path_query_binds_variables(call: Call, db: Any, schema: str) -> None:
    base = {"table": "products", "schema": schema, "column": "data"}
    out = await call("pg_jsonb_path_query", {**base, "path": "$ ? (@.price > $min && @.status == $s).sku",
                                             "vars": {"min": 300, "s": "active"}, "limit": 1000})
    assert [r["item"] for r in out["rows"]] == [d["sku"] for d in PRODUCTS.values()
                                                if d["price"] > 300 and d["status"] == "active"]
    evil = await call("pg_jsonb_path_query", {**base, "path": "$ ? (@.status == $s)",
                                              "vars": {"s": "active\") || (true"}, "mode": "exists"})
    assert evil["rows"] == []
    first = await call("pg_jsonb_path_query", {"table": "docs", "schema": schema, "column": "doc",
                                               "path": "$.tags[*]", "mode": "first"})
    assert [(r["row"]["id"], r["item"]) for r in first["rows"]] == [(1, "x"), (3, "z")]
    items = await call("pg_jsonb_path_query", {"table": "docs", "schema": schema, "column": "doc",
                                               "path": "$.tags[*]"})
    assert [(r["row"]["id"], r["item"]) for r in items["rows"]] == [(1, "x"), (1, "y"), (3, "z")]
    match = await call("pg_jsonb_path_query", {**base, "path": "$.stock < 10", "mode": "match"})
    assert [r["row"]["id"] for r in match["rows"]] == [g for g, d in PRODUCTS.items() if d["stock"] < 10]
    await refused(call, "pg_jsonb_path_query", {**base, "path": "$.a ? ("}, "INVALID_INPUT")
    await refused(call, "pg_jsonb_path_query", {**base, "path": "strict $.nope"}, "INVALID_INPUT")
    quiet = await call("pg_jsonb_path_query", {**base, "path": "strict $.nope", "silent": True})
    assert quiet["rows"] == []


# ---------------------------------------------------------------- pg_jsonb_agg


async def test_agg_rows_columns_order_and_groups(call: Call, db: Any, schema: str) -> None:
    out = await call("pg_jsonb_agg", {"table": "docs", "schema": schema, "where": "id <= 2",
                                      "orderBy": [{"column": "id", "direction": "desc"}]})
    assert out == {"result": [{"id": 2, "doc": DOCS[2], "label": "l2"}, {"id": 1, "doc": DOCS[1], "label": "l1"}],
                   "count": 2, "truncated": False}
    cols = await call("pg_jsonb_agg", {"table": f"{schema}.products", "columns": ["id"], "limit": 5,
                                       "orderBy": [{"column": "id"}]})
    assert cols["result"] == [{"id": i} for i in range(1, 6)] and cols["truncated"] is True and cols["count"] == 5
    db.execute(f"CREATE TABLE {schema}.pets (id int PRIMARY KEY, kind text, name text)")
    db.execute(f"INSERT INTO {schema}.pets VALUES (1, 'cat', 'Tom'), (2, 'dog', 'Rex'), (3, 'cat', 'Kit')")
    grouped = await call("pg_jsonb_agg", {"table": "pets", "schema": schema, "columns": ["name"], "groupBy": "kind",
                                          "orderBy": [{"column": "name"}]})
    assert grouped["groups"] == [{"group": "cat", "items": [{"name": "Kit"}, {"name": "Tom"}], "count": 2},
                                 {"group": "dog", "items": [{"name": "Rex"}], "count": 1}]
    empty = await call("pg_jsonb_agg", {"table": "pets", "schema": schema, "where": "id > 10"})
    assert empty == {"result": [], "count": 0, "truncated": False}
    await refused(call, "pg_jsonb_agg", {"table": "pets", "schema": schema, "columns": ["nope"]}, "NOT_FOUND")


# ---------------------------------------------------------------- values computed in the database


async def test_object_and_array(call: Call) -> None:
    assert await call("pg_jsonb_object", {"data": {"name": "Ann", "age": 30, "tags": [1], "n": None}}) == {
        "object": {"name": "Ann", "age": 30, "tags": [1], "n": None}}
    assert await call("pg_jsonb_object", {"pairs": [["a", 1], ["b", {"c": 2}], ["a", 3]]}) == {
        "object": {"a": 3, "b": {"c": 2}}}
    assert await call("pg_jsonb_object", {"object": {}}) == {"object": {}}
    await refused(call, "pg_jsonb_object", {"pairs": [["a"]]}, "INVALID_INPUT", "pair 0")
    await refused(call, "pg_jsonb_object", {"pairs": [[1, 2]]}, "INVALID_INPUT", "string key")
    assert await call("pg_jsonb_array", {"values": [3, "a", None, {"x": 1}, [2]]}) == {
        "array": [3, "a", None, {"x": 1}, [2]]}
    assert await call("pg_jsonb_array", {"elements": [1, 2, 1, None, {"a": 1}, {"a": 1}, None],
                                         "distinct": True, "stripNulls": True}) == {"array": [1, 2, {"a": 1}]}
    assert await call("pg_jsonb_array", {"values": []}) == {"array": []}


def deep_merge(base: Any, overlay: Any, arrays: bool) -> Any:
    if arrays and isinstance(base, list) and isinstance(overlay, list):
        return base + overlay
    if not (isinstance(base, dict) and isinstance(overlay, dict)):
        return overlay
    out = dict(base)
    for k, v in overlay.items():
        out[k] = deep_merge(base[k], v, arrays) if k in base else v
    return out


async def test_merge_deep_shallow_and_arrays(call: Call) -> None:
    base = {"a": 1, "b": {"c": 2, "d": {"e": 3}, "l": [1]}, "n": None, "s": "x"}
    overlay = {"b": {"d": {"f": 4}, "l": [2], "new": {"g": 5}}, "s": {"now": "object"}, "z": [0]}
    for arrays in (False, True):
        out = await call("pg_jsonb_merge", {"base": base, "overlay": overlay, "mergeArrays": arrays})
        assert out == {"merged": deep_merge(base, overlay, arrays), "deep": True, "mergeArrays": arrays}
    shallow = await call("pg_jsonb_merge", {"base": base, "overlay": overlay, "deep": False})
    assert shallow["merged"] == {**base, **overlay}
    await refused(call, "pg_jsonb_merge", {"base": [1], "overlay": {}}, "INVALID_INPUT", "base")


async def test_diff_reports_added_removed_changed(call: Call) -> None:
    a = {"same": 1, "gone": True, "n": None, "o": {"x": 1, "y": [1, 2], "deep": {"k": "v"}}, "t": "s"}
    b = {"same": 1, "n": 0, "o": {"x": 2, "y": [1, 2], "deep": {"k": "v", "k2": None}}, "t": {"now": 1}, "new": []}
    out = await call("pg_jsonb_diff", {"doc1": a, "doc2": b})
    assert out["equal"] is False and out["truncated"] is False
    assert out["added"] == [{"path": ["new"], "value": []}, {"path": ["o", "deep", "k2"], "value": None}]
    assert out["removed"] == [{"path": ["gone"], "value": True}]
    assert out["changed"] == [{"path": ["n"], "from": None, "to": 0}, {"path": ["o", "x"], "from": 1, "to": 2},
                              {"path": ["t"], "from": "s", "to": {"now": 1}}]
    top = await call("pg_jsonb_diff", {"left": a, "right": b, "deep": False})
    assert [c["path"] for c in top["changed"]] == [["n"], ["o"], ["t"]]
    assert (await call("pg_jsonb_diff", {"doc1": {"a": [1]}, "doc2": {"a": [1]}}))["equal"] is True
    scal = await call("pg_jsonb_diff", {"doc1": [1], "doc2": "x"})
    assert scal["changed"] == [{"path": [], "from": [1], "to": "x"}]


async def test_pretty_text_value_and_rows(call: Call, db: Any, schema: str) -> None:
    assert await call("pg_jsonb_pretty", {"json": '{"a": [1, {"b": null}]}'}) == {
        "pretty": '{\n    "a": [\n        1,\n        {\n            "b": null\n        }\n    ]\n}'}
    assert await call("pg_jsonb_pretty", {"value": [1]}) == {"pretty": "[\n    1\n]"}
    rows = await call("pg_jsonb_pretty", {"table": "docs", "schema": schema, "column": "doc", "path": "meta",
                                          "key": {"id": 2}})
    assert rows["rows"] == [{"row": {"id": 2}, "pretty": '{\n    "color": "blue"\n}'}]
    await refused(call, "pg_jsonb_pretty", {"json": "{bad"}, "INVALID_INPUT")
    await refused(call, "pg_jsonb_pretty", {}, "INVALID_INPUT", "table and column")
    await refused(call, "pg_jsonb_pretty", {"json": "1", "table": "docs", "column": "doc"}, "INVALID_INPUT", "not both")
    await refused(call, "pg_jsonb_pretty", {"table": "docs"}, "INVALID_INPUT", "go together")


async def test_typeof_literal_and_column(call: Call, db: Any, schema: str) -> None:
    for value, path, kind in (({"a": [1]}, "a", "array"), ({"a": [1]}, "a[0]", "number"), (None, None, "null"),
                              ("s", None, "string"), ({"a": 1}, "b", "missing"), (True, [], "boolean")):
        assert (await call("pg_jsonb_typeof", {"value": value, "path": path}))["type"] == kind
    out = await call("pg_jsonb_typeof", {"table": "docs", "schema": schema, "column": "doc", "path": "meta"})
    assert out["types"] == {"missing": 3, "object": 2, "string": 1}
    assert [r["type"] for r in out["rows"]] == ["object", "object", "string", "missing", "missing", "missing"]


async def test_validate_path(call: Call) -> None:
    ok = await call("pg_jsonb_validate_path", {"path": "$.items[*] ? (@.qty > $min).name",
                                               "testValue": {"items": [{"qty": 1, "name": "a"},
                                                                       {"qty": 5, "name": "b"}]},
                                               "vars": {"min": 2}})
    assert ok["valid"] is True and ok["mode"] == "lax" and ok["variables"] == ["min"]
    assert ok["missingVariables"] == [] and ok["results"] == ["b"] and ok["count"] == 1
    assert ok["normalized"].startswith("$.\"items\"")
    bad = await call("pg_jsonb_validate_path", {"path": "$.a ? ("})
    assert bad["valid"] is False and "syntax" in bad["error"] and bad["sqlstate"] == "42601"
    strict = await call("pg_jsonb_validate_path", {"path": "strict $.b", "sample": {"a": 1}})
    assert strict["valid"] is True and strict["mode"] == "strict" and "testError" in strict
    novar = await call("pg_jsonb_validate_path", {"path": "$ ? (@ > $x)", "testValue": 1})
    assert novar["missingVariables"] == ["x"] and "testError" in novar


# ---------------------------------------------------------------- keys, normalize


async def test_keys_counts_rows_per_key(call: Call, db: Any, schema: str) -> None:
    out = await call("pg_jsonb_keys", {"table": "docs", "schema": schema, "column": "doc"})
    expect = Counter(k for d in DOCS.values() if isinstance(d, dict) for k in d)
    assert {o["key"]: o["rows"] for o in out["occurrences"]} == dict(expect)
    assert out["keys"][:3] == ["meta", "name", "tags"] and out["rowsScanned"] == 6 and out["objectRows"] == 3
    nested = await call("pg_jsonb_keys", {"table": "docs", "schema": schema, "column": "doc", "path": "meta"})
    assert nested["occurrences"] == [{"key": "color", "rows": 2}, {"key": "size", "rows": 1}]
    cut = await call("pg_jsonb_keys", {"table": "products", "schema": schema, "column": "data", "limit": 2})
    assert len(cut["keys"]) == 2 and cut["truncated"] is True


def flatten(doc: Any, path: tuple[str, ...] = ()) -> list[tuple[list[str], Any]]:
    if isinstance(doc, dict) and doc:
        return [x for k in sorted(doc) for x in flatten(doc[k], (*path, k))]
    if isinstance(doc, list) and doc:
        return [x for i, v in enumerate(doc) for x in flatten(v, (*path, str(i)))]
    return [(list(path), doc)]


async def test_normalize_modes(call: Call, db: Any, schema: str) -> None:
    base = {"table": "docs", "schema": schema, "column": "doc"}
    keys = await call("pg_jsonb_normalize", {**base, "key": {"id": 1}})
    assert [(r["key"], r["value"] if r["value"] is None or r["key"] == "name" else json.loads(r["value"]))
            for r in keys["rows"]] == sorted(DOCS[1].items())
    pairs = await call("pg_jsonb_normalize", {**base, "mode": "pairs", "key": {"id": 2}})
    assert [(r["key"], r["value"], r["type"]) for r in pairs["rows"]] == [
        (k, v, json_type(v)) for k, v in sorted(DOCS[2].items())]
    arr = await call("pg_jsonb_normalize", {**base, "mode": "array"})
    assert [(r["row"]["id"], r["index"], r["value"]) for r in arr["rows"]] == [(5, 0, 1), (5, 1, 2), (5, 2, 3)]
    flat = await call("pg_jsonb_normalize", {**base, "mode": "flatten", "where": "id IN (1, 3)"})
    got = [(r["row"]["id"], r["path"], r["value"]) for r in flat["rows"]]
    assert sorted(got, key=str) == sorted([(i, p, v) for i in (1, 3) for p, v in flatten(DOCS[i])], key=str)
    assert {r["key"] for r in flat["rows"]} >= {"meta.color", "tags.0", "nested.deep.er"}


# ---------------------------------------------------------------- stats, security scan, index suggestions


def gpath(path: tuple[Any, ...]) -> str:
    return "$" + "".join("[*]" if isinstance(p, int) else f".{p}" for p in path)


def walk_doc(doc: Any, path: tuple[Any, ...] = ()) -> list[tuple[tuple[Any, ...], Any]]:
    out: list[tuple[tuple[Any, ...], Any]] = [(path, doc)]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out += walk_doc(v, (*path, k))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out += walk_doc(v, (*path, i))
    return out


def json_type(v: Any) -> str:
    return {dict: "object", list: "array", str: "string", bool: "boolean", type(None): "null"}.get(
        type(v), "number")


async def test_stats_match_a_python_walk_of_the_rows(call: Call, db: Any, schema: str) -> None:
    out = await call("pg_jsonb_stats", {"table": "docs", "schema": schema, "column": "doc"})
    assert (out["sample"]["rows"], out["sample"]["requested"], out["sample"]["method"]) == (6, 1000, "all rows")
    present = [d for d in DOCS.values() if d is not None]
    assert out["documents"] == {"nonNull": 5, "null": 1, "types": dict(Counter(json_type(d) for d in present))}
    expect: dict[str, dict[str, Any]] = {}
    for i, d in enumerate(present):
        for path, v in walk_doc(d)[1:]:
            e = expect.setdefault(gpath(path), {"docs": set(), "occurrences": 0, "types": Counter()})
            e["docs"].add(i)
            e["occurrences"] += 1
            e["types"][json_type(v)] += 1
    got = {k["path"]: k for k in out["keys"]}
    assert set(got) == set(expect)
    for p, e in expect.items():
        assert got[p]["docs"] == len(e["docs"]) and got[p]["occurrences"] == e["occurrences"], p
        assert got[p]["types"] == dict(e["types"]) and got[p]["frequency"] == round(len(e["docs"]) / 5, 4)
    assert out["depth"]["max"] == 3 and out["paths"] == len(expect) and out["truncated"] is False
    sizes = [r[0] for r in q(db, f"SELECT pg_column_size(doc) FROM {schema}.docs WHERE doc IS NOT NULL")]
    assert out["sizeBytes"]["max"] == max(sizes) and out["sizeBytes"]["total"] == sum(sizes)


async def test_stats_samples_big_tables_with_tablesample(call: Call, db: Any, schema: str) -> None:
    db.execute(f"CREATE TABLE {schema}.big AS SELECT g AS id, jsonb_build_object('k', g, 'm', g % 3) AS doc "
               "FROM generate_series(1, 20000) AS g")
    db.execute(f"ANALYZE {schema}.big")
    out = await call("pg_jsonb_stats", {"table": "big", "schema": schema, "column": "doc", "sampleSize": 200,
                                        "seed": 7})
    assert out["sample"]["method"].startswith("TABLESAMPLE BERNOULLI") and 100 < out["sample"]["rows"] <= 200
    assert out["sample"]["tableRowsEstimate"] == 20000
    assert {k["path"]: k["frequency"] for k in out["keys"]} == {"$.k": 1.0, "$.m": 1.0}
    again = await call("pg_jsonb_stats", {"table": "big", "schema": schema, "column": "doc", "sampleSize": 200,
                                          "seed": 7})
    assert again["sample"]["rows"] == out["sample"]["rows"]


SECRETS = {
    1: {"user": {"email": "ann@example.com", "password": "hunter2"}, "note": "fine"},
    2: {"card": "4111 1111 1111 1111", "bad_card": "4111111111111112", "api_key": "",
        "auth": {"token": "abc.def"}},
    3: {"jwt": "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.sig-part", "aws": "AKIAIOSFODNN7EXAMPLE",
        "pem": "-----BEGIN RSA PRIVATE KEY-----\nMIIEow...", "people": {"bob@corp.io": {"ok": True}}},
    4: {"passwordSet": True, "clientSecret": None, "list": [{"ssn": "123-45-6789"}], "epoch": 1700000000000},
}


async def test_security_scan_reports_locations_never_values(call: Call, db: Any, schema: str) -> None:
    db.execute(f"CREATE TABLE {schema}.accounts (id int PRIMARY KEY, profile jsonb)")
    for i, d in SECRETS.items():
        db.execute(f"INSERT INTO {schema}.accounts VALUES (%s, %s)", (i, Jsonb(d)))
    out = await call("pg_jsonb_security_scan", {"table": "accounts", "schema": schema, "column": "profile"})
    found = {(f["row"]["id"], tuple(f["path"]), f["kind"], f["matchedBy"]) for f in out["findings"]}
    assert found == {
        (1, ("user", "email"), "email", "value"), (1, ("user", "password"), "password", "key"),
        (2, ("card",), "credit_card", "value"), (2, ("auth",), "token", "key"),
        (2, ("auth", "token"), "token", "key"),
        (3, ("jwt",), "jwt", "value"), (3, ("aws",), "aws_access_key", "value"),
        (3, ("pem",), "private_key", "value"),
        (4, ("list", "0", "ssn"), "personal_id", "key"), (4, ("list", "0", "ssn"), "ssn", "value"),
    }
    assert out["total"] == len(found) and out["rowsFlagged"] == 4 and out["truncated"] is False
    assert out["byCategory"] == {"secret": 6, "personal": 4} and out["sample"]["rows"] == 4
    text = json.dumps(out)
    for secret in ("ann@example.com", "hunter2", "4111", "eyJ", "AKIA", "MIIE", "abc.def", "123-45-6789",
                   "bob@corp.io"):
        assert secret not in text, secret
    cut = await call("pg_jsonb_security_scan", {"table": "accounts", "schema": schema, "column": "profile",
                                                "limit": 2})
    assert len(cut["findings"]) == 2 and cut["truncated"] is True and cut["total"] == len(found)


async def test_security_scan_redacts_map_keys_that_look_like_values(call: Call, db: Any, schema: str) -> None:
    db.execute(f"CREATE TABLE {schema}.maps (id int PRIMARY KEY, m jsonb)")
    db.execute(f"""INSERT INTO {schema}.maps VALUES (1, '{{"bob@corp.io": {{"password": "pw"}}}}')""")
    out = await call("pg_jsonb_security_scan", {"table": "maps", "schema": schema, "column": "m"})
    assert [(f["path"], f["kind"]) for f in out["findings"]] == [(["(redacted)", "password"], "password")]
    assert "bob@corp.io" not in json.dumps(out)


async def test_index_suggest_from_given_queries_and_sample(call: Call, db: Any, schema: str) -> None:
    base = {"table": "products", "schema": schema, "column": "data"}
    out = await call("pg_jsonb_index_suggest", {**base, "queries": [
        f"SELECT * FROM {schema}.products WHERE data @> '{{\"status\": \"active\"}}'",
        "SELECT * FROM products p WHERE p.data->>'sku' = 'SKU-00001'",
        f"SELECT * FROM {schema}.products WHERE (data->>'price')::numeric > 100 ORDER BY data->>'name'",
        "SELECT * FROM other WHERE data ? 'x'"]})
    assert out["sample"]["rows"] == 50
    kinds = {(s["kind"], s.get("opclass"), s["expression"]) for s in out["suggestions"] if s["confidence"] == "high"}
    assert ("gin", "jsonb_path_ops", "data") in kinds
    assert ("btree", None, "data ->> 'sku'") in kinds and ("btree", None, "(data ->> 'price')::numeric") in kinds
    assert ("btree", None, "data ->> 'name'") in kinds
    assert "?" not in out["queryPatterns"]["operators"]  # that statement reads another table
    assert {k["path"] for k in out["keys"]} == {"$.name", "$.sku", "$.price", "$.status", "$.tags", "$.stock"}
    for s in out["suggestions"]:  # the DDL is real: it runs
        db.execute(s["ddl"])
    again = await call("pg_jsonb_index_suggest", {**base, "queries": [
        f"SELECT * FROM {schema}.products WHERE data @> '{{}}' AND data->>'sku' = 'x'"]})
    assert not [s for s in again["suggestions"] if s["confidence"] == "high"]
    assert len(again["existingIndexes"]) >= len(out["suggestions"])  # every index just built is seen
    key_ops = await call("pg_jsonb_index_suggest", {**base, "queries": [
        f"SELECT 1 FROM {schema}.products WHERE data ?| array['a']"]})
    assert [s["opclass"] for s in key_ops["suggestions"] if s["kind"] == "gin"] == ["jsonb_ops"]


async def test_index_suggest_reads_pg_stat_statements(call: Call, db: Any, schema: str) -> None:
    db.execute(f"CREATE TABLE {schema}.events (id int PRIMARY KEY, payload jsonb)")
    db.execute(f"INSERT INTO {schema}.events SELECT g, jsonb_build_object('kind', 'k' || g % 7, 'n', g) "
               "FROM generate_series(1, 100) g")
    for _ in range(3):
        db.execute(f"SELECT count(*) FROM {schema}.events WHERE payload ? 'kind'").fetchall()
        db.execute(f"SELECT count(*) FROM {schema}.events WHERE payload->>'kind' = 'k1'").fetchall()
    out = await call("pg_jsonb_index_suggest", {"table": "events", "schema": schema, "column": "payload"})
    assert "pg_stat_statements" in out["queryPatterns"]["sources"]
    assert out["queryPatterns"]["operators"].get("?", 0) >= 3
    gin = [s for s in out["suggestions"] if s["kind"] == "gin"]
    assert gin and gin[0]["opclass"] == "jsonb_ops" and gin[0]["confidence"] == "high"
    btree = {s["expression"]: s["confidence"] for s in out["suggestions"] if s["kind"] == "btree"}
    assert btree["payload ->> 'kind'"] == "medium"  # pg_stat_statements hides the key: sampled keys stand in


async def test_index_suggest_without_queries_and_on_json(call: Call, db: Any, schema: str) -> None:
    out = await call("pg_jsonb_index_suggest", {"table": "nopk", "schema": schema, "column": "doc"})
    assert [(s["kind"], s["opclass"], s["confidence"]) for s in out["suggestions"] if s["kind"] == "gin"] == [
        ("gin", "jsonb_path_ops", "low")]
    await refused(call, "pg_jsonb_index_suggest", {"table": "jdocs", "schema": schema, "column": "doc"},
                  "INVALID_INPUT", "not jsonb")


@pytest.mark.parametrize(("name", "args", "fragment"), [
    ("pg_jsonb_contains", {"path": "a..b", "value": 1}, "bad path"),
    ("pg_jsonb_contains", {}, "value"),
    ("pg_jsonb_path_query", {"path": "$", "mode": "all"}, "mode"),
    ("pg_jsonb_path_query", {"path": "$ ? (@ > $x)", "vars": [1]}, "vars"),
    ("pg_jsonb_keys", {"path": "{a,{b}}"}, "bad path"),
    ("pg_jsonb_typeof", {"path": "[x]"}, "bad path"),
    ("pg_jsonb_typeof", {"value": 1}, "not both"),
    ("pg_jsonb_normalize", {"mode": "rows"}, "mode"),
    ("pg_jsonb_normalize", {"limit": 0}, "limit"),
    ("pg_jsonb_stats", {"sampleSize": 0}, "sampleSize"),
    ("pg_jsonb_stats", {"where": "1=1; SELECT 1"}, "where"),
    ("pg_jsonb_security_scan", {"sampleSize": 100_001}, "sampleSize"),
    ("pg_jsonb_security_scan", {"column": "label"}, "not jsonb"),
    ("pg_jsonb_index_suggest", {"queries": ["x"] * 101}, "queries"),
    ("pg_jsonb_strip_nulls", {"previewLimit": 0, "preview": True}, "previewLimit"),
    ("pg_jsonb_strip_nulls", {"key": {"id": 1}, "extra": 1}, "extra"),
])
async def test_bad_input_is_refused_clearly(call: Call, db: Any, schema: str, name: str, args: dict[str, Any],
                                            fragment: str) -> None:
    before = state(db, schema)
    await refused(call, name, {"table": "docs", "schema": schema, "column": "doc", **args}, "INVALID_INPUT",
                  fragment)
    assert state(db, schema) == before


@pytest.mark.parametrize(("name", "args", "fragment"), [
    ("pg_jsonb_object", {}, "data"),
    ("pg_jsonb_object", {"data": 5}, "data"),
    ("pg_jsonb_array", {"values": {"a": 1}}, "values"),
    ("pg_jsonb_validate_path", {"path": ""}, "path"),
    ("pg_jsonb_merge", {"base": {}}, "overlay"),
    ("pg_jsonb_merge", {"base": {}, "overlay": "x"}, "overlay"),
    ("pg_jsonb_diff", {"doc1": 1}, "doc2"),
    ("pg_jsonb_pretty", {"value": 1, "json": "1"}, "not both"),
    ("pg_jsonb_typeof", {}, "table and column"),
])
async def test_bad_values_are_refused_clearly(call: Call, name: str, args: dict[str, Any], fragment: str) -> None:
    await refused(call, name, args, "INVALID_INPUT", fragment)


async def test_index_suggest_says_when_pg_stat_statements_is_missing(call: Call, db: Any, schema: str,
                                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    from pgcode.db.pool import Capabilities

    real = Capabilities.has_extension
    monkeypatch.setattr(Capabilities, "has_extension",
                        lambda self, name: False if name == "pg_stat_statements" else real(self, name))
    out = await call("pg_jsonb_index_suggest", {"table": "products", "schema": schema, "column": "data"})
    assert out["queryPatterns"]["sources"] == []
    assert any("pg_stat_statements is not installed" in n for n in out["notes"])


# ---------------------------------------------------------------- injection through identifiers


EVIL_NAMES = ['x"; DROP TABLE victim; --', "docs; DROP TABLE victim", "docs --", "docs /* */", "docs)",
              "doc) OR (1=1", "d\u043ecs", "\uff44\uff4f\uff43\uff53", "docs\u200b", "'docs'",
              "docs\" WHERE \"1", "docs\u037e DROP TABLE victim"]  # Cyrillic o, fullwidth, zero-width, Greek ;

_TABLE_TOOLS: dict[str, dict[str, Any]] = {
    "pg_jsonb_extract": {"path": "a"},
    "pg_jsonb_set": {"path": "a", "value": 1, "key": {"id": 1}},
    "pg_jsonb_insert": {"path": "zz", "value": 1, "key": {"id": 1}},
    "pg_jsonb_delete": {"path": "a", "key": {"id": 1}},
    "pg_jsonb_contains": {"value": {}},
    "pg_jsonb_path_query": {"path": "$"},
    "pg_jsonb_keys": {},
    "pg_jsonb_strip_nulls": {"key": {"id": 1}},
    "pg_jsonb_typeof": {},
    "pg_jsonb_normalize": {},
    "pg_jsonb_index_suggest": {},
    "pg_jsonb_security_scan": {},
    "pg_jsonb_stats": {},
    "pg_jsonb_pretty": {},
}


async def test_injection_through_every_identifier_fails_cleanly(call: Call, db: Any, schema: str) -> None:
    before = state(db, schema)
    for name, extra in _TABLE_TOOLS.items():
        for evil in EVIL_NAMES:
            for args in ({"table": evil, "schema": schema, "column": "doc", **extra},
                         {"table": "docs", "schema": evil, "column": "doc", **extra},
                         {"table": "docs", "schema": schema, "column": evil, **extra},
                         {"table": "docs", "schema": schema, "column": "doc", **extra,
                          "key": {evil: 1}} if name not in ("pg_jsonb_index_suggest", "pg_jsonb_security_scan",
                                                            "pg_jsonb_stats") else None):
                if args is None:
                    continue
                with pytest.raises(ToolError) as exc:
                    await call(name, args)
                assert exc.value.code.value in ("NOT_FOUND", "INVALID_INPUT"), (name, args, exc.value)
    for evil in EVIL_NAMES:
        for args in ({"table": evil, "schema": schema}, {"table": "docs", "schema": schema, "columns": [evil]},
                     {"table": "docs", "schema": schema, "groupBy": evil},
                     {"table": "docs", "schema": schema, "orderBy": [{"column": evil}]}):
            with pytest.raises(ToolError) as exc:
                await call("pg_jsonb_agg", args)
            assert exc.value.code.value in ("NOT_FOUND", "INVALID_INPUT"), (args, exc.value)
    await refused(call, "pg_jsonb_agg", {"table": "docs", "schema": schema,
                                         "orderBy": [{"column": "id", "direction": "; DROP TABLE victim"}]},
                  "INVALID_INPUT")
    assert state(db, schema) == before


async def test_odd_but_real_identifiers_work(call: Call, db: Any, schema: str) -> None:
    db.execute(sql.SQL('CREATE TABLE {} (id int PRIMARY KEY, "da""ta; x" jsonb)').format(
        sql.Identifier(schema, 'we"ird; tbl')))
    db.execute(sql.SQL("INSERT INTO {} VALUES (1, '{{\"a\": 1}}')").format(sql.Identifier(schema, 'we"ird; tbl')))
    out = await call("pg_jsonb_set", {"table": 'we"ird; tbl', "schema": schema, "column": 'da"ta; x', "path": "a",
                                      "value": 2, "key": {"id": 1}})
    assert out["rowsChanged"] == 1
    got = await call("pg_jsonb_extract", {"table": 'we"ird; tbl', "schema": schema, "column": 'da"ta; x',
                                          "path": "a"})
    assert got["rows"] == [{"row": {"id": 1}, "value": 2}]
    assert_victim(db, schema)


# ---------------------------------------------------------------- scopes


JSONB_TOOLS = sorted(s.name for s in load_registry() if s.group == "jsonb")


def test_the_group_has_its_twenty_tools_and_array_append() -> None:
    assert len(JSONB_TOOLS) == 21 and "pg_jsonb_array_append" in JSONB_TOOLS  # arrayAppend: a seed name


@pytest.mark.parametrize("name", JSONB_TOOLS)
async def test_scope_one_level_below_is_forbidden(call: Call, name: str) -> None:
    spec = load_registry().get(name)
    assert spec is not None
    below = NOBODY if spec.scope is Scope.READ else READER
    await refused(call, name, {}, "FORBIDDEN", spec.scope.value, principal=below)


async def test_read_tools_run_for_a_reader(call: Call, db: Any, schema: str) -> None:
    out = await call("pg_jsonb_extract", {"table": "docs", "schema": schema, "column": "doc", "path": "name"},
                     principal=READER)
    assert out["count"] == 6
