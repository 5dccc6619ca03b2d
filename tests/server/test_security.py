"""HTTP auth end to end: 401/403 challenges, RFC 9728 metadata, a scope matrix over every tool, MCP step-up,
rate limits, the audit log, and no secret in any log line or error body."""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx2
import psycopg
import pytest

from pgcode.core.registry import load_registry
from pgcode.core.runtime import Runtime
from pgcode.server.app import create_app
from pgcode.settings import Settings
from pgcode.types import Effect

pytestmark = pytest.mark.anyio

TOKENS = {"none": "tok-no-scope-9f1c", "read": "tok-reader-71aa", "write": "tok-writer-52bd", "admin": "tok-admin-33ce"}
BELOW = {"read": "none", "write": "read", "admin": "write"}
DB_PASSWORD = "S3cret-Db-Pw-42"
ISSUER = "https://issuer.example"
_bodies: list[str] = []


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("auth") / "tokens.json"
    path.write_text(json.dumps([
        {"subject": f"user-{level}", "sha256": hashlib.sha256(tok.encode()).hexdigest(),
         "scopes": [] if level == "none" else [level]} for level, tok in TOKENS.items()]))
    return path


def _with_password(dsn: str) -> str:
    from psycopg.conninfo import conninfo_to_dict, make_conninfo

    params = conninfo_to_dict(dsn)
    if params.get("host", "").startswith("/"):  # the embedded server: a socket, trust auth
        return make_conninfo(dsn, password=DB_PASSWORD)
    return make_conninfo(dsn, password=DB_PASSWORD)


@pytest.fixture(scope="module")
def secure_settings(dsn: str, token_file: Path) -> Settings:
    unlimited = "1000000/minute"
    return Settings(database_url=_with_password(dsn), auth_tokens=token_file, auth_issuer=ISSUER,
                    rate_limit_read=unlimited, rate_limit_write=unlimited, rate_limit_admin=unlimited,
                    rate_limit_code=unlimited)


@pytest.fixture(scope="module")
async def secure_rt(secure_settings: Settings) -> AsyncIterator[Runtime]:
    async with Runtime(secure_settings) as runtime:
        yield runtime


@pytest.fixture
async def client(secure_rt: Runtime) -> AsyncIterator[httpx2.AsyncClient]:
    app = create_app(secure_rt)
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app, client=("203.0.113.7", 5555))

        async def keep(response: httpx2.Response) -> None:
            await response.aread()
            _bodies.append(response.text + " " + json.dumps(dict(response.headers)))

        async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1",
                                      event_hooks={"response": [keep]}) as c:
            yield c


def bearer(level: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[level]}"}


