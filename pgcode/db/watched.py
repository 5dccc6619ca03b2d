"""A psycopg connection whose socket stays registered for the connection's whole life, in one epoll set per loop.

psycopg's asyncio wait adds a reader before each wait and removes it after. On uvloop each add creates a libuv
poll handle and each removal closes it: about eight system calls per database round trip (epoll_ctl checks,
FIONBIO, an io_uring submission), more than the round trip itself on a virtual machine.

Here every connection's socket is registered once, when the connection first waits, in an epoll instance of our
own (`_Poller`, one per event loop), and the event loop watches that one descriptor. The loop's set of descriptors
therefore never changes while connections come and go. Keeping a loop registration per connection instead does not
hold up: uvloop lost such registrations while a PostgreSQL restart ended every session and new sockets took the
freed descriptor numbers at once, and a wait then never ended.

libpq's own descriptor is registered, never a duplicate: when libpq closes it, the socket is closed for good and
the kernel drops it from the epoll set by itself, so a reused number can only ever be registered afresh.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
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
missed_wakeups = 0
"""Waits that found their socket readable at their interval without having been woken: a bug if ever above 0."""


class _Poller:
    """An epoll set of database sockets that one event loop watches through a single reader."""

    _by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Poller] = weakref.WeakKeyDictionary()

    @classmethod
    def of(cls, loop: asyncio.AbstractEventLoop) -> _Poller:
        poller = cls._by_loop.get(loop)
        if poller is None or poller.closed:
            poller = cls._by_loop[loop] = cls(loop)
        return poller

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._epoll = select.epoll()  # close-on-exec: no child process keeps a socket alive through it
        self._watches: dict[int, _SocketWatch] = {}
        self.closed = False
        loop.add_reader(self._epoll.fileno(), self._dispatch)

    def _dispatch(self) -> None:
        for fd, _events in self._epoll.poll(0):
            watch = self._watches.get(fd)
            if watch is not None:
                watch.readable()

    def add(self, watch: _SocketWatch) -> None:
        """Watch `watch.fd`. A watch still listed under that number belongs to a socket libpq has closed (the
        kernel dropped it from the set then): the new one takes its place."""
        stale = self._watches.get(watch.fd)
        if stale is not None:
            stale.detach()
        self._epoll.register(watch.fd, select.EPOLLIN)
        self._watches[watch.fd] = watch

    def pause(self, watch: _SocketWatch, paused: bool) -> None:
        if self._watches.get(watch.fd) is not watch:
            return
        with contextlib.suppress(OSError):  # libpq closed the socket meanwhile: the kernel dropped it from the set
            self._epoll.modify(watch.fd, 0 if paused else select.EPOLLIN)

    def has_ready(self, watch: _SocketWatch) -> bool:
        return any(fd == watch.fd for fd, _events in self._epoll.poll(0))

    def ensure(self, watch: _SocketWatch) -> None:
        """Register `watch` again if the set lost it (it never should: see `missed_wakeups`)."""
        try:
            self._epoll.register(watch.fd, select.EPOLLIN)
        except FileExistsError:
            self._epoll.modify(watch.fd, select.EPOLLIN)

    def remove(self, watch: _SocketWatch) -> None:
        if self._watches.get(watch.fd) is not watch:
            return
        del self._watches[watch.fd]
        # Gone already if libpq closed the socket; the number may even be another file's now, which is not in
        # the set (it would be listed under that number otherwise).
        with contextlib.suppress(OSError):
            self._epoll.unregister(watch.fd)
        if not self._watches:
            self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(RuntimeError):  # the loop is closed: it dropped its readers already
            self.loop.remove_reader(self._epoll.fileno())
        self._epoll.close()


class _SocketWatch:
    """A connection's place in its loop's `_Poller`; a wait borrows it through a future."""

    def __init__(self, loop: asyncio.AbstractEventLoop, conn: WatchedConnection) -> None:
        self.loop = loop
        self.fd = conn.pgconn.socket
        self._conn = weakref.ref(conn)
        self._waiter: asyncio.Future[None] | None = None
        self._woken = False
        self.buffered = False  # read into libpq's buffer while no one waited: the next wait need not block
        self.stopped = False
        self._poller = _Poller.of(loop)
        self._poller.add(self)

    def readable(self) -> None:
        if self._waiter is not None:
            self._woken = True  # also when the interval's timer settled the wait first, in this turn of the loop
            if not self._waiter.done():
                self._waiter.set_result(None)
            return
        # Readable while no one waits: a notice, or the server ending the session. Read it into libpq's buffer so
        # that the socket stops being readable; stop watching a connection that is gone.
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

    async def wait_readable(self, within: float) -> bool:
        """Wait until the socket is readable or what it had is in libpq's buffer already (True), or `within`
        seconds pass (False)."""
        if self.take_buffered():
            return True
        waiter = self.loop.create_future()
        self._waiter, self._woken = waiter, False
        timer = self.loop.call_later(within, _settle, waiter)
        try:
            await waiter
        finally:
            timer.cancel()
            self._waiter = None
        if self._woken or self.stopped:
            return self._woken
        if not _has_input(self.fd):
            return False
        # Readable, and not woken. The loop runs due timers before it polls: the answer may have come in just as
        # the interval ended, and the set has it ready. Otherwise the set lost the socket.
        if not self._poller.has_ready(self):
            self._missed()
        return True

    def _missed(self) -> None:
        global missed_wakeups
        missed_wakeups += 1
        log.error("a database connection's socket was readable without its wait being woken (%d so far); "
                  "it is registered again", missed_wakeups)
        self._poller.ensure(self)

    def take_buffered(self) -> bool:
        """Whether data came in while no one waited (the answer to a COMMIT sent ahead, a cancelled query's error);
        a generator told so reads it from libpq's buffer, and waits again if it needs more."""
        buffered, self.buffered = self.buffered, False
        return buffered

    @contextlib.contextmanager
    def paused(self) -> Iterator[None]:
        """Leave the socket to another reader for a while: this one would take the data it waits for."""
        self._poller.pause(self, True)
        try:
            yield
        finally:
            if not self.stopped:
                self._poller.pause(self, False)

    def detach(self) -> None:
        """Forget a socket libpq has closed, without touching the set: its number is another socket's now."""
        self.stopped = True
        self._wake()

    def stop_from_anywhere(self) -> None:
        """stop() from a finalizer, which may run in any thread: the loop's own thread changes the set."""
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
        self._poller.remove(self)
        self._wake()

    def _wake(self) -> None:
        if self._waiter is not None:
            _settle(self._waiter)  # the generator finds out what happened to its connection


def _has_input(fd: int) -> bool:
    """Whether `fd` is readable now (a poll that does not wait)."""
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return bool(poller.poll(0))


def _settle(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


class WatchedConnection(AsyncConnection[TupleRow]):
    """An AsyncConnection whose waits for reading use its loop's `_Poller`, where its socket stays registered."""

    _watch: _SocketWatch | None = None

    def _socket_watch(self) -> _SocketWatch | None:
        watch = self._watch
        if watch is not None and not watch.stopped:
            return watch if watch.loop is asyncio.get_running_loop() else None
        if self.pgconn.status != ConnStatus.OK or not hasattr(select, "epoll"):
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
                ready = await watch.wait_readable(step)
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
            watch.stop()
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
