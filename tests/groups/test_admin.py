"""admin group: maintenance commands, sessions, configuration, statistics and insights, against real conditions."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from pydantic import SecretStr

from pgcode.core.runtime import Runtime
from pgcode.errors import ToolError
from pgcode.settings import Settings
from pgcode.types import LOCAL_PRINCIPAL, Principal, Scope
from tests.fix_db import Call, assert_tool_error
from tests.groups._sessions import Background, idle_session, session_exists, sleeper, wait_until

pytestmark = pytest.mark.anyio

READER = Principal.with_scope("reader", Scope.READ)
WRITER = Principal.with_scope("writer", Scope.WRITE)
NOBODY = Principal("nobody", frozenset())
APP = "t_admin"
SCRATCH = "t_admin_scratch"
LOGIN = "t_admin_login"
ODD = 'Odd "Name"; DROP TABLE victim'


def one(conn: psycopg.Connection[Any], query: Any, *params: Any) -> Any:
    row = conn.execute(query, params or None).fetchone()
    assert row is not None
    return row[0]


def stat(conn: psycopg.Connection[Any], schema: str, table: str, column: str) -> Any:
    return one(conn, sql.SQL("SELECT {} FROM pg_stat_all_tables WHERE schemaname = %s AND relname = %s").format(
        sql.Identifier(column)), schema, table)


@pytest.fixture
def db(conn: psycopg.Connection[Any], schema: str) -> Iterator[psycopg.Connection[Any]]:
    """`dead`: 10 000 rows, half deleted, autovacuum off; `victim`; a table with an awkward name."""
    conn.execute("SET lock_timeout = '5s'")
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {0} CASCADE; CREATE SCHEMA {0}").format(sql.Identifier(schema)))
    conn.execute(sql.SQL("""
        CREATE TABLE {s}.dead (id integer PRIMARY KEY, v text) WITH (autovacuum_enabled = false);
        INSERT INTO {s}.dead SELECT g, md5(g::text) FROM generate_series(1, 10000) g;
        CREATE INDEX dead_v_idx ON {s}.dead (v);
        DELETE FROM {s}.dead WHERE id % 2 = 0;
        CREATE TABLE {s}.victim (v text);
        INSERT INTO {s}.victim VALUES ('still here');
        CREATE TABLE {odd} (id integer) WITH (autovacuum_enabled = false);
        INSERT INTO {odd} SELECT generate_series(1, 100);
        DELETE FROM {odd} WHERE id <= 50;
        CREATE VIEW {s}.a_view AS SELECT 1 AS x;
    """).format(s=sql.Identifier(schema), odd=sql.Identifier(schema, ODD)))
    conn.execute("SELECT pg_stat_force_next_flush()")  # PG 15+: publish the counters when this statement ends
    wait_until(lambda: stat(conn, schema, "dead", "n_dead_tup") == 5000, what="the dead tuples to be counted")
    yield conn


def snapshot_holders(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    """Other sessions whose snapshot can keep VACUUM from removing dead rows of a table in this database."""
    return conn.execute("SELECT pid, datname, application_name, state, backend_xmin::text, left(query, 120) "
                        "FROM pg_stat_activity WHERE backend_xmin IS NOT NULL AND pid <> pg_backend_pid() "
                        "AND datname = current_database()").fetchall()


def quiet_horizon(conn: psycopg.Connection[Any], within_s: float = 30.0) -> None:
    """Wait until no other session holds a snapshot. A VACUUM may remove only rows that no snapshot can still
    see; an autovacuum ANALYZE elsewhere in this database (spatial_ref_sys, after the postgis tests) is such a
    snapshot, and the tests that count removed rows assume none."""
    deadline = time.monotonic() + within_s
    while snapshot_holders(conn) and time.monotonic() < deadline:
        time.sleep(0.05)


def assert_victim(conn: psycopg.Connection[Any], schema: str) -> None:
    assert conn.execute(f"SELECT v FROM {schema}.victim").fetchall() == [("still here",)]


@pytest.fixture(scope="module")
def scratch_dsn(dsn: str) -> Iterator[str]:
    """A database of this module's own, for the database-wide commands (other tests share the main one)."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {SCRATCH} WITH (FORCE)")
        c.execute(f"CREATE DATABASE {SCRATCH}")
    scratch = make_conninfo(dsn, dbname=SCRATCH)
    with psycopg.connect(scratch, autocommit=True) as c:
        c.execute("CREATE TABLE t (id integer) WITH (autovacuum_enabled = false); "
                  "INSERT INTO t SELECT generate_series(1, 1000); DELETE FROM t WHERE id > 10")
    yield scratch
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"DROP DATABASE IF EXISTS {SCRATCH} WITH (FORCE)")


