"""OpenAPI 3.1 for every HTTP route, `/docs` (the same document as a page) and `/` (what this server is).

Request schemas are the input models of the tools behind the routes (what invoke() validates with); answers
that are not a tool's own result have their models here, and the routes build those answers from them.
"""

from __future__ import annotations

import html
import json
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.json_schema import models_json_schema

from pgcode import __version__
from pgcode.core.invoke import visible_tools
from pgcode.core.runtime import Runtime
from pgcode.errors import ErrorCode
from pgcode.types import Effect, Principal, Scope

DESCRIPTION = ("PostgreSQL admin tools for DBAs, platform teams and LLM agents: every tool of one registry over "
               "MCP (Streamable HTTP at /mcp), REST/JSON (/v1) and code mode (/v1/execute).")


class ErrorDetail(BaseModel):
    code: ErrorCode
    message: str
    hint: str | None = None
    details: dict[str, Any] | None = None


class Error(BaseModel):
    """Every HTTP error of /v1 and /healthz: one shape whatever the route."""

    error: ErrorDetail


class ToolDescription(BaseModel):
    name: str = Field(description="pg_<name>: the MCP tool name and the REST path /v1/tools/{name}")
    group: str
    method: str = Field(description="The code-mode method, pg.<group>.<method>")
    aliases: list[str] = Field(description="Other code-mode methods that reach the same tool")
    effect: Effect
    scope: Scope = Field(description="The scope a caller needs")
    extensions: list[str] = Field(description="PostgreSQL extensions the tool needs")
    title: str
    description: str
    inputSchema: dict[str, Any] = Field(description="JSON Schema of the arguments")


class ToolCatalog(BaseModel):
    tools: list[ToolDescription]
    count: int


class RunError(BaseModel):
    code: str = Field(description="MISSING_CODE, INVALID_INPUT, SYNTAX_ERROR, RUNTIME_ERROR, TIMEOUT, SECURITY_ERROR, "
                                  "RESULT_TOO_LARGE, READ_ONLY, EXECUTION_FAILED, or an uncaught tool error's code")
    message: str
    line: int | None = Field(None, description="Line of the code, when known")
    tool: str | None = None
    hint: str | None = None


class LogEntry(BaseModel):
    level: Literal["log", "info", "warn", "error", "debug"]
    message: str


class RunMetrics(BaseModel):
    durationMs: float
    toolCalls: int
    resultBytes: int


class ExecutionOutput(BaseModel):
    """What a code run answers: HTTP 200 once code ran, 400 when refused before running (README's table)."""

    success: bool
    result: Any = Field(None, description="What the code returned")
    logs: list[LogEntry]
    error: RunError | None
    metrics: RunMetrics
    language: str | None = None
    executionId: str | None = None


class Health(BaseModel):
    """Anyone sees the status; admins also the rest."""

    model_config = ConfigDict(extra="allow")
    status: Literal["ok", "unhealthy"]
    database: Literal["reachable", "unreachable"] | None = None
    serverVersion: str | None = None
    tools: int | None = None
    readOnly: bool | None = None
    version: str | None = None
    databaseError: ErrorDetail | None = Field(None, description="Why the database cannot be reached")
    codeMode: Literal["on", "off"] | None = None
    roleSeparation: bool | None = Field(None, description="Whether read and write calls run as their own roles")


class ServerInfo(BaseModel):
    name: Literal["pgcode"]
    version: str
    description: str
    links: dict[str, str] = Field(description="Where to go next: docs, openapi, mcp, rest, health")


class Languages(BaseModel):
    languages: list[str]


MODELS: tuple[type[BaseModel], ...] = (Error, ToolCatalog, ToolDescription, ExecutionOutput, Health, ServerInfo,
                                       Languages)
_REF = "#/components/schemas/{model}"


def server_info(rt: Runtime) -> ServerInfo:
    return ServerInfo(name="pgcode", version=__version__, description=DESCRIPTION, links={
        "docs": "/docs", "openapi": "/openapi.json", "mcp": "/mcp", "rest": "/v1/tools", "health": "/healthz",
        "codeModeDocs": "/v1/docs"})


