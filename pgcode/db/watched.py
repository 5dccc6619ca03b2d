"""A psycopg connection that watches its socket with one event-loop reader for its whole life.

psycopg's asyncio wait adds a reader before each wait and removes it after. On uvloop each add creates a libuv
poll handle and each removal closes it: about eight system calls per database round trip (epoll_ctl checks,
FIONBIO, an io_uring submission), more than the round trip itself on a virtual machine. Here the reader is added
once, when the connection first waits, and removed when it closes.

The reader watches a duplicate of the socket's descriptor, owned here: libpq may close its own descriptor at any
time (the server ended the session, a failed send, finish()), and the event loop must never hold a descriptor whose
number another socket can reuse. The duplicate keeps the socket open until the watch stops.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import weakref
from collections.abc import Iterator
from typing import Any

import psycopg
from psycopg import AsyncConnection
from psycopg.abc import RV, PQGen
from psycopg.pq import ConnStatus, TransactionStatus
from psycopg.rows import TupleRow
from psycopg.waiting import Ready, Wait, wait_async

log = logging.getLogger(__name__)

_WAIT_INTERVAL = 0.1  # psycopg's: a waiting generator is woken this often (it may check for interruptions)
_STOP_QUERY_S = 5.0  # psycopg's bound on cancelling a query after an interrupted wait
_MAX_BUSY_S = 0.005  # psycopg's: a run of waits that never block yields to the loop this often (COPY rounds)
_last_yield = 0.0


class _SocketWatch:
    """The one reader of a connection's socket; a wait borrows it through a future."""

    def __init__(self, loop: asyncio.AbstractEventLoop, conn: WatchedConnection) -> None:
        self.loop = loop
        self._conn = weakref.ref(conn)
        self._fd = os.dup(conn.pgconn.socket)
        self._waiter: asyncio.Future[None] | None = None
        self._fired = False
        self.buffered = False  # read into libpq's buffer while no one waited: the next wait need not block
        self.stopped = False
        loop.add_reader(self._fd, self._readable)

    def _readable(self) -> None:
        if self._waiter is not None:
            if not self._waiter.done():
                self._fired = True
                self._waiter.set_result(None)
            return
        # Readable while no one waits: a notice, a NOTIFY, or the server ending the session. Read it into libpq's
        # buffer so that the descriptor stops being readable; stop watching a connection that is gone.
        conn = self._conn()
        if conn is None or conn.pgconn.status == ConnStatus.BAD:
            self.stop()
            return
        try:
            conn.pgconn.consume_input()
        except psycopg.OperationalError:
            self.stop()
            return
        self.buffered = True
        if conn.pgconn.status == ConnStatus.BAD:
            self.stop()

    async def readable(self, within: float) -> bool:
        """Wait until the socket is readable or what it had is in libpq's buffer already (True), or `within`
        seconds pass (False)."""
        if self.take_buffered():
            return True
        waiter = self.loop.create_future()
        self._waiter, self._fired = waiter, False
        timer = self.loop.call_later(within, _settle, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        return self._fired

    def take_buffered(self) -> bool:
        """Whether data came in while no one waited (the answer to a COMMIT sent ahead, a cancelled query's error);
        a generator told so reads it from libpq's buffer, and waits again if it needs more."""
        buffered, self.buffered = self.buffered, False
        return buffered

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Leave the socket to another reader for a while: this one would take the data it waits for."""
        self.loop.remove_reader(self._fd)
        try:
            yield
        finally:
            if not self.stopped:
                self.loop.add_reader(self._fd, self._readable)

    def stop_from_anywhere(self) -> None:
        """stop() from a finalizer, which may run in any thread: the loop's own thread removes the reader."""
        try:
            in_loop = asyncio.get_running_loop() is self.loop
        except RuntimeError:
            in_loop = False
        if in_loop or self.loop.is_closed():
            self.stop()
            return
        with contextlib.suppress(RuntimeError):  # closed meanwhile: its readers are gone with it
            self.loop.call_soon_threadsafe(self.stop)

    def stop(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        with contextlib.suppress(RuntimeError):  # the loop is closed: it dropped its readers already
            self.loop.remove_reader(self._fd)
        os.close(self._fd)
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)  # the generator finds out what happened to its connection


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class WatchedConnection(AsyncConnection[TupleRow]):
    """An AsyncConnection whose waits for reading use one socket reader for the connection's life."""

    _watch: _SocketWatch | None = None

    def _socket_watch(self) -> _SocketWatch | None:
        watch = self._watch
        if watch is not None and not watch.stopped:
            return watch if watch.loop is asyncio.get_running_loop() else None
        if self.pgconn.status != ConnStatus.OK:
            return None
        watch = self._watch = _SocketWatch(asyncio.get_running_loop(), self)
        weakref.finalize(self, watch.stop_from_anywhere)
        return watch

    async def wait(self, gen: PQGen[RV], interval: float = _WAIT_INTERVAL,
                   timeout: float | None = None) -> RV:  # noqa: ASYNC109  (psycopg's signature)
        watch = self._socket_watch()
        if watch is None:
            return await super().wait(gen, interval, timeout)
        try:
            return await self._run(watch, gen, interval, timeout)
        except (asyncio.CancelledError, KeyboardInterrupt, SystemExit):
            if self.pgconn.transaction_status == TransactionStatus.ACTIVE:
                await self._stop_query(watch, gen, interval)
            raise
        finally:
            if self.pgconn.status == ConnStatus.BAD:
                watch.stop()

    async def _run(self, watch: _SocketWatch, gen: PQGen[RV], interval: float, limit_s: float | None) -> RV:
        """Drive `gen` as psycopg's wait_async does, waiting for reading on the watch."""
        global _last_yield
        loop = watch.loop
        deadline = None if limit_s is None else loop.time() + limit_s
        try:
            try:
                state = next(gen)
            except StopIteration:
                if time.monotonic() - _last_yield >= _MAX_BUSY_S:  # done without waiting: still let others run
                    await asyncio.sleep(0)
                    _last_yield = time.monotonic()
                raise
            while True:
                if state != Wait.R:  # writing (a large query, COPY): rare, psycopg's own way
                    left = None if deadline is None else max(0.0, deadline - loop.time())
                    with watch.paused():  # psycopg reads the socket itself meanwhile
                        return await wait_async(_resumed(gen, state, watch), self.pgconn.socket, interval=interval,
                                                timeout=left)
                step = interval if deadline is None else min(interval, max(0.0, deadline - loop.time()))
                ready = await watch.readable(step)
                _last_yield = time.monotonic()
                if watch.stopped:
                    ready = True  # let libpq read what happened (an error, most likely)
                state = gen.send(Ready.R if ready else Ready.NONE)
                if deadline is not None and loop.time() >= deadline:
                    raise psycopg.errors._WaitTimeout("wait timeout expired")
        except StopIteration as done:
            result: RV = done.value
            return result
        except OSError as exc:
            raise psycopg.OperationalError("connection socket closed") from exc

    async def _stop_query(self, watch: _SocketWatch, gen: PQGen[Any], interval: float) -> None:
        """After an interrupted wait, as psycopg does: cancel the query on the server and read the connection back
        to a known state, or close it when that fails or takes more than a few seconds."""
        try:
            await self.cancel_safe(timeout=_STOP_QUERY_S)
            await self._run(watch, gen, interval, _STOP_QUERY_S)
        except psycopg.errors.QueryCanceled:
            pass
        except BaseException as exc:
            log.warning("query cancellation failed (%s): closing the connection", type(exc).__name__)
            self.pgconn.finish()

    async def close(self) -> None:
        if self._watch is not None:
            self._watch.stop()
        await super().close()


def _resumed(gen: PQGen[RV], state: Wait, watch: _SocketWatch) -> PQGen[RV]:
    """`gen` again from the state it last yielded, for psycopg's wait to take it from there; what the watch read
    before it was paused is in libpq's buffer, and psycopg's wait would not know."""
    ready = yield state
    while True:
        try:
            state = gen.send(ready)
            while state == Wait.R and watch.take_buffered():
                state = gen.send(Ready.R)
        except StopIteration as done:
            result: RV = done.value
            return result
        ready = yield state
