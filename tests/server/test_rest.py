"""REST face end to end: catalog, calls, error statuses, health, OpenAPI."""

from __future__ import annotations

from typing import Any

import httpx2
import psycopg
import pytest

pytestmark = pytest.mark.anyio


async def test_list_tools_shows_catalog_with_schemas(http: httpx2.AsyncClient) -> None:
    resp = await http.get("/v1/tools")
    assert resp.status_code == 200
    body = resp.json()
    names = {t["name"] for t in body["tools"]}
    assert {"pg_read_query", "pg_list_tables", "pg_transaction_begin"} <= names
    assert body["count"] == len(body["tools"])
    read = next(t for t in body["tools"] if t["name"] == "pg_read_query")
    assert read["method"] == "pg.core.readQuery" and read["effect"] == "read" and read["scope"] == "read"
    assert "sql" in read["inputSchema"]["properties"]


async def test_get_one_tool_and_unknown_tool(http: httpx2.AsyncClient) -> None:
    resp = await http.get("/v1/tools/pg_drop_table")
    assert resp.status_code == 200 and resp.json()["effect"] == "destructive"
    missing = await http.get("/v1/tools/pg_nope")
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "NOT_FOUND"


async def test_call_returns_the_tool_result(http: httpx2.AsyncClient) -> None:
    resp = await http.post("/v1/tools/pg_read_query", json={"sql": "SELECT $1::int + 1 AS n", "params": [41]})
    assert resp.status_code == 200
    assert resp.json() == {"rows": [{"n": 42}], "rowCount": 1, "fields": [{"name": "n", "type": "int4"}],
                           "truncated": False}


async def test_list_results_stay_lists_over_rest(http: httpx2.AsyncClient, schema: str,
                                                 conn: psycopg.Connection[Any]) -> None:
    conn.execute(f'CREATE TABLE "{schema}".listed (id int)')
    resp = await http.post("/v1/tools/pg_list_tables", json={"schema": schema})
    assert resp.status_code == 200
    assert [t["name"] for t in resp.json()] == ["listed"]


@pytest.mark.parametrize(("path", "body", "status", "code"), [
    ("/v1/tools/pg_read_query", {"sql": "DELETE FROM pg_class"}, 400, "INVALID_INPUT"),
    ("/v1/tools/pg_read_query", {"sql": "SELECT 1", "bogus": 1}, 400, "INVALID_INPUT"),
    ("/v1/tools/pg_read_query", {"sql": "SELECT * FROM no_such_table_here"}, 404, "NOT_FOUND"),
    ("/v1/tools/pg_unknown", {}, 404, "NOT_FOUND"),
    ("/v1/tools/pg_read_query", {"sql": "SELECT 1/0"}, 400, "INVALID_INPUT"),
])
async def test_errors_map_to_statuses_with_one_json_shape(http: httpx2.AsyncClient, path: str,
                                                          body: dict[str, Any], status: int, code: str) -> None:
    resp = await http.post(path, json=body)
    assert resp.status_code == status
    error = resp.json()["error"]
    assert error["code"] == code and error["message"]
    assert set(error) <= {"code", "message", "hint", "details"}


async def test_bad_json_body_is_invalid_input(http: httpx2.AsyncClient) -> None:
    resp = await http.post("/v1/tools/pg_read_query", content=b"{not json",
                           headers={"content-type": "application/json"})
    assert resp.status_code == 400 and resp.json()["error"]["code"] == "INVALID_INPUT"


async def test_healthz_reports_database_and_version(http: httpx2.AsyncClient, dsn: str) -> None:
    resp = await http.get("/healthz")
    assert resp.status_code == 200
    body = resp.json()
    with psycopg.connect(dsn) as c:
        row = c.execute("SHOW server_version").fetchone()
    assert body["status"] == "ok" and row is not None and body["serverVersion"] == row[0]
    assert "postgres" not in str(body).lower().replace("postgresql", "")  # no connection string or user


async def test_openapi_has_one_operation_per_tool(http: httpx2.AsyncClient) -> None:
    doc = (await http.get("/openapi.json")).json()
    assert doc["openapi"].startswith("3.1")
    tools = (await http.get("/v1/tools")).json()["tools"]
    tool_paths = {p for p in doc["paths"] if p.startswith("/v1/tools/") and p != "/v1/tools/{name}"}
    assert tool_paths == {f"/v1/tools/{t['name']}" for t in tools}
    op = doc["paths"]["/v1/tools/pg_create_table"]["post"]
    ref = op["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    schema = doc["components"]["schemas"][ref.rsplit("/", 1)[-1]]
    assert "columns" in schema["properties"]
    for ref in _refs(doc):  # every $ref resolves inside the document
        target = doc
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        own = [node["$ref"]] if isinstance(node.get("$ref"), str) else []
        return own + [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []
