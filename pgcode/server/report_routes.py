"""GET /v1/report?format=html|md|json[&since=7d|&baseline=ID]: the health report, built through invoke() as the
request's principal; with a baseline snapshot it shows what changed since. A GET saves nothing."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from pgcode.core.runtime import Runtime
from pgcode.errors import ErrorCode, ToolError
from pgcode.report import FORMATS, collect, render
from pgcode.server._principal import request_principal
from pgcode.server.body import parse_json
from pgcode.server.rest import error_response


def _arguments(request: Request) -> tuple[str, dict[str, Any]]:
    fmt = request.query_params.get("format", "html")
    if fmt not in FORMATS:
        raise ToolError(ErrorCode.INVALID_INPUT, f"format must be one of {', '.join(FORMATS)}, not {fmt!r}")
    raw = request.query_params.get("thresholds")
    thresholds = parse_json(raw, "thresholds") if raw else {}
    if not isinstance(thresholds, dict):
        raise ToolError(ErrorCode.INVALID_INPUT, "thresholds must be a JSON object")
    options: dict[str, Any] = {"thresholds": thresholds, "since": request.query_params.get("since") or None}
    baseline = request.query_params.get("baseline")
    if baseline:
        if not baseline.isdigit() or int(baseline) < 1:
            raise ToolError(ErrorCode.INVALID_INPUT, f"baseline must be a snapshot id (a positive integer), not "
                                                     f"{baseline[:40]!r}", hint="pg_health_snapshot_list lists them")
        options["baseline"] = int(baseline)
    return fmt, options


def report_routes(rt: Runtime) -> list[Route]:
    async def report(request: Request) -> Response:
        """Every tool the report uses runs with the caller's scopes: without read, 403."""
        try:
            fmt, options = _arguments(request)
            data = await collect(rt, request_principal(request), **options)
        except ToolError as err:
            return error_response(err, request, rt)
        return Response(render(data, fmt), media_type=FORMATS[fmt])

    return [Route("/v1/report", report, methods=["GET"])]
