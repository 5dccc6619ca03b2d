"""HTTP authentication: bearer tokens → principal, 401/403 with WWW-Authenticate, RFC 9728 metadata."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pgcode.core.callctx import CLIENT_ADDR
from pgcode.core.runtime import Runtime
from pgcode.errors import ToolError
from pgcode.guard.auth import Authenticator, AuthError
from pgcode.server._principal import PRINCIPAL_KEY
from pgcode.types import LOCAL_PRINCIPAL, Principal
from pgcode.types import Scope as OAuthScope

METADATA_PATH = "/.well-known/oauth-protected-resource"
PUBLIC_PATHS = frozenset({"/healthz", METADATA_PATH, f"{METADATA_PATH}/mcp"})
MAX_MCP_BODY = 4 * 1024 * 1024


def metadata_url(scope: Scope, rt: Runtime) -> str:
    base = (rt.settings.resource_url or _base_url(scope)).rstrip("/")
    return f"{base}{METADATA_PATH}"


def _base_url(scope: Scope) -> str:
    headers = dict(scope.get("headers") or [])
    host = headers.get(b"host", b"").decode("latin-1") or "127.0.0.1"
    return f"{scope.get('scheme', 'http')}://{host}"


def challenge(scope: Scope, rt: Runtime, error: str, description: str, needed: str | None = None) -> str:
    parts = [f'error="{error}"', f'error_description="{description}"']
    if needed:
        parts.append(f'scope="{needed}"')
    parts.append(f'resource_metadata="{metadata_url(scope, rt)}"')
    return "Bearer " + ", ".join(parts)


def forbidden_response(scope: Scope, rt: Runtime, err: ToolError) -> Response:
    needed = str(err.details.get("requiredScope", ""))
    return JSONResponse({"error": err.to_dict()}, status_code=403, headers={
        "WWW-Authenticate": challenge(scope, rt, "insufficient_scope", err.message, needed)})


class AuthMiddleware:
    """Authenticates every request but the public ones; records the caller's address for the audit log.

    With no auth configured every caller is the local principal (the server then binds to loopback).
    """

    def __init__(self, app: ASGIApp, rt: Runtime) -> None:
        self.app = app
        self.rt = rt
        self.auth = Authenticator(rt.settings) if rt.settings.auth_enabled else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        token = CLIENT_ADDR.set(client[0] if client else None)
        try:
            principal = await self._principal(scope)
            if isinstance(principal, Response):
                await principal(scope, receive, send)
                return
            scope[PRINCIPAL_KEY] = principal
            if scope["path"] == "/mcp" and scope["method"] == "POST" and self.auth is not None:
                await self._mcp_with_scope_challenge(scope, receive, send, principal)
                return
            await self.app(scope, receive, send)
        finally:
            CLIENT_ADDR.reset(token)

    async def _principal(self, scope: Scope) -> Principal | Response:
        if self.auth is None:
            return LOCAL_PRINCIPAL
        if scope["path"] in PUBLIC_PATHS:
            return Principal("anonymous", frozenset())
        header = dict(scope.get("headers") or []).get(b"authorization", b"").decode("latin-1")
        kind, _, credential = header.partition(" ")
        if kind.lower() != "bearer" or not credential.strip():
            return self._unauthorized(scope, "Authentication required")
        try:
            return await self.auth.authenticate(credential.strip())
        except AuthError as exc:
            return self._unauthorized(scope, str(exc))

    def _unauthorized(self, scope: Scope, description: str) -> Response:
        return JSONResponse({"error": "invalid_token", "error_description": description}, status_code=401,
                            headers={"WWW-Authenticate": challenge(scope, self.rt, "invalid_token", description)})

    async def _mcp_with_scope_challenge(self, scope: Scope, receive: Receive, send: Send,
                                        principal: Principal) -> None:
        """MCP step-up: a tools/call that needs a scope the token lacks gets HTTP 403 naming that scope."""
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > MAX_MCP_BODY:
                break
        needed = self._scope_needed(body, principal)
        if needed is not None:
            err = ToolError.forbidden(needed)
            await forbidden_response(scope, self.rt, err)(scope, receive, send)
            return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _scope_needed(self, body: bytes, principal: Principal) -> OAuthScope | None:
        try:
            message: Any = json.loads(body)
        except ValueError:
            return None
        if not isinstance(message, dict) or message.get("method") != "tools/call":
            return None
        params = message.get("params") or {}
        name = params.get("name")
        spec = self.rt.registry.get(name) if isinstance(name, str) else None
        if spec is None:
            return None
        needed = spec.scope
        if spec.scope_for is not None:
            try:
                needed = spec.scope_for(spec.input_model.model_validate(params.get("arguments") or {}))
            except Exception:  # invalid arguments: invoke() reports them; the tool's own scope decides here
                needed = spec.scope
        return None if principal.allows(needed) and principal.allows(spec.scope) else max(
            (needed, spec.scope), key=lambda s: s.rank)


def metadata_routes(rt: Runtime) -> list[Route]:
    async def protected_resource(request: Request) -> Response:
        base = (rt.settings.resource_url or str(request.base_url)).rstrip("/")
        resource = f"{base}/mcp" if request.url.path.endswith("/mcp") else base
        body: dict[str, Any] = {
            "resource": resource, "resource_name": "pgcode",
            "authorization_servers": [rt.settings.auth_issuer] if rt.settings.auth_issuer else [],
            "scopes_supported": [s.value for s in OAuthScope], "bearer_methods_supported": ["header"]}
        return JSONResponse(body)

    return [Route(METADATA_PATH, protected_resource, methods=["GET"]),
            Route(f"{METADATA_PATH}/mcp", protected_resource, methods=["GET"])]
