"""invoke(): lookup, scope before validation, argument rules, read-only calls and servers, the transaction
each call runs in (READ ONLY, statement_timeout), no session state left on pooled connections, and the
mapping of database errors to error codes."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgcode.core.context import ToolContext
from pgcode.core.invoke import visible_tools
from pgcode.core.runtime import Runtime
from pgcode.errors import ToolError
from pgcode.settings import Settings
from pgcode.types import LOCAL_PRINCIPAL, Effect, Principal, Scope
from tests.fix_db import Call, assert_tool_error, table_rows

pytestmark = pytest.mark.anyio

READER = Principal.with_scope("reader", Scope.READ)
WRITER = Principal.with_scope("writer", Scope.WRITE)
SECRET = "hunter2-TOPSECRET-value"
ROWS = [(1, "a"), (2, "b"), (3, "c")]


@pytest.fixture
def items(conn: psycopg.Connection[Any], schema: str) -> Iterator[str]:
    """A fresh `items` table (id, v) with three rows; its qualified name."""
    name = f"{schema}.items"
    ident = sql.Identifier(schema, "items")
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(ident))
    conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, v text NOT NULL CHECK (v <> ''))").format(ident))
    with conn.cursor() as cur:
        cur.executemany(sql.SQL("INSERT INTO {} VALUES (%s, %s)").format(ident), ROWS)
    yield name
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {} CASCADE").format(ident))


def rows_of(conn: psycopg.Connection[Any], name: str) -> list[tuple[Any, ...]]:
    return table_rows(conn, f"SELECT id, v FROM {name} ORDER BY id")


def exists(conn: psycopg.Connection[Any], name: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (name,)).fetchone()
    return bool(row and row[0])


def server_setting(conn: psycopg.Connection[Any], name: str) -> str:
    row = conn.execute(sql.SQL("SHOW {}").format(sql.Identifier(name))).fetchone()
    assert row is not None
    return str(row[0])


@pytest.fixture
async def single(dsn: str) -> AsyncIterator[Runtime]:
    """A runtime whose pool has exactly one connection: every call reuses the previous call's session."""
    async with Runtime(Settings(database_url=dsn, pool_min_size=1, pool_max_size=1, statement_timeout_ms=1500,
                                tx_idle_timeout_s=60)) as runtime:
        yield runtime


# lookup and scope


async def test_unknown_tool_is_not_found(rt: Runtime) -> None:
    with pytest.raises(ToolError) as exc:
        await rt.invoke("pg_no_such_tool", {}, LOCAL_PRINCIPAL)
    err = assert_tool_error(exc, "NOT_FOUND", "no tool named 'pg_no_such_tool'")
    assert err.hint and "/v1/tools" in err.hint
    with pytest.raises(ToolError) as exc:
        await rt.invoke(["pg_read_query"], {}, LOCAL_PRINCIPAL)  # type: ignore[arg-type]
    assert_tool_error(exc, "NOT_FOUND", "no tool named")


@pytest.mark.parametrize("args", [{"table": 12, "bogus": True, "cascade": "maybe"}, "DROP everything", None, [1]],
                         ids=["garbage_fields", "string", "none", "list"])
async def test_scope_is_checked_before_validation(rt: Runtime, conn: psycopg.Connection[Any], items: str,
                                                  args: Any) -> None:
    for principal in (READER, WRITER):  # pg_drop_table is destructive: admin only
        with pytest.raises(ToolError) as exc:
            await rt.invoke("pg_drop_table", args, principal)
        err = assert_tool_error(exc, "FORBIDDEN", "pg_drop_table", "'admin' scope")
        assert err.details == {"requiredScope": "admin"}
    # the same arguments from an admin get as far as validation
    with pytest.raises(ToolError) as exc:
        await rt.invoke("pg_drop_table", args, LOCAL_PRINCIPAL)
    assert_tool_error(exc, "INVALID_INPUT")
    assert exists(conn, items) and rows_of(conn, items) == ROWS


async def test_statement_scope_of_write_query(rt: Runtime, conn: psycopg.Connection[Any], items: str) -> None:
    with pytest.raises(ToolError) as exc:
        await rt.invoke("pg_write_query", {"sql": f"DELETE FROM {items}"}, READER)
    assert_tool_error(exc, "FORBIDDEN", "pg_write_query", "'write'")
    with pytest.raises(ToolError) as exc:
        await rt.invoke("pg_write_query", {"sql": f"DROP TABLE {items}"}, WRITER)
    err = assert_tool_error(exc, "FORBIDDEN", "'admin' scope")
    assert err.details == {"requiredScope": "admin"}
    assert exists(conn, items) and rows_of(conn, items) == ROWS
    out = await rt.invoke("pg_write_query", {"sql": f"UPDATE {items} SET v = 'z' WHERE id = $1", "params": [2]},
                          WRITER)
    assert out["command"] == "UPDATE 1" and out["rowCount"] == 1
    assert rows_of(conn, items) == [(1, "a"), (2, "z"), (3, "c")]


async def test_visible_tools_follow_scope(rt: Runtime) -> None:
    everything = {s.name for s in rt.registry}
    assert {s.name for s in visible_tools(rt, LOCAL_PRINCIPAL)} == everything
    assert {s.name for s in visible_tools(rt, READER)} == {s.name for s in rt.registry if s.effect is Effect.READ}
    writer = {s.name for s in visible_tools(rt, WRITER)}
    assert writer == {s.name for s in rt.registry if s.effect in (Effect.READ, Effect.WRITE)}
    assert "pg_write_query" in writer and "pg_drop_table" not in writer


