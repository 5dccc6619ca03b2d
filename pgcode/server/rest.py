"""REST face: the catalog, tool calls, health and the OpenAPI document, all from the registry."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from pgcode import __version__
from pgcode.codemode.api import serves_code_mode
from pgcode.core.invoke import visible_tools
from pgcode.core.registry import ToolSpec
from pgcode.core.runtime import Runtime
from pgcode.errors import CONNECTION_CODES, ErrorCode, ToolError
from pgcode.server._principal import request_principal
from pgcode.server.openapi import (
    Health,
    ToolDescription,
    docs_page,
    openapi_document,
    root_page,
    server_info,
)
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
    """One tool as GET /v1/tools describes it (the ToolDescription of /openapi.json)."""
    return ToolDescription(
        name=spec.name, group=spec.group, method=f"pg.{spec.group}.{spec.method}",
        aliases=[f"pg.{g}.{m}" for g, m in spec.method_paths[1:]], effect=spec.effect, scope=spec.scope,
        extensions=list(spec.extensions), title=spec.title, description=spec.description,
        inputSchema=spec.input_schema,
    ).model_dump(mode="json")


def rest_routes(rt: Runtime) -> list[Route]:
    async def list_tools(request: Request) -> Response:
        principal = request_principal(request)
        group = request.query_params.get("group")
        tools = [describe(s) for s in visible_tools(rt, principal) if group in (None, s.group)]
        return JSONResponse({"tools": tools, "count": len(tools)})  # ToolCatalog, its items checked by describe()

    async def get_tool(request: Request) -> Response:
        name = request.path_params["name"]
        spec = next((s for s in visible_tools(rt, request_principal(request)) if s.name == name), None)
        if spec is None:
            return error_response(ToolError(ErrorCode.NOT_FOUND, f"there is no tool named {name!r}"))
        return JSONResponse(describe(spec))

    exposed = rt.registry.select(rt.settings.tools)

    async def call_tool(request: Request) -> Response:
        name = request.path_params["name"]
        try:
            if name not in exposed:  # PGCODE_TOOLS hides it on every face, as an unknown tool
                raise ToolError(ErrorCode.NOT_FOUND, f"there is no tool named {name!r} on this server",
                                hint="GET /v1/tools lists the tools it serves (PGCODE_TOOLS chooses them)")
            args = await request_json(request)
            result = await rt.invoke(name, args, request_principal(request))
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
        health = Health(status="ok" if status == 200 else "unhealthy")
        if request_principal(request).allows(Scope.ADMIN):
            health = Health.model_validate({
                "status": health.status, "database": "reachable" if status == 200 else "unreachable",
                "serverVersion": row[0] if row else None, "tools": len(rt.registry), "readOnly": rt.settings.read_only,
                "version": __version__, "audit": rt.audit.stats(), **rt.roles.describe(), "databaseError": problem,
                "codeMode": "on" if serves_code_mode(rt.registry) else "off"})
        return JSONResponse(health.model_dump(mode="json", exclude_none=True), status_code=status)

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

    async def docs(request: Request) -> Response:
        return HTMLResponse(docs_page(openapi_document(rt, request_principal(request))))

    async def root(request: Request) -> Response:
        """What this server is: a page for a browser, JSON for anything else."""
        info = server_info(rt)
        if "text/html" in request.headers.get("accept", ""):
            return HTMLResponse(root_page(info))
        return JSONResponse(info.model_dump())

    return [
        Route("/v1/tools", list_tools, methods=["GET"]),
        Route("/v1/tools/{name}", get_tool, methods=["GET"]),
        Route("/v1/tools/{name}", call_tool, methods=["POST"]),
        Route("/v1/audit", audit, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/openapi.json", openapi, methods=["GET"]),
        Route("/docs", docs, methods=["GET"]),
        Route("/", root, methods=["GET"]),
    ]


async def _unreachable_reason(rt: Runtime) -> dict[str, Any]:
    """Why the database cannot be reached now (CONNECTION_FAILED, AUTH_FAILED, ...), or that the pool is full."""
    try:
        await rt.db.check_reachable()
    except ToolError as err:
        return {"code": err.code.value, "message": err.message}
    return {"code": ErrorCode.BUSY.value, "message": "the database answers, but no pooled connection was free"}
