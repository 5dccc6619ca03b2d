"""The pool's connection class: a socket registered once for the connection's life, and every fault still handled.

Run on both event loops the product uses: the server's uvloop and asyncio's own (the suite's).
"""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import pytest

from pgcode.db import watched as watched_module
from pgcode.db.watched import WatchedConnection, _Poller

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


async def _value(conn: psycopg.AsyncConnection[Any], query: str, params: Any = None) -> Any:
    cur = await conn.execute(query, params)
    row = await cur.fetchone()
    assert row is not None
    return row[0]


def test_the_loop_watches_one_descriptor_for_all_connections(dsn: str) -> None:
    """On a loop of its own, which no other connection uses, and asyncio's: uvloop's methods cannot be wrapped
    (the other tests run on both loops)."""
    with asyncio.Runner(loop_factory=asyncio.SelectorEventLoop) as runner:
        runner.run(_one_descriptor_for_all_connections(dsn))


async def _one_descriptor_for_all_connections(dsn: str) -> None:
    loop = asyncio.get_running_loop()
    added: list[int] = []
    removed: list[int] = []
    add_reader, remove_reader = loop.add_reader, loop.remove_reader

    def counting_add(fd: int, *args: Any) -> None:
        added.append(fd)
        add_reader(fd, *args)

    def counting_remove(fd: int) -> bool:
        removed.append(fd)
        return remove_reader(fd)

    loop.add_reader = counting_add  # type: ignore[assignment,method-assign]  # this loop object only
    loop.remove_reader = counting_remove  # type: ignore[assignment,method-assign]
    plain = await psycopg.AsyncConnection.connect(dsn, autocommit=True)
    for i in range(20):
        assert await _value(plain, "SELECT %s::int", (i,)) == i
    await plain.close()
    assert len(added) >= 20  # the positive control: psycopg's own wait adds a reader for every round trip
    first = await WatchedConnection.connect(dsn, autocommit=True)
    try:
        added.clear()  # connecting waits psycopg's way: the descriptor may change while it does
        removed.clear()
        assert await _value(first, "SELECT 1") == 1
        poller = _Poller.of(loop)
        set_fd = poller._epoll.fileno()
        assert added == [set_fd] and removed == []
        for _ in range(3):  # connections come and go; the loop's set of descriptors does not change
            conn = await WatchedConnection.connect(dsn, autocommit=True)
            added.clear()
            removed.clear()
            for i in range(20):
                assert await _value(conn, "SELECT %s::int", (i,)) == i
                assert await _value(first, "SELECT %s::int", (i,)) == i
            await conn.close()
            assert added == [] and removed == []
    finally:
        await first.close()
    assert removed == [set_fd] and poller.closed  # the last connection gone, the set goes too


async def test_closing_takes_the_socket_out_of_the_set(watched: WatchedConnection) -> None:
    assert await _value(watched, "SELECT 1") == 1
    watch = watched._watch
    assert watch is not None and not watch.stopped
    poller = _Poller.of(asyncio.get_running_loop())
    assert poller._watches.get(watch.fd) is watch
    await watched.close()
    assert watch.stopped and watch.fd not in poller._watches


async def test_a_socket_libpq_closed_gives_its_number_to_the_next_connection(dsn: str,
                                                                            watched: WatchedConnection) -> None:
    """The socket closes under the watch (the connection is finished without being closed); the next socket gets
    its number, and the old watch must neither keep it nor, stopping later, take it out of the set."""
    bystander = await WatchedConnection.connect(dsn, autocommit=True)
    try:
        assert await _value(watched, "SELECT 1") == 1 and await _value(bystander, "SELECT 1") == 1
        old = watched._watch
        assert old is not None
        watched.pgconn.finish()
        fresh = await WatchedConnection.connect(dsn, autocommit=True)
        try:
            assert await _value(fresh, "SELECT 2") == 2
            assert fresh._watch is not None
            assert fresh._watch.fd == old.fd, "the lowest free descriptor number is the one just freed"
            assert old.stopped  # set aside by the newcomer
            await watched.close()  # the old watch stops again: the newcomer's registration stays
            for i in range(5):
                assert await _value(fresh, "SELECT %s::int", (i,)) == i
            assert await _value(bystander, "SELECT 3") == 3  # the positive control: untouched throughout
            assert watched_module.missed_wakeups == 0
        finally:
            await fresh.close()
    finally:
        await bystander.close()


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
        assert watch.stopped and watch.fd not in _Poller.of(asyncio.get_running_loop())._watches
        assert not calm.stopped  # the positive control: an untouched connection is watched on
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