# argument rules


@pytest.mark.parametrize("key", ["restartIdentity", "restart_identity"])
async def test_camel_and_snake_case_keys(call: Call, conn: psycopg.Connection[Any], schema: str, key: str) -> None:
    name = f"{schema}.counters"
    conn.execute(f"DROP TABLE IF EXISTS {name}; CREATE TABLE {name} (id int GENERATED ALWAYS AS IDENTITY, x int)")
    conn.execute(f"INSERT INTO {name} (x) VALUES (1), (2), (3)")
    out = await call("pg_truncate", {"table": "counters", "schema": schema, key: True})
    assert out == {"table": "counters", "schema": schema, "truncated": True, "restart_identity": True,
                   "cascade": False}
    conn.execute(f"INSERT INTO {name} (x) VALUES (10)")
    assert table_rows(conn, f"SELECT id, x FROM {name}") == [(1, 10)]  # the identity restarted
    conn.execute(f"DROP TABLE {name}")


@pytest.mark.parametrize("key", ["ifExists", "if_exists"])
async def test_camel_and_snake_case_keys_change_behaviour(call: Call, schema: str, key: str) -> None:
    out = await call("pg_drop_table", {"table": "never_there", "schema": schema, key: True})
    assert out == {"table": "never_there", "schema": schema, "dropped": False}
    with pytest.raises(ToolError) as exc:
        await call("pg_drop_table", {"table": "never_there", "schema": schema, key: False})
    assert_tool_error(exc, "NOT_FOUND", "never_there")


async def test_unknown_keys_are_refused_by_name(call: Call) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_read_query", {"sql": "SELECT 1", "bogus_key": 1, "alsoBogus": 2})
    err = assert_tool_error(exc, "INVALID_INPUT", "invalid arguments for pg_read_query", "bogus_key", "alsoBogus")
    assert sorted(e["field"] for e in err.details["errors"]) == ["alsoBogus", "bogus_key"]
    assert {e["problem"] for e in err.details["errors"]} == {"Extra inputs are not permitted"}


@pytest.mark.parametrize("args", [["SELECT 1"], "SELECT 1", 42, True, ("sql", "SELECT 1")],
                         ids=["list", "string", "int", "bool", "tuple"])
async def test_arguments_must_be_an_object(rt: Runtime, args: Any) -> None:
    with pytest.raises(ToolError) as exc:
        await rt.invoke("pg_read_query", args, LOCAL_PRINCIPAL)
    err = assert_tool_error(exc, "INVALID_INPUT", "arguments of pg_read_query must be a JSON object")
    assert err.details == {}


async def test_missing_arguments_name_the_field(rt: Runtime) -> None:
    for args in (None, {}):
        with pytest.raises(ToolError) as exc:
            await rt.invoke("pg_read_query", args, LOCAL_PRINCIPAL)
        err = assert_tool_error(exc, "INVALID_INPUT", "sql: Field required")
        assert err.details["errors"] == [{"field": "sql", "problem": "Field required"}]


@pytest.mark.parametrize("args", [
    {"sql": "SELECT 1", "limit": SECRET},
    {"sql": "SELECT 1", "password": SECRET},
    {"sql": {"password": SECRET}},
    {"sql": "SELECT 1", "params": SECRET},
    {"sql": "SELECT 1", "transactionId": SECRET * 5},
], ids=["bad_int", "extra_key", "wrong_type", "not_a_list", "too_long"])
async def test_validation_errors_never_echo_values(call: Call, args: dict[str, Any]) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_read_query", args)
    err = assert_tool_error(exc, "INVALID_INPUT", "invalid arguments for pg_read_query")
    assert err.details["errors"], "the offending field is named"
    assert "hunter2" not in json.dumps(err.to_dict()) and "hunter2" not in str(err) and "hunter2" not in repr(err)
    assert "TOPSECRET" not in (err.hint or "")


# read-only calls and read-only servers


@pytest.mark.parametrize(("tool", "args"), [
    ("pg_write_query", {"sql": "DELETE FROM {items}"}),
    ("pg_drop_table", {"table": "{items}"}),
    ("pg_truncate", {"table": "{items}"}),
    ("pg_batch_insert", {"table": "{items}", "rows": [{"id": 9, "v": "x"}]}),
], ids=["write_query", "drop_table", "truncate", "batch_insert"])
async def test_read_only_call_refuses_other_tools(call: Call, conn: psycopg.Connection[Any], items: str,
                                                  tool: str, args: dict[str, Any]) -> None:
    filled = {k: v.format(items=items) if isinstance(v, str) else v for k, v in args.items()}
    with pytest.raises(ToolError) as exc:
        await call(tool, filled, read_only=True)
    assert_tool_error(exc, "READ_ONLY", f"{tool} changes the database", "this call is read-only")
    assert rows_of(conn, items) == ROWS
    out = await call("pg_count", {"table": items}, read_only=True)  # read tools still run
    assert out["count"] == len(ROWS)


