"""transactions group: held transactions, savepoints and atomic statement lists, checked from outside."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import psycopg
import pytest
from psycopg import sql

from pgcode.core.runtime import Runtime
from pgcode.errors import ToolError
from pgcode.settings import Settings
from pgcode.types import LOCAL_PRINCIPAL, Principal, Scope
from tests.fix_db import Call, assert_tool_error

pytestmark = pytest.mark.anyio

ALICE = Principal.with_scope("alice", Scope.WRITE)
ALICE_ADMIN = Principal.with_scope("alice", Scope.ADMIN)
ALICE_READER = Principal.with_scope("alice", Scope.READ)
BOB = Principal.with_scope("bob", Scope.WRITE)
SUBJECTS = ("alice", "bob", "carol", LOCAL_PRINCIPAL.subject)


@pytest.fixture
def db(conn: psycopg.Connection[Any], schema: str) -> Iterator[psycopg.Connection[Any]]:
    """A fresh `ledger` table for each test, and the plain connection to look at it from outside."""
    conn.execute("SET lock_timeout = '5s'")
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {0} CASCADE; CREATE SCHEMA {0}").format(sql.Identifier(schema)))
    conn.execute(f"CREATE TABLE {schema}.ledger (id integer PRIMARY KEY, note text NOT NULL)")
    yield conn


@pytest.fixture(autouse=True)
async def _end_leftovers(rt: Runtime) -> AsyncIterator[None]:
    """Roll back whatever a failing test left open, so one failure does not cascade into the others."""
    yield
    for subject in SUBJECTS:
        for held in rt.txstore.owned_by(subject):
            await rt.txstore.finish(held, commit=False)


def outside(conn: psycopg.Connection[Any], schema: str) -> list[int]:
    """The ledger ids a separate session sees (committed data only)."""
    return [r[0] for r in conn.execute(f"SELECT id FROM {schema}.ledger ORDER BY id").fetchall()]


async def begin(call: Call, principal: Principal = ALICE, **args: Any) -> str:
    out = await call("pg_transaction_begin", args, principal=principal)
    return str(out["transactionId"])


async def insert(call: Call, schema: str, tx: str, *ids: int, principal: Principal = ALICE) -> Any:
    values = ", ".join(f"({i}, 'n{i}')" for i in ids)
    return await call("pg_write_query", {"sql": f"INSERT INTO {schema}.ledger (id, note) VALUES {values}",
                                         "transactionId": tx}, principal=principal)


async def inside(call: Call, schema: str, tx: str, principal: Principal = ALICE) -> list[int]:
    out = await call("pg_read_query", {"sql": f"SELECT id FROM {schema}.ledger ORDER BY id", "transactionId": tx},
                     principal=principal)
    return [r["id"] for r in out["rows"]]


async def assert_gone(call: Call, tx: str, principal: Principal = ALICE) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_transaction_status", {"transactionId": tx}, principal=principal)
    assert_tool_error(exc, "NOT_FOUND", "no open transaction")
    listed = await call("pg_transaction_status", {}, principal=principal)
    assert tx not in [t["transactionId"] for t in listed]


# ---------------------------------------------------------------- begin, status, commit, rollback


async def test_begin_and_status(call: Call, db: Any, schema: str) -> None:
    out = await call("pg_transaction_begin", {}, principal=ALICE)
    tx = out["transactionId"]
    assert isinstance(tx, str) and len(tx) >= 16
    assert out["isolationLevel"] == "read committed" and out["readOnly"] is False
    assert out["idleTimeoutSeconds"] == 60 and out["savepoints"] == [] and out["statements"] == 0
    assert out["state"] == "intrans"
    await insert(call, schema, tx, 1)
    status = await call("pg_transaction_status", {"transactionId": tx}, principal=ALICE)
    assert status["transactionId"] == tx and status["statements"] == 1 and status["state"] == "intrans"
    assert status["ageSeconds"] >= 0 and status["idleSeconds"] >= 0
    listed = await call("pg_transaction_status", {}, principal=ALICE)
    assert [t["transactionId"] for t in listed] == [tx]
    await call("pg_transaction_rollback", {"transactionId": tx}, principal=ALICE)


async def test_commit_makes_changes_visible(call: Call, db: Any, schema: str) -> None:
    tx = await begin(call)
    await insert(call, schema, tx, 1, 2)
    await call("pg_write_query", {"sql": f"UPDATE {schema}.ledger SET note = $1 WHERE id = 2",
                                  "params": ["changed"], "transactionId": tx}, principal=ALICE)
    assert await inside(call, schema, tx) == [1, 2]
    assert outside(db, schema) == []  # not visible before commit
    no_tx = await call("pg_read_query", {"sql": f"SELECT count(*) AS n FROM {schema}.ledger"})
    assert no_tx["rows"] == [{"n": 0}]  # nor to another pgcode call
    out = await call("pg_transaction_commit", {"transactionId": tx}, principal=ALICE)
    assert out == {"transactionId": tx, "committed": True, "statements": 3}
    assert db.execute(f"SELECT id, note FROM {schema}.ledger ORDER BY id").fetchall() == [(1, "n1"), (2, "changed")]
    await assert_gone(call, tx)
    with pytest.raises(ToolError) as exc:
        await call("pg_transaction_commit", {"transactionId": tx}, principal=ALICE)
    assert_tool_error(exc, "NOT_FOUND")


async def test_rollback_discards_changes(call: Call, db: Any, schema: str) -> None:
    tx = await begin(call)
    await insert(call, schema, tx, 1)
    await call("pg_write_query", {"sql": f"CREATE TABLE {schema}.scratch (a int)", "transactionId": tx},
               principal=ALICE_ADMIN)
    assert await inside(call, schema, tx) == [1]
    out = await call("pg_transaction_rollback", {"transactionId": tx}, principal=ALICE)
    assert out == {"transactionId": tx, "rolledBack": True, "statements": 3}
    assert outside(db, schema) == []
    assert db.execute("SELECT to_regclass(%s)", (f"{schema}.scratch",)).fetchone() == (None,)
    await assert_gone(call, tx)
    with pytest.raises(ToolError) as exc:
        await insert(call, schema, tx, 2)
    assert_tool_error(exc, "NOT_FOUND")
    assert outside(db, schema) == []


@pytest.mark.parametrize(("begin_key", "tx_key"), [("isolation_level", "transaction_id"),
                                                   ("isolationLevel", "transactionId")])
async def test_key_spellings(call: Call, db: Any, schema: str, begin_key: str, tx_key: str) -> None:
    out = await call("pg_transaction_begin", {begin_key: "serializable"}, principal=ALICE)
    tx = out["transactionId"]
    assert out["isolationLevel"] == "serializable"
    shown = await call("pg_read_query", {"sql": "SHOW transaction_isolation", tx_key: tx}, principal=ALICE)
    assert shown["rows"] == [{"transaction_isolation": "serializable"}]
    await call("pg_write_query", {"sql": f"INSERT INTO {schema}.ledger VALUES (1, 'a')", tx_key: tx},
               principal=ALICE)
    await call("pg_transaction_commit", {tx_key: tx}, principal=ALICE)
    assert outside(db, schema) == [1]


@pytest.mark.parametrize(("tool", "args"), [
    ("pg_transaction_begin", {"isolation": "serializable"}),
    ("pg_transaction_begin", {"isolationLevel": "chaos"}),
    ("pg_transaction_begin", {"readOnly": "sometimes"}),
    ("pg_transaction_commit", {}),
    ("pg_transaction_commit", {"transactionId": "x", "force": True}),
    ("pg_transaction_savepoint", {"transactionId": "x"}),
    ("pg_transaction_savepoint", {"transactionId": "x", "name": "s" * 64}),
    ("pg_transaction_execute", {"statements": []}),
    ("pg_transaction_execute", {"statements": [{"sql": "SELECT 1", "args": []}]}),
])
async def test_bad_arguments(call: Call, tool: str, args: dict[str, Any]) -> None:
    with pytest.raises(ToolError) as exc:
        await call(tool, args, principal=ALICE)
    assert_tool_error(exc, "INVALID_INPUT", tool)
    assert await call("pg_transaction_status", {}, principal=ALICE) == []


# ---------------------------------------------------------------- savepoints


async def test_rollback_to_undoes_only_later_work(call: Call, db: Any, schema: str) -> None:
    tx = await begin(call)
    await insert(call, schema, tx, 1)
    out = await call("pg_transaction_savepoint", {"transactionId": tx, "name": "s1"}, principal=ALICE)
    assert out == {"transactionId": tx, "savepoint": "s1", "savepoints": ["s1"]}
    await insert(call, schema, tx, 2)
    await call("pg_transaction_savepoint", {"transactionId": tx, "name": "s2"}, principal=ALICE)
    await insert(call, schema, tx, 3)
    assert await inside(call, schema, tx) == [1, 2, 3]
    out = await call("pg_transaction_rollback_to", {"transactionId": tx, "name": "s1"}, principal=ALICE)
    assert out == {"transactionId": tx, "rolledBackTo": "s1", "savepoints": ["s1"]}
    assert await inside(call, schema, tx) == [1]
    # the savepoint stays usable; s2 is gone with the work after s1
    await insert(call, schema, tx, 4)
    await call("pg_transaction_rollback_to", {"transactionId": tx, "name": "s1"}, principal=ALICE)
    with pytest.raises(ToolError) as exc:
        await call("pg_transaction_rollback_to", {"transactionId": tx, "name": "s2"}, principal=ALICE)
    err = assert_tool_error(exc, "NOT_FOUND", "s2")
    assert err.details == {"savepoints": ["s1"]}
    await insert(call, schema, tx, 5)
    assert outside(db, schema) == []
    await call("pg_transaction_commit", {"transactionId": tx}, principal=ALICE)
    assert outside(db, schema) == [1, 5]


async def test_release_keeps_work_and_removes_savepoints(call: Call, db: Any, schema: str) -> None:
    tx = await begin(call)
    await call("pg_transaction_savepoint", {"transactionId": tx, "name": "a"}, principal=ALICE)
    await insert(call, schema, tx, 1)
    await call("pg_transaction_savepoint", {"transactionId": tx, "name": "b"}, principal=ALICE)
    await insert(call, schema, tx, 2)
    out = await call("pg_transaction_release", {"transactionId": tx, "name": "a"}, principal=ALICE)
    assert out == {"transactionId": tx, "released": "a", "savepoints": []}
    status = await call("pg_transaction_status", {"transactionId": tx}, principal=ALICE)
    assert status["savepoints"] == []
    for name in ("a", "b"):
        with pytest.raises(ToolError) as exc:
            await call("pg_transaction_rollback_to", {"transactionId": tx, "name": name}, principal=ALICE)
        assert_tool_error(exc, "NOT_FOUND", repr(name))
    assert await inside(call, schema, tx) == [1, 2]  # released work is kept
    await call("pg_transaction_commit", {"transactionId": tx}, principal=ALICE)
    assert outside(db, schema) == [1, 2]


async def test_unknown_savepoint_leaves_transaction_usable(call: Call, db: Any, schema: str) -> None:
    tx = await begin(call)
    await insert(call, schema, tx, 1)
    for tool in ("pg_transaction_release", "pg_transaction_rollback_to"):
        with pytest.raises(ToolError) as exc:
            await call(tool, {"transactionId": tx, "name": "nope"}, principal=ALICE)
        assert_tool_error(exc, "NOT_FOUND", "no savepoint 'nope'")
    assert (await call("pg_transaction_status", {"transactionId": tx}, principal=ALICE))["state"] == "intrans"
    await call("pg_transaction_commit", {"transactionId": tx}, principal=ALICE)
    assert outside(db, schema) == [1]


async def test_savepoint_name_is_an_identifier(call: Call, db: Any, schema: str) -> None:
    tx = await begin(call)
    name = 'x"; COMMIT; --'
    await insert(call, schema, tx, 1)
    out = await call("pg_transaction_savepoint", {"transactionId": tx, "name": name}, principal=ALICE)
    assert out["savepoints"] == [name]
    await insert(call, schema, tx, 2)
    assert outside(db, schema) == []  # no COMMIT ran
    await call("pg_transaction_rollback_to", {"transactionId": tx, "name": name}, principal=ALICE)
    await call("pg_transaction_rollback", {"transactionId": tx}, principal=ALICE)
    assert outside(db, schema) == []


# ---------------------------------------------------------------- ownership


async def test_other_principal_cannot_see_or_use_a_transaction(call: Call, db: Any, schema: str) -> None:
    tx = await begin(call, ALICE)
    await insert(call, schema, tx, 1)
    assert await call("pg_transaction_status", {}, principal=BOB) == []
    attempts: list[tuple[str, dict[str, Any]]] = [
        ("pg_transaction_status", {"transactionId": tx}),
        ("pg_read_query", {"sql": f"SELECT * FROM {schema}.ledger", "transactionId": tx}),
        ("pg_write_query", {"sql": f"INSERT INTO {schema}.ledger VALUES (2, 'bob')", "transactionId": tx}),
        ("pg_transaction_execute", {"statements": [{"sql": f"DELETE FROM {schema}.ledger"}],
                                    "transactionId": tx}),
        ("pg_transaction_savepoint", {"transactionId": tx, "name": "s"}),
        ("pg_transaction_commit", {"transactionId": tx}),
        ("pg_transaction_rollback", {"transactionId": tx}),
    ]
    for tool, args in attempts:
        with pytest.raises(ToolError) as exc:
            await call(tool, args, principal=BOB)
        err = assert_tool_error(exc, "NOT_FOUND", f"no open transaction with id {tx!r}")
        # exactly what an id that never existed gets: nothing tells Bob the id is real
        with pytest.raises(ToolError) as unknown:
            await call(tool, {**args, "transactionId": "never-existed"}, principal=BOB)
        assert err.message.replace(tx, "ID") == unknown.value.message.replace("never-existed", "ID")
        assert err.hint == unknown.value.hint and err.details == unknown.value.details
    # Alice's transaction is untouched by all of that
    status = await call("pg_transaction_status", {"transactionId": tx}, principal=ALICE)
    assert status["statements"] == 1 and status["savepoints"] == []
    assert await inside(call, schema, tx) == [1]
    await call("pg_transaction_commit", {"transactionId": tx}, principal=ALICE)
    assert outside(db, schema) == [1]


async def test_unknown_transaction_id(call: Call, db: Any, schema: str) -> None:
    for tool, args in [("pg_transaction_status", {}), ("pg_transaction_commit", {}),
                       ("pg_transaction_rollback", {}), ("pg_transaction_release", {"name": "s"}),
                       ("pg_transaction_execute", {"statements": [{"sql": f"DELETE FROM {schema}.ledger"}]}),
                       ("pg_write_query", {"sql": f"INSERT INTO {schema}.ledger VALUES (1, 'x')"})]:
        with pytest.raises(ToolError) as exc:
            await call(tool, {**args, "transactionId": "nope"}, principal=ALICE)
        assert_tool_error(exc, "NOT_FOUND", "no open transaction with id 'nope'")
    assert outside(db, schema) == []


# ---------------------------------------------------------------- failures inside a held transaction


@pytest.mark.parametrize("via", ["pg_write_query", "pg_transaction_execute", "pg_read_query"])
async def test_failed_statement_rolls_back_the_whole_transaction(call: Call, db: Any, schema: str,
                                                                 via: str) -> None:
    tx = await begin(call)
    await insert(call, schema, tx, 1)
    await call("pg_transaction_savepoint", {"transactionId": tx, "name": "s"}, principal=ALICE)
    if via == "pg_write_query":
        args: dict[str, Any] = {"sql": f"INSERT INTO {schema}.ledger VALUES (1, 'dup')"}
        code = "CONFLICT"
    elif via == "pg_transaction_execute":
        args = {"statements": [{"sql": f"INSERT INTO {schema}.ledger VALUES (2, 'ok')"},
                               {"sql": f"INSERT INTO {schema}.ledger VALUES (1, 'dup')"}]}
        code = "CONFLICT"
    else:
        args = {"sql": "SELECT 1 / 0"}
        code = "INVALID_INPUT"
    with pytest.raises(ToolError) as exc:
        await call(via, {**args, "transactionId": tx}, principal=ALICE)
    err = assert_tool_error(exc, code)
    assert err.details["transactionRolledBack"] is True
    assert err.hint is not None and tx in err.hint and "rolled back" in err.hint
    await assert_gone(call, tx)
    assert outside(db, schema) == []
    with pytest.raises(ToolError) as exc:
        await call("pg_transaction_rollback_to", {"transactionId": tx, "name": "s"}, principal=ALICE)
    assert_tool_error(exc, "NOT_FOUND")
    # the connection went back to the pool clean: a new transaction works
    tx2 = await begin(call)
    await insert(call, schema, tx2, 7)
    await call("pg_transaction_commit", {"transactionId": tx2}, principal=ALICE)
    assert outside(db, schema) == [7]


async def test_refused_statement_does_not_end_the_transaction(call: Call, db: Any, schema: str) -> None:
    tx = await begin(call)
    await insert(call, schema, tx, 1)
    with pytest.raises(ToolError) as exc:
        await call("pg_write_query", {"sql": f"VACUUM {schema}.ledger", "transactionId": tx}, principal=ALICE_ADMIN)
    assert_tool_error(exc, "INVALID_INPUT", "transaction")
    with pytest.raises(ToolError) as exc:
        await call("pg_write_query", {"sql": "COMMIT", "transactionId": tx}, principal=ALICE)
    assert_tool_error(exc, "INVALID_INPUT", "transaction control")
    with pytest.raises(ToolError) as exc:
        await call("pg_read_query", {"sql": f"DELETE FROM {schema}.ledger", "transactionId": tx}, principal=ALICE)
    assert_tool_error(exc, "INVALID_INPUT", "not a read")
    assert outside(db, schema) == []  # the COMMIT did not run
    assert await inside(call, schema, tx) == [1]
    await call("pg_transaction_commit", {"transactionId": tx}, principal=ALICE)
    assert outside(db, schema) == [1]


async def test_failed_commit_ends_the_transaction(call: Call, db: Any, schema: str) -> None:
    db.execute(f"CREATE TABLE {schema}.uniq (v int UNIQUE DEFERRABLE INITIALLY DEFERRED)")
    tx = await begin(call)
    await call("pg_write_query", {"sql": f"INSERT INTO {schema}.uniq VALUES (1), (1)", "transactionId": tx},
               principal=ALICE)  # deferred: only COMMIT checks it
    with pytest.raises(ToolError) as exc:
        await call("pg_transaction_commit", {"transactionId": tx}, principal=ALICE)
    err = assert_tool_error(exc, "CONFLICT")
    assert err.details["sqlstate"] == "23505"
    await assert_gone(call, tx)
    assert db.execute(f"SELECT count(*) FROM {schema}.uniq").fetchone() == (0,)


def _terminate_when_running(dsn: str, pid: int, query: str) -> bool:
    """End backend `pid` (as a restart of the server would) once it is running `query`."""
    with psycopg.connect(dsn, autocommit=True) as c:
        for _ in range(200):
            row = c.execute("SELECT query FROM pg_stat_activity WHERE pid = %s AND state = 'active'", (pid,)).fetchone()
            if row is not None and row[0] == query:
                return bool(c.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,))
            time.sleep(0.02)
    return False


async def test_connection_lost_during_commit_is_in_doubt_with_the_transaction_id(
        call: Call, rt: Runtime, dsn: str, db: Any, schema: str) -> None:
    """A COMMIT cut off on its way may or may not have happened: IN_DOUBT names the transaction to look up."""
    db.execute(f"""CREATE FUNCTION {schema}.slow_commit() RETURNS trigger LANGUAGE plpgsql
                   AS $$ BEGIN PERFORM pg_sleep(5); RETURN NULL; END $$;
                   CREATE CONSTRAINT TRIGGER slow AFTER INSERT ON {schema}.ledger DEFERRABLE INITIALLY DEFERRED
                   FOR EACH ROW EXECUTE FUNCTION {schema}.slow_commit()""")  # COMMIT runs it: a slow COMMIT
    tx = await begin(call)
    await insert(call, schema, tx, 1)
    pid = rt.txstore.get(tx, ALICE.subject).conn.info.backend_pid
    ended = []

    async def terminate() -> None:
        ended.append(await anyio.to_thread.run_sync(_terminate_when_running, dsn, pid, "COMMIT"))

    async with anyio.create_task_group() as tg:
        tg.start_soon(terminate)
        with pytest.raises(ToolError) as exc:
            await call("pg_transaction_commit", {"transactionId": tx}, principal=ALICE)
    assert ended == [True]
    err = assert_tool_error(exc, "IN_DOUBT", "whether the changes were committed is unknown")
    xid = err.details["transactionId"]
    assert xid in (err.hint or "")
    assert db.execute("SELECT pg_xact_status(%s::xid8)", (xid,)).fetchone() == ("aborted",)
    assert outside(db, schema) == []
    await assert_gone(call, tx)


async def test_connection_ended_before_commit_says_rolled_back(call: Call, rt: Runtime, db: Any,
                                                               schema: str) -> None:
    """The server ended the held transaction's session before COMMIT was sent: nothing is in doubt."""
    tx = await begin(call)
    await insert(call, schema, tx, 1)
    pid = rt.txstore.get(tx, ALICE.subject).conn.info.backend_pid
    assert db.execute("SELECT pg_terminate_backend(%s)", (pid,)).fetchone() == (True,)
    with pytest.raises(ToolError) as exc:
        await call("pg_transaction_commit", {"transactionId": tx}, principal=ALICE)
    err = assert_tool_error(exc, "CONNECTION_FAILED", "rolled back")
    assert "transactionId" not in err.details
    assert outside(db, schema) == []
    await assert_gone(call, tx)
    # A positive control: the next transaction commits.
    tx = await begin(call)
    await insert(call, schema, tx, 2)
    await call("pg_transaction_commit", {"transactionId": tx}, principal=ALICE)
    assert outside(db, schema) == [2]


