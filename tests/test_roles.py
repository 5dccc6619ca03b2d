"""Safety the database enforces: per-scope roles, the volatility gate, a read-only server, a private pgcode schema,
fair shares and no session state across principals. Each attack sits beside a positive control."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgcode.core.runtime import Runtime
from pgcode.errors import ToolError
from pgcode.settings import Settings
from pgcode.types import LOCAL_PRINCIPAL, Principal, Scope
from tests.fix_db import Call, assert_tool_error

pytestmark = pytest.mark.anyio

READER = Principal.with_scope("reader", Scope.READ)
WRITER = Principal.with_scope("writer", Scope.WRITE)


def one(conn: psycopg.Connection[Any], query: Any, *params: Any) -> Any:
    row = conn.execute(query, params or None).fetchone()
    assert row is not None
    return row[0]


def has_extension(conn: psycopg.Connection[Any], name: str) -> bool:
    return bool(one(conn, "SELECT count(*) FROM pg_extension WHERE extname = %s", name))


@pytest.fixture(scope="module")
def items(dsn: str, schema: str) -> Iterator[str]:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(sql.SQL("CREATE TABLE {}.items (id serial PRIMARY KEY, name text, qty int)").format(
            sql.Identifier(schema)))
        c.execute(sql.SQL("INSERT INTO {}.items (name, qty) VALUES ('a', 1), ('b', 2)").format(
            sql.Identifier(schema)))
    yield f"{schema}.items"


async def refused(call: Call, name: str, args: dict[str, Any], principal: Principal, code: str,
                  *fragments: str) -> ToolError:
    with pytest.raises(ToolError) as exc:
        await call(name, args, principal=principal)
    return assert_tool_error(exc, code, *fragments)


# ---------------------------------------------------------------- the roles


async def test_calls_run_as_their_scope_role(rt: Runtime, call: Call, items: str) -> None:
    assert rt.roles.enabled, rt.roles.reason
    read = await call("pg_read_query", {"sql": "SELECT current_user AS u"}, principal=READER)
    assert read["rows"] == [{"u": "pgcode_read"}]
    # the role follows the call's scope, not the caller's: an admin's read still runs as the read role
    assert (await call("pg_read_query", {"sql": "SELECT current_user AS u"}))["rows"] == [{"u": "pgcode_read"}]
    wrote = await call("pg_write_query", {"sql": f"UPDATE {items} SET qty = qty WHERE id = 1 "
                                                 "RETURNING current_user AS u"}, principal=WRITER)
    assert wrote["rows"] == [{"u": "pgcode_write"}]
    admin = await call("pg_write_query", {"sql": "CREATE TEMP TABLE t_whoami AS SELECT current_user AS u"})
    assert admin["rowCount"] == 1


async def test_setup_is_idempotent_and_grants_what_readme_says(dsn: str, conn: psycopg.Connection[Any]) -> None:
    from pgcode.guard.roles import setup_roles

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as c:
        await setup_roles(c, Settings(database_url=dsn))
        await setup_roles(c, Settings(database_url=dsn))
    assert one(conn, "SELECT pg_has_role('pgcode_read', 'pg_read_all_data', 'MEMBER') "
                     "AND pg_has_role('pgcode_read', 'pg_monitor', 'MEMBER') "
                     "AND pg_has_role('pgcode_write', 'pgcode_read', 'MEMBER') "
                     "AND pg_has_role('pgcode_write', 'pg_write_all_data', 'MEMBER')")
    assert one(conn, "SELECT NOT rolcanlogin AND NOT rolsuper FROM pg_roles WHERE rolname = 'pgcode_write'")


async def test_write_still_updates_and_inserts_through_sequences(call: Call, conn: psycopg.Connection[Any],
                                                                 items: str) -> None:
    out = await call("pg_write_query", {"sql": f"INSERT INTO {items} (name, qty) VALUES ($1, 3)", "params": ["c"]},
                     principal=WRITER)
    assert out["rowCount"] == 1
    assert one(conn, f"SELECT qty FROM {items} WHERE name = 'c'") == 3


@pytest.mark.parametrize("text", [
    "RESET ROLE", "SET ROLE postgres", "SET LOCAL ROLE postgres", "SET SESSION AUTHORIZATION postgres",
    "SELECT set_config('role', 'postgres', true)", "SELECT set_config('session_authorization', 'postgres', true)",
])
async def test_no_way_to_change_role(call: Call, text: str) -> None:
    for principal in (READER, WRITER):
        with pytest.raises(ToolError) as exc:
            await call("pg_write_query", {"sql": text}, principal=principal)
        assert exc.value.code.value in ("INVALID_INPUT", "FORBIDDEN")
        with pytest.raises(ToolError) as exc:
            await call("pg_read_query", {"sql": text}, principal=READER)
        assert exc.value.code.value == "INVALID_INPUT"
    # positive control: reading a setting is fine
    out = await call("pg_read_query", {"sql": "SELECT current_setting('role') AS r"}, principal=READER)
    assert out["rows"] == [{"r": "pgcode_read"}]


async def test_server_files_are_refused_by_the_database(call: Call) -> None:
    for view in ("pg_file_settings", "pg_hba_file_rules"):
        err = await refused(call, "pg_read_query", {"sql": f"SELECT count(*) FROM {view}"}, READER,
                            "FORBIDDEN", "permission denied")
        assert err.details["sqlstate"] == "42501"
    # positive control: the read role sees every session's query text (pg_monitor)
    out = await call("pg_read_query", {"sql": "SELECT count(*) FILTER (WHERE query <> '<insufficient privilege>') "
                                              "= count(*) AS all_visible FROM pg_stat_activity"}, principal=READER)
    assert out["rows"] == [{"all_visible": True}]


async def test_credential_catalogs_need_admin(call: Call, conn: psycopg.Connection[Any]) -> None:
    role = f"t_pw_{uuid.uuid4().hex[:8]}"
    conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD 'hunter2-secret'").format(sql.Identifier(role)))
    try:
        for text in ("SELECT rolpassword FROM pg_authid", "SELECT passwd FROM pg_catalog.pg_shadow",
                     "SELECT * FROM pg_user_mappings", "SELECT umoptions FROM pg_user_mapping"):
            for principal in (READER, WRITER):
                err = await refused(call, "pg_read_query", {"sql": text}, principal, "FORBIDDEN", "admin")
                assert "credentials" in (err.hint or "")
        err = await refused(call, "pg_write_query", {"sql": "UPDATE pg_authid SET rolcanlogin = true WHERE false"},
                            WRITER, "FORBIDDEN", "admin")
        out = await call("pg_read_query", {"sql": "SELECT rolpassword IS NOT NULL AS has FROM pg_authid "
                                                  "WHERE rolname = $1", "params": [role]})
        assert out["rows"] == [{"has": True}]  # positive control: admin may
        # positive control: pg_roles masks the password and stays readable
        out = await call("pg_read_query", {"sql": "SELECT rolpassword FROM pg_roles WHERE rolname = $1",
                                           "params": [role]}, principal=READER)
        assert out["rows"] == [{"rolpassword": "********"}]
    finally:
        conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


# ---------------------------------------------------------------- the volatility gate


async def test_write_scope_cannot_call_volatile_functions(call: Call, conn: psycopg.Connection[Any],
                                                          items: str) -> None:
    if has_extension(conn, "pg_cron"):
        before = one(conn, "SELECT count(*) FROM cron.job")
        err = await refused(call, "pg_write_query", {"sql": "SELECT cron.schedule('j', '* * * * *', "
                                                            "$$COPY (SELECT 1) TO PROGRAM 'id > /tmp/x'$$)"},
                            WRITER, "FORBIDDEN", "admin")
        assert "IMMUTABLE or STABLE" in (err.hint or "")
        assert one(conn, "SELECT count(*) FROM cron.job") == before
    if has_extension(conn, "postgis"):
        await refused(call, "pg_write_query", {"sql": f"SELECT DropGeometryTable('{items.split('.')[0]}', 'items')"},
                      WRITER, "FORBIDDEN", "admin")
        await refused(call, "pg_write_query", {"sql": f"UPDATE {items} SET name = AddGeometryColumn('x', 'y', 'g', "
                                                      "4326, 'POINT', 2)"}, WRITER, "FORBIDDEN", "admin")
    await refused(call, "pg_write_query", {"sql": f"UPDATE {items} SET name = pg_sleep(0)::text"}, WRITER,
                  "FORBIDDEN", "admin")
    assert one(conn, f"SELECT count(*) FROM {items} WHERE name = ''") == 0
    # positive controls: immutable, stable and the reviewed volatile functions are fine for write
    out = await call("pg_write_query", {"sql": f"UPDATE {items} SET name = lower(upper(name)) || "
                                               "left(gen_random_uuid()::text || now()::text, 0) WHERE random() >= 0"},
                     principal=WRITER)
    assert out["rowCount"] >= 2


async def test_where_fragments_refuse_volatile_functions(call: Call, conn: psycopg.Connection[Any],
                                                         items: str, schema: str) -> None:
    table = items.split(".")[1]
    if has_extension(conn, "postgis"):
        err = await refused(call, "pg_count", {"table": table, "schema": schema,
                                               "where": f"DropGeometryTable('{schema}', 'items') = 'x'"},
                            READER, "INVALID_INPUT", "dropgeometrytable")
        assert "IMMUTABLE or STABLE" in err.message
    await refused(call, "pg_count", {"table": table, "schema": schema, "where": "pg_sleep(1) IS NULL"}, READER,
                  "INVALID_INPUT", "pg_sleep")
    assert one(conn, f"SELECT count(*) FROM {items}") >= 2
    out = await call("pg_count", {"table": table, "schema": schema, "where": "lower(name) = 'a' AND random() < 2"},
                     principal=READER)
    assert out["count"] == 1


# ---------------------------------------------------------------- pgcode's schema is private


async def test_pgcode_schema_is_private(rt: Runtime, call: Call, conn: psycopg.Connection[Any]) -> None:
    await call("pg_read_query", {"sql": "SELECT 1"})
    await rt.audit.flush()
    for text in ("SELECT * FROM pgcode.audit_log", "SELECT code FROM pgcode.executions",
                 "SELECT * FROM pgcode.scripts", "SELECT * FROM PGCODE.insights"):
        await refused(call, "pg_read_query", {"sql": text}, READER, "FORBIDDEN", "admin")
    await refused(call, "pg_write_query", {"sql": "DELETE FROM pgcode.audit_log"}, WRITER, "FORBIDDEN", "admin")
    # the wall behind the parser: row-level security hides every row from the scope roles
    with conn.transaction():
        conn.execute("SET LOCAL ROLE pgcode_read")
        assert one(conn, "SELECT count(*) FROM pgcode.audit_log") == 0
        conn.execute("SET LOCAL ROLE pgcode_write")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            conn.execute("INSERT INTO pgcode.insights (principal, text) VALUES ('x', 'y')")
    assert one(conn, "SELECT count(*) FROM pgcode.audit_log") > 0
    # positive control: admin reads it, and read tools of pgcode's own still work for a reader
    out = await call("pg_read_query", {"sql": "SELECT count(*) > 0 AS any FROM pgcode.audit_log"})
    assert out["rows"] == [{"any": True}]
    listed = await call("pg_append_insight", {"insight": "private schema works"}, principal=READER)
    assert listed["count"] >= 1
    assert one(conn, "SELECT every(relrowsecurity) FROM pg_class WHERE relnamespace = 'pgcode'::regnamespace "
                     "AND relkind = 'r'")


# ---------------------------------------------------------------- a read-only server


@pytest.fixture
async def ro(settings: Settings) -> AsyncIterator[Runtime]:
    async with Runtime(settings.model_copy(update={"read_only": True})) as runtime:
        yield runtime


async def test_read_only_server_changes_nothing_and_still_audits(ro: Runtime, conn: psycopg.Connection[Any],
                                                                 items: str) -> None:
    insights = one(conn, "SELECT count(*) FROM pgcode.insights")
    with pytest.raises(ToolError) as exc:
        await ro.invoke("pg_append_insight", {"insight": "x" * 10_000}, READER)
    assert_tool_error(exc, "READ_ONLY")
    assert one(conn, "SELECT count(*) FROM pgcode.insights") == insights
    seq = one(conn, f"SELECT last_value FROM {items}_id_seq")
    for tool in ("pg_explain_analyze", "pg_query_plan_compare"):
        args = ({"sql": f"INSERT INTO {items} (name) VALUES ('z')"} if tool == "pg_explain_analyze" else
                {"query1": f"INSERT INTO {items} (name) VALUES ('z')", "query2": "SELECT 1", "analyze": True})
        with pytest.raises(ToolError) as exc:
            await ro.invoke(tool, args, LOCAL_PRINCIPAL)
        assert_tool_error(exc, "READ_ONLY", "read-only")
    assert one(conn, f"SELECT last_value FROM {items}_id_seq") == seq
    assert one(conn, f"SELECT n_dead_tup FROM pg_stat_user_tables WHERE relid = '{items}'::regclass") is not None
    # positive control: reads work, as the read role, in READ ONLY transactions; and every call is audited
    marker = f"ro-{uuid.uuid4().hex[:8]}"
    out = await ro.invoke("pg_read_query", {"sql": "SELECT current_user AS u, $1::text AS m", "params": [marker]},
                          LOCAL_PRINCIPAL)
    assert out["rows"] == [{"u": "pgcode_read", "m": marker}]
    await ro.audit.flush()
    assert one(conn, "SELECT count(*) FROM pgcode.audit_log WHERE arguments::text LIKE %s", f"%{marker}%") == 1
    assert one(conn, "SELECT count(*) FROM pgcode.audit_log WHERE tool = 'pg_append_insight' "
                     "AND error_code = 'READ_ONLY' AND at > now() - interval '1 minute'") >= 1


# ---------------------------------------------------------------- fair shares


async def test_one_principal_cannot_take_every_connection(settings: Settings) -> None:
    small = settings.model_copy(update={"pool_min_size": 0, "pool_max_size": 4, "pool_timeout_s": 1.0})
    async with Runtime(small) as rt:
        sleeper = Principal.with_scope("sleeper", Scope.READ)
        slow = [asyncio.create_task(rt.invoke("pg_read_query", {"sql": "SELECT pg_sleep(2.5)"}, sleeper))
                for _ in range(6)]
        await asyncio.sleep(0.3)
        # the admin gets through at once, and so does another reader (the cap is per principal)
        assert (await rt.invoke("pg_read_query", {"sql": "SELECT 1 AS one"}, LOCAL_PRINCIPAL))["rows"] == [{"one": 1}]
        other = Principal.with_scope("other", Scope.READ)
        assert (await rt.invoke("pg_read_query", {"sql": "SELECT 2 AS two"}, other))["rows"] == [{"two": 2}]
        results = await asyncio.gather(*slow, return_exceptions=True)
    busy = [r for r in results if isinstance(r, ToolError)]
    assert len(busy) == 4 and all(r.code.value == "BUSY" for r in busy)
    assert busy[0].details == {"retryAfterSeconds": 2}
    assert sum(1 for r in results if isinstance(r, dict)) == 2  # pool size 4 - 2: the default per-principal cap


# ---------------------------------------------------------------- no session state crosses principals


@pytest.fixture
async def solo(settings: Settings) -> AsyncIterator[Runtime]:
    async with Runtime(settings.model_copy(update={"pool_min_size": 1, "pool_max_size": 1})) as runtime:
        yield runtime


async def test_no_session_state_crosses_principals(solo: Runtime) -> None:
    async def admin(text: str) -> Any:
        return await solo.invoke("pg_write_query", {"sql": text}, LOCAL_PRINCIPAL)

    async def read(text: str) -> Any:
        return (await solo.invoke("pg_read_query", {"sql": text}, READER))["rows"][0]

    pid = (await read("SELECT pg_backend_pid() AS pid"))["pid"]
    # settings
    await admin("SELECT set_config('work_mem', '7MB', false)")
    assert (await read("SELECT current_setting('work_mem') AS w"))["w"] != "7MB"
    # temporary tables
    await admin("CREATE TEMP TABLE t_left_behind (x int)")
    assert (await read("SELECT to_regclass('pg_temp.t_left_behind') IS NULL AS gone"))["gone"] is True
    # session advisory locks
    await admin("SELECT pg_advisory_lock(4242)")
    assert (await read("SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND objid = 4242"))["n"] == 0
    # prepared statements, LISTEN, and the random sequence are refused outright, for admin too
    for text, why in (("PREPARE p AS SELECT 1", "prepared"), ("LISTEN chan", "LISTEN"),
                      ("SELECT setseed(0.42)", "setseed")):
        with pytest.raises(ToolError) as exc:
            await admin(text)
        assert_tool_error(exc, "INVALID_INPUT", why)
        with pytest.raises(ToolError):
            await read(text)
    assert (await read("SELECT count(*) AS n FROM pg_prepared_statements"))["n"] == 0
    assert (await read("SELECT count(*) AS n FROM pg_listening_channels()"))["n"] == 0
    assert (await read("SELECT pg_backend_pid() AS pid"))["pid"] == pid  # one connection served every call


async def test_rest_answers_busy_with_retry_after_and_a_database_refusal_without_a_challenge(
        settings: Settings) -> None:
    import httpx2

    from pgcode.server.app import create_app

    small = settings.model_copy(update={"pool_min_size": 0, "pool_max_size": 3, "pool_timeout_s": 0.5})
    async with Runtime(small) as rt:
        transport = httpx2.ASGITransport(app=create_app(rt))
        async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            slow = [asyncio.create_task(client.post("/v1/tools/pg_read_query", json={"sql": "SELECT pg_sleep(1.5)"}))
                    for _ in range(3)]
            results = await asyncio.gather(*slow)
            denied = await client.post("/v1/tools/pg_read_query", json={"sql": "SELECT * FROM pg_file_settings"})
    busy = [r for r in results if r.status_code == 503]
    assert busy and all(r.headers["retry-after"] == "2" and r.json()["error"]["code"] == "BUSY" for r in busy)
    assert any(r.status_code == 200 for r in results)
    assert denied.status_code == 403 and "www-authenticate" not in denied.headers
    assert denied.json()["error"]["details"]["sqlstate"] == "42501"


async def test_read_only_server_without_pgcode_schema_audits_to_a_file(dsn: str, settings: Settings,
                                                                      conn: psycopg.Connection[Any],
                                                                      tmp_path: Any) -> None:
    import json

    from psycopg.conninfo import conninfo_to_dict, make_conninfo
    from pydantic import SecretStr

    bare = f"t_roles_bare_{uuid.uuid4().hex[:6]}"
    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(bare)))
    try:
        url = make_conninfo(dsn, dbname=bare)
        assert conninfo_to_dict(url)["dbname"] == bare
        audit_file = tmp_path / "audit.jsonl"
        ro = settings.model_copy(update={"database_url": SecretStr(url), "read_only": True,
                                         "audit_file": audit_file})
        async with Runtime(ro) as rt:
            assert (await rt.invoke("pg_read_query", {"sql": "SELECT 1 AS one"}, READER))["rows"] == [{"one": 1}]
            with pytest.raises(ToolError):
                await rt.invoke("pg_write_query", {"sql": "CREATE TABLE nope (a int)"}, LOCAL_PRINCIPAL)
            await rt.audit.flush()
        lines = [json.loads(line) for line in audit_file.read_text().splitlines()]
        assert [(e["principal"], e["tool"], e["outcome"]) for e in lines] == [
            ("reader", "pg_read_query", "ok"), ("local", "pg_write_query", "error")]
        with psycopg.connect(url) as c:  # nothing was created: no pgcode schema, no table
            assert one(c, "SELECT count(*) FROM pg_namespace WHERE nspname = 'pgcode'") == 0
            assert one(c, "SELECT count(*) FROM pg_class WHERE relname = 'nope'") == 0
    finally:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(bare)))


async def test_one_principal_cannot_take_every_sandbox_worker(rt: Runtime) -> None:
    from pgcode.codemode.engine import CodeMode, ExecRequest
    from pgcode.codemode.settings import CodeModeSettings

    cm = CodeMode(rt, CodeModeSettings(workers=2, default_timeout_ms=1000))  # one worker each: workers - 1
    assert cm.settings.per_principal == 1
    alice, bob = (Principal.with_scope(name, Scope.ADMIN) for name in ("alice", "bob"))
    try:
        await cm.pool()
        busy = "const t0 = Date.now(); while (Date.now() - t0 < 2000) {} return 'done'"
        first = asyncio.create_task(cm.execute(ExecRequest(code=busy, timeout_ms=5000), alice))
        await asyncio.sleep(0.3)
        second = await cm.execute(ExecRequest(code="return 1"), alice)
        other = await cm.execute(ExecRequest(code="return 2"), bob)
        done = await first
    finally:
        await cm.close()
    assert second["success"] is False and second["error"]["code"] == "BUSY"
    assert other["success"] is True and other["result"] == 2  # another principal still gets the free worker
    assert done["success"] is True and done["result"] == "done"
