"""The Starlette app: REST routes and the MCP Streamable HTTP endpoint, one lifespan."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from mcp.server.streamable_http_manager import StreamableHTTPASGIApp, StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.routing import Route

from pgcode.core.runtime import Runtime
from pgcode.server.codemode_routes import codemode_routes
from pgcode.server.mcp import build_mcp_server
from pgcode.server.report_routes import report_routes
from pgcode.server.rest import rest_routes
from pgcode.server.security import AuthMiddleware, metadata_routes

LOOPBACK_HOSTS = ["127.0.0.1", "127.0.0.1:*", "localhost", "localhost:*", "[::1]", "[::1]:*"]
LOOPBACK_ORIGINS = ["http://127.0.0.1", "http://127.0.0.1:*", "http://localhost", "http://localhost:*",
                    "http://[::1]", "http://[::1]:*"]


def create_app(rt: Runtime, *, allowed_hosts: list[str] | None = None, allowed_origins: list[str] | None = None,
               manage_runtime: bool = False) -> Starlette:
    """Build the app; with manage_runtime the app opens and closes `rt` in its lifespan."""
    # DNS-rebinding protection for /mcp: loopback always, plus what the deployment names.
    security = TransportSecuritySettings(
        allowed_hosts=[*LOOPBACK_HOSTS, *rt.settings.allowed_hosts, *(allowed_hosts or [])],
        allowed_origins=[*LOOPBACK_ORIGINS, *rt.settings.allowed_origins, *(allowed_origins or [])])
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

    routes = [Route("/mcp", endpoint=StreamableHTTPASGIApp(session_manager)), *rest_routes(rt),
              *codemode_routes(rt), *report_routes(rt), *metadata_routes(rt)]
    return Starlette(routes=routes, middleware=[Middleware(AuthMiddleware, rt=rt)], lifespan=lifespan)