# ---------------------------------------------------------------- read-only transactions


async def test_read_only_transaction_refuses_writes(call: Call, db: Any, schema: str) -> None:
    db.execute(f"INSERT INTO {schema}.ledger VALUES (1, 'x')")
    out = await call("pg_transaction_begin", {"readOnly": True, "isolationLevel": "repeatable read"},
                     principal=ALICE)
    tx = out["transactionId"]
    assert out["readOnly"] is True and out["isolationLevel"] == "repeatable read"
    assert await inside(call, schema, tx) == [1]
    db.execute(f"INSERT INTO {schema}.ledger VALUES (2, 'y')")
    assert await inside(call, schema, tx) == [1]  # repeatable read: one snapshot
    with pytest.raises(ToolError) as exc:
        await call("pg_write_query", {"sql": f"DELETE FROM {schema}.ledger", "transactionId": tx}, principal=ALICE)
    err = assert_tool_error(exc, "READ_ONLY")
    assert err.details["transactionRolledBack"] is True
    await assert_gone(call, tx)
    assert outside(db, schema) == [1, 2]


async def test_read_only_call_cannot_begin(call: Call) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_transaction_begin", {}, principal=ALICE, read_only=True)
    assert_tool_error(exc, "READ_ONLY")
    assert await call("pg_transaction_status", {}, principal=ALICE, read_only=True) == []


