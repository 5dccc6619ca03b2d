"""/openapi.json describes every HTTP route with request and response schemas, answers validate against them,
/docs renders it without anything from elsewhere, and / says what the server is."""

from __future__ import annotations

import re
from typing import Any

import httpx2
import jsonschema
import pytest
from starlette.applications import Starlette
from starlette.routing import Route

pytestmark = pytest.mark.anyio


def _check(doc: dict[str, Any], model: str, value: Any) -> None:
    """Validate `value` against components/schemas/<model> of `doc` (its refs resolved inside the document)."""
    schema = {"$ref": f"#/components/schemas/{model}", "components": doc["components"]}
    jsonschema.Draft202012Validator(schema).validate(value)


def _response(doc: dict[str, Any], response: dict[str, Any]) -> dict[str, Any]:
    if "$ref" in response:
        found: dict[str, Any] = doc["components"]["responses"][response["$ref"].rsplit("/", 1)[-1]]
        return found
    return response


async def test_every_route_is_described_with_schemas(app: Starlette, http: httpx2.AsyncClient) -> None:
    doc = (await http.get("/openapi.json")).json()
    assert doc["openapi"] == "3.1.0"
    paths = doc["paths"]
    tools = [t["name"] for t in (await http.get("/v1/tools")).json()["tools"]]
    for route in app.routes:
        assert isinstance(route, Route)
        methods = sorted((route.methods or {"POST"}) - {"HEAD"})
        for method in methods:
            if route.path == "/v1/tools/{name}" and method == "POST":  # one operation per tool
                assert all(f"/v1/tools/{name}" in paths for name in tools)
                continue
            assert route.path in paths and method.lower() in paths[route.path], (route.path, method)
    for path, ops in paths.items():
        for method, op in ops.items():
            assert op["summary"] and op["responses"], (path, method)
            body = op.get("requestBody")
            if body is not None:
                assert body["content"]["application/json"]["schema"], (path, method)
            ok = _response(doc, next(r for code, r in op["responses"].items() if code.startswith("2")))
            assert (ok["description"] and ok.get("content", {})) or path == "/mcp", (path, method)
            if path.startswith("/v1"):
                error = _response(doc, op["responses"]["default"])
                assert error["content"]["application/json"]["schema"]["$ref"].endswith("/Error")
    for name in ("/v1/execute", "/v1/validate", "/v1/scripts", "/v1/scripts/{ref}/run", "/v1/executions",
                 "/v1/report", "/healthz", "/v1/tools"):
        assert name in paths


async def test_answers_match_their_published_schemas(http: httpx2.AsyncClient) -> None:
    doc = (await http.get("/openapi.json")).json()
    _check(doc, "ToolCatalog", (await http.get("/v1/tools")).json())
    _check(doc, "ToolDescription", (await http.get("/v1/tools/pg_read_query")).json())
    _check(doc, "Health", (await http.get("/healthz")).json())
    _check(doc, "ServerInfo", (await http.get("/")).json())
    ran = await http.post("/v1/execute", json={"code": "console.log('hi'); return 1 + 1"})
    _check(doc, "ExecutionOutput", ran.json())
    failed = await http.post("/v1/execute", json={"code": "throw new Error('no')"})
    _check(doc, "ExecutionOutput", failed.json())
    refused = await http.post("/v1/execute", json={"code": ""})
    assert refused.status_code == 400
    _check(doc, "ExecutionOutput", refused.json())
    missing = await http.post("/v1/tools/pg_no_such_tool", json={})
    _check(doc, "Error", missing.json())
    with pytest.raises(jsonschema.ValidationError):
        _check(doc, "ExecutionOutput", {"success": "yes"})


async def test_request_schemas_are_the_tools_input_models(http: httpx2.AsyncClient) -> None:
    """The published request body accepts what the route accepts and refuses what it refuses."""
    doc = (await http.get("/openapi.json")).json()
    ref = doc["paths"]["/v1/execute"]["post"]["requestBody"]["content"]["application/json"]["schema"]["$ref"]
    model = ref.rsplit("/", 1)[-1]
    good = {"code": "return 1", "readonly": True, "timeout": 1000}
    _check(doc, model, good)
    assert (await http.post("/v1/execute", json=good)).status_code == 200
    bad = {"code": "return 1", "nope": 1}
    with pytest.raises(jsonschema.ValidationError):
        _check(doc, model, bad)
    assert (await http.post("/v1/execute", json=bad)).status_code == 400
    query = {p["name"]: p for p in doc["paths"]["/v1/executions"]["get"]["parameters"]}
    assert query["limit"]["schema"]["maximum"] == 1000 and query["outcome"]["schema"]["enum"] == [
        "success", "error", "timeout"]


async def test_docs_page_renders_the_document_without_anything_from_elsewhere(http: httpx2.AsyncClient) -> None:
    resp = await http.get("/docs")
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/html")
    page = resp.text
    for text in ("/v1/execute", "/v1/scripts/{ref}/run", "/healthz", "pg_read_query", "ExecutionOutput",
                 'href="/openapi.json"', "<code>sql</code>"):
        assert text in page, text
    assert "<script" not in page and not re.search(r"(src|href)=\"https?:", page)


async def test_root_says_what_the_server_is(http: httpx2.AsyncClient) -> None:
    info = (await http.get("/")).json()
    assert info["name"] == "pgcode" and "PostgreSQL" in info["description"]
    assert {"/docs", "/mcp", "/healthz"} <= set(info["links"].values())
    page = await http.get("/", headers={"accept": "text/html,application/xhtml+xml"})
    assert page.headers["content-type"].startswith("text/html")
    for link in ("/docs", "/mcp", "/healthz"):
        assert f'href="{link}"' in page.text
    assert (await http.get("/nope")).status_code == 404
