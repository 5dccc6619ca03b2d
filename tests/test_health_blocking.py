"""Blocking chains, made for real with three sessions: C waits on B, B waits on A, A idles in its transaction.
The chain names A as the root with the command that frees it, and that command (guarded by A's xact_start)
frees the other two; run again, once A's transaction is gone, it does nothing."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgcode.core.runtime import Runtime
from pgcode.types import LOCAL_PRINCIPAL, Principal, Scope
from tests.fix_db import Call, assert_tool_error
from tests.groups._sessions import Background, session_exists, wait_until

pytestmark = pytest.mark.anyio
APP = "t_health_chain"


@pytest.fixture
def chain(dsn: str, schema: str) -> Iterator[tuple[psycopg.Connection[Any], Background, Background]]:
    """A: holds t1 and sits idle in transaction; B: holds t2 and waits for t1; C: waits for t2."""
    t1, t2 = sql.Identifier(schema, "chain_t1"), sql.Identifier(schema, "chain_t2")
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (id int); CREATE TABLE IF NOT EXISTS {} (id int)").format(
            t1, t2))
    with ExitStack() as stack:
        a = psycopg.connect(dsn, application_name=f"{APP}_a")
        stack.callback(a.close)  # the test terminates it: no rollback on the way out
        a.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(t1))
        b = Background(dsn, f"{APP}_b", sql.SQL("SELECT count(*) FROM {}").format(t1).as_string(a), autocommit=False)
        stack.callback(b.close, dsn)
        b.conn.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(t2))
        b.start(dsn, wait_event_type="Lock")
        c_ = Background(dsn, f"{APP}_c", sql.SQL("SELECT count(*) FROM {}").format(t2).as_string(a))
        stack.callback(c_.close, dsn)
        c_.start(dsn, wait_event_type="Lock")
        yield a, b, c_


async def test_three_session_chain_names_its_root_and_the_guarded_command_frees_it(
        call: Call, dsn: str, chain: tuple[psycopg.Connection[Any], Background, Background]) -> None:
    a, b, c = chain
    a_pid = a.info.backend_pid
    out = await call("pg_blocking_chains", {})
    mine = next(x for x in out["chains"] if x["root_pid"] == a_pid)
    assert mine["root"]["application_name"] == f"{APP}_a" and mine["root"]["state"] == "idle in transaction"
    depth = {s["pid"]: s["depth"] for s in mine["blocked"]}
    assert depth == {b.pid: 1, c.pid: 2} and mine["blocked_count"] == 2
    assert next(s for s in mine["blocked"] if s["pid"] == c.pid)["chain"] == [c.pid, b.pid, a_pid]
    assert all(s["waiting_seconds"] is not None and s["waiting_seconds"] >= 0 for s in mine["blocked"])
    # idle in transaction: cancelling would do nothing, so the advice terminates, guarded by the transaction
    assert mine["tool"] == {"name": "pg_terminate_backend", "args": {"pid": a_pid}}
    assert mine["command"].startswith(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE pid = {a_pid} "
                                      "AND xact_start = '")
    # the health check names the same root in its advice
    health = await call("pg_analyze_db_health", {"checks": ["blocking_locks"],
                                                 "thresholds": {"lockWaitWarningSeconds": 0}})
    check = health["checks"][0]
    assert f"root blocker is pid {a_pid}" in check["advice"] and check["status"] in ("warning", "critical")
    assert a_pid in {x["root_pid"] for x in check["details"]["chains"]}
    # the command frees the chain: B then C get their locks and finish
    with psycopg.connect(dsn, autocommit=True) as admin:
        assert admin.execute(mine["command"]).fetchall() == [(True,)]
        wait_until(lambda: not session_exists(admin, a_pid), what="the root to end")
        b.join()
        assert b.error is None and b.result == [(0,)]  # B got t1
        b.conn.rollback()  # B's own transaction held t2 for C
        c.join()
        assert c.error is None and c.result == [(0,)]
        # a second run finds no such transaction and does nothing
        assert admin.execute(mine["command"]).fetchall() == []


async def test_a_lone_active_statement_is_cancelled_not_terminated(call: Call, dsn: str, schema: str) -> None:
    t = sql.Identifier(schema, "chain_t3")
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(sql.SQL("CREATE TABLE IF NOT EXISTS {} (id int)").format(t))
        root_sql = sql.SQL("SELECT count(*), pg_sleep(30) FROM {}").format(t).as_string(c)
        waiter_sql = sql.SQL("ALTER TABLE {} ADD COLUMN z int").format(t).as_string(c)
    root = Background(dsn, f"{APP}_root", root_sql)
    waiter = Background(dsn, f"{APP}_waiter", waiter_sql)
    try:
        root.start(dsn)
        waiter.start(dsn, wait_event_type="Lock")
        out = await call("pg_blocking_chains", {})
        mine = next(x for x in out["chains"] if x["root_pid"] == root.pid)
        # a lone statement in its own transaction: cancelling it ends the transaction and its locks
        assert mine["tool"]["name"] == "pg_cancel_backend" and "pg_cancel_backend" in mine["command"]
    finally:
        waiter.close(dsn)
        root.close(dsn)


async def test_no_waits_no_chains_and_scope(rt: Runtime) -> None:
    out = await rt.invoke("pg_blocking_chains", {"limit": 5}, LOCAL_PRINCIPAL)
    assert out["count"] == len(out["chains"]) and not any(
        s["application_name"].startswith(APP) for x in out["chains"] for s in x["blocked"]
        if s["application_name"])
    with pytest.raises(Exception) as exc:
        await rt.invoke("pg_blocking_chains", {"limit": 0}, LOCAL_PRINCIPAL)
    assert_tool_error(exc, "INVALID_INPUT")
    with pytest.raises(Exception) as exc:
        await rt.invoke("pg_blocking_chains", {}, Principal("nobody", frozenset()))
    assert_tool_error(exc, "FORBIDDEN")
    assert (await rt.invoke("pg_blocking_chains", {}, Principal("r", frozenset({Scope.READ}))))["count"] >= 0