async def test_read_only_call_uses_only_read_only_transactions(call: Call, db: Any, schema: str) -> None:
    rw = await begin(call)
    await insert(call, schema, rw, 1)
    with pytest.raises(ToolError) as exc:
        await call("pg_read_query", {"sql": "SELECT 1", "transactionId": rw}, principal=ALICE, read_only=True)
    assert_tool_error(exc, "READ_ONLY", "read-write transaction")
    assert await inside(call, schema, rw) == [1]  # refused before touching it
    ro = await begin(call, readOnly=True)
    out = await call("pg_read_query", {"sql": "SELECT 1 AS one", "transactionId": ro}, principal=ALICE,
                     read_only=True)
    assert out["rows"] == [{"one": 1}]
    await call("pg_transaction_commit", {"transactionId": rw}, principal=ALICE)
    assert outside(db, schema) == [1]


# ---------------------------------------------------------------- limits and the idle timeout


async def test_cap_per_principal(call: Call, rt: Runtime, db: Any, schema: str) -> None:
    cap = rt.settings.tx_max_per_principal
    assert cap == 3
    txs = [await begin(call, ALICE) for _ in range(cap)]
    assert len(set(txs)) == cap
    with pytest.raises(ToolError) as exc:
        await begin(call, ALICE, readOnly=True)
    assert_tool_error(exc, "CONFLICT", "limit is 3")
    assert len(await call("pg_transaction_status", {}, principal=ALICE)) == cap
    # the cap is per principal: Bob may still begin
    bob_tx = await begin(call, BOB)
    await insert(call, schema, bob_tx, 9, principal=BOB)
    await call("pg_transaction_commit", {"transactionId": bob_tx}, principal=BOB)
    # ending one frees a slot
    await call("pg_transaction_rollback", {"transactionId": txs[0]}, principal=ALICE)
    txs[0] = await begin(call, ALICE)
    for tx in txs:
        await call("pg_transaction_rollback", {"transactionId": tx}, principal=ALICE)
    assert await call("pg_transaction_status", {}, principal=ALICE) == []
    assert outside(db, schema) == [9]