@pytest.fixture(scope="module")
async def scratch_rt(scratch_dsn: str, settings: Settings) -> AsyncIterator[Runtime]:
    async with Runtime(settings.model_copy(update={"database_url": SecretStr(scratch_dsn), "pool_min_size": 0})) as r:
        yield r


@pytest.fixture(scope="module")
def login_dsn(dsn: str) -> Iterator[str]:
    """A LOGIN role that is not a superuser, and how to connect as it."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"DROP ROLE IF EXISTS {LOGIN}")
        c.execute(f"CREATE ROLE {LOGIN} LOGIN")
    yield make_conninfo(dsn, user=LOGIN)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"DROP ROLE IF EXISTS {LOGIN}")


# ---------------------------------------------------------------- pg_vacuum


async def test_vacuum_reclaims_dead_tuples(call: Call, db: psycopg.Connection[Any], schema: str) -> None:
    quiet_horizon(db)
    out = await call("pg_vacuum", {"table": f"{schema}.dead"})
    assert out["table"] == "dead" and out["schema"] == schema
    assert out["command"] == f'VACUUM "{schema}"."dead"' and out["skipped"] is False and out["duration_ms"] >= 0
    assert out["before"]["n_dead_tup"] == 5000 and out["before"]["last_vacuum"] is None
    assert out["after"]["n_dead_tup"] == 0 and out["after"]["last_vacuum"] is not None, snapshot_holders(db)
    assert out["after"]["vacuum_count"] == out["before"]["vacuum_count"] + 1
    assert stat(db, schema, "dead", "n_dead_tup") == 0


async def test_vacuum_full_freeze_and_options(call: Call, db: psycopg.Connection[Any], schema: str) -> None:
    full = await call("pg_vacuum", {"table": "dead", "schema": schema, "full": True})
    assert full["command"] == f'VACUUM (FULL) "{schema}"."dead"'
    assert full["after"]["size_bytes"] < full["before"]["size_bytes"]
    opts = await call("pg_vacuum", {"table": "dead", "schema": schema, "freeze": True, "indexCleanup": "off",
                                    "truncate": False, "skipLocked": True, "parallel": 2})
    assert opts["command"] == (f'VACUUM (FREEZE, SKIP_LOCKED, INDEX_CLEANUP OFF, TRUNCATE false, PARALLEL 2) '
                               f'"{schema}"."dead"')
    assert opts["after"]["xid_age"] <= opts["before"]["xid_age"]


async def test_vacuum_quotes_an_awkward_name(call: Call, db: psycopg.Connection[Any], schema: str) -> None:
    out = await call("pg_vacuum", {"table": ODD, "schema": schema})
    assert out["command"] == f'VACUUM "{schema}"."Odd ""Name""; DROP TABLE victim"'
    assert out["after"]["n_dead_tup"] == 0
    assert_victim(db, schema)


async def test_vacuum_skip_locked_and_lock_timeout(call: Call, db: psycopg.Connection[Any], schema: str,
                                                   dsn: str) -> None:
    with psycopg.connect(dsn, application_name=f"{APP}_holder") as holder:
        holder.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(schema, "dead")))
        out = await call("pg_vacuum", {"table": f"{schema}.dead", "skipLocked": True})
        assert out["skipped"] is True and out["warnings"], out
        assert out["after"]["n_dead_tup"] == 5000 and out["after"]["size_bytes"] is None
        with pytest.raises(ToolError) as exc:
            await call("pg_vacuum", {"table": f"{schema}.dead", "lockTimeoutSeconds": 0.2})
        assert_tool_error(exc, "CONFLICT")
        holder.rollback()
    assert stat(db, schema, "dead", "n_dead_tup") == 5000


async def test_vacuum_whole_database(scratch_rt: Runtime, scratch_dsn: str) -> None:
    with psycopg.connect(scratch_dsn, autocommit=True) as c:
        c.execute("SELECT pg_stat_force_next_flush()")
        wait_until(lambda: one(c, "SELECT n_dead_tup FROM pg_stat_user_tables WHERE relname = 't'") == 990)
        out = await scratch_rt.invoke("pg_vacuum", {}, LOCAL_PRINCIPAL)
        assert out["scope"] == "database" and out["command"] == "VACUUM" and out["table"] is None
        assert out["before"]["n_dead_tup"] >= 990 and out["after"]["n_dead_tup"] == 0
        assert one(c, "SELECT last_vacuum FROM pg_stat_user_tables WHERE relname = 't'") is not None


async def test_vacuum_refuses_bad_targets(call: Call, db: psycopg.Connection[Any], schema: str) -> None:
    cases = [
        ({"table": f"{schema}.missing"}, "NOT_FOUND"),
        ({"table": f"{schema}.a_view"}, "INVALID_INPUT"),
        ({"table": f"{schema}.dead", "indexCleanup": "sometimes"}, "INVALID_INPUT"),
        ({"table": f"{schema}.dead", "full": True, "parallel": 2}, "INVALID_INPUT"),
        ({"table": f"{schema}.dead", "verbose": True}, "INVALID_INPUT"),
        ({"table": f"{schema}.dead", "lockTimeoutSeconds": -1}, "INVALID_INPUT"),
    ]
    for args, code in cases:
        with pytest.raises(ToolError) as exc:
            await call("pg_vacuum", args)
        assert_tool_error(exc, code)
    assert stat(db, schema, "dead", "n_dead_tup") == 5000 and stat(db, schema, "dead", "vacuum_count") == 0


# ---------------------------------------------------------------- pg_vacuum_analyze, pg_analyze


async def test_vacuum_analyze_updates_both(call: Call, db: psycopg.Connection[Any], schema: str) -> None:
    quiet_horizon(db)
    out = await call("pg_vacuum_analyze", {"table": f"{schema}.dead", "columns": ["v"]})
    assert out["command"] == f'VACUUM (ANALYZE) "{schema}"."dead" ("v")'
    assert out["before"]["last_analyze"] is None and out["after"]["last_analyze"] is not None
    assert out["after"]["n_dead_tup"] == 0, snapshot_holders(db)
    # PostgreSQL resets n_mod_since_analyze only when every column is analyzed
    assert out["after"]["n_mod_since_analyze"] == out["before"]["n_mod_since_analyze"] > 0
    assert one(db, "SELECT count(*) FROM pg_stats WHERE schemaname = %s AND tablename = 'dead'", schema) == 1
    every = await call("pg_vacuum_analyze", {"table": f"{schema}.dead"})
    assert every["after"]["n_mod_since_analyze"] == 0


async def test_vacuum_analyze_refuses_columns_without_table(call: Call) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_vacuum_analyze", {"columns": ["v"]})
    assert_tool_error(exc, "INVALID_INPUT", "columns need a table")


async def test_analyze_refreshes_statistics(call: Call, db: psycopg.Connection[Any], schema: str) -> None:
    out = await call("pg_analyze", {"table": "dead", "schema": schema})
    assert out["command"] == f'ANALYZE "{schema}"."dead"'
    assert out["before"]["n_mod_since_analyze"] > 0 and out["after"]["n_mod_since_analyze"] == 0
    assert out["after"]["analyze_count"] == out["before"]["analyze_count"] + 1
    assert out["after"]["n_dead_tup"] == 5000  # ANALYZE does not vacuum
    assert one(db, "SELECT reltuples FROM pg_class WHERE oid = %s::regclass", f"{schema}.dead") == 5000
    cols = await call("pg_analyze", {"table": f"{schema}.dead", "columns": ["id"], "skipLocked": True})
    assert cols["command"] == f'ANALYZE (SKIP_LOCKED) "{schema}"."dead" ("id")'


async def test_analyze_whole_database_and_bad_input(call: Call, scratch_rt: Runtime, db: Any, schema: str) -> None:
    out = await scratch_rt.invoke("pg_analyze", {}, LOCAL_PRINCIPAL)
    assert out["scope"] == "database" and out["after"]["last_analyze"] is not None
    for args, code in (({"table": f"{schema}.missing"}, "NOT_FOUND"), ({"table": f"{schema}.dead",
                                                                         "columns": ["nope"]}, "NOT_FOUND")):
        with pytest.raises(ToolError) as exc:
            await call("pg_analyze", args)
        assert_tool_error(exc, code)


# ---------------------------------------------------------------- pg_reindex


async def test_reindex_table_shrinks_a_bloated_index(call: Call, db: psycopg.Connection[Any], schema: str) -> None:
    out = await call("pg_reindex", {"name": f"{schema}.dead"})
    assert out["command"] == f'REINDEX TABLE "{schema}"."dead"'
    by_name = {i["index"]: i for i in out["indexes"]}
    assert set(by_name) == {"dead_pkey", "dead_v_idx"} and out["invalid_indexes"] == []
    v = by_name["dead_v_idx"]
    assert v["size_bytes"] < v["size_before_bytes"]  # half the entries pointed at deleted rows


async def test_reindex_index_concurrently_and_schema(call: Call, db: psycopg.Connection[Any], schema: str) -> None:
    out = await call("pg_reindex", {"target": "index", "name": "dead_v_idx", "schema": schema,
                                    "concurrently": True})
    assert out["command"] == f'REINDEX INDEX CONCURRENTLY "{schema}"."dead_v_idx"'
    assert [i["index"] for i in out["indexes"]] == ["dead_v_idx"] and out["indexes"][0]["is_valid"] is True
    whole = await call("pg_reindex", {"target": "schema", "name": schema})
    assert whole["command"] == f'REINDEX SCHEMA "{schema}"'
    assert {"dead_pkey", "dead_v_idx"} <= {i["index"] for i in whole["indexes"]}


async def test_reindex_not_found(call: Call, db: Any, schema: str) -> None:
    for args in ({"name": f"{schema}.missing"}, {"target": "index", "name": "missing_idx", "schema": schema},
                 {"target": "schema", "name": "t_admin_no_such_schema"}):
        with pytest.raises(ToolError) as exc:
            await call("pg_reindex", args)
        assert_tool_error(exc, "NOT_FOUND")
    with pytest.raises(ToolError) as exc:
        await call("pg_reindex", {"target": "database", "name": "x"})
    assert_tool_error(exc, "INVALID_INPUT")


# ---------------------------------------------------------------- pg_terminate_backend, pg_cancel_backend


async def test_terminate_refuses_a_superuser_session_then_ends_it(call: Call, dsn: str,
                                                                  conn: psycopg.Connection[Any]) -> None:
    with sleeper(dsn, f"{APP}_term_su", 60) as victim:
        if not one(conn, "SELECT rolsuper FROM pg_roles WHERE rolname = current_user"):
            pytest.skip("the test role is not a superuser, so its sessions are not protected")  # pragma: no cover
        with pytest.raises(ToolError) as exc:
            await call("pg_terminate_backend", {"pid": victim.pid})
        err = assert_tool_error(exc, "INVALID_INPUT", "superuser", "nothing was done")
        assert "allowSuperuser" in (err.hint or "")
        assert session_exists(conn, victim.pid) and victim.running
        out = await call("pg_terminate_backend", {"pid": victim.pid, "allowSuperuser": True})
        assert out["pid"] == victim.pid and out["terminated"] is True
        assert out["application_name"] == f"{APP}_term_su" and out["state"] == "active"
        assert "pg_sleep" in out["query"] and "exited" in out["reason"]
        victim.join()
        assert isinstance(victim.error, psycopg.OperationalError)
        assert not session_exists(conn, victim.pid)


async def test_terminate_an_ordinary_role_session(call: Call, login_dsn: str, conn: psycopg.Connection[Any]) -> None:
    with idle_session(login_dsn, f"{APP}_term_login", in_transaction=True) as victim:
        pid = victim.info.backend_pid
        out = await call("pg_terminate_backend", {"pid": pid, "waitMs": 0})
        assert out["usename"] == LOGIN and out["state"] == "idle in transaction"
        wait_until(lambda: not session_exists(conn, pid), what="the session to end")


async def test_terminate_refuses_its_own_session_and_server_processes(settings: Settings, call: Call,
                                                                      conn: psycopg.Connection[Any]) -> None:
    async with Runtime(settings.model_copy(update={"pool_min_size": 1, "pool_max_size": 1})) as solo:
        own = (await solo.invoke("pg_read_query", {"sql": "SELECT pg_backend_pid() AS pid"}, LOCAL_PRINCIPAL)
               )["rows"][0]["pid"]
        for name in ("pg_terminate_backend", "pg_cancel_backend"):
            with pytest.raises(ToolError) as exc:
                await solo.invoke(name, {"pid": own, "allowSuperuser": True}, LOCAL_PRINCIPAL)
            assert_tool_error(exc, "INVALID_INPUT", "pgcode uses for this call")
        assert (await solo.invoke("pg_read_query", {"sql": "SELECT pg_backend_pid() AS pid"}, LOCAL_PRINCIPAL)
                )["rows"][0]["pid"] == own
    background = one(conn, "SELECT pid FROM pg_stat_activity WHERE backend_type = 'checkpointer'")
    for name in ("pg_terminate_backend", "pg_cancel_backend"):
        with pytest.raises(ToolError) as exc:
            await call(name, {"pid": background, "allowSuperuser": True})
        assert_tool_error(exc, "INVALID_INPUT", "checkpointer", "not a client session")
    assert session_exists(conn, background)
    with pytest.raises(ToolError) as exc:
        await call("pg_terminate_backend", {"pid": 2**31 - 1})
    assert_tool_error(exc, "NOT_FOUND")
    with pytest.raises(ToolError) as exc:
        await call("pg_terminate_backend", {"pid": 0})
    assert_tool_error(exc, "INVALID_INPUT")


async def test_cancel_stops_the_query_and_keeps_the_session(call: Call, dsn: str,
                                                            conn: psycopg.Connection[Any]) -> None:
    with sleeper(dsn, f"{APP}_cancel", 60) as victim:
        with pytest.raises(ToolError) as exc:
            await call("pg_cancel_backend", {"pid": victim.pid})
        assert_tool_error(exc, "INVALID_INPUT", "superuser")
        assert victim.running
        out = await call("pg_cancel_backend", {"pid": victim.pid, "allowSuperuser": True})
        assert out["cancelled"] is True and out["signal_sent"] is True and out["state"] == "active"
        assert out["state_after"] == "idle" and "cancelled" in out["reason"]
        victim.join()
        assert isinstance(victim.error, psycopg.errors.QueryCanceled)
        assert session_exists(conn, victim.pid)
        assert victim.conn.execute("SELECT 1").fetchone() == (1,)  # the client is still connected


async def test_cancel_an_idle_session_sends_nothing(call: Call, login_dsn: str) -> None:
    with idle_session(login_dsn, f"{APP}_cancel_idle") as idle:
        out = await call("pg_cancel_backend", {"pid": idle.info.backend_pid})
        assert out["cancelled"] is False and out["signal_sent"] is False and "nothing to cancel" in out["reason"]
        assert idle.execute("SELECT 1").fetchone() == (1,)


async def test_cancel_an_ordinary_role_query(call: Call, login_dsn: str) -> None:
    victim = Background(login_dsn, f"{APP}_cancel_login", "SELECT pg_sleep(60)")
    try:
        victim.start(login_dsn)
        out = await call("pg_cancel_backend", {"pid": victim.pid})
        assert out["cancelled"] is True and out["usename"] == LOGIN
        victim.join()
        assert isinstance(victim.error, psycopg.errors.QueryCanceled)
    finally:
        victim.close(login_dsn)


# ---------------------------------------------------------------- pg_reload_conf, pg_set_config


async def test_reload_conf(call: Call) -> None:
    out = await call("pg_reload_conf", {})
    assert out["reloaded"] is True and out["applied"] is True and out["config_loaded_at"]
    assert isinstance(out["pending_restart"], list) and out["file_errors"] == []


async def test_set_config_transaction_scope_lasts_for_the_call_only(call: Call, conn: psycopg.Connection[Any]) -> None:
    default = one(conn, "SELECT reset_val FROM pg_settings WHERE name = 'work_mem'")
    out = await call("pg_set_config", {"name": "work_mem", "value": "77MB"})
    assert out["value"] == "77MB" and out["scope"] == "transaction" and "this call only" in out["lasts"]
    for _ in range(10):  # every pooled connection
        shown = await call("pg_show_settings", {"names": ["work_mem"]})
        assert shown[0]["setting"] == default


async def test_set_config_in_a_held_transaction(call: Call) -> None:
    tx = (await call("pg_transaction_begin", {}))["transactionId"]
    try:
        out = await call("pg_set_config", {"name": "work_mem", "value": "33MB", "transactionId": tx})
        assert out["value"] == "33MB" and tx in out["lasts"]
        inside = await call("pg_read_query", {"sql": "SELECT current_setting('work_mem') AS v", "transactionId": tx})
        assert inside["rows"] == [{"v": "33MB"}]
        custom = await call("pg_set_config", {"name": "t_admin.tenant", "value": 42, "transactionId": tx})
        assert custom["custom"] is True and custom["value"] == "42"
    finally:
        await call("pg_transaction_commit", {"transactionId": tx})
    for _ in range(10):
        out = await call("pg_read_query", {"sql": "SELECT current_setting('work_mem') AS v, "
                                                  "current_setting('t_admin.tenant', true) AS t"})
        assert out["rows"][0]["v"] != "33MB" and out["rows"][0]["t"] in (None, "")


async def test_set_config_refusals(call: Call) -> None:
    cases = [
        ({"name": "work_mme", "value": "1MB"}, "NOT_FOUND", "work_mme"),
        ({"name": "work_mem; DROP TABLE x", "value": "1MB"}, "INVALID_INPUT", "not a parameter name"),
        ({"name": "work_mem", "value": "lots"}, "INVALID_INPUT", ""),
        ({"name": "shared_buffers", "value": "1GB"}, "INVALID_INPUT", "cannot be set with scope transaction"),
        ({"name": "log_autovacuum_min_duration", "value": "1s", "scope": "database"}, "INVALID_INPUT", "context"),
        ({"name": "server_version", "value": "1", "scope": "system"}, "INVALID_INPUT", "internal"),
        ({"name": "work_mem"}, "INVALID_INPUT", "value is needed"),
        ({"name": "work_mem", "value": "1MB", "scope": "system", "transactionId": "x"}, "INVALID_INPUT", ""),
        ({"name": "work_mem", "value": "1MB", "reload": True}, "INVALID_INPUT", "reload"),
        ({"name": "work_mem", "value": "1MB", "role": "postgres"}, "INVALID_INPUT", "role"),
        ({"name": "work_mem", "value": "1MB", "transactionId": "no-such-tx"}, "NOT_FOUND", ""),
        ({"name": "work_mem", "value": "1MB", "scope": "role", "role": "t_admin_no_role"}, "NOT_FOUND", ""),
        ({"name": "work_mem", "value": "1MB", "scope": "session"}, "INVALID_INPUT", ""),
    ]
    for args, code, fragment in cases:
        with pytest.raises(ToolError) as exc:
            await call("pg_set_config", args)
        assert_tool_error(exc, code, fragment)


async def test_set_config_system_scope_with_reload(call: Call, dsn: str, conn: psycopg.Connection[Any]) -> None:
    name = "log_autovacuum_min_duration"

    def fresh_value() -> str:
        with psycopg.connect(dsn) as c:
            return str(one(c, f"SHOW {name}"))

    default = fresh_value()
    try:
        out = await call("pg_set_config", {"name": name, "value": "7s", "scope": "system", "reload": True})
        assert out["reloaded"] is True and out["restart_required"] is False and out["value"] == "7s"
        wait_until(lambda: fresh_value() == "7s", what="new sessions to see the value")
        assert one(conn, "SELECT setting FROM pg_file_settings WHERE name = %s AND sourcefile LIKE "
                         "'%%postgresql.auto.conf'", name) == "7s"
        written = await call("pg_set_config", {"name": name, "value": "9s", "scope": "system"})
        assert written["reloaded"] is False and "next configuration reload" in written["applies"]
        reset = await call("pg_set_config", {"name": name, "value": None, "scope": "system", "reload": True})
        assert reset["reset"] is True and reset["value"] is None
        wait_until(lambda: fresh_value() == default, what="the default to come back")
    finally:
        conn.execute(f"ALTER SYSTEM RESET {name}")
        conn.execute("SELECT pg_reload_conf()")


async def test_set_config_database_scope(scratch_rt: Runtime, scratch_dsn: str, conn: psycopg.Connection[Any]) -> None:
    def setconfig() -> list[str]:
        row = conn.execute("SELECT setconfig FROM pg_db_role_setting s JOIN pg_database d ON d.oid = s.setdatabase "
                           "WHERE d.datname = %s AND s.setrole = 0", (SCRATCH,)).fetchone()
        return list(row[0]) if row else []

    out = await scratch_rt.invoke("pg_set_config", {"name": "work_mem", "value": "12MB", "scope": "database"},
                                  LOCAL_PRINCIPAL)
    assert out["database"] == SCRATCH and out["applies"] == "to sessions started from now on"
    assert setconfig() == ["work_mem=12MB"]
    with psycopg.connect(scratch_dsn) as c:
        assert one(c, "SHOW work_mem") == "12MB"
    await scratch_rt.invoke("pg_set_config", {"name": "work_mem", "value": None, "scope": "database"},
                            LOCAL_PRINCIPAL)
    assert setconfig() == []


async def test_set_config_role_scope_with_a_list(call: Call, login_dsn: str, conn: psycopg.Connection[Any]) -> None:
    def setconfig() -> list[str]:
        row = conn.execute("SELECT setconfig FROM pg_db_role_setting s JOIN pg_roles r ON r.oid = s.setrole "
                           "WHERE r.rolname = %s AND s.setdatabase = 0", (LOGIN,)).fetchone()
        return sorted(row[0]) if row else []

    try:
        out = await call("pg_set_config", {"name": "search_path", "value": ["t_admin", "public"], "scope": "role",
                                           "role": LOGIN})
        assert out["role"] == LOGIN and out["value"] == "t_admin, public"
        await call("pg_set_config", {"name": "statement_timeout", "value": 3000, "scope": "role", "role": LOGIN})
        assert setconfig() == ["search_path=t_admin, public", "statement_timeout=3000"]
        with psycopg.connect(login_dsn) as c:
            assert one(c, "SHOW search_path") == "t_admin, public" and one(c, "SHOW statement_timeout") == "3s"
        await call("pg_set_config", {"name": "search_path", "value": None, "scope": "role", "role": LOGIN})
        assert setconfig() == ["statement_timeout=3000"]
    finally:
        conn.execute(f"ALTER ROLE {LOGIN} RESET ALL")


# ---------------------------------------------------------------- pg_reset_stats


async def test_reset_stats_of_one_table(call: Call, db: psycopg.Connection[Any], schema: str) -> None:
    assert stat(db, schema, "dead", "n_tup_ins") == 10000 and stat(db, schema, "victim", "n_tup_ins") == 1
    out = await call("pg_reset_stats", {"target": "table", "table": f"{schema}.dead"})
    assert out["reset"] == [{"what": f"{schema}.dead", "function": "pg_stat_reset_single_table_counters"}]
    assert stat(db, schema, "dead", "n_tup_ins") == 0 and stat(db, schema, "dead", "n_dead_tup") == 0
    assert stat(db, schema, "victim", "n_tup_ins") == 1


async def test_reset_stats_of_a_database(scratch_rt: Runtime, scratch_dsn: str, conn: psycopg.Connection[Any]) -> None:
    def stats_reset() -> Any:
        return one(conn, "SELECT stats_reset FROM pg_stat_database WHERE datname = %s", SCRATCH)

    before = stats_reset()
    out = await scratch_rt.invoke("pg_reset_stats", {"target": "database"}, LOCAL_PRINCIPAL)
    assert out["reset"] == [{"what": f"database {SCRATCH}", "function": "pg_stat_reset"}]
    assert stats_reset() is not None and (before is None or stats_reset() > before)
    with psycopg.connect(scratch_dsn) as c:
        assert one(c, "SELECT n_tup_ins FROM pg_stat_user_tables WHERE relname = 't'") == 0


async def test_reset_stats_shared_archiver(call: Call, conn: psycopg.Connection[Any]) -> None:
    before = one(conn, "SELECT stats_reset FROM pg_stat_archiver")
    out = await call("pg_reset_stats", {"target": "shared", "kinds": ["archiver"]})
    assert out["reset"] == [{"what": "archiver", "function": "pg_stat_reset_shared"}] and out["skipped"] == []
    assert one(conn, "SELECT stats_reset FROM pg_stat_archiver") > before
    version = int(one(conn, "SHOW server_version_num"))
    if version < 170000:
        skipped = await call("pg_reset_stats", {"target": "shared", "kinds": ["checkpointer"]})
        assert skipped["reset"] == [] and skipped["skipped"] == [{"what": "checkpointer",
                                                                  "reason": "needs PostgreSQL 17"}]


async def test_reset_stats_of_one_statement(call: Call, db: psycopg.Connection[Any], schema: str) -> None:
    """Only the chosen pg_stat_statements entry goes; the module's own tables make the two entries distinct."""
    if not one(db, "SELECT count(*) FROM pg_extension WHERE extname = 'pg_stat_statements'"):
        pytest.skip("resetting statements needs pg_stat_statements, which this server lacks")  # pragma: no cover
    suffix = uuid.uuid4().hex[:8]
    reset_me, keep_me = f"reset_me_{suffix}", f"keep_me_{suffix}"
    for name in (reset_me, keep_me):
        db.execute(sql.SQL("CREATE TABLE {} (id integer)").format(sql.Identifier(schema, name)))
    for _ in range(3):
        for name in (reset_me, keep_me):
            db.execute(sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, name)))

    def queryid(name: str) -> Any:
        return one(db, "SELECT max(queryid) FROM pg_stat_statements WHERE query LIKE %s", f"%count(*) FROM %{name}%")

    target = wait_until(lambda: queryid(reset_me), what="the statement to be recorded")
    out = await call("pg_reset_stats", {"target": "statements", "queryid": str(target)})
    database = one(db, "SELECT current_database()")
    assert out["reset"] == [{"what": f"pg_stat_statements: query {target} of database {database}",
                             "function": "pg_stat_statements_reset"}]
    assert queryid(reset_me) is None and queryid(keep_me) is not None