async def test_read_only_server(dsn: str, conn: psycopg.Connection[Any], items: str) -> None:
    async with Runtime(Settings(database_url=dsn, read_only=True)) as ro:
        visible = {s.name for s in visible_tools(ro, LOCAL_PRINCIPAL)}
        # read tools, and the code runs that only read (pg_execute_code / pg_script_run with readonly: true)
        assert visible == {s.name for s in ro.registry if s.effect is Effect.READ} | {"pg_execute_code",
                                                                                      "pg_script_run"}
        assert {"pg_read_query", "pg_count", "pg_transaction_status"} <= visible
        assert not visible & {"pg_write_query", "pg_drop_table", "pg_transaction_begin", "pg_truncate"}
        for tool, args in (("pg_write_query", {"sql": f"DELETE FROM {items}"}), ("pg_drop_table", {"table": items}),
                           ("pg_transaction_begin", {"readOnly": True})):
            with pytest.raises(ToolError) as exc:
                await ro.invoke(tool, args, LOCAL_PRINCIPAL)
            err = assert_tool_error(exc, "READ_ONLY", tool, "this server is read-only")
            assert err.hint and "PGCODE_READ_ONLY" in err.hint
        out = await ro.invoke("pg_read_query", {"sql": f"SELECT count(*) AS n FROM {items}"}, LOCAL_PRINCIPAL)
        assert out["rows"] == [{"n": 3}]
    assert exists(conn, items) and rows_of(conn, items) == ROWS


async def test_read_tools_run_in_read_only_transactions(call: Call, conn: psycopg.Connection[Any],
                                                         items: str) -> None:
    probe = "SELECT current_setting('transaction_read_only') AS ro, current_setting('transaction_isolation') AS iso"
    out = await call("pg_read_query", {"sql": probe})
    assert out["rows"] == [{"ro": "on", "iso": "read committed"}]
    out = await call("pg_count", {"table": items, "where": "current_setting('transaction_read_only') = 'on'"})
    assert out["count"] == len(ROWS)
    out = await call("pg_write_query", {"sql": probe})
    assert out["rows"] == [{"ro": "off", "iso": "read committed"}]
    # a write the parser cannot see (inside a function) is refused by the database itself
    schema = items.split(".")[0]
    conn.execute(f"CREATE OR REPLACE FUNCTION {schema}.add_item() RETURNS int LANGUAGE sql "
                 f"AS $$ INSERT INTO {items} VALUES (99, 'sneaky') RETURNING id $$")
    with pytest.raises(ToolError) as exc:
        await call("pg_read_query", {"sql": f"SELECT {schema}.add_item()"})
    err = assert_tool_error(exc, "READ_ONLY", "cannot execute INSERT in a read-only transaction")
    assert err.details["sqlstate"] == "25006"
    assert rows_of(conn, items) == ROWS
    out = await call("pg_write_query", {"sql": f"SELECT {schema}.add_item() AS id"})  # the write path may
    assert out["rows"] == [{"id": 99}]
    assert rows_of(conn, items) == [*ROWS, (99, "sneaky")]


# statement_timeout and session state


async def test_statement_timeout(dsn: str) -> None:
    async with Runtime(Settings(database_url=dsn, statement_timeout_ms=200)) as fast:
        started = time.monotonic()
        with pytest.raises(ToolError) as exc:
            await fast.invoke("pg_read_query", {"sql": "SELECT pg_sleep(2)"}, LOCAL_PRINCIPAL)
        elapsed = time.monotonic() - started
        err = assert_tool_error(exc, "TIMEOUT", "time limit")
        assert err.details == {"sqlstate": "57014"}
        assert elapsed < 1.0, f"took {elapsed:.2f}s"
        # the write path and the pool are fine afterwards
        with pytest.raises(ToolError) as exc:
            await fast.invoke("pg_write_query", {"sql": "SELECT pg_sleep(2)"}, LOCAL_PRINCIPAL)
        assert_tool_error(exc, "TIMEOUT")
        out = await fast.invoke("pg_read_query", {"sql": "SHOW statement_timeout"}, LOCAL_PRINCIPAL)
        assert out["rows"] == [{"statement_timeout": "200ms"}]


async def test_timeout_in_held_transaction_rolls_it_back(dsn: str, conn: psycopg.Connection[Any],
                                                         items: str) -> None:
    async with Runtime(Settings(database_url=dsn, statement_timeout_ms=200)) as fast:
        tx = await fast.invoke("pg_transaction_begin", {}, LOCAL_PRINCIPAL)
        tx_id = tx["transactionId"]
        await fast.invoke("pg_write_query", {"sql": f"DELETE FROM {items}", "transactionId": tx_id}, LOCAL_PRINCIPAL)
        with pytest.raises(ToolError) as exc:
            await fast.invoke("pg_read_query", {"sql": "SELECT pg_sleep(2)", "transactionId": tx_id},
                              LOCAL_PRINCIPAL)
        err = assert_tool_error(exc, "TIMEOUT")
        assert err.details["transactionRolledBack"] is True
        assert err.hint and tx_id in err.hint
        with pytest.raises(ToolError) as exc:
            await fast.invoke("pg_transaction_commit", {"transactionId": tx_id}, LOCAL_PRINCIPAL)
        assert_tool_error(exc, "NOT_FOUND", tx_id)
    assert rows_of(conn, items) == ROWS  # the DELETE was rolled back