async def test_idle_transaction_is_rolled_back(dsn: str, db: Any, schema: str) -> None:
    async with Runtime(Settings(database_url=dsn, tx_idle_timeout_s=0.5, pool_max_size=4)) as rt2:
        tx = (await rt2.invoke("pg_transaction_begin", {}, ALICE))["transactionId"]
        await rt2.invoke("pg_write_query", {"sql": f"INSERT INTO {schema}.ledger VALUES (1, 'abandoned')",
                                            "transactionId": tx}, ALICE)
        pid = rt2.txstore.get(tx, "alice").conn.info.backend_pid
        assert db.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone() == (
            "idle in transaction",)
        await anyio.sleep(1.5)
        with pytest.raises(ToolError) as exc:
            await rt2.invoke("pg_transaction_status", {"transactionId": tx}, ALICE)
        assert_tool_error(exc, "NOT_FOUND")
        with pytest.raises(ToolError) as exc:
            await rt2.invoke("pg_transaction_commit", {"transactionId": tx}, ALICE)
        assert_tool_error(exc, "NOT_FOUND")
        assert outside(db, schema) == []
        # the backend is no longer inside a transaction, and its connection is back in the pool
        assert db.execute("SELECT state FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone() == ("idle",)
        stats = rt2.db.pool.get_stats()
        assert stats["pool_available"] == stats["pool_size"] >= 1
        # and new work runs
        out = await rt2.invoke("pg_transaction_execute", {"statements": [
            {"sql": f"INSERT INTO {schema}.ledger VALUES (2, 'fresh')"}]}, ALICE)
        assert out["committed"] is True
    assert outside(db, schema) == [2]


# ---------------------------------------------------------------- queued calls on a transaction that ended


async def test_calls_queued_behind_rollback_do_not_run(call: Call, db: Any, schema: str) -> None:
    tx = await begin(call)
    await insert(call, schema, tx, 1)
    results: dict[str, Any] = {}

    async def run(key: str, tool: str, args: dict[str, Any]) -> None:
        try:
            results[key] = await call(tool, {**args, "transactionId": tx}, principal=ALICE)
        except ToolError as err:
            results[key] = err

    async with anyio.create_task_group() as tg:
        tg.start_soon(run, "slow", "pg_read_query", {"sql": "SELECT pg_sleep(0.3)"})
        await anyio.sleep(0.05)
        tg.start_soon(run, "rollback", "pg_transaction_rollback", {})
        await anyio.sleep(0.05)
        tg.start_soon(run, "insert", "pg_write_query", {"sql": f"INSERT INTO {schema}.ledger VALUES (2, 'late')"})
        tg.start_soon(run, "commit", "pg_transaction_commit", {})
    assert results["rollback"]["rolledBack"] is True
    # the insert and the commit waited for the rollback; they must not run on the returned connection
    for key in ("insert", "commit"):
        assert isinstance(results[key], ToolError), (key, results[key])
        assert_tool_error(results[key], "NOT_FOUND", "no open transaction")
    assert outside(db, schema) == []


# ---------------------------------------------------------------- pg_transaction_execute


async def test_execute_commits_all_together(call: Call, db: Any, schema: str) -> None:
    out = await call("pg_transaction_execute", {"statements": [
        {"sql": f"INSERT INTO {schema}.ledger VALUES ($1, $2)", "params": [1, "o'neil; DROP TABLE x"]},
        {"sql": f"INSERT INTO {schema}.ledger VALUES (2, 'b'), (3, 'c')"},
        {"sql": f"UPDATE {schema}.ledger SET note = upper(note) WHERE id > 1 RETURNING id, note"},
    ]}, principal=ALICE)
    assert out["committed"] is True and out["statements"] == 3
    results = out["results"]
    assert [r["command"] for r in results] == ["INSERT 0 1", "INSERT 0 2", "UPDATE 2"]
    assert results[2]["rows"] == [{"id": 2, "note": "B"}, {"id": 3, "note": "C"}]
    assert db.execute(f"SELECT id, note FROM {schema}.ledger ORDER BY id").fetchall() == [
        (1, "o'neil; DROP TABLE x"), (2, "B"), (3, "C")]


@pytest.mark.parametrize(("second", "code"), [
    ("INSERT INTO {s}.ledger VALUES (1, 'dup')", "CONFLICT"),
    ("INSERT INTO {s}.ledger VALUES (5, NULL)", "INVALID_INPUT"),
    ("INSERT INTO {s}.missing VALUES (5)", "NOT_FOUND"),
])
async def test_execute_failure_leaves_nothing(call: Call, db: Any, schema: str, second: str, code: str) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_transaction_execute", {"statements": [
            {"sql": f"INSERT INTO {schema}.ledger VALUES (1, 'first')"},
            {"sql": second.format(s=schema)},
            {"sql": f"INSERT INTO {schema}.ledger VALUES (3, 'third')"},
        ]}, principal=ALICE)
    err = assert_tool_error(exc, code, "statement 2 failed", "nothing was committed")
    assert err.details["statementIndex"] == 2
    assert outside(db, schema) == []


