"""MCP resources: the schema overview, a fresh health report, the code-mode API docs, and one table, tool or script.

Every read runs the tools behind it through invoke() with the caller's principal, so scopes hold as for tool calls.
"""

from __future__ import annotations

import json
from urllib.parse import unquote

import mcp_types as types
from mcp.shared.exceptions import MCPError

from pgcode.core.invoke import visible_tools
from pgcode.core.runtime import Runtime
from pgcode.errors import ErrorCode, ToolError
from pgcode.report import collect, render
from pgcode.server.rest import describe
from pgcode.types import Principal

RESOURCE_NOT_FOUND = -32002  # the spec's code for resources/read of an unknown URI

SCHEMA_URI = "pgcode://schema"
REPORT_URI = "pgcode://report/health"
DOCS_URI = "pgcode://codemode/docs"

RESOURCES = [
    types.Resource(uri=SCHEMA_URI, name="schema", title="Schema overview", mime_type="application/json",
                   description="Schemas (owner, size, object counts) and their tables, views and materialized views "
                               "(kind, estimated rows, size)."),
    types.Resource(uri=REPORT_URI, name="health-report", title="Health report", mime_type="text/markdown",
                   description="The health report, made when read: findings worst first with advice, sizes, "
                               "connections, cache hit ratios and the top statements."),
    types.Resource(uri=DOCS_URI, name="codemode-docs", title="Code-mode API", mime_type="text/markdown",
                   description="The pg.<group>.<method> API that pg_execute_code's JavaScript calls, with arguments, "
                               "globals, limits and error codes."),
]
TEMPLATES = [
    types.ResourceTemplate(uri_template="pgcode://tables/{schema}/{table}", name="table", title="Table",
                           mime_type="application/json",
                           description="One table: columns, keys, constraints, indexes and size."),
    types.ResourceTemplate(uri_template="pgcode://tools/{tool}", name="tool", title="Tool",
                           mime_type="application/json",
                           description="One tool: its description, effect, code-mode method and input schema."),
    types.ResourceTemplate(uri_template="pgcode://scripts/{script}", name="script", title="Saved script",
                           mime_type="text/javascript", description="One of your saved code-mode scripts."),
]


async def read(rt: Runtime, uri: str, principal: Principal) -> tuple[str, str]:
    """(mime type, text) of the resource at `uri`; a ToolError when a tool behind it refuses."""
    if uri == SCHEMA_URI:
        schemas = await rt.invoke("pg_list_schemas", {}, principal)
        tables = await rt.invoke("pg_list_tables", {}, principal)
        return "application/json", json.dumps({"schemas": schemas["schemas"], "tables": tables})
    if uri == REPORT_URI:
        return "text/markdown", render(await collect(rt, principal), "md")
    if uri == DOCS_URI:
        docs = await rt.invoke("pg_codemode_docs", {"format": "markdown"}, principal)
        return "text/markdown", str(docs["markdown"])
    kind, _, rest = uri.removeprefix("pgcode://").partition("/")
    parts = [unquote(p) for p in rest.split("/")] if rest else []
    if kind == "tables" and len(parts) == 2:
        table = await rt.invoke("pg_describe_table", {"schema": parts[0], "table": parts[1]}, principal)
        return "application/json", json.dumps(table)
    if kind == "tools" and len(parts) == 1:
        spec = next((s for s in visible_tools(rt, principal) if s.name == parts[0]), None)
        if spec is not None:
            return "application/json", json.dumps(describe(spec))
    if kind == "scripts" and len(parts) == 1:
        script = await rt.invoke("pg_script_get", {"name": parts[0]}, principal)
        return "text/javascript", str(script["code"])
    raise MCPError(code=RESOURCE_NOT_FOUND, message=f"Resource not found: {uri}", data={"uri": uri})


def resource_error(err: ToolError, uri: str) -> MCPError:
    """A refused read as a JSON-RPC error that keeps pgcode's error body (code, message, hint) in `data`."""
    code = RESOURCE_NOT_FOUND if err.code is ErrorCode.NOT_FOUND else types.INVALID_PARAMS \
        if err.code is ErrorCode.INVALID_INPUT else types.INTERNAL_ERROR
    return MCPError(code=code, message=err.message, data={"uri": uri, "error": err.to_dict()})


def contents(uri: str, mime_type: str, text: str) -> types.ReadResourceResult:
    return types.ReadResourceResult(contents=[types.TextResourceContents(uri=uri, mime_type=mime_type, text=text)])