async def test_no_session_state_leaks_onto_pooled_connections(single: Runtime, conn: psycopg.Connection[Any],
                                                              items: str) -> None:
    work_mem = server_setting(conn, "work_mem")
    default_timeout = server_setting(conn, "statement_timeout")
    assert work_mem != "1234kB" and default_timeout != "1500ms"

    async def read(text: str, **kw: Any) -> list[dict[str, Any]]:
        out = await single.invoke("pg_read_query", {"sql": text, **kw}, LOCAL_PRINCIPAL)
        return list(out["rows"])

    async def session() -> dict[str, Any]:
        """The one pooled connection as the next caller finds it, outside any tool's transaction."""
        async with single.db.pool.connection() as c:
            cur = await c.execute(
                "SELECT current_setting('work_mem'), current_setting('statement_timeout'), current_user = "
                "session_user, (SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' "
                "AND pid = pg_backend_pid()), to_regclass('pg_temp.leaky') IS NULL, pg_backend_pid()")
            row = await cur.fetchone()
            assert row is not None
            return {"work_mem": row[0], "timeout": row[1], "same_user": row[2], "locks": row[3],
                    "no_temp": row[4], "pid": row[5]}

    clean = {"work_mem": work_mem, "timeout": default_timeout, "same_user": True, "locks": 0, "no_temp": True}
    first = await session()
    pid = first.pop("pid")
    assert first == clean

    # 1. A session-level setting made inside a held transaction (UPDATE pg_settings is set_config in disguise).
    tx = (await single.invoke("pg_transaction_begin", {}, LOCAL_PRINCIPAL))["transactionId"]
    await single.invoke("pg_write_query", {"sql": "UPDATE pg_settings SET setting = '1234kB' WHERE name = 'work_mem'",
                                           "transactionId": tx}, LOCAL_PRINCIPAL)
    assert await read("SHOW work_mem", transactionId=tx) == [{"work_mem": "1234kB"}]  # it took effect ...
    await single.invoke("pg_transaction_commit", {"transactionId": tx}, LOCAL_PRINCIPAL)
    assert await read("SHOW work_mem") == [{"work_mem": work_mem}]  # ... and did not outlive the call

    # 2. The session-wide statement_timeout of an autocommit statement.
    out = await single.invoke("pg_write_query", {"sql": f"VACUUM {items}"}, LOCAL_PRINCIPAL)
    assert out["command"] == "VACUUM"

    # 3. A session advisory lock taken by a function the policy cannot look into, from a read-only caller.
    schema = items.split(".")[0]
    conn.execute(f"CREATE OR REPLACE FUNCTION {schema}.grab_lock() RETURNS bool LANGUAGE sql "
                 "AS $$ SELECT pg_try_advisory_lock(424299) $$")
    out = await single.invoke("pg_read_query", {"sql": f"SELECT {schema}.grab_lock() AS got"}, READER)
    assert out["rows"] == [{"got": True}]

    # 4. A temporary table (admin DDL) must not be visible to the next caller.
    await single.invoke("pg_write_query", {"sql": "CREATE TEMP TABLE leaky AS SELECT 1 AS a"}, LOCAL_PRINCIPAL)
    with pytest.raises(ToolError) as exc:
        await read("SELECT a FROM pg_temp.leaky")
    assert_tool_error(exc, "NOT_FOUND", "leaky")

    # Each tool's own transaction still gets the configured timeout; the session between calls has none of it.
    assert await read("SHOW statement_timeout") == [{"statement_timeout": "1500ms"}]
    last = await session()
    assert last.pop("pid") == pid, "the test relies on one pooled connection"
    assert last == clean
    locks = table_rows(conn, "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objid = 424299")
    assert locks == [(0,)]


# database errors by SQLSTATE


async def test_undefined_table_is_not_found(call: Call, schema: str) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_read_query", {"sql": f"SELECT * FROM {schema}.no_such_table"})
    err = assert_tool_error(exc, "NOT_FOUND", "no_such_table", "does not exist")
    assert err.details == {"sqlstate": "42P01", "position": 15}


async def test_undefined_column_and_function_are_not_found(call: Call, items: str) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_read_query", {"sql": f"SELECT nope FROM {items}"})
    assert assert_tool_error(exc, "NOT_FOUND", "nope").details["sqlstate"] == "42703"
    with pytest.raises(ToolError) as exc:
        await call("pg_read_query", {"sql": "SELECT no_such_function_xyz(1)"})
    err = assert_tool_error(exc, "NOT_FOUND", "no_such_function_xyz")
    assert err.details["sqlstate"] == "42883" and err.hint  # the database's hint is passed on


async def test_duplicates_map_to_already_exists_and_conflict(call: Call, conn: psycopg.Connection[Any],
                                                             items: str) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_write_query", {"sql": f"CREATE TABLE {items} (a int)"})
    err = assert_tool_error(exc, "ALREADY_EXISTS", "already exists")
    assert err.details == {"sqlstate": "42P07"}
    with pytest.raises(ToolError) as exc:
        await call("pg_write_query", {"sql": f"INSERT INTO {items} VALUES ($1, $2)", "params": [1, "dup"]})
    err = assert_tool_error(exc, "CONFLICT", "duplicate key")
    assert err.details == {"sqlstate": "23505", "detail": "Key (id)=(1) already exists."}
    with pytest.raises(ToolError) as exc:
        await call("pg_write_query", {"sql": f"INSERT INTO {items} VALUES (9, '')"})
    assert assert_tool_error(exc, "INVALID_INPUT", "check constraint").details["sqlstate"] == "23514"
    with pytest.raises(ToolError) as exc:
        await call("pg_write_query", {"sql": f"INSERT INTO {items} VALUES ('x', 'y')"})
    assert assert_tool_error(exc, "INVALID_INPUT", "invalid input syntax").details["sqlstate"] == "22P02"
    assert rows_of(conn, items) == ROWS  # every failed statement was rolled back


