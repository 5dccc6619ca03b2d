"""Code mode over REST: /v1/execute, /v1/validate, /v1/executions, /v1/scripts, /v1/languages, /v1/docs."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx2
import pytest

from pgcode.core.runtime import Runtime
from pgcode.server.app import create_app
from pgcode.settings import Settings

pytestmark = pytest.mark.anyio


async def test_execute_returns_the_output_object(http: httpx2.AsyncClient) -> None:
    resp = await http.post("/v1/execute", json={"code": "console.log('hi'); return input.a + 1", "input": {"a": 41}})
    assert resp.status_code == 200
    body = resp.json()
    assert body["success"] is True and body["result"] == 42 and body["logs"] == [{"level": "log", "message": "hi"}]
    assert body["metrics"]["toolCalls"] == 0 and uuid.UUID(body["executionId"])


async def test_execute_failures_and_refusals(http: httpx2.AsyncClient) -> None:
    failed = await http.post("/v1/execute", json={"code": "\nthrow new Error('no')"})
    assert failed.status_code == 200 and failed.json()["error"] == {"code": "RUNTIME_ERROR", "message": "Error: no",
                                                                    "line": 2}
    missing = await http.post("/v1/execute", json={})
    assert missing.status_code == 400 and missing.json()["error"]["code"] == "MISSING_CODE"
    assert missing.json()["success"] is False
    bad_key = await http.post("/v1/execute", json={"code": "return 1", "bogus": 1})
    assert bad_key.status_code == 400 and bad_key.json()["error"]["code"] == "INVALID_INPUT"
    not_json = await http.post("/v1/execute", content=b"{nope", headers={"content-type": "application/json"})
    assert not_json.status_code == 400 and not_json.json()["error"]["code"] == "INVALID_INPUT"
    timeout = await http.post("/v1/execute", json={"code": "while (true) {}", "timeout": 100})
    assert timeout.status_code == 200 and timeout.json()["error"]["code"] == "TIMEOUT"


async def test_validate_reports_syntax_and_static_problems(http: httpx2.AsyncClient) -> None:
    good = (await http.post("/v1/validate", json={"code": "const t = await pg.core.listTables();\nreturn t"})).json()
    assert good == {"valid": True, "language": "javascript", "errors": [], "warnings": [],
                    "toolCalls": ["pg.core.listTables"]}
    syntax = (await http.post("/v1/validate", json={"code": "const a = 1;\nreturn a +* 2"})).json()
    assert syntax["valid"] is False and syntax["errors"][0]["code"] == "SYNTAX_ERROR"
    assert syntax["errors"][0]["line"] == 2
    static = (await http.post("/v1/validate", json={
        "code": "const x = await pg.core.listTabels();\neval('1');\n// eval('in a comment')\n"
                "await pg.core.writeQuery({sql: 'delete from t'});\nawait pg.call('pg_execute_code', {});\n"
                "await pg.nogroup.x();", "readonly": True})).json()
    problems = {(e["code"], e["line"]) for e in static["errors"]}
    assert problems == {("NOT_FOUND", 1), ("SECURITY_ERROR", 2), ("READ_ONLY", 4), ("SECURITY_ERROR", 5),
                        ("NOT_FOUND", 6)}
    assert "did you mean pg.core.listTables" in static["errors"][0]["message"]
    assert static["valid"] is False and static["warnings"][0]["code"] == "NO_RETURN"


async def test_validate_does_not_run_the_code(http: httpx2.AsyncClient) -> None:
    body = (await http.post("/v1/validate", json={"code": "while (true) {}\nreturn 1"})).json()
    assert body["valid"] is True  # it parsed; it was never run (a run would not finish)


async def test_executions_list_get_and_stats(http: httpx2.AsyncClient) -> None:
    ran = (await http.post("/v1/execute", json={"code": "return 'recorded'"})).json()
    listed = (await http.get("/v1/executions", params={"limit": 5, "outcome": "success"})).json()
    assert ran["executionId"] in {e["id"] for e in listed["executions"]} and listed["limit"] == 5
    one = await http.get(f"/v1/executions/{ran['executionId']}")
    assert one.status_code == 200 and one.json()["code"] == "return 'recorded'"
    assert (await http.get(f"/v1/executions/{uuid.uuid4()}")).status_code == 404
    assert (await http.get("/v1/executions/not-a-uuid")).status_code == 400
    assert (await http.get("/v1/executions", params={"outcome": "maybe"})).status_code == 400
    stats = (await http.get("/v1/executions/stats", params={"hours": 1})).json()
    local = next(p for p in stats["principals"] if p["principal"] == "local")
    assert local["executions"] >= 1 and "p95_duration_ms" in local


async def test_scripts_crud_and_run(http: httpx2.AsyncClient) -> None:
    name = f"rest-{uuid.uuid4().hex[:8]}"
    created = await http.post("/v1/scripts", json={"name": name, "code": "return args.x + (input || 0)"})
    assert created.status_code == 201 and created.json()["name"] == name
    script_id = created.json()["id"]
    again = await http.post("/v1/scripts", json={"name": name, "code": "return 1"})
    assert again.status_code == 409 and again.json()["error"]["code"] == "ALREADY_EXISTS"
    assert name in {s["name"] for s in (await http.get("/v1/scripts", params={"search": name})).json()["scripts"]}
    assert (await http.get(f"/v1/scripts/{name}")).json()["code"] == "return args.x + (input || 0)"
    assert (await http.get(f"/v1/scripts/{script_id}")).json()["name"] == name
    run = await http.post(f"/v1/scripts/{name}/run", json={"args": {"x": 2}, "input": 3})
    assert run.status_code == 200 and run.json()["result"] == 5
    changed = await http.put(f"/v1/scripts/{script_id}", json={"description": "adds", "name": "ignored"})
    assert changed.status_code == 200 and changed.json()["description"] == "adds"
    assert (await http.delete(f"/v1/scripts/{name}")).json()["deleted"] is True
    assert (await http.get(f"/v1/scripts/{name}")).status_code == 404
    bad = await http.post("/v1/scripts", json={"name": "no spaces allowed", "code": "return 1"})
    assert bad.status_code == 400 and "script name" in bad.json()["error"]["message"]


async def test_languages_and_docs(http: httpx2.AsyncClient) -> None:
    langs = (await http.get("/v1/languages")).json()["languages"]
    assert [lang["name"] for lang in langs] == ["javascript", "typescript"]
    docs = (await http.get("/v1/docs")).json()
    core = next(g for g in docs["groups"] if g["group"] == "core")
    read = next(m for m in core["methods"] if m["name"] == "readQuery")
    assert read["tool"] == "pg_read_query" and any(a["name"] == "sql" for a in read["arguments"])
    assert "codemode" not in {g["group"] for g in docs["groups"]} and "SYNTAX_ERROR" in docs["errorCodes"]
    md = await http.get("/v1/docs", params={"format": "markdown"})
    assert md.status_code == 200 and md.headers["content-type"].startswith("text/markdown")
    assert "### `pg.core.readQuery(args)`" in md.text and "| `sql` | string | yes |" in md.text
    by_accept = await http.get("/v1/docs", headers={"accept": "text/markdown"})
    assert by_accept.text == md.text


TOKENS = {"read": "cm-read-token-1", "admin": "cm-admin-token-2"}


@pytest.fixture(scope="module")
def token_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cm-auth") / "tokens.json"
    path.write_text(json.dumps([{"subject": f"cm-{level}", "sha256": hashlib.sha256(tok.encode()).hexdigest(),
                                 "scopes": [level]} for level, tok in TOKENS.items()]))
    return path


@pytest.fixture
async def secure(settings: Settings, token_file: Path) -> AsyncIterator[httpx2.AsyncClient]:
    async with Runtime(settings.model_copy(update={"auth_tokens": token_file})) as rt:
        app = create_app(rt)
        async with app.router.lifespan_context(app):
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                yield client


async def test_scopes_hold_over_rest(secure: httpx2.AsyncClient) -> None:
    def auth(level: str) -> dict[str, str]:
        return {"Authorization": f"Bearer {TOKENS[level]}"}

    refused = await secure.post("/v1/execute", json={"code": "return 1"}, headers=auth("read"))
    assert refused.status_code == 403 and 'scope="admin"' in refused.headers["www-authenticate"]
    assert (await secure.post("/v1/execute", json={"code": "return 1"})).status_code == 401
    ran = await secure.post("/v1/execute", json={"code": "return 1"}, headers=auth("admin"))
    assert ran.status_code == 200 and ran.json()["result"] == 1
    assert (await secure.post("/v1/scripts", json={"name": "s", "code": "return 1"},
                              headers=auth("read"))).status_code == 403
    assert (await secure.get("/v1/docs", headers=auth("read"))).status_code == 200
    assert (await secure.post("/v1/validate", json={"code": "return 1"}, headers=auth("read"))).status_code == 200
    mine = (await secure.get("/v1/executions", headers=auth("read"))).json()
    assert mine["total"] == 0  # the reader sees only its own executions
    others = await secure.get("/v1/executions", params={"principal": "cm-admin"}, headers=auth("read"))
    assert others.status_code == 403


async def test_execute_takes_a_memory_limit_and_an_allow_list(http: httpx2.AsyncClient) -> None:
    resp = await http.post("/v1/execute", json={"code": "return Object.keys(pg)", "memoryLimit": 4096,
                                                "tools": ["core"]})
    body = resp.json()
    assert resp.status_code == 200 and body["result"] == ["core", "call", "help"]
    assert body["metrics"]["memoryLimitMB"] == 512 and body["metrics"]["memoryLimitRequestedMB"] == 4096
    oom = await http.post("/v1/execute", json={"code": "let s = 'x'; while (true) s += s", "memoryLimit": 8})
    assert oom.status_code == 200 and oom.json()["error"]["code"] == "MEMORY_LIMIT"
    forbidden = await http.post("/v1/execute", json={"code": "return await pg.performance.tableStats()",
                                                     "tools": ["core"]})
    assert forbidden.status_code == 200 and forbidden.json()["error"]["code"] == "RUNTIME_ERROR"
    called = await http.post("/v1/execute", json={"code": "return await pg.call('pg_table_stats', {})",
                                                  "tools": ["core"]})
    assert called.status_code == 200 and called.json()["error"]["code"] == "FORBIDDEN"
    unknown = await http.post("/v1/execute", json={"code": "return 1", "tools": ["nope"]})
    assert unknown.status_code == 400 and unknown.json()["error"]["code"] == "INVALID_INPUT"
    too_big = await http.post("/v1/execute", json={"code": "return 1", "memoryLimit": 100_000})
    assert too_big.status_code == 400 and too_big.json()["error"]["code"] == "INVALID_INPUT"