async def test_execute_isolation_level(call: Call, db: Any) -> None:
    out = await call("pg_transaction_execute", {"isolationLevel": "repeatable read", "statements": [
        {"sql": "SHOW transaction_isolation"}]}, principal=ALICE)
    assert out["results"][0]["rows"] == [{"transaction_isolation": "repeatable read"}]
    out = await call("pg_transaction_execute", {"statements": [{"sql": "SHOW transaction_isolation"}]},
                     principal=ALICE)
    assert out["results"][0]["rows"] == [{"transaction_isolation": "read committed"}]


async def test_execute_inside_a_held_transaction(call: Call, db: Any, schema: str) -> None:
    tx = await begin(call)
    out = await call("pg_transaction_execute", {"transactionId": tx, "statements": [
        {"sql": f"INSERT INTO {schema}.ledger VALUES (1, 'a')"},
        {"sql": f"INSERT INTO {schema}.ledger VALUES (2, 'b')"}]}, principal=ALICE)
    assert out["committed"] is False and out["statements"] == 2
    assert outside(db, schema) == []
    assert await inside(call, schema, tx) == [1, 2]
    await call("pg_transaction_commit", {"transactionId": tx}, principal=ALICE)
    assert outside(db, schema) == [1, 2]


@pytest.mark.parametrize("ddl", [
    "CREATE TABLE {s}.made (a int)",
    "EXPLAIN ANALYZE CREATE TABLE {s}.made AS SELECT 1 AS a",
    "SELECT 1 AS a INTO {s}.made",
])
async def test_execute_ddl_needs_admin(call: Call, db: Any, schema: str, ddl: str) -> None:
    statements = [{"sql": f"INSERT INTO {schema}.ledger VALUES (1, 'a')"}, {"sql": ddl.format(s=schema)}]
    with pytest.raises(ToolError) as exc:
        await call("pg_transaction_execute", {"statements": statements}, principal=ALICE)
    err = assert_tool_error(exc, "FORBIDDEN", "admin")
    assert err.details == {"requiredScope": "admin"}
    assert outside(db, schema) == []
    assert db.execute("SELECT to_regclass(%s)", (f"{schema}.made",)).fetchone() == (None,)
    out = await call("pg_transaction_execute", {"statements": statements}, principal=ALICE_ADMIN)
    assert out["committed"] is True
    assert outside(db, schema) == [1]
    assert db.execute("SELECT to_regclass(%s) IS NOT NULL", (f"{schema}.made",)).fetchone() == (True,)