# requirements


async def test_extension_missing(rt: Runtime) -> None:
    caps = rt.db.caps
    with pytest.raises(ToolError) as exc:
        caps.require_extension("definitely_not_installed")
    err = assert_tool_error(exc, "EXTENSION_MISSING", "definitely_not_installed extension", "not installed")
    assert err.hint == "the server does not ship definitely_not_installed; install its package on the " \
                       "database server first"
    assert err.details == {"extension": "definitely_not_installed", "available": False}
    assert err.http_status == 424
    caps.require_extension("plpgsql")  # installed: no error


async def test_extension_available_but_not_created(rt: Runtime) -> None:
    caps = rt.db.caps
    candidates = sorted(set(caps.available) - set(caps.installed))
    if not candidates:
        pytest.skip("every available extension is installed on this server")
    name = candidates[0]
    with pytest.raises(ToolError) as exc:
        caps.require_extension(name)
    err = assert_tool_error(exc, "EXTENSION_MISSING", name)
    assert err.hint == f"CREATE EXTENSION {name} (needs admin)"
    assert err.details == {"extension": name, "available": True}
    with pytest.raises(ToolError) as exc:
        caps.require_extension(name, create_tool="pg_x_create_extension")
    assert exc.value.hint == "create it with pg_x_create_extension"


async def test_unsupported_version(rt: Runtime) -> None:
    caps = rt.db.caps
    with pytest.raises(ToolError) as exc:
        caps.require_version(caps.server_version_num + 10000, "pg_future_feature")
    err = assert_tool_error(exc, "UNSUPPORTED_VERSION", "pg_future_feature needs PostgreSQL",
                            caps.server_version)
    assert err.details == {"needed": caps.server_version_num + 10000, "found": caps.server_version_num}
    caps.require_version(caps.server_version_num, "pg_present_feature")  # no error


# the call's framing: opening statements with the first query, COMMIT with the reset


async def test_failed_first_statement_reports_sqlstate_position_and_rolls_back(
        single: Runtime, conn: psycopg.Connection[Any], items: str) -> None:
    """The first statement travels with BEGIN and the role; its failure is still its own, and undone."""
    with pytest.raises(ToolError) as exc:
        await single.invoke("pg_write_query", {"sql": f"UPDATE {items} SET v = '' WHERE id = 1"}, WRITER)
    err = assert_tool_error(exc, "INVALID_INPUT")
    assert err.details["sqlstate"] == "23514"
    with pytest.raises(ToolError) as exc:
        await single.invoke("pg_read_query", {"sql": "SELECT nope FROM pg_class"}, READER)
    assert assert_tool_error(exc, "NOT_FOUND").details == {"sqlstate": "42703", "position": 8}
    assert rows_of(conn, items) == ROWS
    # the one pooled connection is clean and in no transaction: the next calls run as their own roles
    out = await single.invoke("pg_read_query", {"sql": "SELECT current_user AS u, current_setting("
                                                       "'transaction_read_only') AS ro"}, READER)
    assert out["rows"] == [{"u": "pgcode_read", "ro": "on"}]
    out = await single.invoke("pg_write_query", {"sql": f"UPDATE {items} SET v = 'z' WHERE id = 1"}, WRITER)
    assert rows_of(conn, items)[0] == (1, "z")


async def test_lost_connection_is_connection_failed_not_internal(single: Runtime,
                                                                  conn: psycopg.Connection[Any]) -> None:
    out = await single.invoke("pg_read_query", {"sql": "SELECT pg_backend_pid() AS pid"}, READER)
    await single.db.settle()  # the read's reset ran after it answered: the connection is back in the pool
    conn.execute("SELECT pg_terminate_backend(%s)", (out["rows"][0]["pid"],))  # a restart, for this connection
    with pytest.raises(ToolError) as exc:
        await single.invoke("pg_read_query", {"sql": "SELECT 1 AS one"}, READER)
    err = assert_tool_error(exc, "CONNECTION_FAILED", "connection to the database was lost")
    assert err.http_status == 503 and err.details["retryAfterSeconds"] > 0
    out = await single.invoke("pg_read_query", {"sql": "SELECT 1 AS one"}, READER)  # the pool recovered
    assert out["rows"] == [{"one": 1}]


async def test_a_read_frees_its_locks_when_it_answers(rt: Runtime, conn: psycopg.Connection[Any], items: str) -> None:
    """A read's transaction is over, or its COMMIT on its way, when it answers: it ends with its statement's message
    (pg_read_query, one statement), or its COMMIT is sent right after its last statement (pg_count). A migration run
    right after (here without giving the event loop a turn) does not wait on the read's lock."""
    calls = [("pg_read_query", {"sql": f"SELECT count(*) AS n FROM {items} -- a last comment"}, [{"n": len(ROWS)}]),
             ("pg_count", {"table": items}, len(ROWS))]
    for _ in range(3):
        for tool, args, expected in calls:
            out = await rt.invoke(tool, args, READER)
            assert out.get("rows", out.get("count")) == expected
            with conn.transaction():  # blocking: the loop cannot run, only the server can end the read
                conn.execute("SET LOCAL lock_timeout = '3s'")
                conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(
                    sql.Identifier(*items.split("."))))
    await rt.db.settle()
    async with rt.db.pool.connection() as pooled:  # and the connection came back clean
        assert pooled.info.transaction_status is psycopg.pq.TransactionStatus.IDLE


