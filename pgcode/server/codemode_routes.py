"""REST face of code mode: /v1/execute, /v1/validate, /v1/executions, /v1/scripts, /v1/languages, /v1/docs.

Every route but /v1/languages (static) calls a codemode tool through invoke() with the request's
principal, so scopes, rate limits and the audit log hold exactly as for /v1/tools/{name}.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from pgcode.codemode.api import LANGUAGES, OFF_NOTE
from pgcode.codemode.engine import INPUT_ERRORS
from pgcode.core.runtime import Runtime
from pgcode.errors import ErrorCode, ToolError
from pgcode.server._principal import request_principal
from pgcode.server.rest import error_response
from pgcode.server.security import request_json


async def _body(request: Request) -> dict[str, Any]:
    body = await request_json(request)
    if not isinstance(body, dict):
        raise ToolError(ErrorCode.INVALID_INPUT, "the request body must be a JSON object")
    return body


def _ref(request: Request) -> dict[str, Any]:
    """A script path segment: digits are an id, anything else a name."""
    ref = request.path_params["ref"]
    return {"id": int(ref)} if ref.isdigit() else {"name": ref}


def _execution_status(out: Any) -> int:
    """200 when the code ran (whatever it did); 400 when it was refused before running."""
    if isinstance(out, dict) and not out.get("success") and isinstance(out.get("error"), dict):
        return 400 if out["error"].get("code") in INPUT_ERRORS else 200
    return 200


CODEMODE_PATHS = ("/v1/execute", "/v1/validate", "/v1/executions", "/v1/executions/{rest:path}", "/v1/scripts",
                  "/v1/scripts/{rest:path}", "/v1/languages", "/v1/docs")


def codemode_off_routes() -> list[Route]:
    """With code mode off, its paths answer 404 with a JSON error that says why, for every method."""
    async def off(request: Request) -> Response:
        return error_response(ToolError(ErrorCode.NOT_FOUND, OFF_NOTE))

    methods = ["GET", "POST", "PUT", "PATCH", "DELETE"]
    return [Route(path, off, methods=methods) for path in CODEMODE_PATHS]


def codemode_routes(rt: Runtime) -> list[Route]:
    async def call(request: Request, tool: str, args: dict[str, Any], *, status: int = 200) -> Response:
        try:
            out = await rt.invoke(tool, args, request_principal(request))
        except ToolError as err:
            return error_response(err, request, rt)
        if tool in ("pg_execute_code", "pg_script_run"):
            status = _execution_status(out)
        return JSONResponse(out, status_code=status)

    def with_body(tool: str, extra: Any = None, *, status: int = 200) -> Any:
        async def endpoint(request: Request) -> Response:
            try:
                args = await _body(request)
            except ToolError as err:
                return error_response(err, request, rt)
            if extra is not None:  # the path names the script: it replaces any id or name in the body
                args = {**{k: v for k, v in args.items() if k not in ("id", "name")}, **extra(request)}
            return await call(request, tool, args, status=status)
        return endpoint

    def with_query(tool: str, names: tuple[str, ...], extra: Any = None) -> Any:
        async def endpoint(request: Request) -> Response:
            args: dict[str, Any] = {k: v for k in names if (v := request.query_params.get(k)) is not None}
            if extra is not None:
                args.update(extra(request))
            return await call(request, tool, args)
        return endpoint

    async def languages(request: Request) -> Response:
        return JSONResponse({"languages": LANGUAGES})

    async def docs(request: Request) -> Response:
        fmt = request.query_params.get("format")
        if fmt is None:
            fmt = "markdown" if "text/markdown" in request.headers.get("accept", "") else "json"
        try:
            out = await rt.invoke("pg_codemode_docs", {"format": fmt}, request_principal(request))
        except ToolError as err:
            return error_response(err, request, rt)
        if fmt == "markdown":
            return PlainTextResponse(out["markdown"], media_type="text/markdown; charset=utf-8")
        return JSONResponse(out)

    async def delete_script(request: Request) -> Response:
        return await call(request, "pg_script_delete", _ref(request))

    return [
        Route("/v1/execute", with_body("pg_execute_code"), methods=["POST"]),
        Route("/v1/validate", with_body("pg_validate_code"), methods=["POST"]),
        Route("/v1/executions", with_query("pg_execution_list", ("limit", "offset", "outcome", "principal")),
              methods=["GET"]),
        Route("/v1/executions/stats", with_query("pg_execution_stats", ("hours", "principal")), methods=["GET"]),
        Route("/v1/executions/{id}", with_query("pg_execution_get", (), lambda r: {"id": r.path_params["id"]}),
              methods=["GET"]),
        Route("/v1/scripts", with_query("pg_script_list", ("search", "limit", "offset")), methods=["GET"]),
        Route("/v1/scripts", with_body("pg_script_save", status=201), methods=["POST"]),
        Route("/v1/scripts/{ref}", with_query("pg_script_get", (), _ref), methods=["GET"]),
        Route("/v1/scripts/{ref}", with_body("pg_script_update", _ref), methods=["PUT", "PATCH"]),
        Route("/v1/scripts/{ref}", delete_script, methods=["DELETE"]),
        Route("/v1/scripts/{ref}/run", with_body("pg_script_run", _ref), methods=["POST"]),
        Route("/v1/languages", languages, methods=["GET"]),
        Route("/v1/docs", docs, methods=["GET"]),
    ]