async def test_execute_denied_function_needs_admin(call: Call, db: Any, schema: str) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_transaction_execute", {"statements": [
            {"sql": f"INSERT INTO {schema}.ledger VALUES (1, 'a')"},
            {"sql": "SELECT pg_terminate_backend(pg_backend_pid())"}]}, principal=ALICE)
    assert_tool_error(exc, "FORBIDDEN", "admin")
    assert outside(db, schema) == []


@pytest.mark.parametrize(("stmt", "fragment"), [
    ("VACUUM {s}.ledger", "statement 2 cannot run inside a transaction block"),
    ("CREATE INDEX CONCURRENTLY ledger_note ON {s}.ledger (note)", "statement 2 cannot run inside"),
    ("COMMIT", "transaction control"),
    ("SET statement_timeout = 0", "SET"),
    ("DO $$ BEGIN END $$", "DO"),
    ("SELECT 1; SELECT 2", "exactly one"),
])
async def test_execute_refuses_statements(call: Call, db: Any, schema: str, stmt: str, fragment: str) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_transaction_execute", {"statements": [
            {"sql": f"INSERT INTO {schema}.ledger VALUES (1, 'a')"}, {"sql": stmt.format(s=schema)}]})
    assert_tool_error(exc, "INVALID_INPUT", fragment)
    assert outside(db, schema) == []
    assert db.execute("SELECT count(*) FROM pg_indexes WHERE schemaname = %s AND indexname = 'ledger_note'",
                      (schema,)).fetchone() == (0,)


