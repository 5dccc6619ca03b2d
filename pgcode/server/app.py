"""The Starlette app: REST routes and the MCP Streamable HTTP endpoint, one lifespan."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from pgcode.codemode.api import serves_code_mode
from pgcode.core.runtime import Runtime
from pgcode.errors import ErrorCode, ToolError
from pgcode.server.codemode_routes import codemode_off_routes, codemode_routes
from pgcode.server.mcp import build_mcp_server
from pgcode.server.report_routes import report_routes
from pgcode.server.rest import rest_routes
from pgcode.server.security import LOOPBACK_HOSTS, LOOPBACK_ORIGINS, SecurityMiddleware, metadata_routes

log = logging.getLogger("pgcode.server")


def create_app(rt: Runtime, *, allowed_hosts: list[str] | None = None, allowed_origins: list[str] | None = None,
               manage_runtime: bool = False) -> Starlette:
    """Build the app; with manage_runtime the app opens and closes `rt` in its lifespan."""
    # DNS-rebinding protection: loopback always, plus what the deployment names. SecurityMiddleware checks
    # every route; the MCP SDK checks /mcp once more with the same lists.
    hosts = [*LOOPBACK_HOSTS, *rt.settings.allowed_hosts, *(allowed_hosts or [])]
    origins = [*LOOPBACK_ORIGINS, *rt.settings.allowed_origins, *(allowed_origins or [])]
    security = TransportSecuritySettings(allowed_hosts=hosts, allowed_origins=origins)
    session_manager = StreamableHTTPSessionManager(app=build_mcp_server(rt), stateless=True,
                                                   json_response=False, security_settings=security)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if manage_runtime:
            await rt.open()
        try:
            async with session_manager.run():
                yield
        finally:
            if manage_runtime:
                await rt.close()

    code_mode = codemode_routes(rt) if serves_code_mode(rt.registry) else codemode_off_routes()
    routes = [Route("/mcp", endpoint=StreamableHTTPASGIApp(session_manager)), *rest_routes(rt),
              *code_mode, *report_routes(rt), *metadata_routes(rt)]
    return Starlette(routes=routes, middleware=[Middleware(SecurityMiddleware, rt=rt, hosts=hosts, origins=origins)],
                     exception_handlers={Exception: _internal_error}, lifespan=lifespan)


async def _internal_error(request: Request, exc: Exception) -> Response:
    """The last guard of the wire: an unexpected failure is a JSON INTERNAL error, never a traceback."""
    log.error("%s %s failed: %s", request.method, request.url.path, type(exc).__name__)
    err = ToolError(ErrorCode.INTERNAL, "the request failed unexpectedly; the server log has the details")
    return JSONResponse({"error": err.to_dict()}, status_code=500)
