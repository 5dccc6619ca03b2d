"""MCP face: the SDK's low-level Server fed from the registry; every call goes through invoke()."""

from __future__ import annotations

import json
from typing import Any

import mcp_types as types
from mcp.server import Server, ServerRequestContext
from mcp.shared.exceptions import MCPError

from pgcode import __version__
from pgcode.codemode.api import OFF_NOTE, serves_code_mode
from pgcode.core.arguments import glossary, is_shared
from pgcode.core.invoke import visible_tools
from pgcode.core.registry import ToolSpec
from pgcode.core.runtime import Runtime
from pgcode.errors import ErrorCode, ToolError
from pgcode.server import mcp_complete, mcp_prompts, mcp_resources
from pgcode.server._principal import request_principal
from pgcode.server.mcp_watch import install_log_forwarding, on_set_level, watching
from pgcode.types import Effect

INSTRUCTIONS = (
    "PostgreSQL admin tools. Read tools run in READ ONLY transactions; write, admin and destructive tools "
    "need the matching scope. Errors come back as isError results with a JSON body {error: {code, message, "
    "hint}} that says what to change. Each tool's full description: resource pgcode://tools/{name}. "
    "Resources: pgcode://schema, pgcode://report/health, pgcode://codemode/docs. " + glossary()
)


def tool_definition(spec: ToolSpec) -> types.Tool:
    """A tool as tools/list shows it: what a model needs to choose and call it, and no more.

    The catalog is in a model's context on every turn, so it carries the description's first paragraph (the
    whole text is the resource pgcode://tools/{name}), no title (the name is the title), and a schema without
    what the server enforces anyway or the instructions say once (see mcp_schema).
    """
    return types.Tool(
        name=spec.name,
        description=spec.summary,
        input_schema=mcp_schema(spec.input_schema),
        annotations=tool_annotations(spec.effect),
    )


