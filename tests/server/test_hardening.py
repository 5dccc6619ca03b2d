"""Attacks on the HTTP faces that must fail, each next to the legitimate request that must still work: bad JSON,
JWT claims of the wrong type, principals of one kind posing as another, leaks, and web pages calling a local
server (DNS rebinding, cross-origin, text/plain bodies)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import psycopg
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from starlette.routing import Route

from pgcode import __version__
from pgcode.core.runtime import Runtime
from pgcode.server.app import create_app
from pgcode.settings import Settings
from tests.test_auth import AUDIENCE, ISSUER, KeyPair

pytestmark = pytest.mark.anyio

JSON = {"Content-Type": "application/json"}
MCP = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json"}
DEEP = b"[" * 100_000
STATIC = {"admin": "tok-hard-admin-1", "read": "tok-hard-read-2"}
PUBLIC_HOST = "pgcode.example"


@pytest.fixture(scope="module")
def keys() -> KeyPair:
    return KeyPair("hard-1")


@pytest.fixture(scope="module")
def auth_files(tmp_path_factory: pytest.TempPathFactory, keys: KeyPair) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("hardening")
    tokens, jwks = folder / "tokens.json", folder / "jwks.json"
    tokens.write_text(json.dumps([
        {"subject": "shared", "sha256": hashlib.sha256(STATIC["admin"].encode()).hexdigest(), "scopes": ["admin"]},
        {"subject": "reader", "sha256": hashlib.sha256(STATIC["read"].encode()).hexdigest(), "scopes": ["read"]}]))
    jwks.write_text(json.dumps({"keys": [keys.jwk()]}))
    return tokens, jwks


@pytest.fixture(scope="module")
async def secure_rt(settings: Settings, auth_files: tuple[Path, Path]) -> AsyncIterator[Runtime]:
    tokens, jwks = auth_files
    secure = settings.model_copy(update={"auth_tokens": tokens, "auth_jwks_file": jwks, "auth_issuer": ISSUER,
                                         "auth_audience": AUDIENCE, "allowed_hosts": [PUBLIC_HOST]})
    async with Runtime(secure) as runtime:
        yield runtime


async def _client(rt: Runtime) -> AsyncIterator[httpx2.AsyncClient]:
    app = create_app(rt)
    async with app.router.lifespan_context(app), httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1") as c:
        yield c


@pytest.fixture
async def secure(secure_rt: Runtime) -> AsyncIterator[httpx2.AsyncClient]:
    async for c in _client(secure_rt):
        yield c


def static(level: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {STATIC[level]}"}


def jwt_auth(keys: KeyPair, **claims: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {keys.token(**claims)}"}


# -- 3. bad input is a 400 with a JSON error body, never a 500 ------------------------------------------------

BAD_BODIES = [DEEP, b"[" * 101 + b"]" * 101, b'{"sql": NaN}', b'{"code": "return 1", "input": 1e999}',
              b'{"code": "\\ud800"}', b"\xff\xfe{", b"{nope"]


@pytest.mark.parametrize("path", ["/v1/tools/pg_read_query", "/v1/execute", "/v1/validate", "/v1/scripts",
                                  "/v1/scripts/anything/run"])
async def test_bad_json_bodies_are_400_invalid_input_on_every_rest_route(http: httpx2.AsyncClient,
                                                                         path: str) -> None:
    for body in BAD_BODIES:
        resp = await http.post(path, content=body, headers=JSON)
        assert resp.status_code == 400, (path, body[:20], resp.status_code, resp.text[:200])
        assert resp.json()["error"]["code"] == "INVALID_INPUT"
        assert "Traceback" not in resp.text


async def test_nesting_within_the_limit_still_works(http: httpx2.AsyncClient) -> None:
    nested: Any = "leaf"
    for _ in range(90):
        nested = [nested]
    resp = await http.post("/v1/execute", json={"code": "let d = 0, v = input; while (Array.isArray(v)) "
                                                        "{ v = v[0]; d++; } return [d, v]", "input": nested})
    assert resp.status_code == 200 and resp.json()["result"] == [90, "leaf"]
    read = await http.post("/v1/tools/pg_read_query", json={"sql": "SELECT $1::text AS s", "params": ["😀"]})
    assert read.status_code == 200 and read.json()["rows"] == [{"s": "😀"}]
    report = await http.get("/v1/report", params={"format": "json", "thresholds": "[" * 5000})
    assert report.status_code == 400 and report.json()["error"]["code"] == "INVALID_INPUT"


async def test_mcp_bad_json_is_a_jsonrpc_parse_error_with_http_400(http: httpx2.AsyncClient,
                                                                   secure: httpx2.AsyncClient) -> None:
    for client, headers in ((http, MCP), (secure, {**MCP, **static("admin")})):
        for body in (DEEP, b"{nope", b'{"jsonrpc": "2.0", "id": 1, "method": "\\udc00"}'):
            resp = await client.post("/mcp", content=body, headers=headers)
            assert resp.status_code == 400, (body[:20], resp.text[:200])
            assert resp.json()["jsonrpc"] == "2.0" and resp.json()["error"]["code"] == -32700
    async with Client(streamable_http_client("http://127.0.0.1/mcp", http_client=http)) as mcp:
        result = await mcp.call_tool("pg_read_query", {"sql": "SELECT 1 AS one"})
        assert result.structured_content["rows"] == [{"one": 1}]


# -- 4. JWT claims of the wrong type are 401 ----------------------------------------------------------------

async def test_jwt_with_a_scope_of_the_wrong_type_is_401_and_grants_nothing(secure: httpx2.AsyncClient,
                                                                            keys: KeyPair) -> None:
    for scope in (7, {"admin": False}, {"admin": True}, ["admin", 1]):
        resp = await secure.post("/v1/execute", json={"code": "return 1"}, headers=jwt_auth(keys, scope=scope))
        assert resp.status_code == 401, (scope, resp.status_code)
        assert 'error="invalid_token"' in resp.headers["www-authenticate"]
    ok = await secure.post("/v1/execute", json={"code": "return 1"}, headers=jwt_auth(keys, scope="admin"))
    assert ok.status_code == 200 and ok.json()["result"] == 1
    listed = await secure.get("/v1/tools", headers=jwt_auth(keys, scope=["read"]))
    assert listed.status_code == 200 and {t["scope"] for t in listed.json()["tools"]} == {"read"}


# -- 5. principals are namespaced by how they authenticated ------------------------------------------------

async def test_a_jwt_sub_equal_to_a_static_subject_sees_nothing_of_it(secure: httpx2.AsyncClient, keys: KeyPair,
                                                                      conn: psycopg.Connection[Any]) -> None:
    owner = static("admin")
    impostor = jwt_auth(keys, sub="shared", scope="write")
    await secure.request("DELETE", "/v1/scripts/hard_mine", headers=owner)
    await secure.request("DELETE", "/v1/scripts/hard_theirs", headers=jwt_auth(keys, sub="shared", scope="admin"))
    saved = await secure.post("/v1/scripts", json={"name": "hard_mine", "code": "return 'mine'"}, headers=owner)
    assert saved.status_code == 201
    ran = (await secure.post("/v1/execute", json={"code": "return 'static run'"}, headers=owner)).json()
    tx = (await secure.post("/v1/tools/pg_transaction_begin", json={}, headers=owner)).json()["transactionId"]
    try:
        # The impostor: no scripts, no history, no transaction of the static principal.
        assert "hard_mine" not in {s["name"] for s in (await secure.get("/v1/scripts", headers=impostor)).json()
                                   ["scripts"]}
        assert (await secure.get("/v1/scripts/hard_mine", headers=impostor)).status_code == 404
        assert (await secure.get(f"/v1/executions/{ran['executionId']}", headers=impostor)).status_code == 404
        history = (await secure.get("/v1/executions", headers=impostor)).json()["executions"]
        assert ran["executionId"] not in {e["id"] for e in history}
        refused = await secure.post("/v1/tools/pg_transaction_rollback", json={"transactionId": tx}, headers=impostor)
        assert refused.status_code == 404
        # Its own things work; the owner still has everything.
        theirs = await secure.post("/v1/scripts", json={"name": "hard_theirs", "code": "return 1"}, headers=impostor)
        assert theirs.status_code == 201
        assert {s["name"] for s in (await secure.get("/v1/scripts", headers=impostor)).json()["scripts"]} >= {
            "hard_theirs"}
        mine = await secure.get("/v1/scripts/hard_mine", headers=owner)
        assert mine.status_code == 200 and mine.json()["code"] == "return 'mine'"
        assert (await secure.get(f"/v1/executions/{ran['executionId']}", headers=owner)).json()["principal"] == \
            "static:shared"
    finally:
        done = await secure.post("/v1/tools/pg_transaction_rollback", json={"transactionId": tx}, headers=owner)
        assert done.status_code == 200
    await secure_audit_flush(secure)
    rows = conn.execute("SELECT DISTINCT principal FROM pgcode.audit_log WHERE principal LIKE %s AND "
                        "at > now() - interval '5 minutes'", ("%shared",)).fetchall()
    assert {r[0] for r in rows} >= {"static:shared", f"jwt:{ISSUER}#shared"}


async def secure_audit_flush(secure: httpx2.AsyncClient) -> None:
    """Readers of the audit log flush it first: GET /v1/audit as the admin does that."""
    assert (await secure.get("/v1/audit", params={"limit": 1}, headers=static("admin"))).status_code == 200


# -- 6. no leaks: /healthz, the 401 challenge ---------------------------------------------------------------

async def test_healthz_says_only_up_to_anyone_and_the_details_to_admins(secure: httpx2.AsyncClient,
                                                                        keys: KeyPair) -> None:
    for headers in ({}, {"Authorization": "Bearer wrong"}, static("read"), jwt_auth(keys, scope="write")):
        resp = await secure.get("/healthz", headers=headers)
        assert resp.status_code == 200 and resp.json() == {"status": "ok"}, headers
    for headers in (static("admin"), jwt_auth(keys, scope="admin")):
        body = (await secure.get("/healthz", headers=headers)).json()
        assert body["status"] == "ok" and body["version"] == __version__ and body["serverVersion"]
        assert body["audit"]["writerRunning"] is True and body["audit"]["unwritten"] >= 0
        assert body["roleSeparation"] is True and body["readRole"] == "pgcode_read"


async def test_challenge_names_only_an_allowed_host_or_the_resource_url(secure: httpx2.AsyncClient,
                                                                        secure_rt: Runtime) -> None:
    resp = await secure.get("/v1/tools", headers={"Host": PUBLIC_HOST})
    assert resp.status_code == 401
    assert f'resource_metadata="http://{PUBLIC_HOST}/.well-known/oauth-protected-resource"' in \
        resp.headers["www-authenticate"]
    meta = (await secure.get("/.well-known/oauth-protected-resource/mcp", headers={"Host": PUBLIC_HOST})).json()
    assert meta["resource"] == f"http://{PUBLIC_HOST}/mcp"
    for path in ("/v1/tools", "/.well-known/oauth-protected-resource", "/mcp"):
        forged = await secure.get(path, headers={"Host": "evil.example"})
        assert forged.status_code == 421
        assert "evil" not in forged.text and "evil" not in json.dumps(dict(forged.headers))
    fixed = secure_rt.settings.model_copy(update={"resource_url": "https://db-tools.example.com/"})
    async with Runtime(fixed) as rt:
        async for c in _client(rt):
            resp = await c.get("/v1/tools")
            assert 'resource_metadata="https://db-tools.example.com/.well-known/oauth-protected-resource"' in \
                resp.headers["www-authenticate"]


async def test_challenge_text_from_the_token_is_quoted_safely(secure: httpx2.AsyncClient) -> None:
    import base64

    header = base64.urlsafe_b64encode(json.dumps({"alg": 'x"\u2603\r\n'}).encode()).rstrip(b"=").decode()
    resp = await secure.get("/v1/tools", headers={"Authorization": f"Bearer {header}.e30.c2ln"})
    assert resp.status_code == 401 and resp.headers["www-authenticate"].count('"') % 2 == 0


# -- 7. web pages cannot use a local server: Host, Origin, Content-Type on every route ------------------------

def _post_paths(app: Any) -> list[tuple[str, str]]:
    out = []
    for route in app.routes:
        if isinstance(route, Route):
            methods = {"POST"} if route.methods is None else route.methods  # /mcp takes every method
            for method in sorted(methods & {"POST", "PUT", "PATCH"}):
                out.append((method, route.path.replace("{name}", "pg_read_query").replace("{ref}", "nothing")))
    return out


async def test_cross_origin_text_plain_write_is_refused_and_a_local_page_still_works(
        http: httpx2.AsyncClient, schema: str, conn: psycopg.Connection[Any]) -> None:
    code = json.dumps({"code": f"await pg.core.writeQuery({{sql: 'CREATE TABLE {schema}.pwned (a int)'}}); return 1"})
    evil = await http.post("/v1/execute", content=code, headers={"Origin": "http://evil.example",
                                                                 "Content-Type": "text/plain"})
    assert evil.status_code == 403 and evil.json()["error"]["code"] == "FORBIDDEN"
    plain = await http.post("/v1/execute", content=code, headers={"Content-Type": "text/plain"})
    assert plain.status_code == 415 and plain.json()["error"]["code"] == "INVALID_INPUT"
    evil_json = await http.post("/v1/execute", content=code, headers={"Origin": "http://evil.example", **JSON})
    assert evil_json.status_code == 403
    assert conn.execute("SELECT to_regclass(%s)", (f"{schema}.pwned",)).fetchone() == (None,)
    local = await http.post("/v1/execute", content=code, headers={"Origin": "http://localhost:5173", **JSON})
    assert local.status_code == 200 and local.json()["result"] == 1
    assert conn.execute("SELECT to_regclass(%s)::text", (f"{schema}.pwned",)).fetchone() == (f"{schema}.pwned",)


async def test_forged_host_is_421_on_every_route(http: httpx2.AsyncClient) -> None:
    forged = {"Host": "evil.example"}
    for method, path in [("GET", "/v1/tools"), ("GET", "/healthz"), ("GET", "/openapi.json"), ("GET", "/v1/scripts"),
                         ("POST", "/v1/execute"), ("POST", "/v1/tools/pg_read_query"), ("GET", "/v1/report"),
                         ("POST", "/mcp")]:
        resp = await http.request(method, path, json={"code": "return 1", "sql": "SELECT 1"}, headers=forged)
        assert resp.status_code == 421, (method, path, resp.status_code)
    assert (await http.get("/v1/tools", headers={"Host": "localhost:8765"})).status_code == 200
    assert (await http.get("/v1/tools", headers={"Host": "[::1]:8765"})).status_code == 200
    assert (await http.get("/v1/tools", headers={"Host": "localhost:8765.evil.example"})).status_code == 421


async def test_every_post_route_wants_json(app: Any, http: httpx2.AsyncClient) -> None:
    paths = _post_paths(app)
    assert ("POST", "/v1/execute") in paths and ("POST", "/mcp") in paths and ("PUT", "/v1/scripts/nothing") in paths
    for method, path in paths:
        for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
                             None):
            headers = {"Content-Type": content_type} if content_type else {}
            resp = await http.request(method, path, content=b'{"code": "return 1"}', headers=headers)
            assert resp.status_code == 415, (method, path, content_type, resp.status_code)
    ok = await http.post("/v1/validate", content=b'{"code": "return 1"}',
                         headers={"Content-Type": "application/json; charset=utf-8"})
    assert ok.status_code == 200 and ok.json()["valid"] is True


async def test_mcp_refuses_foreign_origins_and_content_types(http: httpx2.AsyncClient) -> None:
    message = b'{"jsonrpc": "2.0", "id": 1, "method": "tools/list"}'
    evil = await http.post("/mcp", content=message, headers={**MCP, "Origin": "http://evil.example"})
    assert evil.status_code == 403 and evil.json()["error"]["code"] == -32600
    plain = await http.post("/mcp", content=message, headers={**MCP, "Content-Type": "text/plain"})
    assert plain.status_code == 415
    async with Client(streamable_http_client("http://127.0.0.1/mcp", http_client=http)) as mcp:
        assert "pg_read_query" in {t.name for t in (await mcp.list_tools()).tools}