async def test_reset_stats_refusals(call: Call, db: Any, schema: str) -> None:
    cases = [
        ({"target": "table"}, "INVALID_INPUT"),
        ({"target": "table", "table": f"{schema}.missing"}, "NOT_FOUND"),
        ({"target": "database", "table": "x"}, "INVALID_INPUT"),
        ({"target": "database", "kinds": ["wal"]}, "INVALID_INPUT"),
        ({"target": "shared", "kinds": ["everything"]}, "INVALID_INPUT"),
        ({"target": "statements", "queryid": "12; DROP"}, "INVALID_INPUT"),
        ({"target": "table", "table": "x", "queryid": "1"}, "INVALID_INPUT"),
        ({}, "INVALID_INPUT"),
    ]
    for args, code in cases:
        with pytest.raises(ToolError) as exc:
            await call("pg_reset_stats", args)
        assert_tool_error(exc, code)


# ---------------------------------------------------------------- pg_cluster


async def test_cluster_orders_the_table(call: Call, db: psycopg.Connection[Any], schema: str) -> None:
    db.execute(sql.SQL("CREATE TABLE {t} (id integer, v text); CREATE INDEX shuffled_v_idx ON {t} (v); "
                       "INSERT INTO {t} SELECT g, md5(g::text) FROM generate_series(1, 2000) g").format(
        t=sql.Identifier(schema, "shuffled")))
    with pytest.raises(ToolError) as exc:
        await call("pg_cluster", {"table": f"{schema}.shuffled"})
    err = assert_tool_error(exc, "INVALID_INPUT", "no clustering index")
    assert err.details["indexes"] == ["shuffled_v_idx"]
    out = await call("pg_cluster", {"table": f"{schema}.shuffled", "index": "shuffled_v_idx"})
    assert out["index"] == "shuffled_v_idx"
    assert out["command"] == f'CLUSTER "{schema}"."shuffled" USING "shuffled_v_idx"'
    in_heap_order = [r[0] for r in db.execute(sql.SQL("SELECT v FROM {} ORDER BY ctid").format(
        sql.Identifier(schema, "shuffled"))).fetchall()]
    assert in_heap_order == sorted(in_heap_order)
    assert one(db, "SELECT indisclustered FROM pg_index WHERE indexrelid = %s::regclass",
               f"{schema}.shuffled_v_idx") is True
    again = await call("pg_cluster", {"table": "shuffled", "schema": schema})
    assert again["index"] == "shuffled_v_idx"


