"""The pool's connection class: one socket reader for a connection's life, and every fault still handled.

Run on both event loops the product uses: the server's uvloop and asyncio's own (the suite's).
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from pgcode.db.watched import WatchedConnection

pytestmark = pytest.mark.anyio


@pytest.fixture(params=[pytest.param(("asyncio", {"use_uvloop": True}), id="uvloop"),
                        pytest.param(("asyncio", {"use_uvloop": False}), id="asyncio")])
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    return request.param


@pytest.fixture
async def watched(dsn: str) -> AsyncIterator[WatchedConnection]:
    conn = await WatchedConnection.connect(dsn, autocommit=True)
    try:
        yield conn
    finally:
        await conn.close()


@pytest.fixture
async def other(dsn: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    conn = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    try:
        yield conn
    finally:
        await conn.close()


def _open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


async def _value(conn: psycopg.AsyncConnection[Any], query: str, params: Any = None) -> Any:
    cur = await conn.execute(query, params)
    row = await cur.fetchone()
    assert row is not None
    return row[0]


@pytest.mark.parametrize("anyio_backend", [("asyncio", {"use_uvloop": False})], ids=["asyncio"])
async def test_a_connection_adds_its_socket_reader_once(dsn: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Counted on asyncio's loop: uvloop's methods cannot be wrapped (the other tests run on both)."""
    loop = asyncio.get_running_loop()
    added: list[int] = []
    add_reader = loop.add_reader

    def counting(fd: int, *args: Any) -> None:
        added.append(fd)
        add_reader(fd, *args)

    monkeypatch.setattr(loop, "add_reader", counting)
    plain = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    for i in range(20):
        assert await _value(plain, "SELECT %s::int", (i,)) == i
    await plain.close()
    assert len(added) >= 20  # the positive control: psycopg's own wait adds a reader for every round trip
    conn = await WatchedConnection.connect(dsn, autocommit=True)
    added.clear()  # connecting waits psycopg's way: the descriptor may change while it does
    try:
        for i in range(20):
            assert await _value(conn, "SELECT %s::int", (i,)) == i
        assert conn._watch is not None and added == [conn._watch._fd]
    finally:
        await conn.close()


async def test_closing_stops_the_watch_and_closes_its_descriptor(watched: WatchedConnection) -> None:
    assert await _value(watched, "SELECT 1") == 1
    watch = watched._watch
    assert watch is not None and not watch.stopped and _open(watch._fd)
    await watched.close()
    assert watch.stopped and not _open(watch._fd)


async def test_the_server_ending_an_idle_session_stops_the_watch(dsn: str, watched: WatchedConnection,
                                                                 other: psycopg.AsyncConnection[Any]) -> None:
    bystander = await WatchedConnection.connect(dsn, autocommit=True)
    try:
        assert await _value(watched, "SELECT 1") == 1 and await _value(bystander, "SELECT 1") == 1
        watch, calm = watched._watch, bystander._watch
        assert watch is not None and calm is not None
        assert await _value(other, "SELECT pg_terminate_backend(%s)", (watched.info.backend_pid,)) is True
        for _ in range(200):  # the session's end is read while the connection is idle, by the watch itself
            if watch.stopped:
                break
            await asyncio.sleep(0.01)
        assert watch.stopped and not _open(watch._fd)
        assert not calm.stopped and _open(calm._fd)  # the positive control: an untouched connection is watched on
        with pytest.raises(psycopg.OperationalError):
            await watched.execute("SELECT 1")
        # A new connection may get the ended one's descriptor number: it is watched afresh and works.
        fresh = await WatchedConnection.connect(dsn, autocommit=True)
        try:
            assert await _value(fresh, "SELECT 2") == 2 and await _value(bystander, "SELECT 3") == 3
        finally:
            await fresh.close()
    finally:
        await bystander.close()


async def test_a_cancelled_wait_stops_the_query_and_keeps_the_connection(watched: WatchedConnection,
                                                                         other: psycopg.AsyncConnection[Any]) -> None:
    pid = watched.info.backend_pid
    running = "SELECT count(*) FROM pg_stat_activity WHERE pid = %s AND state = 'active' AND query LIKE '%%pg_sleep%%'"
    task = asyncio.get_running_loop().create_task(watched.execute("SELECT pg_sleep(30)"))
    for _ in range(200):
        if await _value(other, running, (pid,)) == 1:
            break
        await asyncio.sleep(0.01)
    assert await _value(other, running, (pid,)) == 1
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await _value(other, running, (pid,)) == 0  # cancelled on the server, not left running
    assert await _value(watched, "SELECT 41 + 1") == 42 and not watched.closed


async def test_large_statements_and_copy_go_through(watched: WatchedConnection) -> None:
    big = "x" * (8 << 20)  # more than a socket buffer: psycopg waits to write
    assert await _value(watched, "SELECT length(%s)", (big,)) == len(big)
    await watched.execute("CREATE TEMP TABLE copied (n int, t text)")
    async with watched.cursor() as cur:
        async with cur.copy("COPY copied FROM STDIN") as copy:
            for n in range(20_000):
                await copy.write_row((n, "row"))
        assert await _value(watched, "SELECT count(*) FROM copied") == 20_000
        rows = []
        async with cur.copy("COPY (SELECT n FROM copied ORDER BY n LIMIT 3) TO STDOUT") as copy:
            async for row in copy.rows():
                rows.append(row)
    assert rows == [("0",), ("1",), ("2",)]


async def test_a_failed_statement_keeps_its_error_and_the_connection(watched: WatchedConnection) -> None:
    with pytest.raises(psycopg.errors.DivisionByZero):
        await watched.execute("SELECT 1 / 0")
    assert await _value(watched, "SELECT 'still here'") == "still here"