async def test_a_last_statement_ends_the_read_and_a_later_one_opens_another(single: Runtime) -> None:
    """execute_on(last=True) runs a read's one statement in a transaction that ends with its message (no BEGIN, no
    COMMIT), still READ ONLY, as the read role, with the timeout, even after a trailing -- comment; a statement
    after it (a type name to look up) runs in a new transaction, the same way: never on a bare session as the
    connecting role."""
    spec = single.registry.get("pg_read_query")
    assert spec is not None
    async with ToolContext(single, spec, READER) as ctx:
        conn = await ctx.cursor_connection()

        def status() -> str:
            return conn.info.transaction_status.name

        async with conn.cursor() as cur:
            await ctx.execute_on(cur, "SELECT current_user AS u, current_setting('transaction_read_only') AS ro, "
                                      "current_setting('statement_timeout') AS t -- no newline after this comment",
                                 None, last=True)
            assert await cur.fetchall() == [("pgcode_read", "on", "1500ms")]
            assert status() == "IDLE"  # committed already
        row = await ctx.fetchone("SELECT current_user AS u, current_setting('transaction_read_only') AS ro, "
                                 "current_setting('statement_timeout') AS t")
        assert row == {"u": "pgcode_read", "ro": "on", "t": "1500ms"}
        assert status() == "INTRANS"


async def test_a_one_statement_read_refuses_writes_and_leaves_nothing_open(single: Runtime) -> None:
    """The read's message is its whole transaction: PostgreSQL refuses a write in it as READ ONLY (25006, not a
    missing privilege), rolls it back by itself, and the connection is idle at once; a read after it works."""
    spec = single.registry.get("pg_read_query")
    assert spec is not None
    async with ToolContext(single, spec, READER) as ctx:
        conn = await ctx.cursor_connection()
        async with conn.cursor() as cur:
            with pytest.raises(psycopg.errors.ReadOnlySqlTransaction):
                await ctx.execute_on(cur, "CREATE TEMP TABLE t_in_a_read AS SELECT 1 AS a", None, last=True)
        assert conn.info.transaction_status is psycopg.pq.TransactionStatus.IDLE
    await single.db.settle()
    out = await single.invoke("pg_read_query", {"sql": "SELECT to_regclass('pg_temp.t_in_a_read') IS NULL AS gone, "
                                                       "current_user AS u"}, READER)
    assert out["rows"] == [{"gone": True, "u": "pgcode_read"}]


async def test_a_text_without_a_statement_of_its_own_ends_the_read_quietly(single: Runtime) -> None:
    """Tools pass only parsed statements, but a text that holds none (only a comment) still ends the read's
    transaction with its message and leaves the cursor on a result of that message: no error, nothing open."""
    spec = single.registry.get("pg_read_query")
    assert spec is not None
    async with ToolContext(single, spec, READER) as ctx:
        conn = await ctx.cursor_connection()
        async with conn.cursor() as cur:
            await ctx.execute_on(cur, "-- only a comment", None, last=True)
            assert cur.statusmessage == "SET" and cur.description is None
        assert conn.info.transaction_status is psycopg.pq.TransactionStatus.IDLE
    out = await single.invoke("pg_read_query", {"sql": "SELECT current_user AS u"}, READER)
    assert out["rows"] == [{"u": "pgcode_read"}]


async def test_a_read_of_a_type_psycopg_does_not_know_names_it(single: Runtime, conn: psycopg.Connection[Any],
                                                                schema: str) -> None:
    """The type name of an unknown column is looked up after the statement's transaction ended with it; the
    connection still comes back idle and clean."""
    conn.execute(sql.SQL("CREATE TYPE {} AS ENUM ('low', 'high')").format(sql.Identifier(schema, "level")))
    out = await single.invoke("pg_read_query", {"sql": f"SELECT 'high'::{schema}.level AS lv"}, READER)
    assert out["rows"] == [{"lv": "high"}]
    assert out["fields"] == [{"name": "lv", "type": f"{schema}.level"}]
    await single.db.settle()
    async with single.db.pool.connection() as pooled:
        assert pooled.info.transaction_status is psycopg.pq.TransactionStatus.IDLE
        cur = await pooled.execute("SELECT current_user = session_user")
        assert await cur.fetchone() == (True,)


async def test_a_connection_returned_dirty_is_reset_before_anyone_reuses_it(single: Runtime,
                                                                             conn: psycopg.Connection[Any]) -> None:
    """The pool resets what comes back with session state or an open transaction (DISCARD ALL, after a
    ROLLBACK), and replaces a connection that cannot be reset."""
    async with single.db.pool.connection() as c:
        await c.execute("SET work_mem = '1234kB'; CREATE TEMP TABLE dirty AS SELECT 1 AS a; BEGIN; SELECT 1")
        pid = c.info.backend_pid
        assert c.info.transaction_status is psycopg.pq.TransactionStatus.INTRANS
    await single.db.settle()
    async with single.db.pool.connection() as c:
        cur = await c.execute("SELECT pg_backend_pid(), current_setting('work_mem'), to_regclass('pg_temp.dirty')")
        assert await cur.fetchone() == (pid, server_setting(conn, "work_mem"), None)
    async with single.db.pool.connection() as c:  # the reset fails: the connection is dropped, a new one comes
        await c.execute("SET work_mem = '1234kB'")
        conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        for _ in range(100):
            if not table_rows(conn, "SELECT 1 FROM pg_stat_activity WHERE pid = %s", pid):
                break
            await asyncio.sleep(0.01)
    await single.db.settle()
    async with single.db.pool.connection() as c:
        cur = await c.execute("SELECT pg_backend_pid(), current_setting('work_mem')")
        row = await cur.fetchone()
        assert row is not None and row[0] != pid and row[1] == server_setting(conn, "work_mem")