def _json(model: str, description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": {"$ref": _REF.format(model=model)}}}}


_ERROR_STATUSES = ("Every failure has this shape. 400 INVALID_INPUT; 401 no valid bearer token; 403 FORBIDDEN (the "
                   "token lacks the scope) or READ_ONLY; 404 NOT_FOUND; 409 CONFLICT or ALREADY_EXISTS; 422 SQL_ERROR; "
                   "424 EXTENSION_MISSING or UNSUPPORTED_VERSION; 429 RATE_LIMITED (Retry-After); 500 INTERNAL; "
                   "503 BUSY (Retry-After), CONNECTION_FAILED, AUTH_FAILED, DATABASE_NOT_FOUND or INVALID_DSN; "
                   "504 TIMEOUT")
_ERROR = {"$ref": "#/components/responses/Error"}
_ANY_RESULT = {"$ref": "#/components/responses/ToolResult"}


class _Document:
    """Builds the document: components from the models, then one entry per route."""

    def __init__(self, rt: Runtime, principal: Principal) -> None:
        self.rt = rt
        self.tools = {s.name: s for s in visible_tools(rt, principal)}
        _, defs = models_json_schema([(m, "serialization") for m in MODELS], ref_template=_REF)
        self.components: dict[str, Any] = dict(defs.get("$defs", {}))
        self.paths: dict[str, dict[str, Any]] = {}

    def input_ref(self, tool: str) -> dict[str, Any] | None:
        """The tool's input schema as a component (its own $defs beside it); None when the caller cannot call it."""
        spec = self.tools.get(tool)
        if spec is None:
            return None
        name = f"{tool}.input"
        if name not in self.components:
            schema = json.loads(json.dumps(spec.input_schema).replace('"#/$defs/', f'"#/components/schemas/{tool}.'))
            for def_name, definition in schema.pop("$defs", {}).items():
                self.components[f"{tool}.{def_name}"] = definition
            self.components[name] = schema
        return {"$ref": _REF.format(model=name)}

    def query(self, tool: str, names: tuple[str, ...]) -> list[dict[str, Any]]:
        """Query parameters taken from the tool's input fields of those names."""
        spec = self.tools.get(tool)
        props = spec.input_schema.get("properties", {}) if spec else {}
        return [{"name": n, "in": "query", "required": False, "schema": _nullable_off(props.get(n, {"type": "string"})),
                 "description": props.get(n, {}).get("description", "")} for n in names]

    def add(self, path: str, method: str, op: dict[str, Any]) -> None:
        self.paths.setdefault(path, {})[method] = op

    def tool_route(self, path: str, method: str, tool: str, summary: str, *, body: bool = False,
                   query: tuple[str, ...] = (), params: list[dict[str, Any]] | None = None,
                   ok: dict[str, Any] | None = None, ok_status: str = "200") -> None:
        """A route that calls `tool` through invoke(); left out when this caller may not call it."""
        if tool not in self.tools:
            return
        op: dict[str, Any] = {"summary": summary, "description": f"Calls `{tool}` with the caller's scopes.",
                              "tags": ["code mode" if tool in _CODE_ROUTE_TOOLS else "server"],
                              "x-tool": tool, "parameters": [*(params or []), *self.query(tool, query)],
                              "responses": {ok_status: ok or _ANY_RESULT, "default": _ERROR}}
        if body:
            op["requestBody"] = {"required": True, "content": {"application/json": {"schema": self.input_ref(tool)}}}
        self.add(path, method, op)


_CODE_ROUTE_TOOLS = frozenset({"pg_execute_code", "pg_validate_code", "pg_execution_list", "pg_execution_stats",
                               "pg_execution_get", "pg_script_list", "pg_script_save", "pg_script_get",
                               "pg_script_update", "pg_script_delete", "pg_script_run", "pg_codemode_docs"})


def _nullable_off(schema: dict[str, Any]) -> dict[str, Any]:
    """A query parameter is absent rather than null: keep the non-null branch of `X | None`."""
    branches = [b for b in schema.get("anyOf", []) if b.get("type") != "null"]
    if len(branches) == 1:
        return {**{k: v for k, v in schema.items() if k != "anyOf"}, **branches[0]}
    return schema


_SCRIPT_REF = {"name": "ref", "in": "path", "required": True, "schema": {"type": "string"},
               "description": "The script's id (digits) or its name"}


def openapi_document(rt: Runtime, principal: Principal) -> dict[str, Any]:
    """OpenAPI 3.1 of every route this caller can use: the server's own, code mode's, and one POST per tool."""
    doc = _Document(rt, principal)
    page: dict[str, Any] = {"text/html": {"schema": {"type": "string"}}}
    html_page = {"description": "An HTML page", "content": page}
    info = _json("ServerInfo", "JSON, or an HTML page when the client accepts text/html")
    doc.add("/", "get", {"summary": "What this server is, with links", "tags": ["server"], "responses": {
        "200": {**info, "content": {**info["content"], **page}}}})
    doc.add("/docs", "get", {"summary": "This API as a page to read", "tags": ["server"], "responses": {
        "200": html_page}})
    doc.add("/openapi.json", "get", {"summary": "This document (the routes and tools this caller may use)",
                                     "tags": ["server"], "responses": {"200": {
                                         "description": "OpenAPI 3.1", "content": {"application/json": {"schema": {
                                             "type": "object"}}}}}})
    doc.add("/healthz", "get", {"summary": "Up or not; versions and the database's state for admins",
                                "tags": ["server"], "security": [],
                                "responses": {"200": _json("Health", "The database answers"),
                                              "503": _json("Health", "The database cannot be reached")}})
    doc.add("/mcp", "post", {"summary": "MCP over Streamable HTTP (JSON-RPC 2.0; stateless)", "tags": ["server"],
                             "description": "Every tool of this catalog as an MCP tool. Send Accept: application/json, "
                                            "text/event-stream.",
                             "requestBody": {"required": True, "content": {"application/json": {"schema": {
                                 "type": "object", "required": ["jsonrpc", "method"]}}}},
                             "responses": {"200": {"description": "A JSON-RPC response (JSON or an SSE stream)"},
                                           "202": {"description": "A notification was accepted"},
                                           "default": _ERROR}})
    for suffix in ("", "/mcp"):
        doc.add(f"/.well-known/oauth-protected-resource{suffix}", "get", {
            "summary": "OAuth protected-resource metadata (RFC 9728)", "tags": ["server"], "security": [],
            "responses": {"200": {"description": "The metadata", "content": {"application/json": {"schema": {
                "type": "object"}}}}}})
    doc.add("/v1/tools", "get", {"summary": "The catalog: the tools this caller may call", "tags": ["server"],
                                 "parameters": [{"name": "group", "in": "query", "required": False,
                                                 "schema": {"type": "string"}, "description": "Only this group"}],
                                 "responses": {"200": _json("ToolCatalog", "The tools"), "default": _ERROR}})
    doc.add("/v1/tools/{name}", "get", {
        "summary": "One tool's description", "tags": ["server"],
        "parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
        "responses": {"200": _json("ToolDescription", "The tool"), "default": _ERROR}})
    doc.tool_route("/v1/audit", "get", "pg_audit_log", "The audit log: who called what, when, with what outcome",
                   query=("principal", "tool", "since", "limit"))
    doc.tool_route("/v1/report", "get", "pg_analyze_db_health", "The health report (HTML, Markdown or JSON)",
                   params=[{"name": "format", "in": "query", "required": False,
                            "schema": {"enum": ["html", "md", "json"], "default": "html"}},
                           {"name": "thresholds", "in": "query", "required": False, "schema": {"type": "string"},
                            "description": "A JSON object overriding check thresholds"},
                           {"name": "since", "in": "query", "required": False, "schema": {"type": "string"},
                            "description": "Show what changed since the snapshot this old (7d, 12h, 30m)"},
                           {"name": "baseline", "in": "query", "required": False,
                            "schema": {"type": "integer", "minimum": 1},
                            "description": "Show what changed since this snapshot (pg_health_snapshot_list)"}],
                   ok={"description": "The report", "content": {"text/html": {"schema": {"type": "string"}},
                                                                "text/markdown": {"schema": {"type": "string"}},
                                                                "application/json": {"schema": {"type": "object"}}}})
    paths = doc.paths.get("/v1/report", {}).get("get")
    if paths is not None:
        paths["description"] = "Runs the health checks and the other read tools of the report with the caller's scopes."
    _code_routes(doc)
    _tool_calls(doc)
    return {"openapi": "3.1.0",
            "info": {"title": "pgcode", "version": __version__, "description": DESCRIPTION},
            "components": {"schemas": doc.components,
                           "responses": {"Error": _json("Error", _ERROR_STATUSES), "ToolResult": {
                               "description": "The tool's result (JSON)", "content": {"application/json": {
                                   "schema": {}}}}},
                           "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
            "security": [{"bearer": []}] if rt.settings.auth_enabled else [],
            "paths": doc.paths}


def _code_routes(doc: _Document) -> None:
    run = _json("ExecutionOutput", "The code ran: success true or false (see error)")
    refused = _json("ExecutionOutput", "Refused before running (MISSING_CODE, INVALID_INPUT; success false), or a "
                                       "malformed request (the Error shape)")
    doc.tool_route("/v1/execute", "post", "pg_execute_code", "Run JavaScript or TypeScript against the pg API",
                   body=True, ok=run)
    if "/v1/execute" in doc.paths:
        doc.paths["/v1/execute"]["post"]["responses"]["400"] = refused
    doc.tool_route("/v1/validate", "post", "pg_validate_code", "Check code without running it", body=True)
    doc.tool_route("/v1/executions", "get", "pg_execution_list", "Recent code-mode executions",
                   query=("limit", "offset", "outcome", "principal"))
    doc.tool_route("/v1/executions/stats", "get", "pg_execution_stats", "Code-mode statistics per principal",
                   query=("hours", "principal"))
    doc.tool_route("/v1/executions/{id}", "get", "pg_execution_get", "One execution with its code",
                   params=[{"name": "id", "in": "path", "required": True, "schema": {"type": "string"}}])
    doc.tool_route("/v1/scripts", "get", "pg_script_list", "Your saved scripts", query=("search", "limit", "offset"))
    doc.tool_route("/v1/scripts", "post", "pg_script_save", "Save a script", body=True, ok_status="201")
    doc.tool_route("/v1/scripts/{ref}", "get", "pg_script_get", "One saved script with its code",
                   params=[_SCRIPT_REF])
    for method in ("put", "patch"):
        doc.tool_route("/v1/scripts/{ref}", method, "pg_script_update", "Change a saved script", body=True,
                       params=[_SCRIPT_REF])
    doc.tool_route("/v1/scripts/{ref}", "delete", "pg_script_delete", "Delete a saved script", params=[_SCRIPT_REF])
    doc.tool_route("/v1/scripts/{ref}/run", "post", "pg_script_run", "Run a saved script (the path names it)",
                   body=True, params=[_SCRIPT_REF], ok=run)
    if "/v1/scripts/{ref}/run" in doc.paths:
        doc.paths["/v1/scripts/{ref}/run"]["post"]["responses"]["400"] = refused
    doc.tool_route("/v1/docs", "get", "pg_codemode_docs", "The code-mode API reference (JSON, or Markdown)",
                   query=("format",))
    doc.add("/v1/languages", "get", {"summary": "The languages code mode runs", "tags": ["code mode"],
                                     "responses": {"200": _json("Languages", "The languages"), "default": _ERROR}})


def _tool_calls(doc: _Document) -> None:
    for spec in doc.tools.values():
        doc.add(f"/v1/tools/{spec.name}", "post", {
            "operationId": spec.name, "summary": spec.title, "description": spec.description,
            "tags": [spec.group], "x-effect": spec.effect.value, "x-scope": spec.scope.value,
            "requestBody": {"required": False, "content": {"application/json": {"schema": doc.input_ref(spec.name)}}},
            "responses": {"200": _ANY_RESULT, "default": _ERROR}})


# -- /docs: the document as a page ---------------------------------------------------------------------------

_STYLE = """body{font:15px/1.5 system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222}
h1{margin-bottom:0}code,pre{font:13px ui-monospace,monospace;background:#f4f4f4;padding:1px 4px;border-radius:3px}
details{border:1px solid #ddd;border-radius:4px;margin:4px 0;padding:4px 8px}summary{cursor:pointer}
.m{display:inline-block;width:4.5em;font-weight:600;text-transform:uppercase;font-size:12px}
.get{color:#0a6}.post{color:#06c}.put,.patch{color:#a60}.delete{color:#c22}
table{border-collapse:collapse;margin:4px 0}td,th{border-bottom:1px solid #eee;padding:2px 8px;text-align:left;
vertical-align:top}nav a{margin-right:1em}"""


def docs_page(document: dict[str, Any]) -> str:
    """The OpenAPI document as one self-contained page: no script, no stylesheet from elsewhere."""
    by_tag: dict[str, list[str]] = {}
    for path, ops in document["paths"].items():
        for method, op in ops.items():
            by_tag.setdefault(op.get("tags", ["other"])[0], []).append(
                _operation(path, method, op, document["components"]))
    schemas = document["components"]["schemas"]
    by_tag["answers"] = [f"<details><summary><code>{_e(m.__name__)}</code> {_e(_first_line(m))}</summary>"
                         f"{_fields(schemas[m.__name__], schemas)}</details>" for m in MODELS if m.__name__ in schemas]
    order = ["server", "code mode", "answers",
             *sorted(t for t in by_tag if t not in ("server", "code mode", "answers"))]
    nav = " ".join(f'<a href="#{_slug(t)}">{_e(t)}</a>' for t in order if t in by_tag)
    sections = "".join(f'<h2 id="{_slug(t)}">{_e(t)}</h2>{"".join(by_tag[t])}' for t in order if t in by_tag)
    info = document["info"]
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>pgcode API</title>'
            f"<style>{_STYLE}</style></head><body><h1>pgcode {_e(info['version'])}</h1><p>{_e(info['description'])}"
            f'</p><p>The machine-readable form: <a href="/openapi.json">/openapi.json</a>. MCP clients connect to '
            f"<code>/mcp</code>; <code>/healthz</code> says whether the database answers.</p><nav>{nav}</nav>"
            f"{sections}</body></html>")


def _operation(path: str, method: str, op: dict[str, Any], components: dict[str, Any]) -> str:
    schemas = components["schemas"]
    parts = [f'<details><summary><span class="m {method}">{method}</span><code>{_e(path)}</code> '
             f"{_e(op.get('summary', ''))}</summary>"]
    if op.get("description"):
        parts.append(f"<p>{_e(op['description'])}</p>")
    if op.get("parameters"):
        rows = "".join(f"<tr><td><code>{_e(p['name'])}</code></td><td>{_e(p['in'])}</td>"
                       f"<td>{_e(_type(p.get('schema', {}), schemas))}</td><td>{_e(p.get('description', ''))}</td></tr>"
                       for p in op["parameters"])
        parts.append(f"<table><tr><th>parameter</th><th>in</th><th>type</th><th></th></tr>{rows}</table>")
    body = op.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    if body:
        parts.append(f"<p>Request body (JSON):</p>{_fields(_resolve(body, schemas), schemas)}")
    responses = {code: components["responses"][r["$ref"].rsplit("/", 1)[-1]] if "$ref" in r else r
                 for code, r in op.get("responses", {}).items()}
    answers = "".join(f"<tr><td>{_e(code)}</td><td>{_e(r.get('description', ''))}</td><td>{_e(_answer(r, schemas))}"
                      f"</td></tr>" for code, r in responses.items())
    parts.append(f"<table><tr><th>status</th><th>meaning</th><th>body</th></tr>{answers}</table></details>")
    return "".join(parts)


def _fields(schema: dict[str, Any], schemas: dict[str, Any]) -> str:
    props = schema.get("properties", {})
    if not props:
        return "<p>(no fields)</p>"
    required = set(schema.get("required", []))
    rows = "".join(f"<tr><td><code>{_e(name)}</code>{' *' if name in required else ''}</td>"
                   f"<td>{_e(_type(p, schemas))}</td><td>{_e(p.get('description', ''))}</td></tr>"
                   for name, p in props.items())
    return f"<table><tr><th>field</th><th>type</th><th></th></tr>{rows}</table>"


def _answer(response: dict[str, Any], schemas: dict[str, Any]) -> str:
    content = response.get("content", {})
    return ", ".join(_type(c.get("schema", {}), schemas) if kind == "application/json" else kind
                     for kind, c in content.items())


def _resolve(schema: dict[str, Any], schemas: dict[str, Any]) -> dict[str, Any]:
    ref = schema.get("$ref", "")
    found: dict[str, Any] = schemas.get(ref.rsplit("/", 1)[-1], schema) if ref else schema
    return found


def _type(schema: dict[str, Any], schemas: dict[str, Any]) -> str:
    """A short type: integer, string (enum a|b), array of X, Model name, X or null."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1].removesuffix(".input")
    if "anyOf" in schema:
        return " or ".join(_type(b, schemas) for b in schema["anyOf"])
    if "enum" in schema:
        return " | ".join(json.dumps(v) for v in schema["enum"])
    kind = schema.get("type")
    if kind == "array":
        return f"array of {_type(schema.get('items', {}), schemas)}"
    return str(kind) if kind else "any JSON"


def _first_line(model: type[BaseModel]) -> str:
    return (model.__doc__ or "").strip().splitlines()[0] if model.__doc__ else ""


def _slug(tag: str) -> str:
    return _e(tag.replace(" ", "-"))


def _e(text: Any) -> str:
    return html.escape(str(text))


def root_page(info: ServerInfo) -> str:
    links = "".join(f'<li><a href="{_e(href)}">{_e(href)}</a> ({_e(name)})</li>' for name, href in info.links.items())
    return (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>pgcode</title><style>{_STYLE}'
            f"</style></head><body><h1>pgcode {_e(info.version)}</h1><p>{_e(info.description)}</p><ul>{links}</ul>"
            "</body></html>")