async def test_cluster_refusals(call: Call, db: Any, schema: str) -> None:
    for args, code in (({"table": f"{schema}.missing", "index": "x"}, "NOT_FOUND"),
                       ({"table": f"{schema}.dead", "index": "no_such_idx"}, "NOT_FOUND"),
                       ({"table": f"{schema}.a_view", "index": "x"}, "INVALID_INPUT"),
                       ({"table": f"{schema}.dead", "index": "x" * 64}, "INVALID_INPUT")):
        with pytest.raises(ToolError) as exc:
            await call("pg_cluster", args)
        assert_tool_error(exc, code)


# ---------------------------------------------------------------- pg_append_insight


async def test_append_insight_creates_its_table_and_lists(call: Call, conn: psycopg.Connection[Any]) -> None:
    conn.execute("DROP TABLE IF EXISTS pgcode.insights")
    tag = f"t_admin_{uuid.uuid4().hex[:8]}"
    empty = await call("pg_append_insight", {"tag": tag}, principal=READER, read_only=True)
    assert empty == {"count": 0, "insights": [], "truncated": False}
    out = await call("pg_append_insight", {"insight": "Orders peak on Mondays", "tags": [tag, "sales"]},
                     principal=READER)
    row = out["appended"]
    assert row["text"] == "Orders peak on Mondays" and row["tags"] == [tag, "sales"]
    assert row["principal"] == "reader" and row["id"] >= 1 and out["count"] >= 1
    assert one(conn, "SELECT text FROM pgcode.insights WHERE id = %s", row["id"]) == "Orders peak on Mondays"
    await call("pg_append_insight", {"insight": "Refunds doubled in May", "tags": [tag]})
    await call("pg_append_insight", {"insight": "unrelated"})
    listed = await call("pg_append_insight", {"tag": tag, "limit": 1}, principal=READER, read_only=True)
    assert listed["count"] == 2 and listed["truncated"] is True
    assert [i["text"] for i in listed["insights"]] == ["Refunds doubled in May"]


