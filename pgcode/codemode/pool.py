"""The worker pool: a zygote process, the workers it forks, and their replacement when one is killed."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from pgcode.codemode.zygote import BOOT, encode_init

log = logging.getLogger("pgcode.codemode")

_ZYGOTE_START_TIMEOUT_S = 30.0


class PoolClosed(Exception):
    """The pool was closed while a caller waited for a worker."""


class Zygote:
    """The clean parent of every worker (a fresh interpreter with dukpy and sucrase loaded)."""

    def __init__(self, init: dict[str, Any]) -> None:
        self._init = encode_init(init)
        self._lock = threading.Lock()
        self._proc: subprocess.Popen[bytes] | None = None
        self._control: socket.socket | None = None

    def _start(self) -> socket.socket:
        ours, theirs = socket.socketpair()
        try:
            # An empty environment: the zygote and its workers never see the server's secrets.
            self._proc = subprocess.Popen(  # noqa: S603 (our interpreter, our constant program)
                [sys.executable, "-c", BOOT, json.dumps(sys.path), str(theirs.fileno())],
                pass_fds=[theirs.fileno()], env={}, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                start_new_session=True, close_fds=True)
        finally:
            theirs.close()
        ours.settimeout(_ZYGOTE_START_TIMEOUT_S)
        ours.sendall(self._init)
        if ours.recv(1) != b"R":
            raise RuntimeError("the code-mode zygote did not start; the server's stderr has its error")
        ours.settimeout(None)
        self._control = ours
        return ours

    def fork(self) -> tuple[int, socket.socket, int]:
        """A new worker: (pid, its socket, its pidfd). Blocking; run it in a thread."""
        with self._lock:
            for attempt in (1, 2):
                control = self._control or self._start()
                try:
                    control.sendall(b"F")
                    msg, fds, _, _ = socket.recv_fds(control, 32, 2)
                    if not msg or len(fds) != 2:
                        raise ConnectionError("the zygote closed its socket")
                    return int(msg), socket.socket(fileno=fds[0]), fds[1]
                except (OSError, ValueError):
                    self._stop_locked()
                    if attempt == 2:
                        raise
            raise AssertionError("unreachable")

    def close(self) -> None:
        with self._lock:
            self._stop_locked()

    def _stop_locked(self) -> None:
        if self._control is not None:
            self._control.close()  # the zygote exits on EOF
            self._control = None
        if self._proc is not None:
            try:
                self._proc.wait(timeout=2)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
            self._proc = None


@dataclass(eq=False)
class WorkerHandle:
    """The server's side of one worker: its streams and a pidfd to kill exactly it."""

    pid: int
    pidfd: int
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    runs: int = 0
    started: float = field(default_factory=time.monotonic)
    dead: bool = False

    def kill(self) -> None:
        if self.dead:
            return
        self.dead = True
        with contextlib.suppress(ProcessLookupError, OSError):
            signal.pidfd_send_signal(self.pidfd, signal.SIGKILL)
        os.close(self.pidfd)
        self.writer.close()

    @property
    def usable(self) -> bool:
        return not (self.dead or self.reader.at_eof() or self.writer.is_closing())


class WorkerPool:
    """N idle workers; acquire() hands one out, release() takes it back, discard() kills and replaces it."""

    def __init__(self, size: int, init: dict[str, Any], *, recycle_after: int) -> None:
        self.size = size
        self.recycle_after = recycle_after
        self._zygote = Zygote(init)
        self._idle: deque[WorkerHandle] = deque()
        self.busy: set[WorkerHandle] = set()
        self._waiters: deque[asyncio.Future[WorkerHandle]] = deque()
        self._live = 0  # idle + busy + being spawned
        self._tasks: set[asyncio.Task[None]] = set()
        self._closed = False
        self.spawned = 0
        self.killed = 0

    async def start(self) -> None:
        """Start the zygote and fill the pool (about 0.1 s); raise if no worker can be started."""
        missing = self.size - self._live
        self._live += missing
        await asyncio.gather(*(self._spawn_one() for _ in range(missing)))

    async def _spawn_one(self) -> None:
        """Fork one worker and hand it out; `_live` already counts it (and is corrected on failure)."""
        try:
            pid, sock, pidfd = await asyncio.to_thread(self._zygote.fork)
            reader, writer = await asyncio.open_unix_connection(sock=sock)
        except BaseException:
            self._live -= 1
            raise
        self.spawned += 1
        worker = WorkerHandle(pid, pidfd, reader, writer)
        if self._closed:
            self._live -= 1
            worker.kill()
            return
        self._hand_over(worker)

    def _hand_over(self, worker: WorkerHandle) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(worker)
                return
        self._idle.append(worker)

    async def acquire(self) -> WorkerHandle:
        """An idle worker; waits (the caller bounds the wait) while all are busy or being replaced."""
        if self._closed:
            raise PoolClosed
        if self._live < self.size and not self._idle:
            self._replace()
        while self._idle:
            worker = self._idle.popleft()
            if worker.usable:
                self.busy.add(worker)
                return worker
            self.discard(worker)
        waiter: asyncio.Future[WorkerHandle] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            worker = await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release(waiter.result())
            raise
        if not worker.usable:
            self.discard(worker)
            return await self.acquire()
        self.busy.add(worker)
        return worker

    def release(self, worker: WorkerHandle) -> None:
        self.busy.discard(worker)
        worker.runs += 1
        if self._closed or not worker.usable or worker.runs >= self.recycle_after:
            self.discard(worker)
            return
        self._hand_over(worker)

    def discard(self, worker: WorkerHandle) -> None:
        """Kill the worker (it may be running anything) and start its replacement in the background."""
        self.busy.discard(worker)
        if not worker.dead:
            worker.kill()
            self.killed += 1
        self._live -= 1
        if not self._closed:
            self._replace()

    def _replace(self) -> None:
        self._live += 1
        task = asyncio.get_running_loop().create_task(self._spawn_guarded(), name="pgcode-codemode-spawn")
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _spawn_guarded(self) -> None:
        try:
            await self._spawn_one()
        except Exception:
            log.exception("could not start a code-mode worker")
            for waiter in list(self._waiters):
                if not waiter.done():
                    waiter.set_exception(RuntimeError("the code-mode sandbox could not start a worker"))
            self._waiters.clear()

    @property
    def idle(self) -> int:
        return len(self._idle)

    @property
    def live(self) -> int:
        """Workers idle, busy or being started: the pool keeps this at `size`."""
        return self._live

    async def close(self) -> None:
        self._closed = True
        for task in list(self._tasks):
            task.cancel()
        for task in list(self._tasks):
            with contextlib.suppress(BaseException):
                await task
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_exception(PoolClosed())
        while self._idle:
            self._idle.popleft().kill()
        for worker in list(self.busy):  # their executions end with EXECUTION_FAILED
            worker.kill()
        await asyncio.to_thread(self._zygote.close)