# ---------------------------------------------------------------- scopes


TX_TOOLS_WRITE = [
    ("pg_transaction_begin", {}),
    ("pg_transaction_commit", {"transactionId": "TX"}),
    ("pg_transaction_rollback", {"transactionId": "TX"}),
    ("pg_transaction_savepoint", {"transactionId": "TX", "name": "s"}),
    ("pg_transaction_release", {"transactionId": "TX", "name": "s"}),
    ("pg_transaction_rollback_to", {"transactionId": "TX", "name": "s"}),
    ("pg_transaction_execute", {"transactionId": "TX", "statements": [{"sql": "DELETE FROM {s}.ledger"}]}),
]


async def test_scopes_of_the_group(rt: Runtime) -> None:
    scopes = {spec.name: spec.scope.value for spec in rt.registry if spec.group == "transactions"}
    assert scopes == {**{name: "write" for name, _ in TX_TOOLS_WRITE}, "pg_transaction_status": "read"}


@pytest.mark.parametrize(("tool", "args"), TX_TOOLS_WRITE, ids=[t for t, _ in TX_TOOLS_WRITE])
async def test_read_scope_cannot_use_write_tools(call: Call, db: Any, schema: str, tool: str,
                                                 args: dict[str, Any]) -> None:
    # Alice (write) holds a transaction with a savepoint and a row; Alice with only the read scope tries the tool.
    tx = await begin(call, ALICE)
    await insert(call, schema, tx, 1)
    await call("pg_transaction_savepoint", {"transactionId": tx, "name": "s"}, principal=ALICE)
    await insert(call, schema, tx, 2)
    filled = {k: (tx if v == "TX" else v) for k, v in args.items()}
    if "statements" in filled:
        filled["statements"] = [{"sql": s["sql"].format(s=schema)} for s in filled["statements"]]
    with pytest.raises(ToolError) as exc:
        await call(tool, filled, principal=ALICE_READER)
    err = assert_tool_error(exc, "FORBIDDEN", tool)
    assert err.details == {"requiredScope": "write"}
    status = await call("pg_transaction_status", {"transactionId": tx}, principal=ALICE_READER)
    assert status["savepoints"] == ["s"] and status["statements"] == 3
    assert [t["transactionId"] for t in await call("pg_transaction_status", {}, principal=ALICE_READER)] == [tx]
    assert await inside(call, schema, tx, principal=ALICE_READER) == [1, 2]
    assert outside(db, schema) == []
    await call("pg_transaction_commit", {"transactionId": tx}, principal=ALICE)
    assert outside(db, schema) == [1, 2]


async def test_status_needs_read_scope(call: Call) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_transaction_status", {}, principal=Principal("alice", frozenset()))
    assert_tool_error(exc, "FORBIDDEN", "read")


async def test_execute_in_held_transaction_refuses_an_isolation_level(call: Call) -> None:
    tx = (await call("pg_transaction_begin", {}))["transactionId"]
    try:
        with pytest.raises(ToolError) as exc:
            await call("pg_transaction_execute", {"transactionId": tx, "isolationLevel": "serializable",
                                                  "statements": [{"sql": "SELECT 1"}]})
        assert exc.value.code.value == "INVALID_INPUT" and "isolationLevel" in exc.value.message
    finally:
        await call("pg_transaction_rollback", {"transactionId": tx})
