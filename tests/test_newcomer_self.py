"""pgcode's own sessions (application_name 'pgcode') are left out of the session and lock summaries and the
report's connections chart, unless includeSelf; a session of someone else is always there (the control)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import psycopg
import pytest
from psycopg import sql

from pgcode.errors import ToolError
from tests.fix_db import Call

pytestmark = pytest.mark.anyio
OUTSIDER = "t_newcomer_outsider"


@pytest.fixture(scope="module")
def tables(dsn: str, schema: str) -> Iterator[dict[str, str]]:
    with psycopg.connect(dsn, autocommit=True) as c:
        for name in ("seen", "pgcode_held"):
            c.execute(sql.SQL("CREATE TABLE {}.{} (i int)").format(sql.Identifier(schema), sql.Identifier(name)))
    yield {"seen": f"{schema}.seen", "held": f"{schema}.pgcode_held", "schema": schema}


@pytest.fixture
def outsider(dsn: str, tables: dict[str, str]) -> Iterator[int]:
    """Someone else's session, idle in transaction, holding a lock on `seen`."""
    with psycopg.connect(dsn, application_name=OUTSIDER) as c:
        c.execute(f"LOCK TABLE {tables['seen']} IN SHARE MODE")
        row = c.execute("SELECT pg_backend_pid()").fetchone()
        assert row is not None
        yield int(row[0])
        c.rollback()


@pytest.fixture
async def pgcode_held(call: Call, tables: dict[str, str]) -> Any:
    """pgcode's own session: a held transaction (its pool) holding ACCESS EXCLUSIVE on `pgcode_held`."""
    tx = (await call("pg_transaction_begin"))["transactionId"]
    await call("pg_transaction_execute", {"transactionId": tx, "statements": [
        {"sql": f"LOCK TABLE {tables['held']} IN ACCESS EXCLUSIVE MODE"}]})
    pid = (await call("pg_read_query", {"sql": "SELECT pg_backend_pid() AS pid", "transactionId": tx}))["rows"][0]
    yield {"tx": tx, "pid": pid["pid"]}
    with contextlib.suppress(ToolError):  # a test may have rolled it back already
        await call("pg_transaction_rollback", {"transactionId": tx})


async def test_connection_stats_and_its_chart_leave_pgcode_out(call: Call, conn: psycopg.Connection[Any],
                                                               outsider: int, pgcode_held: dict[str, Any]) -> None:
    sessions = await call("pg_connection_stats", {"state": "idle in transaction"})
    pids = {s["pid"] for s in sessions}
    assert outsider in pids and pgcode_held["pid"] not in pids
    assert "pgcode" not in {s["application_name"] for s in await call("pg_connection_stats", {})}
    everything = await call("pg_connection_stats", {"state": "idle in transaction", "includeSelf": True})
    assert {outsider, pgcode_held["pid"]} <= {s["pid"] for s in everything}

    # The report's connections chart is pg_connection_stats by state; other databases of the cluster change
    # meanwhile, so compare within this one.
    database = conn.info.dbname
    chart = {g["state"]: g["total"] for g in await call("pg_connection_stats", {"groupBy": "state",
                                                                                "database": database})}
    expected = dict(conn.execute(
        "SELECT state, count(*) FROM pg_stat_activity WHERE backend_type = 'client backend' AND datname = %s "
        "AND application_name IS DISTINCT FROM 'pgcode' GROUP BY 1", (database,)).fetchall())
    # the outsider, not pgcode's held transaction
    assert chart["idle in transaction"] == expected["idle in transaction"] == 1
    with_self = {g["state"]: g["total"] for g in await call("pg_connection_stats", {
        "groupBy": "state", "database": database, "includeSelf": True})}
    assert with_self["idle in transaction"] == 2


async def test_stat_activity_leaves_pgcode_out(call: Call, outsider: int, pgcode_held: dict[str, Any]) -> None:
    out = await call("pg_stat_activity", {"includeIdle": True})
    pids = {s["pid"] for s in out["sessions"]}
    assert outsider in pids and pgcode_held["pid"] not in pids
    assert out["by_state"].get("idle in transaction", 0) >= 1
    mine = await call("pg_stat_activity", {"includeIdle": True, "includeSelf": True})
    assert pgcode_held["pid"] in {s["pid"] for s in mine["sessions"]}
    assert mine["by_state"]["idle in transaction"] >= out["by_state"]["idle in transaction"] + 1


async def test_locks_leave_pgcode_out_unless_it_blocks_someone(call: Call, dsn: str, tables: dict[str, str],
                                                                outsider: int, pgcode_held: dict[str, Any]) -> None:
    locks = await call("pg_locks", {"relation": "seen"})
    assert outsider in {lk["pid"] for lk in locks}  # the control
    assert await call("pg_locks", {"relation": "pgcode_held"}) == []
    shown = await call("pg_locks", {"relation": "pgcode_held", "includeSelf": True})
    assert {lk["pid"] for lk in shown} == {pgcode_held["pid"]} and shown[0]["mode"] == "AccessExclusiveLock"
    assert all(lk["application_name"] != "pgcode" for lk in await call("pg_locks", {}))

    waiter_pid: list[int] = []

    def wait_for_the_lock() -> None:
        with psycopg.connect(dsn, application_name=OUTSIDER, autocommit=True) as c:
            row = c.execute("SELECT pg_backend_pid()").fetchone()
            assert row is not None
            waiter_pid.append(int(row[0]))
            c.execute("SET lock_timeout = '20s'")
            with contextlib.suppress(psycopg.errors.LockNotAvailable):
                c.execute(f"SELECT count(*) FROM {tables['held']}")

    waiter = threading.Thread(target=wait_for_the_lock)
    waiter.start()
    try:
        deadline = time.monotonic() + 10
        blocking: list[dict[str, Any]] = []
        while time.monotonic() < deadline and not blocking:
            blocking = [lk for lk in await call("pg_locks", {"relation": "pgcode_held"}) if lk["granted"]]
            await anyio.sleep(0.1)
        assert [lk["pid"] for lk in blocking] == [pgcode_held["pid"]] and blocking[0]["blocking"] == waiter_pid
    finally:
        await call("pg_transaction_rollback", {"transactionId": pgcode_held["tx"]})
        waiter.join(timeout=30)


@pytest.fixture(autouse=True)
def _no_outsiders_left(dsn: str) -> Iterator[None]:
    yield
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s "
                  "AND pid <> pg_backend_pid()", (OUTSIDER,))