async def test_a_wakeup_that_never_came_is_noticed_and_the_socket_registered_again(
        watched: WatchedConnection, monkeypatch: pytest.MonkeyPatch) -> None:
    assert await _value(watched, "SELECT 1") == 1
    watch = watched._watch
    assert watch is not None
    watch._poller._epoll.unregister(watch.fd)  # lost from the set, as a wait would see it
    monkeypatch.setattr(watched_module, "missed_wakeups", 0)
    assert await _value(watched, "SELECT 2") == 2  # found at the wait's interval, not never
    assert watched_module.missed_wakeups == 1
    for i in range(10):  # registered again: no later wait needs the interval to learn of its answer
        assert await _value(watched, "SELECT %s::int", (i,)) == i
    assert watched_module.missed_wakeups == 1 and not watch.stopped


async def test_a_wait_longer_than_its_interval_is_not_taken_for_a_lost_reader(watched: WatchedConnection) -> None:
    before = watched_module.missed_wakeups
    assert await _value(watched, "SELECT 7 FROM pg_sleep(0.35)") == 7  # three intervals without an answer
    assert watched_module.missed_wakeups == before


async def test_pipelines_go_through_and_a_session_ended_in_one_leaves_the_others_working(
        dsn: str, watched: WatchedConnection) -> None:
    """executemany() runs in pipeline mode, where psycopg waits on the socket itself (code-mode history does)."""
    await watched.execute("CREATE TEMP TABLE piped (n int)")
    async with watched.cursor() as cur:
        await cur.executemany("INSERT INTO piped VALUES (%s)", [(n,) for n in range(500)])
    assert await _value(watched, "SELECT sum(n) FROM piped") == sum(range(500))
    assert watched._watch is not None and not watched._watch.stopped
    bystander = await WatchedConnection.connect(dsn, autocommit=True)
    try:
        assert await _value(bystander, "SELECT 1") == 1
        watch = watched._watch
        with pytest.raises(psycopg.OperationalError):
            async with watched.pipeline():
                await watched.execute("SELECT pg_terminate_backend(pg_backend_pid())")
                await watched.execute("SELECT 1")
        assert watch.stopped
        fresh = await WatchedConnection.connect(dsn, autocommit=True)
        try:
            for i in range(5):
                assert await _value(fresh, "SELECT %s::int", (i,)) == i
                assert await _value(bystander, "SELECT %s::int", (i,)) == i
            assert watched_module.missed_wakeups == 0
        finally:
            await fresh.close()
    finally:
        await bystander.close()


async def test_an_answer_that_comes_as_the_interval_ends_is_not_a_missed_wakeup(
        watched: WatchedConnection, monkeypatch: pytest.MonkeyPatch) -> None:
    """A callback that keeps the loop busy past a wait's interval, while the answer arrives: the loop may settle
    the wait by its timer before it polls again (uvloop runs due timers first). The set still has the socket
    ready then, so nothing was missed."""
    assert await _value(watched, "SELECT 1") == 1
    watch = watched._watch
    assert watch is not None
    monkeypatch.setattr(watched_module, "missed_wakeups", 0)
    loop = asyncio.get_running_loop()
    busy, poke = socket.socketpair()
    held = loop.create_future()

    def hold_the_loop() -> None:  # as a burst of work in an I/O callback would
        loop.remove_reader(busy.fileno())
        time.sleep(0.15)
        held.set_result(None)

    try:
        task = loop.create_task(_value(watched, "SELECT 5"))
        for _ in range(100):  # until the query is sent and its wait has begun
            if watch._waiter is not None:
                break
            await asyncio.sleep(0)
        assert watch._waiter is not None
        loop.add_reader(busy.fileno(), hold_the_loop)
        poke.send(b"x")
        await held
        assert await task == 5
    finally:
        busy.close()
        poke.close()
    assert watched_module.missed_wakeups == 0
