"""REST face: the catalog, tool calls, health and the OpenAPI document, all from the registry."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pgcode import __version__
from pgcode.core.invoke import visible_tools
from pgcode.core.registry import ToolSpec
from pgcode.core.runtime import Runtime
from pgcode.errors import CONNECTION_CODES, ErrorCode, ToolError
from pgcode.server._principal import request_principal
from pgcode.server.security import forbidden_response, request_json
from pgcode.types import Scope

HTTP_CONNECTION_HINT = ("this server cannot reach its database: its operator fixes the database URL or the database; "
                        "GET /healthz answers 200 again once it is reachable")


def error_response(err: ToolError, request: Request | None = None, rt: Runtime | None = None) -> Response:
    if err.code in CONNECTION_CODES:  # the caller cannot fix the server's configuration; say who can
        err = ToolError(err.code, err.message, hint=HTTP_CONNECTION_HINT, details=err.details)
    # A missing OAuth scope gets the step-up challenge; a refusal by the database itself (42501) does not.
    if err.code is ErrorCode.FORBIDDEN and "requiredScope" in err.details and request is not None and rt is not None:
        return forbidden_response(request.scope, rt, err)
    headers = {}
    retry = err.details.get("retryAfterSeconds")
    if err.code in (ErrorCode.RATE_LIMITED, ErrorCode.BUSY) and retry is not None:
        headers["Retry-After"] = str(int(retry) + (err.code is ErrorCode.RATE_LIMITED))
    return JSONResponse({"error": err.to_dict()}, status_code=err.http_status, headers=headers)


def describe(spec: ToolSpec) -> dict[str, Any]:
    return {
        "name": spec.name, "group": spec.group, "method": f"pg.{spec.group}.{spec.method}",
        "aliases": [f"pg.{g}.{m}" for g, m in spec.method_paths[1:]], "effect": spec.effect.value,
        "scope": spec.scope.value, "extensions": list(spec.extensions), "title": spec.title,
        "description": spec.description, "inputSchema": spec.input_schema,
    }


def rest_routes(rt: Runtime) -> list[Route]:
    async def list_tools(request: Request) -> Response:
        principal = request_principal(request)
        group = request.query_params.get("group")
        tools = [describe(s) for s in visible_tools(rt, principal) if group in (None, s.group)]
        return JSONResponse({"tools": tools, "count": len(tools)})

    async def get_tool(request: Request) -> Response:
        name = request.path_params["name"]
        spec = next((s for s in visible_tools(rt, request_principal(request)) if s.name == name), None)
        if spec is None:
            return error_response(ToolError(ErrorCode.NOT_FOUND, f"there is no tool named {name!r}"))
        return JSONResponse(describe(spec))

    async def call_tool(request: Request) -> Response:
        try:
            args = await request_json(request)
            result = await rt.invoke(request.path_params["name"], args, request_principal(request))
        except ToolError as err:
            return error_response(err, request, rt)
        return JSONResponse(result)

    async def healthz(request: Request) -> Response:
        """200 ok or 503 unhealthy, for anyone; versions, the tool count, the audit writer's state and why the
        database cannot be reached, for admins only."""
        problem: dict[str, Any] | None = None
        try:
            async with rt.db.pool.connection(timeout=5) as conn:
                cur = await conn.execute("SELECT current_setting('server_version')")
                row = await cur.fetchone()
        except Exception:
            row, status = None, 503
            problem = await _unreachable_reason(rt)
        else:
            status = 200
        body: dict[str, Any] = {"status": "ok" if status == 200 else "unhealthy"}
        if request_principal(request).allows(Scope.ADMIN):
            body.update({"database": "reachable" if status == 200 else "unreachable",
                         "serverVersion": row[0] if row else None, "tools": len(rt.registry),
                         "readOnly": rt.settings.read_only, "version": __version__, "audit": rt.audit.stats(),
                         **rt.roles.describe()})
            if problem is not None:
                body["databaseError"] = problem
        return JSONResponse(body, status_code=status)

    async def audit(request: Request) -> Response:
        q = request.query_params
        args = {k: v for k, v in {"principal": q.get("principal"), "tool": q.get("tool"), "since": q.get("since"),
                                  "limit": q.get("limit")}.items() if v is not None}
        try:
            return JSONResponse(await rt.invoke("pg_audit_log", args, request_principal(request)))
        except ToolError as err:
            return error_response(err, request, rt)

    async def openapi(request: Request) -> Response:
        return JSONResponse(openapi_document(rt, request_principal(request)))

    return [
        Route("/v1/tools", list_tools, methods=["GET"]),
        Route("/v1/tools/{name}", get_tool, methods=["GET"]),
        Route("/v1/tools/{name}", call_tool, methods=["POST"]),
        Route("/v1/audit", audit, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
    ]


async def _unreachable_reason(rt: Runtime) -> dict[str, Any]:
    """Why the database cannot be reached now (CONNECTION_FAILED, AUTH_FAILED, ...), or that the pool is full."""
    try:
        await rt.db.check_reachable()
    except ToolError as err:
        return {"code": err.code.value, "message": err.message}
    return {"code": ErrorCode.BUSY.value, "message": "the database answers, but no pooled connection was free"}


def openapi_document(rt: Runtime, principal: Any) -> dict[str, Any]:
    """OpenAPI 3.1: one POST operation per tool, its request body the tool's input schema."""
    error = {"description": "Tool error", "content": {"application/json": {"schema": {
        "$ref": "#/components/schemas/Error"}}}}
    components: dict[str, Any] = {"Error": {"type": "object", "properties": {"error": {
        "type": "object", "required": ["code", "message"], "properties": {
            "code": {"type": "string", "enum": [c.value for c in ErrorCode]}, "message": {"type": "string"},
            "hint": {"type": "string"}, "details": {"type": "object"}}}}}}
    paths: dict[str, Any] = {}
    for spec in visible_tools(rt, principal):
        schema = json.loads(json.dumps(spec.input_schema).replace('"#/$defs/', f'"#/components/schemas/{spec.name}.'))
        for def_name, definition in schema.pop("$defs", {}).items():
            components[f"{spec.name}.{def_name}"] = definition
        paths[f"/v1/tools/{spec.name}"] = {"post": {
            "operationId": spec.name, "summary": spec.title, "description": spec.description,
            "tags": [spec.group], "x-effect": spec.effect.value, "x-scope": spec.scope.value,
            "requestBody": {"required": False, "content": {"application/json": {"schema": schema}}},
            "responses": {"200": {"description": "The tool's result", "content": {"application/json": {}}},
                          "400": error, "403": error, "404": error, "409": error, "422": error, "424": error,
                          "429": error, "500": error, "504": error}}}
    return {"openapi": "3.1.0", "info": {"title": "pgcode", "version": __version__},
            "paths": paths, "components": {"schemas": components}}