async def test_missing_or_bad_token_is_401_with_resource_metadata(client: httpx2.AsyncClient) -> None:
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "Basic abc"}):
        resp = await client.get("/v1/tools", headers=headers)
        assert resp.status_code == 401
        challenge = resp.headers["www-authenticate"]
        assert challenge.startswith("Bearer ") and 'error="invalid_token"' in challenge
        assert 'resource_metadata="http://127.0.0.1/.well-known/oauth-protected-resource"' in challenge
    mcp = await client.post("/mcp", json={"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
    assert mcp.status_code == 401


async def test_public_endpoints_need_no_token(client: httpx2.AsyncClient) -> None:
    assert (await client.get("/healthz")).status_code == 200
    meta = (await client.get("/.well-known/oauth-protected-resource")).json()
    assert meta["scopes_supported"] == ["read", "write", "admin"]
    assert meta["authorization_servers"] == [ISSUER]
    assert meta["bearer_methods_supported"] == ["header"]
    mcp_meta = (await client.get("/.well-known/oauth-protected-resource/mcp")).json()
    assert mcp_meta["resource"] == "http://127.0.0.1/mcp"


async def test_catalog_shows_a_caller_only_what_it_may_call(client: httpx2.AsyncClient) -> None:
    reader = {t["name"] for t in (await client.get("/v1/tools", headers=bearer("read"))).json()["tools"]}
    admin = {t["name"] for t in (await client.get("/v1/tools", headers=bearer("admin"))).json()["tools"]}
    registry = load_registry()
    assert reader == {s.name for s in registry if s.effect is Effect.READ}
    assert admin == {s.name for s in registry}
    nobody = (await client.get("/v1/tools", headers=bearer("none"))).json()["tools"]
    assert nobody == []


def _snapshot(conn: psycopg.Connection[Any]) -> Any:
    return conn.execute(
        "SELECT n.nspname, c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast', 'pgcode') "
        "AND n.nspname NOT LIKE 'pg\\_temp%%' AND n.nspname NOT LIKE 'pg\\_toast%%' ORDER BY 1, 2").fetchall()


async def test_scope_matrix_over_every_registered_tool(client: httpx2.AsyncClient, secure_rt: Runtime,
                                                       conn: psycopg.Connection[Any]) -> None:
    """One level below a tool's scope gets 403 naming the scope, and nothing changes; its scope gets through."""
    conn.execute("CREATE TABLE IF NOT EXISTS public.scope_canary (id int PRIMARY KEY)")
    conn.execute("INSERT INTO public.scope_canary VALUES (1) ON CONFLICT DO NOTHING")
    before = _snapshot(conn)
    specs = list(secure_rt.registry)
    for spec in specs:
        lower = BELOW[spec.scope.value]
        # Arguments that would do something real: the call must be stopped before any of it runs.
        args = {"table": "scope_canary", "sql": "DROP TABLE public.scope_canary", "name": "scope_canary"}
        resp = await client.post(f"/v1/tools/{spec.name}", json=args, headers=bearer(lower))
        assert resp.status_code == 403, (spec.name, resp.status_code, resp.text)
        assert resp.json()["error"]["code"] == "FORBIDDEN"
        challenge = resp.headers["www-authenticate"]
        assert 'error="insufficient_scope"' in challenge and f'scope="{spec.scope.value}"' in challenge, spec.name
    assert _snapshot(conn) == before
    assert conn.execute("SELECT count(*) FROM public.scope_canary").fetchone() == (1,)
    for spec in specs:
        # With its scope the call gets past authorization; bad arguments then fail for their own reason.
        args = {} if spec.effect is Effect.READ else {"__probe": True}
        resp = await client.post(f"/v1/tools/{spec.name}", json=args, headers=bearer(spec.scope.value))
        assert resp.status_code not in (401, 403), (spec.name, resp.text)
        if spec.effect is not Effect.READ:
            assert resp.json()["error"]["code"] == "INVALID_INPUT", (spec.name, resp.text)
    await secure_rt.audit.flush()
    rows = conn.execute(
        "SELECT tool, outcome, error_code, client_addr FROM pgcode.audit_log WHERE principal = ANY(%s) "
        "AND tool = ANY(%s) AND at > now() - interval '5 minutes' AND error_code = 'FORBIDDEN'",
        ([f"static:user-{lvl}" for lvl in TOKENS], [s.name for s in specs])).fetchall()
    per_tool = {name: [r for r in rows if r[0] == name] for name in (s.name for s in specs)}
    assert all(len(v) >= 1 for v in per_tool.values()), [k for k, v in per_tool.items() if not v]
    assert all(r[1] == "error" and r[3] == "203.0.113.7" for r in rows)
    conn.execute("DROP TABLE public.scope_canary")


async def test_statement_scope_ddl_through_write_query_needs_admin(client: httpx2.AsyncClient,
                                                                   conn: psycopg.Connection[Any]) -> None:
    resp = await client.post("/v1/tools/pg_write_query", json={"sql": "CREATE TABLE public.should_not_exist (a int)"},
                             headers=bearer("write"))
    assert resp.status_code == 403 and 'scope="admin"' in resp.headers["www-authenticate"]
    assert conn.execute("SELECT to_regclass('public.should_not_exist')").fetchone() == (None,)


def _mcp_call(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": 7, "method": "tools/call", "params": {"name": name, "arguments": arguments}}


MCP_HEADERS = {"Accept": "application/json, text/event-stream", "MCP-Protocol-Version": "2025-11-25"}


async def test_mcp_tools_call_without_the_scope_is_a_403_step_up(client: httpx2.AsyncClient,
                                                                 conn: psycopg.Connection[Any]) -> None:
    resp = await client.post("/mcp", json=_mcp_call("pg_drop_table", {"table": "anything"}),
                             headers={**MCP_HEADERS, **bearer("write")})
    assert resp.status_code == 403
    challenge = resp.headers["www-authenticate"]
    assert 'error="insufficient_scope"' in challenge and 'scope="admin"' in challenge
    ddl = await client.post("/mcp", json=_mcp_call("pg_write_query", {"sql": "CREATE TABLE public.nope_mcp (a int)"}),
                            headers={**MCP_HEADERS, **bearer("write")})
    assert ddl.status_code == 403 and 'scope="admin"' in ddl.headers["www-authenticate"]
    assert conn.execute("SELECT to_regclass('public.nope_mcp')").fetchone() == (None,)


async def test_mcp_with_the_scope_works_and_lists_only_allowed_tools(client: httpx2.AsyncClient) -> None:
    from mcp import Client
    from mcp.client.streamable_http import streamable_http_client

    client.headers.update(bearer("read"))
    try:
        async with Client(streamable_http_client("http://127.0.0.1/mcp", http_client=client)) as mcp:
            names = {t.name for t in (await mcp.list_tools()).tools}
            assert "pg_read_query" in names and "pg_write_query" not in names
            result = await mcp.call_tool("pg_read_query", {"sql": "SELECT 1 AS one"})
            assert result.structured_content["rows"] == [{"one": 1}]
    finally:
        client.headers.pop("Authorization", None)


async def test_rate_limit_429_with_retry_after_per_principal(dsn: str, token_file: Path) -> None:
    settings = Settings(database_url=dsn, auth_tokens=token_file, rate_limit_read="3/minute")
    async with Runtime(settings) as rt:
        app = create_app(rt)
        async with app.router.lifespan_context(app), httpx2.AsyncClient(
                transport=httpx2.ASGITransport(app=app), base_url="http://127.0.0.1") as c:
            now = [100 * 60 + 30.0]  # half way through a minute window, whatever the machine's clock says
            rt.limiter.clock = lambda: now[0]
            codes = [(await c.post("/v1/tools/pg_read_query", json={"sql": "SELECT 1"}, headers=bearer("read")))
                     for _ in range(4)]
            assert [r.status_code for r in codes] == [200, 200, 200, 429]
            assert codes[3].json()["error"]["code"] == "RATE_LIMITED"
            assert 1 <= int(codes[3].headers["retry-after"]) <= 61
            # The sliding window lets a call through once the three weigh less than two: 20 s into the next window,
            # 50 s from now. Retry-After rounds up, so a retry when it says passes and one a second sooner does not.
            assert codes[3].headers["retry-after"] == "51"
            now[0] += 49
            early = await c.post("/v1/tools/pg_read_query", json={"sql": "SELECT 1"}, headers=bearer("read"))
            assert early.status_code == 429
            now[0] += 2
            again = await c.post("/v1/tools/pg_read_query", json={"sql": "SELECT 1"}, headers=bearer("read"))
            assert again.status_code == 200
            other = await c.post("/v1/tools/pg_read_query", json={"sql": "SELECT 1"}, headers=bearer("admin"))
            assert other.status_code == 200  # another principal has its own budget
            write = await c.post("/v1/tools/pg_write_query", json={"sql": "SELECT 1"}, headers=bearer("write"))
            assert write.status_code == 200  # and another class too


async def test_audit_keeps_no_password_and_logs_leak_nothing(client: httpx2.AsyncClient, secure_rt: Runtime,
                                                             conn: psycopg.Connection[Any],
                                                             caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    role_password = "Hunter2-Role-Secret"
    await client.post("/v1/tools/pg_read_query", json={"sql": "SELECT 1", "password": role_password},
                      headers=bearer("admin"))
    await client.post("/v1/tools/pg_write_query",
                      json={"sql": f"CREATE ROLE pgcode_audit_probe LOGIN PASSWORD '{role_password}'"},
                      headers=bearer("admin"))
    conn.execute("DROP ROLE IF EXISTS pgcode_audit_probe")
    await secure_rt.audit.flush()
    rows = conn.execute("SELECT tool, arguments::text FROM pgcode.audit_log WHERE principal = 'static:user-admin' "
                        "AND at > now() - interval '1 minute' ORDER BY id").fetchall()
    assert any(t == "pg_write_query" and "[redacted]" in a for t, a in rows)
    assert any(t == "pg_read_query" and '"password": "[redacted]"' in a for t, a in rows)
    assert all(role_password not in a for _, a in rows)
    log_text = "\n".join(r.getMessage() for r in caplog.records)
    for secret in (role_password, DB_PASSWORD, *TOKENS.values()):
        assert secret not in log_text


async def test_no_secret_in_any_error_body_or_health_report(client: httpx2.AsyncClient, dsn: str) -> None:
    await client.get("/healthz")
    await client.post("/v1/tools/pg_read_query", json={"sql": "SELECT * FROM nowhere"}, headers=bearer("read"))
    await client.post("/v1/tools/pg_read_query", json={"sql": "SELECT current_setting('password')"},
                      headers=bearer("read"))
    # An unreachable database: the error says so without the connection string.
    from pgcode.errors import ToolError

    bad = Settings(database_url=f"postgresql://postgres:{DB_PASSWORD}@127.0.0.1:1/nowhere", pool_timeout_s=2)
    with pytest.raises(ToolError) as exc:
        async with Runtime(bad):
            pass
    _bodies.append(json.dumps(exc.value.to_dict()))
    assert len(_bodies) > 10
    everything = "\n".join(_bodies)
    for secret in (DB_PASSWORD, *TOKENS.values()):
        assert secret not in everything, secret


async def test_audit_log_over_rest_and_as_a_tool_is_admin_only(client: httpx2.AsyncClient) -> None:
    await client.post("/v1/tools/pg_read_query", json={"sql": "SELECT 42"}, headers=bearer("read"))
    denied = await client.get("/v1/audit", headers=bearer("write"))
    assert denied.status_code == 403 and 'scope="admin"' in denied.headers["www-authenticate"]
    resp = await client.get("/v1/audit", params={"principal": "static:user-read", "tool": "pg_read_query", "limit": 5},
                            headers=bearer("admin"))
    assert resp.status_code == 200
    body = resp.json()
    assert body["retentionDays"] == 30 and 1 <= len(body["entries"]) <= 5
    newest = body["entries"][0]
    assert newest["principal"] == "static:user-read" and newest["tool"] == "pg_read_query"
    assert newest["outcome"] == "ok" and newest["arguments"] == {"sql": "SELECT 42"}
    assert newest["effect"] == "read" and newest["duration_ms"] >= 0
    bad = await client.get("/v1/audit", params={"since": "yesterday"}, headers=bearer("admin"))
    assert bad.status_code == 400


def test_redaction_rules() -> None:
    from pgcode.guard.audit import REDACTED, arguments_json, redact

    assert redact({"password": "x", "apiKey": "y", "user": "bob", "primaryKey": True}) == {
        "password": REDACTED, "apiKey": REDACTED, "user": "bob", "primaryKey": True}
    assert redact({"sql": "ALTER ROLE a PASSWORD 'p''w'"}) == {"sql": f"ALTER ROLE a PASSWORD '{REDACTED}'"}
    assert redact({"data": "plain", "algorithm": "sha256"}, group="pgcrypto") == {
        "data": REDACTED, "algorithm": "sha256"}
    assert redact({"nested": [{"token": "t"}]}) == {"nested": [{"token": REDACTED}]}
    assert redact({"ta\x00ble": "a\x00b"}) == {"ta\\0ble": "a\\0b"}  # jsonb cannot hold NUL
    big = json.loads(arguments_json({"rows": [{"a": "x" * 100}] * 500}, None))
    assert big["_truncated"] is True and big["_keys"] == ["rows"]