async def test_after_a_restart_one_call_fails_and_the_pool_drops_every_stale_connection(dsn: str) -> None:
    """A restart ends every pooled connection: the first call to find one lost says so, and the pool is checked
    at once, so the calls after it get live connections instead of failing one stale connection each."""
    settings = Settings(database_url=dsn, pool_min_size=4, pool_max_size=4)
    async with Runtime(settings) as runtime:
        async with contextlib.AsyncExitStack() as held:  # fill the pool: four live connections
            conns = [await held.enter_async_context(runtime.db.pool.connection()) for _ in range(4)]
            pids = {c.info.backend_pid for c in conns}
        for _ in range(100):  # the pool resets returned connections in the background: wait until all are idle
            if runtime.db.pool.get_stats()["pool_available"] == 4:
                break
            await asyncio.sleep(0.02)
        with psycopg.connect(dsn, autocommit=True) as killer:
            killer.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = ANY(%s)", (list(pids),))
        with pytest.raises(ToolError) as lost:
            await runtime.invoke("pg_read_query", {"sql": "SELECT 1 AS one"}, READER)
        assert_tool_error(lost, "CONNECTION_FAILED", "connection to the database was lost")
        await runtime.db.settle()
        for _ in range(8):  # every later call succeeds: no stale connection was left in the pool
            out = await runtime.invoke("pg_read_query", {"sql": "SELECT pg_backend_pid() AS pid"}, READER)
            assert out["rows"][0]["pid"] not in pids


async def test_connection_lost_during_commit_is_in_doubt_with_the_transaction_id(
        rt: Runtime, conn: psycopg.Connection[Any], items: str) -> None:
    """A deferred trigger ends the backend inside COMMIT: nobody knows the outcome but the server."""
    schema = items.split(".")[0]
    conn.execute(sql.SQL(
        "CREATE FUNCTION {}.die() RETURNS trigger LANGUAGE plpgsql SECURITY DEFINER AS "
        "$$BEGIN PERFORM pg_terminate_backend(pg_backend_pid()); PERFORM pg_sleep(1); RETURN NULL; END$$; "
        "CREATE CONSTRAINT TRIGGER die AFTER INSERT ON {} DEFERRABLE INITIALLY DEFERRED "
        "FOR EACH ROW WHEN (NEW.id = 99) EXECUTE FUNCTION {}.die()").format(
        sql.Identifier(schema), sql.Identifier(*items.split(".")), sql.Identifier(schema)))
    try:
        with pytest.raises(ToolError) as exc:
            await rt.invoke("pg_write_query", {"sql": f"INSERT INTO {items} VALUES (99, 'lost')"}, LOCAL_PRINCIPAL)
        err = assert_tool_error(exc, "IN_DOUBT", "during COMMIT")
        xid = err.details["transactionId"]
        assert err.hint and xid in err.hint
        status = table_rows(conn, "SELECT pg_xact_status(%s::xid8)", xid)[0][0]
        assert status == "aborted"  # here the server says: ended before its commit record
        assert rows_of(conn, items) == ROWS
        # a positive control: the same insert without the trigger's id commits and says so
        await rt.invoke("pg_write_query", {"sql": f"INSERT INTO {items} VALUES (98, 'kept')"}, LOCAL_PRINCIPAL)
        assert rows_of(conn, items)[-1] == (98, "kept")
    finally:
        conn.execute(sql.SQL("DROP FUNCTION {}.die() CASCADE").format(sql.Identifier(schema)))


# code mode: an execution's calls share a connection, each still checked and run as its own role

_PROBE = "SELECT pg_backend_pid() AS pid, current_user AS u, current_setting('transaction_isolation') AS iso, " \
         "pg_current_snapshot()::text AS snap"


async def test_readonly_execution_reads_one_snapshot_on_one_connection(
        rt: Runtime, conn: psycopg.Connection[Any], items: str) -> None:
    code = f"""
      const a = (await pg.core.readQuery({{sql: input.probe}})).rows[0];
      let failed = null;
      try {{ await pg.core.readQuery({{sql: 'SELECT 1/0'}}); }} catch (e) {{ failed = e.code; }}
      const n = (await pg.core.readQuery({{sql: 'SELECT count(*)::int AS n FROM {items}'}})).rows[0].n;
      const probe = () => pg.core.readQuery({{sql: input.probe}});
      const both = await Promise.all([probe(), probe()]);
      return {{a, failed, n, b: both[0].rows[0], c: both[1].rows[0]}};
    """
    out = await rt.invoke("pg_execute_code", {"code": code, "readonly": True, "input": {"probe": _PROBE}},
                          LOCAL_PRINCIPAL)
    assert out["success"] is True, out["error"]
    r = out["result"]
    assert r["failed"] == "INVALID_INPUT" and r["n"] == len(ROWS)  # a failed call leaves the snapshot usable
    for probe in (r["b"], r["c"]):  # one REPEATABLE READ snapshot, also for the call that ran beside the other
        assert (probe["snap"], probe["iso"], probe["u"]) == (r["a"]["snap"], "repeatable read", "pgcode_read")
    assert r["a"]["pid"] in (r["b"]["pid"], r["c"]["pid"])  # the sequential calls kept one connection
    assert r["a"]["u"] == "pgcode_read" and r["a"]["iso"] == "repeatable read"
    # nothing is left open on the server once the execution ended
    open_tx = table_rows(conn, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND xact_start IS NOT NULL",
                         r["a"]["pid"])
    assert open_tx == [(0,)]


