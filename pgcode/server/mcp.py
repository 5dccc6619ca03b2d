"""MCP face: the SDK's low-level Server fed from the registry; every call goes through invoke()."""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types
from mcp.server import Server, ServerRequestContext

from pgcode import __version__
from pgcode.codemode.api import OFF_NOTE, serves_code_mode
from pgcode.core.invoke import visible_tools
from pgcode.core.registry import ToolSpec
from pgcode.core.runtime import Runtime
from pgcode.errors import ErrorCode, ToolError
from pgcode.server._principal import request_principal
from pgcode.types import Effect

INSTRUCTIONS = (
    "PostgreSQL admin tools. Read tools run in READ ONLY transactions; write, admin and destructive tools "
    "need the matching scope. Errors come back as isError results with a JSON body {error: {code, message, "
    "hint}} that says what to change."
)


def tool_definition(spec: ToolSpec) -> types.Tool:
    return types.Tool(
        name=spec.name,
        title=spec.title,
        description=spec.description,
        input_schema=spec.input_schema,
        annotations=types.ToolAnnotations(
            title=spec.title,
            read_only_hint=spec.effect is Effect.READ,
            destructive_hint=spec.effect is Effect.DESTRUCTIVE,
            idempotent_hint=spec.effect is Effect.READ,
            open_world_hint=False,
        ),
    )


def structured(result: Any) -> dict[str, Any]:
    """MCP structured content must be an object: lists become {items, count}, scalars {value}."""
    if isinstance(result, dict):
        return result
    if isinstance(result, list):
        return {"items": result, "count": len(result)}
    return {"value": result}


def error_result(err: ToolError) -> types.CallToolResult:
    body = {"error": err.to_dict()}
    return types.CallToolResult(content=[types.TextContent(type="text", text=json.dumps(body))],
                                structured_content=body, is_error=True)


def build_mcp_server(rt: Runtime) -> Server[Any]:
    """One low-level MCP Server over the runtime's registry (stdio and HTTP share it)."""
    definitions = {spec.name: tool_definition(spec) for spec in rt.registry}
    code_mode = serves_code_mode(rt.registry)
    note = {"pgcode/codeMode": "on" if code_mode else "off"}

    async def on_list_tools(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
                            ) -> types.ListToolsResult:
        principal = request_principal(ctx.request)
        return types.ListToolsResult(tools=[definitions[s.name] for s in visible_tools(rt, principal)], meta=note)

    async def on_call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
                           ) -> types.CallToolResult:
        try:
            result = await rt.invoke(params.name, params.arguments, request_principal(ctx.request))
        except ToolError as err:
            return error_result(err)
        except Exception:  # invoke() maps every failure; this is the last guard of the wire
            return error_result(ToolError(ErrorCode.INTERNAL, f"{params.name} failed unexpectedly"))
        out = structured(result)
        return types.CallToolResult(content=[types.TextContent(type="text", text=json.dumps(result))],
                                    structured_content=out)

    def input_schema(name: str) -> dict[str, Any] | None:
        spec = rt.registry.get(name)
        return spec.input_schema if spec else None

    instructions = INSTRUCTIONS if code_mode else f"{INSTRUCTIONS} {OFF_NOTE}"
    return Server("pgcode", version=__version__, instructions=instructions, on_list_tools=on_list_tools,
                  on_call_tool=on_call_tool, get_tool_input_schema=input_schema)
