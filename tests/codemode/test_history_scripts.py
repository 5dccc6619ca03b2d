"""Execution history (pgcode.executions) and saved scripts (pgcode.scripts), through their tools."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import anyio
import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from pydantic import SecretStr

from pgcode.codemode.engine import engine
from pgcode.core.runtime import Runtime
from pgcode.settings import Settings
from pgcode.types import LOCAL_PRINCIPAL, Principal, Scope
from tests.codemode._helpers import failed, ok
from tests.fix_db import assert_tool_error

pytestmark = pytest.mark.anyio


def _who(tag: str, scope: Scope = Scope.ADMIN) -> Principal:
    return Principal.with_scope(f"{tag}-{uuid.uuid4().hex[:8]}", scope)


async def _exec(rt: Runtime, p: Principal, code: str, **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = await rt.invoke("pg_execute_code", {"code": code, **kw}, p)
    return out


# -- history -----------------------------------------------------------------------------------------

async def test_every_execution_is_recorded(rt: Runtime) -> None:
    me = _who("hist")
    code = "await pg.core.readQuery({sql: 'select 1'}); return 'x'.repeat(10)"
    out = await _exec(rt, me, code, input={"k": [1, 2]}, readonly=True)
    row = await rt.invoke("pg_execution_get", {"id": out["executionId"]}, me)
    assert row["principal"] == me.subject and row["outcome"] == "success" and row["error_code"] is None
    assert row["code"] == code and row["code_hash"] == hashlib.sha256(code.encode()).hexdigest()
    assert row["tool_calls"] == 1 and row["result_bytes"] == 12 and row["readonly"] is True
    assert row["input_bytes"] == len('{"k":[1,2]}') and row["language"] == "javascript"
    assert row["duration_ms"] == pytest.approx(out["metrics"]["durationMs"], abs=0.01)


async def test_history_lists_with_filters_and_paging(rt: Runtime) -> None:
    me = _who("list")
    await _exec(rt, me, "return 1")
    await _exec(rt, me, "throw new Error('x')")
    await _exec(rt, me, "while (true) {}", timeout=100)
    await _exec(rt, me, "")
    everything = await rt.invoke("pg_execution_list", {"principal": me.subject}, LOCAL_PRINCIPAL)
    assert everything["total"] == 4
    assert [e["outcome"] for e in everything["executions"]] == ["error", "timeout", "error", "success"]
    assert [e["error_code"] for e in everything["executions"]] == ["MISSING_CODE", "TIMEOUT", "RUNTIME_ERROR", None]
    timeouts = await rt.invoke("pg_execution_list", {"principal": me.subject, "outcome": "timeout"}, me)
    assert timeouts["total"] == 1 and timeouts["executions"][0]["error_code"] == "TIMEOUT"
    page = await rt.invoke("pg_execution_list", {"principal": me.subject, "limit": 2, "offset": 2}, me)
    assert [e["outcome"] for e in page["executions"]] == ["error", "success"] and page["total"] == 4
    assert "code" not in page["executions"][0]


async def test_history_stats_per_principal(rt: Runtime) -> None:
    me = _who("stats")
    for code in ("return 1", "return 2", "return 3", "throw 1"):
        await _exec(rt, me, code)
    await _exec(rt, me, "while (true) {}", timeout=50)
    stats = await rt.invoke("pg_execution_stats", {"principal": me.subject}, me)
    [row] = stats["principals"]
    assert row["principal"] == me.subject and row["executions"] == 5 and row["succeeded"] == 3
    assert float(row["success_rate"]) == 0.6 and row["timeouts"] == 1
    assert 0 < float(row["mean_duration_ms"]) <= float(row["p95_duration_ms"])
    everyone = await rt.invoke("pg_execution_stats", {}, LOCAL_PRINCIPAL)
    assert me.subject in {r["principal"] for r in everyone["principals"]}


async def test_history_is_private_without_the_admin_scope(rt: Runtime) -> None:
    admin = _who("adm")
    await _exec(rt, admin, "return 1")
    reader = _who("reader", Scope.READ)
    mine = await rt.invoke("pg_execution_list", {}, reader)
    assert mine["total"] == 0
    with pytest.raises(Exception) as exc:
        await rt.invoke("pg_execution_list", {"principal": admin.subject}, reader)
    assert_tool_error(exc, "FORBIDDEN")
    someone_elses = (await rt.invoke("pg_execution_list", {"principal": admin.subject}, LOCAL_PRINCIPAL))
    exec_id = someone_elses["executions"][0]["id"]
    with pytest.raises(Exception) as exc:
        await rt.invoke("pg_execution_get", {"id": exec_id}, reader)
    assert_tool_error(exc, "NOT_FOUND")
    with pytest.raises(Exception) as exc:
        await rt.invoke("pg_execution_get", {"id": str(uuid.uuid4())}, LOCAL_PRINCIPAL)
    assert_tool_error(exc, "NOT_FOUND")


async def test_history_retention_prunes_old_rows(rt: Runtime, conn: psycopg.Connection[Any]) -> None:
    old_id, new_id = uuid.uuid4(), uuid.uuid4()
    conn.execute("DELETE FROM pgcode.executions WHERE principal = 'retention'")
    for exec_id, age in ((old_id, "40 days"), (new_id, "1 day")):
        conn.execute("INSERT INTO pgcode.executions (id, principal, code_hash, code, started_at, duration_ms, outcome) "
                     "VALUES (%s, 'retention', 'h', 'c', now() - %s::interval, 1, 'success')", (exec_id, age))
    history = engine(rt).history
    history._last_prune = float("-inf")
    await history.flush()
    kept = {r[0] for r in conn.execute("SELECT id FROM pgcode.executions WHERE principal = 'retention'")}
    assert kept == {new_id}
    conn.execute("DELETE FROM pgcode.executions WHERE principal = 'retention'")


# -- saved scripts -----------------------------------------------------------------------------------

async def test_script_save_list_get_update_run_delete(rt: Runtime) -> None:
    me = _who("scripts")
    saved = await rt.invoke("pg_script_save", {"name": "double", "code": "return args.n * 2",
                                               "description": "doubles n"}, me)
    assert saved["name"] == "double" and saved["language"] == "javascript" and saved["runs"] == 0
    listed = await rt.invoke("pg_script_list", {}, me)
    assert [s["name"] for s in listed["scripts"]] == ["double"] and "code" not in listed["scripts"][0]
    got = await rt.invoke("pg_script_get", {"name": "double"}, me)
    assert got["code"] == "return args.n * 2" and got["id"] == saved["id"]
    run = await rt.invoke("pg_script_run", {"name": "double", "args": {"n": 21}}, me)
    assert ok(run) == 42 and run["script"] == {"id": saved["id"], "name": "double"}
    by_id = await rt.invoke("pg_script_run", {"id": saved["id"], "args": {"n": 1}, "input": [1]}, me)
    assert ok(by_id) == 2
    updated = await rt.invoke("pg_script_update", {"name": "double", "code": "const n: number = args.n; "
                                                   "return n * 3", "newName": "triple"}, me)
    assert updated["name"] == "triple" and updated["language"] == "typescript" and updated["runs"] == 2
    assert ok(await rt.invoke("pg_script_run", {"name": "triple", "args": {"n": 2}}, me)) == 6
    row = await rt.invoke("pg_execution_get", {"id": run["executionId"]}, me)
    assert row["script_id"] == saved["id"]
    deleted = await rt.invoke("pg_script_delete", {"name": "triple"}, me)
    assert deleted == {"deleted": True, "id": saved["id"], "name": "triple"}
    with pytest.raises(Exception) as exc:
        await rt.invoke("pg_script_get", {"name": "triple"}, me)
    assert_tool_error(exc, "NOT_FOUND", "triple")


async def test_script_names_are_unique_per_owner(rt: Runtime) -> None:
    alice, bob = _who("alice"), _who("bob")
    await rt.invoke("pg_script_save", {"name": "report", "code": "return 'a'"}, alice)
    with pytest.raises(Exception) as exc:
        await rt.invoke("pg_script_save", {"name": "report", "code": "return 'again'"}, alice)
    assert_tool_error(exc, "ALREADY_EXISTS", "report")
    await rt.invoke("pg_script_save", {"name": "report", "code": "return 'b'"}, bob)
    assert ok(await rt.invoke("pg_script_run", {"name": "report"}, alice)) == "a"
    assert ok(await rt.invoke("pg_script_run", {"name": "report"}, bob)) == "b"
    await rt.invoke("pg_script_save", {"name": "other", "code": "return 1"}, alice)
    with pytest.raises(Exception) as exc:
        await rt.invoke("pg_script_update", {"name": "other", "newName": "report"}, alice)
    assert_tool_error(exc, "ALREADY_EXISTS")


@pytest.mark.parametrize(("args", "fragment"), [
    ({"name": "1starts-with-digit", "code": "return 1"}, "not a valid script name"),
    ({"name": "has space", "code": "return 1"}, "not a valid script name"),
    ({"name": "x" * 101, "code": "return 1"}, "not a valid script name"),
    ({"name": "big", "code": "return 1;" + " " * 60_000}, "bytes"),
    ({"name": "empty", "code": "  "}, "no code"),
    ({"name": "broken", "code": "return 1 +* 2"}, "does not parse"),
])
async def test_script_save_refuses_bad_names_and_code(rt: Runtime, args: dict[str, Any], fragment: str) -> None:
    with pytest.raises(Exception) as exc:
        await rt.invoke("pg_script_save", args, _who("bad"))
    assert_tool_error(exc, "INVALID_INPUT", fragment)


async def test_script_reference_needs_id_or_name(rt: Runtime) -> None:
    for args in ({}, {"id": 1, "name": "x"}):
        with pytest.raises(Exception) as exc:
            await rt.invoke("pg_script_get", args, LOCAL_PRINCIPAL)
        assert_tool_error(exc, "INVALID_INPUT", "id or its name")


async def test_script_defaults_readonly_and_timeout(rt: Runtime, schema: str,
                                                    conn: psycopg.Connection[Any]) -> None:
    me = _who("defaults")
    conn.execute(f'CREATE TABLE "{schema}".script_target (id int)')
    code = f"await pg.core.writeQuery({{sql: 'INSERT INTO \"{schema}\".script_target VALUES (1)'}}); return 1"
    await rt.invoke("pg_script_save", {"name": "writer", "code": code, "readonly": True, "timeout": 5000}, me)
    failed(await rt.invoke("pg_script_run", {"name": "writer"}, me), "READ_ONLY")
    assert conn.execute(f'SELECT count(*) FROM "{schema}".script_target').fetchone() == (0,)
    assert ok(await rt.invoke("pg_script_run", {"name": "writer", "readonly": False}, me)) == 1
    await rt.invoke("pg_script_save", {"name": "slow", "code": "while (true) {}", "timeout": 100}, me)
    failed(await rt.invoke("pg_script_run", {"name": "slow"}, me), "TIMEOUT", "100 ms")


async def test_script_scopes(rt: Runtime) -> None:
    reader, writer = _who("r", Scope.READ), _who("w", Scope.WRITE)
    with pytest.raises(Exception) as exc:
        await rt.invoke("pg_script_save", {"name": "s", "code": "return 1"}, reader)
    assert_tool_error(exc, "FORBIDDEN", "write")
    await rt.invoke("pg_script_save", {"name": "s", "code": "return 1"}, writer)
    assert (await rt.invoke("pg_script_list", {}, writer))["total"] == 1
    for tool in ("pg_script_run", "pg_script_delete"):
        with pytest.raises(Exception) as exc:
            await rt.invoke(tool, {"name": "s"}, writer)
        assert_tool_error(exc, "FORBIDDEN", "admin")
    assert (await rt.invoke("pg_script_list", {}, reader))["total"] == 0  # only your own scripts


async def test_missing_script_is_not_found(rt: Runtime) -> None:
    for tool in ("pg_script_get", "pg_script_run", "pg_script_delete"):
        with pytest.raises(Exception) as exc:
            await rt.invoke(tool, {"name": "never-saved"}, _who("nobody"))
        assert_tool_error(exc, "NOT_FOUND", "never-saved")


HISTORY_DB = "pgcode_history_restart"


@pytest.fixture
async def own_rt(dsn: str, settings: Settings) -> AsyncIterator[tuple[Runtime, str]]:
    """A runtime on a database of its own, so that ending every session there ends only this runtime's."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(HISTORY_DB)))
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(HISTORY_DB)))
    url = make_conninfo(dsn, dbname=HISTORY_DB)
    try:
        async with Runtime(settings.model_copy(update={"database_url": SecretStr(url)})) as runtime:
            yield runtime, url
    finally:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(HISTORY_DB)))


async def test_a_database_restart_loses_no_history_row(own_rt: tuple[Runtime, str]) -> None:
    """Every pooled connection ended by the server, as a fast restart ends them: the record waits and is written."""
    rt, url = own_rt
    me = _who("restart")
    assert ok(await _exec(rt, me, "await pg.core.readQuery({sql: 'SELECT 1'}); return 1")) == 1
    with psycopg.connect(url, autocommit=True) as c:
        ended = c.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()
        assert ended is not None and ended[0] >= 1
        out = await _exec(rt, me, "return 2")
        assert ok(out) == 2
        for _ in range(100):
            rows = c.execute("SELECT id::text FROM pgcode.executions WHERE principal = %s ORDER BY started_at",
                             (me.subject,)).fetchall()
            if len(rows) == 2:
                break
            await anyio.sleep(0.1)
        assert rows[-1] == (out["executionId"],)
