"""HTTP request security: Host and Origin, JSON bodies, bearer tokens → principal, 401/403 with
WWW-Authenticate, RFC 9728 metadata.

One middleware runs in front of every route (REST, code mode, reports, /mcp), in this order:
1. Host must be loopback or in PGCODE_ALLOWED_HOSTS (421), Origin, when sent, loopback or in
   PGCODE_ALLOWED_ORIGINS (403): a web page cannot reach a local server, by DNS rebinding or directly.
2. A POST, PUT or PATCH must say Content-Type: application/json (415): browsers cannot send that
   cross-site without a CORS preflight, which this server never grants.
3. The bearer token becomes the principal (401 without a valid one, except on the public paths).
4. The body is read (413 past its limit) and parsed once by pgcode.server.body (400 when it is not
   acceptable JSON; a JSON-RPC parse error on /mcp); routes take the parsed value from the scope.
5. On /mcp, a tools/call the token lacks the scope for gets HTTP 403 with the scope to step up to.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from pgcode.core.callctx import CLIENT_ADDR
from pgcode.core.runtime import Runtime
from pgcode.errors import ErrorCode, ToolError
from pgcode.guard.auth import Authenticator, AuthError
from pgcode.server._principal import PRINCIPAL_KEY
from pgcode.server.body import MAX_BODY, MAX_MCP_BODY, PARSED_KEY, parse_json
from pgcode.types import LOCAL_PRINCIPAL, Principal
from pgcode.types import Scope as OAuthScope

METADATA_PATH = "/.well-known/oauth-protected-resource"
PUBLIC_PATHS = frozenset({"/healthz", METADATA_PATH, f"{METADATA_PATH}/mcp"})
MCP_PATH = "/mcp"
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
ANONYMOUS = Principal("anonymous", frozenset())
BASE_URL_KEY = "pgcode.base_url"
"""ASGI scope key: scheme://host of a request whose Host is allowed (for the OAuth metadata URL)."""

LOOPBACK_HOSTS = ("127.0.0.1", "127.0.0.1:*", "localhost", "localhost:*", "[::1]", "[::1]:*")
LOOPBACK_ORIGINS = ("http://127.0.0.1", "http://127.0.0.1:*", "http://localhost", "http://localhost:*",
                    "http://[::1]", "http://[::1]:*")

_PORT = re.compile(r"\d{1,5}")
_UNSAFE_IN_QUOTES = re.compile(r'[^\x20-\x7e]|["\\]')
_JSONRPC_INVALID_REQUEST = -32600
_JSONRPC_PARSE_ERROR = -32700


class Allowed:
    """Host or Origin values: exact, or `name:*` for that name with any port (compared case-insensitively)."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self._exact = set()
        self._any_port = set()
        for pattern in patterns:
            p = pattern.strip().lower()
            if p.endswith(":*"):
                self._any_port.add(p[:-2])
            elif p:
                self._exact.add(p)

    def __contains__(self, value: str) -> bool:
        v = value.lower()
        if v in self._exact:
            return True
        base, sep, port = v.rpartition(":")
        return bool(sep) and base in self._any_port and _PORT.fullmatch(port) is not None


def public_base(scope: Scope, rt: Runtime) -> str | None:
    """This server's public URL: PGCODE_RESOURCE_URL, else the request's own when its Host is an allowed one."""
    if rt.settings.resource_url:
        return rt.settings.resource_url.rstrip("/")
    base = scope.get(BASE_URL_KEY)
    return base if isinstance(base, str) else None


def metadata_url(scope: Scope, rt: Runtime) -> str | None:
    base = public_base(scope, rt)
    return f"{base}{METADATA_PATH}" if base else None


def _quoted(text: str) -> str:
    """Safe inside a quoted header parameter: printable ASCII without quotes or backslashes, bounded."""
    return _UNSAFE_IN_QUOTES.sub("?", text)[:300]


def challenge(scope: Scope, rt: Runtime, error: str, description: str, needed: str | None = None) -> str:
    parts = [f'error="{error}"', f'error_description="{_quoted(description)}"']
    if needed:
        parts.append(f'scope="{_quoted(needed)}"')
    url = metadata_url(scope, rt)
    if url:
        parts.append(f'resource_metadata="{_quoted(url)}"')
    return "Bearer " + ", ".join(parts)


def forbidden_response(scope: Scope, rt: Runtime, err: ToolError) -> Response:
    needed = str(err.details.get("requiredScope", ""))
    return JSONResponse({"error": err.to_dict()}, status_code=403, headers={
        "WWW-Authenticate": challenge(scope, rt, "insufficient_scope", err.message, needed)})


def _refusal(scope: Scope, status: int, message: str, *, code: ErrorCode = ErrorCode.INVALID_INPUT,
             rpc_code: int = _JSONRPC_INVALID_REQUEST) -> Response:
    """pgcode's error shape, or a JSON-RPC error on /mcp."""
    if scope["path"] == MCP_PATH:
        return JSONResponse({"jsonrpc": "2.0", "id": None, "error": {"code": rpc_code, "message": message}},
                            status_code=status)
    return JSONResponse({"error": {"code": code.value, "message": message}}, status_code=status)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers") or ():
        if key.lower() == name:
            return bytes(value).decode("latin-1")
    return None