def mcp_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The input schema without `additionalProperties: false` (the server refuses unknown arguments, naming
    them) and without the descriptions of shared arguments (the instructions carry those, see core.arguments)."""
    out = {k: v for k, v in schema.items() if k != "additionalProperties"}
    if "properties" in out:
        out["properties"] = {name: _mcp_property(name, prop) for name, prop in out["properties"].items()}
    if "$defs" in out:
        out["$defs"] = {name: mcp_schema(d) for name, d in out["$defs"].items()}
    return out


def _mcp_property(name: str, prop: dict[str, Any]) -> dict[str, Any]:
    if is_shared(name, prop.get("description")):
        prop = {k: v for k, v in prop.items() if k != "description"}
    if prop.get("additionalProperties") is True:  # JSON Schema's default: any keys
        prop = {k: v for k, v in prop.items() if k != "additionalProperties"}
    if "items" in prop and isinstance(prop["items"], dict):
        prop = {**prop, "items": mcp_schema(prop["items"])}
    return mcp_schema(prop) if "properties" in prop else prop


def tool_annotations(effect: Effect) -> types.ToolAnnotations:
    """The hints that say something, and only where they differ from the spec's defaults (readOnlyHint false,
    destructiveHint true): a read says it reads; a write says whether it destroys."""
    if effect is Effect.READ:
        return types.ToolAnnotations(read_only_hint=True)
    return types.ToolAnnotations(destructive_hint=effect is Effect.DESTRUCTIVE)


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


def tool_result(result: Any) -> types.CallToolResult:
    """structuredContent, and the same JSON as text for clients that read only text content."""
    out = structured(result)
    return types.CallToolResult(content=[types.TextContent(type="text", text=json.dumps(out))],
                                structured_content=out)


def build_mcp_server(rt: Runtime, *, progress_interval_s: float = 2.0) -> Server[Any]:
    """One low-level MCP Server over the runtime's registry (stdio and HTTP share it): tools, resources, prompts,
    completion, logging, and progress for calls that run longer than `progress_interval_s`."""
    exposed = rt.registry.select(rt.settings.tools)  # an unknown group fails here, at start
    definitions = {spec.name: tool_definition(spec) for spec in rt.registry}
    code_mode = serves_code_mode(rt.registry)
    note = {"pgcode/codeMode": "on" if code_mode else "off"}
    install_log_forwarding()

    async def on_list_tools(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
                            ) -> types.ListToolsResult:
        principal = request_principal(ctx.request)
        return types.ListToolsResult(tools=[definitions[s.name] for s in visible_tools(rt, principal)], meta=note)

    async def on_call_tool(ctx: ServerRequestContext[Any], params: types.CallToolRequestParams
                           ) -> types.CallToolResult:
        if params.name not in exposed:  # a protocol error, not a tool error (MCP 2025-06-18, tools/call)
            raise MCPError(code=types.INVALID_PARAMS, message=f"Unknown tool: {params.name}",
                           data={"tool": params.name})
        try:
            async with watching(rt, ctx, params.name, interval_s=progress_interval_s):
                result = await rt.invoke(params.name, params.arguments, request_principal(ctx.request))
        except ToolError as err:
            return error_result(err)
        except Exception:  # invoke() maps every failure; this is the last guard of the wire
            return error_result(ToolError(ErrorCode.INTERNAL, f"{params.name} failed unexpectedly"))
        return tool_result(result)

    def input_schema(name: str) -> dict[str, Any] | None:
        spec = rt.registry.get(name)
        return spec.input_schema if spec else None

    async def on_list_resources(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
                                ) -> types.ListResourcesResult:
        return types.ListResourcesResult(resources=mcp_resources.RESOURCES)

    async def on_list_resource_templates(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
                                         ) -> types.ListResourceTemplatesResult:
        return types.ListResourceTemplatesResult(resource_templates=mcp_resources.TEMPLATES)

    async def on_read_resource(ctx: ServerRequestContext[Any], params: types.ReadResourceRequestParams
                               ) -> types.ReadResourceResult:
        try:
            async with watching(rt, ctx, params.uri, interval_s=progress_interval_s):
                mime_type, text = await mcp_resources.read(rt, params.uri, request_principal(ctx.request))
        except ToolError as err:
            raise mcp_resources.resource_error(err, params.uri) from None
        return mcp_resources.contents(params.uri, mime_type, text)

    async def on_list_prompts(ctx: ServerRequestContext[Any], params: types.PaginatedRequestParams | None
                              ) -> types.ListPromptsResult:
        return types.ListPromptsResult(prompts=[p.prompt for p in mcp_prompts.PROMPTS.values()])

    async def on_get_prompt(ctx: ServerRequestContext[Any], params: types.GetPromptRequestParams
                            ) -> types.GetPromptResult:
        try:
            return mcp_prompts.render(params.name, params.arguments)
        except ToolError as err:
            raise MCPError(code=types.INVALID_PARAMS, message=err.message, data={"error": err.to_dict()}) from None

    async def on_completion(ctx: ServerRequestContext[Any], params: types.CompleteRequestParams
                            ) -> types.CompleteResult:
        return await mcp_complete.complete(rt, params, request_principal(ctx.request))

    instructions = INSTRUCTIONS if code_mode else f"{INSTRUCTIONS} {OFF_NOTE}"
    server: Server[Any] = Server(
        "pgcode", version=__version__, instructions=instructions, on_list_tools=on_list_tools,
        on_call_tool=on_call_tool, get_tool_input_schema=input_schema, on_list_resources=on_list_resources,
        on_list_resource_templates=on_list_resource_templates, on_read_resource=on_read_resource,
        on_list_prompts=on_list_prompts, on_get_prompt=on_get_prompt, on_completion=on_completion)
    # logging/setLevel is deprecated from 2026-07-28 (the SDK warns when it is passed to the constructor), but
    # clients of 2025-11-25 and earlier use it; 2026 clients opt in per request instead.
    server.add_request_handler("logging/setLevel", types.SetLevelRequestParams, on_set_level)
    return server