async def test_append_insight_refusals(call: Call, conn: psycopg.Connection[Any]) -> None:
    count = one(conn, "SELECT count(*) FROM pgcode.insights") if one(
        conn, "SELECT to_regclass('pgcode.insights') IS NOT NULL") else 0
    with pytest.raises(ToolError) as exc:
        await call("pg_append_insight", {"insight": "no"}, principal=READER, read_only=True)
    assert_tool_error(exc, "READ_ONLY")
    for args in ({"insight": ""}, {"insight": "x" * 10_001}, {"tags": ["a"]}, {"insight": "x", "tags": [""]}):
        with pytest.raises(ToolError) as exc:
            await call("pg_append_insight", args)
        assert_tool_error(exc, "INVALID_INPUT")
    after = one(conn, "SELECT count(*) FROM pgcode.insights") if one(
        conn, "SELECT to_regclass('pgcode.insights') IS NOT NULL") else 0
    assert after == count


# ---------------------------------------------------------------- scope and read-only


ADMIN_CALLS = [
    ("pg_vacuum", {"table": "t_admin.dead"}), ("pg_vacuum_analyze", {"table": "t_admin.dead"}),
    ("pg_analyze", {"table": "t_admin.dead"}), ("pg_reindex", {"name": "t_admin.dead"}),
    ("pg_terminate_backend", {"pid": 1}), ("pg_cancel_backend", {"pid": 1}), ("pg_reload_conf", {}),
    ("pg_set_config", {"name": "work_mem", "value": "1MB"}), ("pg_reset_stats", {"target": "database"}),
    ("pg_cluster", {"table": "t_admin.dead", "index": "dead_pkey"}),
]


@pytest.mark.parametrize(("name", "args"), ADMIN_CALLS, ids=[c[0] for c in ADMIN_CALLS])
async def test_admin_tools_need_admin_scope(call: Call, db: psycopg.Connection[Any], schema: str, name: str,
                                            args: dict[str, Any]) -> None:
    with pytest.raises(ToolError) as exc:
        await call(name, args, principal=WRITER)
    assert_tool_error(exc, "FORBIDDEN")
    with pytest.raises(ToolError) as exc:
        await call(name, args, read_only=True)
    assert_tool_error(exc, "READ_ONLY")
    assert stat(db, schema, "dead", "vacuum_count") == 0 and stat(db, schema, "dead", "n_dead_tup") == 5000


async def test_append_insight_needs_read_scope(call: Call) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_append_insight", {"insight": "x"}, principal=NOBODY)
    assert_tool_error(exc, "FORBIDDEN")

