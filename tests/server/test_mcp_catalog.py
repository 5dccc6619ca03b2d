"""The catalog a model reads: dedented descriptions, compact schemas that still validate, PGCODE_TOOLS / --tools."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import httpx2
import mcp_types as types
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.shared.exceptions import MCPError

from pgcode.core import arguments
from pgcode.core.registry import compact_schema, load_registry
from pgcode.core.runtime import Runtime
from pgcode.server.app import create_app
from pgcode.server.mcp import build_mcp_server, tool_definition
from pgcode.settings import Settings

pytestmark = pytest.mark.anyio
SPECS = list(load_registry())


def _walk(node: Any) -> Any:
    """Every schema object of a JSON Schema (property names are not schemas)."""
    if isinstance(node, dict):
        yield node
        for key, value in node.items():
            if key == "properties":
                for prop in value.values():
                    yield from _walk(prop)
            elif key not in ("default", "enum", "const", "required"):
                yield from _walk(value)
    elif isinstance(node, list):
        for item in node:
            yield from _walk(item)


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.name)
def test_descriptions_are_dedented_and_schemas_compact(spec: Any) -> None:
    assert not any(line.startswith((" ", "\t")) for line in spec.description.splitlines())
    assert spec.title == spec.description.splitlines()[0]
    for node in _walk(spec.input_schema):
        assert "title" not in node and "maxLength" not in node
        # optional fields are written as their type; null stays where it means something (a required value)
        assert not ({"type": "null"} in node.get("anyOf", []) and node.get("default", ...) is None)
    text = json.dumps(spec.input_schema)
    defs = spec.input_schema.get("$defs", {})
    for name in defs:  # a definition stays only when used twice or more
        assert text.count(f'"#/$defs/{name}"') >= 2
    for node in _walk(spec.input_schema):  # and every reference resolves inside the tool's own schema
        if "$ref" in node:
            assert node["$ref"].removeprefix("#/$defs/") in defs, node["$ref"]


def test_compact_schema_keeps_data_and_shared_definitions() -> None:
    schema = {
        "title": "SomeIn", "type": "object", "additionalProperties": False,
        "$defs": {"Mode": {"title": "Mode", "enum": ["a", "b"], "type": "string"},
                  "Once": {"title": "Once", "type": "object", "properties": {"x": {"type": "integer"}}},
                  "Small": {"title": "Small", "enum": [1, 2], "type": "integer"}},
        "properties": {
            "title": {"title": "Title", "type": "string", "description": "a property named title stays"},
            "first": {"$ref": "#/$defs/Mode", "description": "one"},
            "second": {"$ref": "#/$defs/Mode", "description": "two"},
            "once": {"$ref": "#/$defs/Small", "description": "inlined"},
            "maybe": {"anyOf": [{"type": "string", "maxLength": 5}, {"type": "null"}], "default": None,
                      "description": "optional"},
            "nullableOnce": {"anyOf": [{"$ref": "#/$defs/Once"}, {"type": "null"}], "default": None,
                             "description": "optional, inlined"},
            "opts": {"type": "object", "default": {"title": "kept as data"}, "description": "d"},
        },
    }
    assert compact_schema(schema) == {
        "type": "object", "additionalProperties": False,
        "properties": {
            "title": {"type": "string", "description": "a property named title stays"},
            "first": {"$ref": "#/$defs/Mode", "description": "one"},
            "second": {"$ref": "#/$defs/Mode", "description": "two"},
            "once": {"enum": [1, 2], "type": "integer", "description": "inlined"},
            "maybe": {"type": "string", "description": "optional"},
            "nullableOnce": {"type": "object", "properties": {"x": {"type": "integer"}},
                             "description": "optional, inlined"},
            "opts": {"type": "object", "default": {"title": "kept as data"}, "description": "d"},
        },
        "$defs": {"Mode": {"enum": ["a", "b"], "type": "string"}},
    }


async def test_bounds_left_out_of_the_schema_are_still_enforced(mcp_client: Client) -> None:
    long_name = "x" * 200
    result = await mcp_client.call_tool("pg_describe_table", {"table": long_name})
    assert result.is_error is True
    assert result.structured_content["error"]["code"] == "INVALID_INPUT"
    assert "table" in result.structured_content["error"]["message"]


async def test_unknown_argument_is_refused_without_additional_properties_in_the_list(mcp_client: Client) -> None:
    listed = {t.name: t for t in (await mcp_client.list_tools()).tools}
    assert "additionalProperties" not in listed["pg_count"].input_schema
    result = await mcp_client.call_tool("pg_count", {"table": "pg_class", "shema": "pg_catalog"})
    assert result.is_error is True
    assert result.structured_content["error"]["code"] == "INVALID_INPUT"
    assert "shema" in result.structured_content["error"]["message"]
    ok = await mcp_client.call_tool("pg_count", {"table": "pg_class", "schema": "pg_catalog"})  # positive control
    assert ok.is_error is not True and ok.structured_content["count"] > 0


async def test_shared_arguments_are_described_once_in_the_instructions(mcp_client: Client) -> None:
    """`table`, `where`, `limit` ... are described in the server instructions, not in each of 90 tools."""
    listed = {t.name: t for t in (await mcp_client.list_tools()).tools}
    assert listed["pg_count"].input_schema["properties"]["table"] == {"type": "string"}
    with_where = [s.name for s in load_registry()
                  if s.input_schema.get("properties", {}).get("where", {}).get("description") == arguments.WHERE]
    assert len(with_where) > 10
    assert all("description" not in listed[n].input_schema["properties"]["where"] for n in with_where)
    instructions = mcp_client.instructions or ""
    assert arguments.TABLE in instructions and arguments.WHERE in instructions
    assert "pgcode://tools/{name}" in instructions
    # a field of the same name with its own meaning keeps its description
    spec = load_registry().get("pg_jsonb_extract")
    assert spec is not None
    own = [name for name, prop in spec.input_schema["properties"].items()
           if prop.get("description") and not arguments.is_shared(name, prop["description"])]
    assert own and all("description" in listed["pg_jsonb_extract"].input_schema["properties"][n] for n in own)


async def test_the_list_carries_the_summary_and_the_resource_the_whole_description(mcp_client: Client) -> None:
    spec = load_registry().get("pg_terminate_backend")
    assert spec is not None and "\n\n" in spec.description
    listed = {t.name: t for t in (await mcp_client.list_tools()).tools}
    assert listed["pg_terminate_backend"].description == spec.summary
    assert "\n" not in spec.summary and spec.summary in " ".join(spec.description.split())
    doc = await mcp_client.read_resource("pgcode://tools/pg_terminate_backend")
    body = json.loads(doc.contents[0].text)
    assert body["description"] == spec.description
    assert body["inputSchema"]["properties"]["pid"]["description"]


def test_the_full_catalog_fits_a_models_budget() -> None:
    """tools/list of every group stays at most 150 KB on the wire (bench/mcp_catalog.py reports the figures)."""
    listed = types.ListToolsResult(tools=[tool_definition(spec) for spec in load_registry()])
    size = len(listed.model_dump_json(by_alias=True, exclude_none=True).encode())
    assert len(listed.tools) > 250 and size <= 150_000, size


async def test_tools_setting_exposes_chosen_groups(settings: Settings) -> None:
    async with Runtime(settings.model_copy(update={"tools": ["core", "performance"]})) as rt, \
            Client(build_mcp_server(rt)) as client:
        listed = {t.name for t in (await client.list_tools()).tools}
        assert listed == {s.name for s in SPECS if s.group in ("core", "performance")}
        assert (await client.call_tool("pg_read_query", {"sql": "SELECT 1 AS one"})).is_error is False
        with pytest.raises(MCPError) as hidden:  # a tool the server does not expose is not a tool here
            await client.call_tool("pg_list_schemas", {})
        assert hidden.value.code == -32602


async def test_codemode_alone_still_reaches_every_tool(settings: Settings) -> None:
    async with Runtime(settings.model_copy(update={"tools": ["pg_execute_code", "pg_codemode_docs"]})) as rt, \
            Client(build_mcp_server(rt)) as client:
        listed = {t.name for t in (await client.list_tools()).tools}
        assert listed == {"pg_execute_code", "pg_codemode_docs"}
        run = await client.call_tool("pg_execute_code", {
            "code": "const s = await pg.schema.listSchemas(); return s.schemas.some(x => x.name === 'public')"})
        assert run.structured_content["success"] is True and run.structured_content["result"] is True


async def test_codemode_group(settings: Settings) -> None:
    async with Runtime(settings.model_copy(update={"tools": ["codemode"]})) as rt, \
            Client(build_mcp_server(rt)) as client:
        listed = {t.name for t in (await client.list_tools()).tools}
    assert listed == {s.name for s in SPECS if s.group == "codemode"}
    assert {"pg_execute_code", "pg_codemode_docs", "pg_validate_code"} <= listed


def test_unknown_group_is_refused_at_start(settings: Settings) -> None:
    with pytest.raises(ValueError, match="no group or tool named 'nosuch'; the groups are admin, audit"):
        build_mcp_server(Runtime(settings.model_copy(update={"tools": ["core", "nosuch"]})))
    assert Settings.from_env({"PGCODE_TOOLS": "core, performance"}).tools == ["core", "performance"]


def test_cli_tools_flag_names_the_groups(dsn: str) -> None:
    done = subprocess.run([sys.executable, "-m", "pgcode", "stdio", "--tools", "core,nosuch"],
                          env={"PGCODE_DATABASE_URL": dsn, "PATH": "/usr/bin:/bin"}, capture_output=True,
                          text=True, timeout=60, check=False)
    assert done.returncode == 2
    assert "no group or tool named 'nosuch'" in done.stderr and "performance" in done.stderr
    assert "Traceback" not in done.stderr


async def test_stdio_with_tools_flag(dsn: str) -> None:
    params = StdioServerParameters(command=sys.executable, args=["-m", "pgcode", "stdio", "--tools", "codemode"],
                                   env={"PGCODE_DATABASE_URL": dsn})
    async with Client(params) as client:
        listed = {t.name for t in (await client.list_tools()).tools}
    assert listed == {s.name for s in SPECS if s.group == "codemode"}


async def test_rest_catalog_follows_the_same_setting(settings: Settings) -> None:
    async with Runtime(settings.model_copy(update={"tools": ["performance"]})) as rt:
        app = create_app(rt)
        async with app.router.lifespan_context(app), httpx2.AsyncClient(
                transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1") as http:
            listed = (await http.get("/v1/tools")).json()
            hidden = await http.get("/v1/tools/pg_list_tables")
            called = await http.post("/v1/tools/pg_list_tables", json={})
            served = await http.post("/v1/tools/pg_cache_hit_ratio", json={})
    names = {t["name"] for t in (listed["tools"] if isinstance(listed, dict) else listed)}
    assert names == {s.name for s in SPECS if s.group == "performance"}
    assert hidden.status_code == 404
    assert called.status_code == 404 and called.json()["error"]["code"] == "NOT_FOUND"  # not served, not run
    assert served.status_code == 200  # positive control: a tool of the chosen group runs
