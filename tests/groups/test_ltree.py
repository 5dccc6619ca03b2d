"""ltree group: tree queries on a small tree with exact rows, path functions, GiST indexes and column conversion."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgcode.core.runtime import Runtime
from pgcode.errors import ToolError
from pgcode.types import LOCAL_PRINCIPAL, Principal, Scope
from tests.fix_db import Call, assert_tool_error

pytestmark = pytest.mark.anyio

READER = Principal.with_scope("reader", Scope.READ)
WRITER = Principal.with_scope("writer", Scope.WRITE)
TREE = ["Top", "Top.Science", "Top.Science.Astronomy", "Top.Science.Astronomy.Stars", "Top.Science.Physics",
        "Top.Hobbies", "Top.Hobbies.Amateurs_Astronomy", "Other"]


@pytest.fixture(scope="module")
def tree(dsn: str, schema: str) -> Iterator[str]:
    """schema.tree (id, path ltree) holding TREE, with ids 1..8 in that order."""
    with psycopg.connect(dsn, autocommit=True) as c:
        if not c.execute("SELECT 1 FROM pg_extension WHERE extname = 'ltree'").fetchone():
            pytest.skip("the ltree tools need the ltree extension, which this database lacks")
        t = sql.Identifier(schema, "tree")
        c.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, path ltree NOT NULL, name text)").format(t))
        for i, p in enumerate(TREE, 1):
            c.execute(sql.SQL("INSERT INTO {} VALUES (%s, %s, %s)").format(t), (i, p, p.rsplit(".", 1)[-1]))
    yield f"{schema}.tree"


def paths(out: dict[str, Any]) -> list[str]:
    return [r["path"] for r in out["rows"]]


async def test_create_extension_is_a_no_op_when_there(call: Call, rt: Runtime, tree: str) -> None:
    out = await call("pg_ltree_create_extension", {})
    assert out["created"] is False and out["extension"] == "ltree" and out["version"]
    assert rt.db.caps.has_extension("ltree")
    with pytest.raises(ToolError) as exc:
        await call("pg_ltree_create_extension", {}, WRITER)
    assert_tool_error(exc, "FORBIDDEN")


async def test_descendants_ancestors_exact_and_lquery(call: Call, tree: str) -> None:
    base = {"table": tree, "column": "path"}
    out = await call("pg_ltree_query", {**base, "path": "Top.Science"}, READER)
    assert paths(out) == ["Top.Science", "Top.Science.Astronomy", "Top.Science.Astronomy.Stars",
                          "Top.Science.Physics"]
    assert out["rowCount"] == 4 and out["truncated"] is False and out["rows"][0]["_depth"] == 2
    assert out["rows"][0]["name"] == "Science" and out["rows"][0]["id"] == 2
    out = await call("pg_ltree_query", {**base, "path": "Top.Science", "includeSelf": False})
    assert paths(out) == ["Top.Science.Astronomy", "Top.Science.Astronomy.Stars", "Top.Science.Physics"]
    out = await call("pg_ltree_query", {**base, "path": "Top.Science.Astronomy", "relation": "ancestors"})
    assert paths(out) == ["Top", "Top.Science", "Top.Science.Astronomy"]
    out = await call("pg_ltree_query", {**base, "path": "Top.Hobbies", "relation": "exact"})
    assert paths(out) == ["Top.Hobbies"]
    out = await call("pg_ltree_query", {**base, "path": "*.Astronomy.*", "relation": "lquery"})
    assert paths(out) == ["Top.Science.Astronomy", "Top.Science.Astronomy.Stars"]
    out = await call("pg_ltree_query", {**base, "path": "Top", "limit": 3, "where": "id <> 2"})
    assert paths(out) == ["Top", "Top.Hobbies", "Top.Hobbies.Amateurs_Astronomy"] and out["truncated"] is True


async def test_ancestors_tool(call: Call, tree: str) -> None:
    base = {"table": tree, "column": "path"}
    out = await call("pg_ltree_ancestors", {**base, "path": "Top.Science.Astronomy.Stars"}, READER)
    assert paths(out) == ["Top", "Top.Science", "Top.Science.Astronomy", "Top.Science.Astronomy.Stars"]
    assert [r["_depth"] for r in out["rows"]] == [1, 2, 3, 4]
    out = await call("pg_ltree_ancestors", {**base, "path": "Top.Science.Chemistry", "includeSelf": False})
    assert paths(out) == ["Top", "Top.Science"]
    assert paths(await call("pg_ltree_ancestors", {**base, "path": "Nowhere.Else"})) == []


async def test_query_bad_input(call: Call, tree: str) -> None:
    base = {"table": tree, "column": "path"}
    with pytest.raises(ToolError) as exc:
        await call("pg_ltree_query", {**base, "path": "Top..Science"})
    assert_tool_error(exc, "INVALID_INPUT", "not a valid ltree")
    with pytest.raises(ToolError) as exc:
        await call("pg_ltree_query", {**base, "path": "Top.[", "relation": "lquery"})
    assert_tool_error(exc, "INVALID_INPUT", "not a valid lquery")
    with pytest.raises(ToolError) as exc:
        await call("pg_ltree_query", {**base, "column": "name", "path": "Top"})
    assert_tool_error(exc, "INVALID_INPUT", "not ltree")
    with pytest.raises(ToolError) as exc:
        await call("pg_ltree_query", {**base, "column": "nope", "path": "Top"})
    assert_tool_error(exc, "NOT_FOUND", "nope")
    with pytest.raises(ToolError) as exc:
        await call("pg_ltree_query", {**base, "path": "Top", "relation": "siblings"})
    assert_tool_error(exc, "INVALID_INPUT", "relation")
    with pytest.raises(ToolError) as exc:
        await call("pg_ltree_query", {**base, "path": "Top", "where": "pg_read_file('/etc/passwd') IS NULL"})
    assert_tool_error(exc, "INVALID_INPUT")


async def test_match(call: Call, tree: str) -> None:
    base = {"table": tree, "column": "path"}
    out = await call("pg_ltree_match", {**base, "pattern": "Top.*{1}"}, READER)
    assert paths(out) == ["Top.Hobbies", "Top.Science"]
    out = await call("pg_ltree_match", {**base, "pattern": "Top.!Science"})
    assert paths(out) == ["Top.Hobbies"]
    out = await call("pg_ltree_match", {**base, "pattern": "*.Astronomy|Physics"})
    assert paths(out) == ["Top.Science.Astronomy", "Top.Science.Physics"]
    with pytest.raises(ToolError) as exc:
        await call("pg_ltree_match", {**base, "pattern": "a{"})
    assert_tool_error(exc, "INVALID_INPUT", "lquery")


async def test_subpath(call: Call, tree: str) -> None:
    p = "Top.Science.Astronomy.Stars"
    out = await call("pg_ltree_subpath", {"path": p, "offset": 1, "length": 2}, READER)
    assert out == {"path": p, "subpath": "Science.Astronomy", "offset": 1, "length": 2, "depth": 4}
    assert (await call("pg_ltree_subpath", {"path": p, "offset": 2}))["subpath"] == "Astronomy.Stars"
    assert (await call("pg_ltree_subpath", {"path": p, "offset": -1}))["subpath"] == "Stars"
    assert (await call("pg_ltree_subpath", {"path": p, "offset": 0, "length": -1}))["subpath"] == \
        "Top.Science.Astronomy"
    for bad in ({"offset": 4}, {"offset": 1, "length": 9}, {"offset": -5}):
        with pytest.raises(ToolError) as exc:
            await call("pg_ltree_subpath", {"path": p, **bad})
        assert_tool_error(exc, "INVALID_INPUT", "4 label(s)")
    with pytest.raises(ToolError) as exc:
        await call("pg_ltree_subpath", {"path": "a b"})
    assert_tool_error(exc, "INVALID_INPUT", "not a valid ltree")


async def test_lca(call: Call, tree: str) -> None:
    out = await call("pg_ltree_lca", {"paths": ["Top.Science.Astronomy.Stars", "Top.Science.Physics"]}, READER)
    assert out == {"lca": "Top.Science", "depth": 2, "paths": 2}
    # ltree's lca is a proper ancestor: of a path and its child, the path's parent.
    assert (await call("pg_ltree_lca", {"paths": ["Top.A", "Top.A.B"]}))["lca"] == "Top"
    assert (await call("pg_ltree_lca", {"paths": ["Top.A", "Other.B"]})) == {"lca": "", "depth": 0, "paths": 2}
    with pytest.raises(ToolError) as exc:
        await call("pg_ltree_lca", {"paths": []})
    assert_tool_error(exc, "INVALID_INPUT", "paths")
    with pytest.raises(ToolError) as exc:
        await call("pg_ltree_lca", {"paths": ["Top", "bad path"]})
    assert_tool_error(exc, "INVALID_INPUT", "'bad path'")


async def test_list_columns(call: Call, tree: str, schema: str, conn: psycopg.Connection[Any]) -> None:
    conn.execute(sql.SQL("CREATE TABLE {} (tags ltree[], label text)").format(sql.Identifier(schema, "multi")))
    out = await call("pg_ltree_list_columns", {"schema": schema}, READER)
    found = {(c["table"], c["column"]): c for c in out["columns"]}
    assert set(found) >= {("tree", "path"), ("multi", "tags")} and ("multi", "label") not in found
    assert found[("tree", "path")]["type"] == "ltree" and found[("tree", "path")]["nullable"] is False
    assert found[("multi", "tags")]["type"] == "ltree[]" and out["truncated"] is False
    assert (await call("pg_ltree_list_columns", {"schema": schema, "limit": 1}))["truncated"] is True


async def test_create_index(call: Call, tree: str, schema: str, conn: psycopg.Connection[Any]) -> None:
    args = {"table": tree, "column": "path", "name": "tree_path_gist"}
    with pytest.raises(ToolError) as exc:
        await call("pg_ltree_create_index", args, WRITER)
    assert_tool_error(exc, "FORBIDDEN")
    out = await call("pg_ltree_create_index", args)
    assert out["created"] is True and out["method"] == "gist" and out["valid"] is True
    assert "USING gist (path)" in out["definition"]
    row = conn.execute("SELECT am.amname FROM pg_class c JOIN pg_am am ON am.oid = c.relam "
                       "WHERE c.relname = 'tree_path_gist' AND c.relnamespace = %s::regnamespace", (schema,)).fetchone()
    assert row == ("gist",)
    with pytest.raises(ToolError) as exc:
        await call("pg_ltree_create_index", args)
    assert_tool_error(exc, "ALREADY_EXISTS", "tree_path_gist")
    assert (await call("pg_ltree_create_index", {**args, "ifNotExists": True}))["created"] is False
    with pytest.raises(ToolError) as exc:
        await call("pg_ltree_create_index", {**args, "column": "name", "name": "x"})
    assert_tool_error(exc, "INVALID_INPUT", "not ltree")
    out = await call("pg_ltree_create_index", {"table": tree, "column": "path"})
    assert out["index"] == "tree_path_gist_idx" and out["valid"] is True
    conn.execute(sql.SQL("DROP INDEX {}").format(sql.Identifier(schema, "tree_path_gist_idx")))


# ---------------------------------------------------------------- convert_column


def make_text_table(conn: psycopg.Connection[Any], schema: str, name: str, values: list[str | None]) -> sql.Identifier:
    t = sql.Identifier(schema, name)
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(t))
    conn.execute(sql.SQL("CREATE TABLE {} (id serial PRIMARY KEY, path text DEFAULT 'Top')").format(t))
    for v in values:
        conn.execute(sql.SQL("INSERT INTO {} (path) VALUES (%s)").format(t), (v,))
    return t


def column_type(conn: psycopg.Connection[Any], schema: str, table: str) -> str:
    row = conn.execute("SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attname = 'path' "
                       "AND attrelid = (SELECT oid FROM pg_class WHERE relname = %s AND relnamespace = "
                       "%s::regnamespace)", (table, schema)).fetchone()
    assert row is not None
    return str(row[0])


async def test_convert_keeps_indexes_and_constraints(call: Call, tree: str, schema: str,
                                                     conn: psycopg.Connection[Any]) -> None:
    t = make_text_table(conn, schema, "conv", ["Top.A", "Top.A.B", "Top.C"])
    conn.execute(sql.SQL("CREATE UNIQUE INDEX conv_path_key ON {} (path)").format(t))
    conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT conv_not_root CHECK (id > 0 AND path IS NOT NULL)"
                         ).format(t))
    args = {"table": "conv", "schema": schema, "column": "path"}
    with pytest.raises(ToolError) as exc:
        await call("pg_ltree_convert_column", args, WRITER)
    assert_tool_error(exc, "FORBIDDEN")
    out = await call("pg_ltree_convert_column", args)
    assert out["from"] == "text" and out["to"] == "ltree" and out["rows"] == 3
    kinds = {(d["kind"], d["name"]) for d in out["dependents"]}
    assert {("index", f"{schema}.conv_path_key"), ("check", "conv_not_root"), ("default", "path")} <= kinds
    assert column_type(conn, schema, "conv") == "ltree"
    conn.execute(sql.SQL("INSERT INTO {} DEFAULT VALUES").format(t))  # the default still works, as ltree
    assert conn.execute(sql.SQL("SELECT count(*) FROM {} WHERE path = 'Top'").format(t)).fetchone() == (1,)
    # The unique index and the check constraint still hold, now on ltree values.
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(sql.SQL("INSERT INTO {} (path) VALUES ('Top.A')").format(t))
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(sql.SQL("INSERT INTO {} (path) VALUES (NULL)").format(t))
    got = conn.execute(sql.SQL("SELECT path::text FROM {} WHERE path <@ 'Top.A' ORDER BY path").format(t)).fetchall()
    assert got == [("Top.A",), ("Top.A.B",)]
    out = await call("pg_ltree_query", {"table": "conv", "schema": schema, "column": "path", "path": "Top"})
    assert paths(out) == ["Top", "Top.A", "Top.A.B", "Top.C"]
    with pytest.raises(ToolError) as exc:
        await call("pg_ltree_convert_column", args)
    assert_tool_error(exc, "INVALID_INPUT", "already ltree")


async def test_convert_refuses_invalid_values(call: Call, tree: str, schema: str,
                                              conn: psycopg.Connection[Any]) -> None:
    make_text_table(conn, schema, "conv_bad", ["Top.A", "Top..B", "has space", "Top.C", "has space"])
    with pytest.raises(ToolError) as exc:
        await call("pg_ltree_convert_column", {"table": f"{schema}.conv_bad", "column": "path"})
    err = assert_tool_error(exc, "INVALID_INPUT", "3 row(s)", "nothing was changed")
    assert err.details["invalidRows"] == 3 and set(err.details["examples"]) == {"Top..B", "has space"}
    assert column_type(conn, schema, "conv_bad") == "text"


async def test_convert_refuses_and_names_a_view(call: Call, tree: str, schema: str,
                                                conn: psycopg.Connection[Any]) -> None:
    t = make_text_table(conn, schema, "conv_view", ["Top.A"])
    conn.execute(sql.SQL("CREATE VIEW {} AS SELECT id, path FROM {}").format(
        sql.Identifier(schema, "conv_view_v"), t))
    with pytest.raises(ToolError) as exc:
        await call("pg_ltree_convert_column", {"table": f"{schema}.conv_view", "column": "path"})
    err = assert_tool_error(exc, "CONFLICT", f"view {schema}.conv_view_v", "nothing was changed")
    assert err.details["blocking"][0]["kind"] == "view"
    assert column_type(conn, schema, "conv_view") == "text"
    assert conn.execute(sql.SQL("SELECT path FROM {}").format(sql.Identifier(schema, "conv_view_v"))).fetchall() \
        == [("Top.A",)]


async def test_convert_refuses_a_text_only_index_and_changes_nothing(call: Call, tree: str, schema: str,
                                                                     conn: psycopg.Connection[Any]) -> None:
    t = make_text_table(conn, schema, "conv_expr", ["Top.A"])
    conn.execute(sql.SQL("CREATE INDEX conv_expr_lower ON {} (lower(path))").format(t))
    with pytest.raises(ToolError) as exc:
        await call("pg_ltree_convert_column", {"table": f"{schema}.conv_expr", "column": "path"})
    err = assert_tool_error(exc, "CONFLICT", "could not be converted", "nothing was changed")
    assert any(d["name"] == f"{schema}.conv_expr_lower" for d in err.details["dependents"])
    assert column_type(conn, schema, "conv_expr") == "text"
    t = make_text_table(conn, schema, "conv_check", ["Top.A"])
    conn.execute(sql.SQL("ALTER TABLE {} ADD CONSTRAINT conv_check_len CHECK (length(path) < 100)").format(t))
    with pytest.raises(ToolError) as exc:
        await call("pg_ltree_convert_column", {"table": f"{schema}.conv_check", "column": "path"})
    err = assert_tool_error(exc, "CONFLICT", "length(ltree)", "nothing was changed")
    assert ("check", "conv_check_len") in {(d["kind"], d["name"]) for d in err.details["dependents"]}
    assert column_type(conn, schema, "conv_check") == "text"
    with pytest.raises(ToolError) as exc:
        await call("pg_ltree_convert_column", {"table": f"{schema}.conv_expr", "column": "id"})
    assert_tool_error(exc, "INVALID_INPUT", "not text")


# ---------------------------------------------------------------- scope and code mode


async def test_read_tools_refuse_a_principal_without_read(call: Call, tree: str) -> None:
    nobody = Principal("nobody", frozenset())
    with pytest.raises(ToolError) as exc:
        await call("pg_ltree_ancestors", {"table": tree, "column": "path", "path": "Top"}, nobody)
    assert_tool_error(exc, "FORBIDDEN")


async def test_code_mode_ltree_query_and_ancestors(rt: Runtime, tree: str) -> None:
    code = f"""
      const d = await pg.ltree.ltreeQuery({{table: '{tree}', column: 'path', path: 'Top.Hobbies'}});
      const a = await pg.ltree.ltreeAncestors({{table: '{tree}', column: 'path', path: 'Top.Science.Physics'}});
      const q = await pg.ltree.query({{table: '{tree}', column: 'path', path: 'Top.Science', relation: 'ancestors'}});
      return {{d: d.rows.map(r => r.path), a: a.rows.map(r => r.path), q: q.rows.map(r => r.path)}};
    """
    out = await rt.invoke("pg_execute_code", {"code": code, "readonly": True}, LOCAL_PRINCIPAL)
    assert out["success"], out.get("error")
    assert out["result"] == {"d": ["Top.Hobbies", "Top.Hobbies.Amateurs_Astronomy"],
                             "a": ["Top", "Top.Science", "Top.Science.Physics"], "q": ["Top", "Top.Science"]}