class SecurityMiddleware:
    """Everything a request passes before a route sees it (the module docstring has the order).

    With no auth configured every caller is the local principal (the server then binds to loopback); Host,
    Origin and Content-Type are checked all the same, since any web page can send requests to loopback.
    """

    def __init__(self, app: ASGIApp, rt: Runtime, hosts: Iterable[str] = (), origins: Iterable[str] = ()) -> None:
        self.app = app
        self.rt = rt
        self.auth = Authenticator(rt.settings) if rt.settings.auth_enabled else None
        self.hosts = Allowed([*LOOPBACK_HOSTS, *rt.settings.allowed_hosts, *hosts])
        self.origins = Allowed([*LOOPBACK_ORIGINS, *rt.settings.allowed_origins, *origins])

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        token = CLIENT_ADDR.set(client[0] if client else None)
        try:
            refused = self._check_headers(scope)
            if refused is not None:
                await refused(scope, receive, send)
                return
            principal = await self._principal(scope)
            if isinstance(principal, Response):
                await principal(scope, receive, send)
                return
            scope[PRINCIPAL_KEY] = principal
            if scope["method"] in BODY_METHODS:
                body, parsed = await self._read_body(scope, receive)
                if isinstance(parsed, Response):
                    await parsed(scope, receive, send)
                    return
                scope[PARSED_KEY] = parsed
                receive = _replay(body, receive)
                if scope["path"] == MCP_PATH and self.auth is not None:
                    needed = self._scope_needed(parsed, principal)
                    if needed is not None:
                        await forbidden_response(scope, self.rt, ToolError.forbidden(needed))(scope, receive, send)
                        return
            await self.app(scope, receive, send)
        finally:
            CLIENT_ADDR.reset(token)

    def _check_headers(self, scope: Scope) -> Response | None:
        host = _header(scope, b"host")
        if not host or host not in self.hosts:
            return _refusal(scope, 421, "the Host header names a host this server does not serve (loopback and "
                                        "PGCODE_ALLOWED_HOSTS)", code=ErrorCode.FORBIDDEN)
        scope[BASE_URL_KEY] = f"{scope.get('scheme', 'http')}://{host.lower()}"
        origin = _header(scope, b"origin")
        if origin is not None and origin not in self.origins:
            return _refusal(scope, 403, "requests from this Origin are not accepted (loopback and "
                                        "PGCODE_ALLOWED_ORIGINS)", code=ErrorCode.FORBIDDEN)
        if scope["method"] in BODY_METHODS:
            media = (_header(scope, b"content-type") or "").split(";", 1)[0].strip().lower()
            if media != "application/json":
                return _refusal(scope, 415, "the request body must be JSON, sent with Content-Type: "
                                            "application/json")
        return None

    async def _principal(self, scope: Scope) -> Principal | Response:
        if self.auth is None:
            return LOCAL_PRINCIPAL
        public = scope["path"] in PUBLIC_PATHS
        header = _header(scope, b"authorization") or ""
        kind, _, credential = header.partition(" ")
        if kind.lower() != "bearer" or not credential.strip():
            return ANONYMOUS if public else self._unauthorized(scope, "Authentication required")
        try:
            return await self.auth.authenticate(credential.strip())
        except AuthError as exc:
            return ANONYMOUS if public else self._unauthorized(scope, str(exc))

    def _unauthorized(self, scope: Scope, description: str) -> Response:
        return JSONResponse({"error": "invalid_token", "error_description": description}, status_code=401,
                            headers={"WWW-Authenticate": challenge(scope, self.rt, "invalid_token", description)})

    async def _read_body(self, scope: Scope, receive: Receive) -> tuple[bytes, Any]:
        """(raw body, parsed JSON) or (b"", a refusal): too large, not JSON, too deep."""
        mcp = scope["path"] == MCP_PATH
        limit = MAX_MCP_BODY if mcp else MAX_BODY
        too_large = _refusal(scope, 413, f"the request body exceeds {limit} bytes")
        declared = _header(scope, b"content-length")
        if declared is not None and declared.strip().isdigit() and int(declared) > limit:
            return b"", too_large
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                return b"", too_large
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if not mcp and not body.strip():
            return body, {}  # REST: no body means no arguments
        try:
            return body, parse_json(body)
        except ToolError as err:
            return b"", _refusal(scope, 400, err.message, rpc_code=_JSONRPC_PARSE_ERROR)

    def _scope_needed(self, message: Any, principal: Principal) -> OAuthScope | None:
        """MCP step-up: the scope a tools/call needs beyond the token's (None when it has it or it is not one)."""
        if not isinstance(message, dict) or message.get("method") != "tools/call":
            return None
        params = message.get("params")
        params = params if isinstance(params, dict) else {}
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


def _replay(body: bytes, receive: Receive) -> Receive:
    """The body read by the middleware, handed on as if unread; then the connection's own messages."""
    replayed = False

    async def replay() -> Message:
        nonlocal replayed
        if not replayed:
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay


async def request_json(request: Request) -> Any:
    """The request's parsed JSON body: what the middleware parsed, or parsed here with the same parser."""
    if PARSED_KEY in request.scope:
        return request.scope[PARSED_KEY]
    raw = await request.body()
    if len(raw) > MAX_BODY:
        raise ToolError(ErrorCode.INVALID_INPUT, f"the request body exceeds {MAX_BODY} bytes")
    return parse_json(raw) if raw.strip() else {}


def metadata_routes(rt: Runtime) -> list[Route]:
    async def protected_resource(request: Request) -> Response:
        base = public_base(request.scope, rt) or "http://127.0.0.1"
        resource = f"{base}/mcp" if request.url.path.endswith("/mcp") else base
        body: dict[str, Any] = {
            "resource": resource, "resource_name": "pgcode",
            "authorization_servers": [rt.settings.auth_issuer] if rt.settings.auth_issuer else [],
            "scopes_supported": [s.value for s in OAuthScope], "bearer_methods_supported": ["header"]}
        return JSONResponse(body)

    return [Route(METADATA_PATH, protected_resource, methods=["GET"]),
            Route(f"{METADATA_PATH}/mcp", protected_resource, methods=["GET"])]