async def test_an_executions_read_holds_no_transaction_while_the_code_runs(
        rt: Runtime, conn: psycopg.Connection[Any], items: str) -> None:
    """A one-statement read in code mode commits with its statement: while the code goes on computing, its
    connection is idle, not idle in transaction (no snapshot held, no lock for a migration to wait on)."""
    marker = f"m{time.monotonic_ns()}"
    code = f"""
      const n = (await pg.core.readQuery({{sql: 'SELECT count(*)::int AS n FROM {items} -- {marker}'}})).rows[0].n;
      const t0 = Date.now(); while (Date.now() - t0 < 1500) {{}}
      return n;
    """
    running = asyncio.create_task(rt.invoke("pg_execute_code", {"code": code}, LOCAL_PRINCIPAL))
    try:
        state = None
        for _ in range(100):  # until the read has run: its text stays on its session
            rows = table_rows(conn, "SELECT state FROM pg_stat_activity WHERE query LIKE %s AND state <> 'active' "
                                    "AND pid <> pg_backend_pid()", f"%-- {marker}%")
            if rows:
                state = rows[0][0]
                break
            await asyncio.sleep(0.01)
        assert not running.done(), "the code should still be running"
        assert state == "idle"
        with conn.transaction():  # the table is free: the read's lock went when its transaction ended
            conn.execute("SET LOCAL lock_timeout = '200ms'")
            conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(*items.split("."))))
    finally:  # the execution ends (and lets go of the table) before the fixtures drop it
        out = await running
    assert out["success"] is True and out["result"] == len(ROWS)


async def test_execution_calls_share_a_connection_and_keep_their_own_roles(
        rt: Runtime, conn: psycopg.Connection[Any], items: str) -> None:
    marker = f"m{time.monotonic_ns()}"
    code = f"""
      const probe = "SELECT pg_backend_pid() AS pid, current_user AS u, current_setting('transaction_read_only') AS ro";
      const r1 = (await pg.core.readQuery({{sql: probe}})).rows[0];
      await pg.core.writeQuery({{sql: "UPDATE {items} SET v = 'w' WHERE id = 2"}});
      const set = "UPDATE {items} SET v = current_user WHERE id = 3 RETURNING v -- {marker}";
      const w = (await pg.core.writeQuery({{sql: set}})).rows[0];
      const r2 = (await pg.core.readQuery({{sql: probe}})).rows[0];
      return {{r1, w, r2}};
    """
    out = await rt.invoke("pg_execute_code", {"code": code}, LOCAL_PRINCIPAL)
    assert out["success"] is True, out["error"]
    r = out["result"]
    assert r["r1"]["pid"] == r["r2"]["pid"]  # the sequential calls used one connection
    assert r["r1"]["u"] == r["r2"]["u"] == "pgcode_read" and r["r1"]["ro"] == "on"
    assert r["w"] == {"v": "pgcode_write"}  # each call as its own scope's role
    assert rows_of(conn, items) == [(1, "a"), (2, "w"), (3, "pgcode_write")]  # the writes were committed
    await rt.audit.flush()  # every host call has its audit row
    audited = table_rows(conn, "SELECT count(*) FROM pgcode.audit_log WHERE tool = 'pg_write_query' AND "
                               "arguments::text LIKE %s", f"%{marker}%")
    assert audited == [(1,)]


async def test_a_cancelled_call_has_its_audit_row(rt: Runtime, conn: psycopg.Connection[Any]) -> None:
    """A call whose caller goes away (a closed HTTP request, a code-mode deadline) is cancelled with its statement,
    and is still in the audit log: outcome error, CANCELLED. A call that finishes beside it is audited as ok."""
    marker = f"cancelled-{time.monotonic_ns()}"
    task = asyncio.create_task(rt.invoke("pg_read_query", {"sql": f"SELECT pg_sleep(30) -- {marker}"}, READER))
    for _ in range(100):
        running = table_rows(conn, "SELECT count(*) FROM pg_stat_activity WHERE query LIKE %s AND state = 'active' "
                                   "AND pid <> pg_backend_pid()", f"%{marker}%")
        if running == [(1,)]:
            break
        await asyncio.sleep(0.02)
    assert running == [(1,)]
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await rt.invoke("pg_read_query", {"sql": f"SELECT 1 AS done -- {marker}"}, READER)
    await rt.audit.flush()
    audited = table_rows(conn, "SELECT outcome, error_code FROM pgcode.audit_log WHERE arguments::text LIKE %s "
                               "ORDER BY at", f"%{marker}%")
    assert audited == [("error", "CANCELLED"), ("ok", None)]
