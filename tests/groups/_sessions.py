"""Real sessions for the monitoring, admin and kcache tests: sleepers, idle ones, lock holders and waiters.

Every session here is opened by the test itself with an application_name of its own, so tests only ever
cancel or terminate backends they started.
"""

from __future__ import annotations

import inspect
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from typing import Any

import anyio
import psycopg
from psycopg import sql


class Background:
    """A connection running one statement in a thread (pg_sleep, a blocked SELECT, ...)."""

    def __init__(self, dsn: str, app: str, statement: str, *, autocommit: bool = True) -> None:
        self.conn = psycopg.connect(dsn, autocommit=autocommit, application_name=app)
        self.pid = self.conn.info.backend_pid
        self.app = app
        self.error: BaseException | None = None
        self.result: Any = None
        self._statement = statement
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            self.result = self.conn.execute(self._statement).fetchall()
        except BaseException as exc:  # the test looks at it: cancelled, terminated, ...
            self.error = exc

    def start(self, dsn: str, *, state: str = "active", wait_event_type: str | None = None) -> Background:
        self._thread.start()
        with psycopg.connect(dsn, autocommit=True) as watcher:

            def ready() -> bool:
                now, waiting = _state(watcher, self.pid)
                return now == state and (wait_event_type is None or waiting == wait_event_type)

            wait_until(ready, what=f"{self.app} to be {state}")
        return self

    def join(self, timeout: float = 15) -> None:
        self._thread.join(timeout)
        assert not self._thread.is_alive(), f"{self.app} is still running"

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def close(self, dsn: str) -> None:
        """Stop what is still running (only this session of ours) and close it."""
        if self._thread.is_alive():
            with psycopg.connect(dsn, autocommit=True) as c:
                c.execute("SELECT pg_cancel_backend(%s)", (self.pid,))
            self._thread.join(15)
        with suppress(psycopg.Error):
            self.conn.close()


def _state(conn: psycopg.Connection[Any], pid: int) -> tuple[str | None, str | None]:
    row = conn.execute("SELECT state, wait_event_type FROM pg_stat_activity WHERE pid = %s", (pid,)).fetchone()
    return (row[0], row[1]) if row else (None, None)


def session_exists(conn: psycopg.Connection[Any], pid: int) -> bool:
    return conn.execute("SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE pid = %s)", (pid,)).fetchone() == (True,)


def wait_until(check: Callable[[], Any], *, timeout: float = 15, what: str = "the condition") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


async def eventually(check: Callable[[], Any], *, within: float = 15, what: str = "the condition") -> Any:
    """As wait_until, without blocking the event loop between tries; `check` may be a coroutine function."""
    with anyio.fail_after(within):
        while True:
            value = check()
            if inspect.isawaitable(value):
                value = await value
            if value:
                return value
            await anyio.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")  # pragma: no cover


@contextmanager
def sleeper(dsn: str, app: str, seconds: float = 30) -> Iterator[Background]:
    """A session of ours running SELECT pg_sleep(seconds)."""
    bg = Background(dsn, app, f"SELECT pg_sleep({float(seconds)})")
    try:
        yield bg.start(dsn)
    finally:
        bg.close(dsn)


@contextmanager
def idle_session(dsn: str, app: str, *, in_transaction: bool = False) -> Iterator[psycopg.Connection[Any]]:
    """A session of ours sitting idle, or idle in an open transaction (the test may end it)."""
    c = psycopg.connect(dsn, autocommit=not in_transaction, application_name=app)
    try:
        c.execute("SELECT 1")
        yield c
    finally:
        with suppress(psycopg.Error):
            c.rollback()
        c.close()


@contextmanager
def blocked(dsn: str, table: sql.Composable, app: str) -> Iterator[tuple[psycopg.Connection[Any], Background]]:
    """A holder of ours with an ACCESS EXCLUSIVE lock on `table` and a waiter of ours blocked behind it."""
    with psycopg.connect(dsn, application_name=f"{app}_holder") as holder:
        holder.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(table))
        waiter = Background(dsn, f"{app}_waiter", sql.SQL("SELECT count(*) FROM {}").format(table).as_string(holder))
        try:
            yield holder, waiter.start(dsn, wait_event_type="Lock")
        finally:
            holder.rollback()
            waiter.join()
            waiter.close(dsn)
