"""pg_jsonb_array_append: appends to the array at a path in the chosen rows, and refuses rows without an array there."""

from __future__ import annotations

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
ROWS = [
    (1, {"tags": ["a"], "meta": {"list": [1]}}),
    (2, {"tags": [], "meta": {"list": []}}),
    (3, {"tags": "not-an-array", "meta": {"list": [2]}}),
    (4, {"tags": {"k": 1}}),
]


@pytest.fixture
def table(conn: psycopg.Connection[Any], schema: str) -> str:
    t = sql.Identifier(schema, "docs")
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {0}; CREATE TABLE {0} (id int PRIMARY KEY, doc jsonb, arr jsonb)"
                         ).format(t))
    for i, doc in ROWS:
        conn.execute(sql.SQL("INSERT INTO {} VALUES (%s, %s, '[0]')").format(t), (i, psycopg.types.json.Jsonb(doc)))
    return f"{schema}.docs"


def docs(conn: psycopg.Connection[Any], table: str) -> dict[int, Any]:
    return {r[0]: r[1] for r in conn.execute(f"SELECT id, doc FROM {table} ORDER BY id")}


async def test_appends_at_a_path(call: Call, conn: psycopg.Connection[Any], table: str) -> None:
    out = await call("pg_jsonb_array_append", {"table": table, "column": "doc", "path": "tags", "value": "b",
                                               "where": "id IN (1, 2)"}, WRITER)
    assert out == {"rowsChanged": 2, "rowsMatched": 2, "table": table, "column": "doc", "path": ["tags"]}
    got = docs(conn, table)
    assert got[1]["tags"] == ["a", "b"] and got[2]["tags"] == ["b"] and got[3]["tags"] == "not-an-array"
    # An array value is appended as one element; nested paths and key selection work as in the other tools.
    out = await call("pg_jsonb_array_append", {"table": table, "column": "doc", "path": ["meta", "list"],
                                               "value": [3, {"x": None}], "key": {"id": 1}})
    assert out["rowsChanged"] == 1 and docs(conn, table)[1]["meta"]["list"] == [1, [3, {"x": None}]]


async def test_appends_to_the_column_itself(call: Call, conn: psycopg.Connection[Any], table: str) -> None:
    out = await call("pg_jsonb_array_append", {"table": table, "column": "arr", "path": [], "value": {"n": 1},
                                               "allRows": True})
    assert out["rowsChanged"] == 4
    assert {r[0] for r in conn.execute(f"SELECT arr::text FROM {table}")} == {'[0, {"n": 1}]'}


async def test_refuses_rows_without_an_array_and_changes_nothing(call: Call, conn: psycopg.Connection[Any],
                                                                 table: str) -> None:
    before = docs(conn, table)
    with pytest.raises(ToolError) as exc:
        await call("pg_jsonb_array_append", {"table": table, "column": "doc", "path": "tags", "value": 1,
                                             "where": "id >= 2"})
    err = assert_tool_error(exc, "INVALID_INPUT", "not an array in 2 row(s)", "nothing was changed")
    found = {f["type"]: f for f in err.details["found"]}
    assert set(found) == {"string", "object"} and found["string"]["examples"] == [{"id": 3}]
    with pytest.raises(ToolError) as exc:  # row 4 has no meta at all
        await call("pg_jsonb_array_append", {"table": table, "column": "doc", "path": "meta.list", "value": 1,
                                             "where": "id > 2"})
    assert_tool_error(exc, "INVALID_INPUT", "nothing was changed")
    assert docs(conn, table) == before


async def test_needs_a_row_choice_and_write_scope(call: Call, conn: psycopg.Connection[Any], table: str) -> None:
    before = docs(conn, table)
    with pytest.raises(ToolError) as exc:
        await call("pg_jsonb_array_append", {"table": table, "column": "doc", "path": "tags", "value": 1})
    assert_tool_error(exc, "INVALID_INPUT", "allRows")
    with pytest.raises(ToolError) as exc:
        await call("pg_jsonb_array_append", {"table": table, "column": "doc", "path": "tags", "value": 1,
                                             "where": "id = 1"}, READER)
    assert_tool_error(exc, "FORBIDDEN")
    with pytest.raises(ToolError) as exc:
        await call("pg_jsonb_array_append", {"table": table, "column": "doc", "path": "tags", "value": 1,
                                             "where": "id = 99"})
    assert_tool_error(exc, "NOT_FOUND")
    assert docs(conn, table) == before


async def test_code_mode_array_append(rt: Runtime, conn: psycopg.Connection[Any], table: str) -> None:
    code = (f"return await pg.jsonb.arrayAppend({{table: '{table}', column: 'doc', path: 'tags', value: 'z', "
            "where: 'id = 1'});")
    out = await rt.invoke("pg_execute_code", {"code": code, "readonly": False}, LOCAL_PRINCIPAL)
    assert out["success"], out.get("error")
    assert out["result"]["rowsChanged"] == 1 and docs(conn, table)[1]["tags"] == ["a", "z"]
