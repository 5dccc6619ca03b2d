"""The sandbox worker: a forked process that runs one execution at a time in a fresh QuickJS context.

Runs in a child of the zygote, never in the server. Standard library and dukpy only. The server is
the only peer; JavaScript reaches nothing but the prelude's API, and each host call travels to the
server as data (research/sandbox-probe.md, sections 3, 4 and 7).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from importlib import resources as pkg_resources
from typing import Any

from dukpy import JSRuntimeError, _dukpy

from pgcode.codemode._harden import harden_process
from pgcode.codemode._heap import Heap
from pgcode.codemode._outcome import (
    COMPILE_ERROR_RE,
    OOM,
    PAD_LINES,
    TAMPERED,
    error,
    from_engine,
    from_rejection,
    syntax_error,
)
from pgcode.codemode.protocol import MAX_FRAME, Kind, ProtocolError, recv_frame, send_frame

_WRAP_HEAD = "\n" * PAD_LINES + "__pgcode_start(); (async () => {\n"
_WRAP_TAIL = "\n})().then(__pgcode_ok, __pgcode_fail);\n({toJSON: __pgcode_state});"
_SETTLE = b"__pgcode_settle(dukpy.r)"
_TICK_S = 0.001
"""While JS runs, SIGALRM every millisecond: it samples the heap, and past the deadline it stops the code
(the repeat also means a swallowed alarm cannot stop the deadline)."""


class _SoftTimeout(Exception):
    pass


_DEADLINE: float | None = None
_SAMPLED: Heap | None = None


def _on_alarm(signum: int, frame: Any) -> None:
    """Past the deadline, raise once. An alarm that raised again while the first _SoftTimeout unwound (QuickJS can
    take longer than a tick to return) landed in whatever Python ran next: the cleanup below, or the worker's loop
    after its answer, which then ended the process."""
    global _DEADLINE
    if _SAMPLED is not None:
        _SAMPLED.sample()
    if _DEADLINE is not None and time.monotonic() >= _DEADLINE:
        _DEADLINE = None
        raise _SoftTimeout


def _expire() -> None:
    """Make the next alarm raise again: the _SoftTimeout it raised was absorbed where it cannot stop the code."""
    global _DEADLINE
    _DEADLINE = 0.0


@contextmanager
def _soft_deadline(deadline: float, heap: Heap | None = None) -> Iterator[None]:
    """SIGALRM ticks while JS runs: dukpy's interrupt handler polls PyErr_CheckSignals (probe 3b)."""
    global _DEADLINE, _SAMPLED
    left = deadline - time.monotonic()
    if left <= 0:
        raise _SoftTimeout
    _DEADLINE, _SAMPLED = deadline, heap
    signal.setitimer(signal.ITIMER_REAL, min(left, _TICK_S), _TICK_S)
    try:
        yield
    finally:
        _DEADLINE, _SAMPLED = None, None
        signal.setitimer(signal.ITIMER_REAL, 0)
        if heap is not None:
            heap.sample()  # what the code keeps between evals (dukpy collects garbage at the end of each)

@dataclass(frozen=True)
class WorkerConfig:
    """What every worker of one pool shares; built once in the zygote from the server's init message."""

    prelude: bytes
    help_index: bytes
    help_groups: dict[str, bytes]
    help: dict[str, Any]
    max_result_bytes: int
    default_memory_bytes: int
    max_memory_bytes: int

    @classmethod
    def from_init(cls, init: dict[str, Any]) -> WorkerConfig:
        source = pkg_resources.files("pgcode.codemode").joinpath("prelude.js").read_text("utf-8")
        limits = init["limits"]
        prelude = (source.replace("__API__", json.dumps(init["api"]))
                   .replace("__LIMITS__", json.dumps(limits)) + ";0").encode()
        groups = {g: json.dumps(body).encode() for g, body in init["help"]["groups"].items()}
        return cls(prelude=prelude, help_index=json.dumps(init["help"]["index"]).encode(), help_groups=groups,
                   help=init["help"], max_result_bytes=int(limits["maxResultBytes"]),
                   default_memory_bytes=int(init["memory"]["defaultBytes"]),
                   max_memory_bytes=int(init["memory"]["maxBytes"]))

    def memory_for(self, request: dict[str, Any]) -> int:
        """The heap limit of one run: what the server asked for, never above the pool's maximum."""
        asked = request.get("memoryBytes")
        size = asked if type(asked) is int and asked > 0 else self.default_memory_bytes
        return min(size, self.max_memory_bytes)


def _visible(api: str) -> dict[str, set[str]]:
    """{group: {method, ...}} of a "group:method=tool,...;..." map (what an allow-list leaves of `pg`)."""
    out: dict[str, set[str]] = {}
    for spec in api.split(";") if api else []:
        group, _, methods = spec.partition(":")
        out[group] = {pair.partition("=")[0] for pair in methods.split(",")}
    return out


def _narrowed_help(config: WorkerConfig, visible: dict[str, set[str]],
                   allowed: list[str]) -> dict[str | None, bytes]:
    """pg.help() and pg.<group>.help() of a run with an allow-list: only what the run can call."""
    index = dict(config.help["index"])
    index["groups"] = {g: {**entry, "count": len(methods), "methods": methods}
                       for g, entry in index["groups"].items() if g in visible
                       for methods in [[m for m in entry["methods"] if m in visible[g]]]}
    index["allowList"] = allowed
    index["call"] = "pg.call('pg_<name>', args) calls a tool of the allow-list by its MCP name"
    out: dict[str | None, bytes] = {None: json.dumps(index).encode()}
    for g, body in config.help["groups"].items():
        if g in visible:
            docs = [d for d in body["methods"] if d["name"] in visible[g]]
            out[g] = json.dumps({**body, "methods": docs}).encode()
    return out


class _Host:
    """The only Python object QuickJS sees: a fresh runtime; it exports two functions, `help` and `calls`.

    No `loader` and no `_normalize_module`: dynamic import() fails closed inside dukpy's C loader.
    """

    __slots__ = ("_config", "_ctx", "_sock", "heap", "late", "narrowed", "problem")

    def __init__(self, config: WorkerConfig | None, sock: socket.socket | None = None) -> None:
        self._ctx = _dukpy.create_context()
        self.heap = Heap(self._ctx)
        self._config = config
        self._sock = sock
        self.late = False  # a soft-timeout signal landed in Python while JS called the host
        self.problem: dict[str, Any] | None = None  # a batch of calls could not go out: the run ends with this
        self.narrowed: dict[str | None, bytes] | None = None  # help of a run with an allow-list

    def _check_exported_function_exists(self, name: bytes) -> bool:
        return self._config is not None and (name == b"help" or (name == b"calls" and self._sock is not None))

    def _call_python(self, name: bytes, json_args: bytes) -> bytes:
        try:
            if name == b"calls":
                return self._calls(json_args)
            config = self._config
            assert config is not None
            args = json.loads(json_args)
            group = args[0] if isinstance(args, list) and args else None
            if self.narrowed is not None:
                found = self.narrowed.get(group) if isinstance(group, str | None) else None
            elif group is None:
                found = config.help_index
            else:
                found = config.help_groups.get(group) if isinstance(group, str) else None
            if found is not None:
                return found
            return json.dumps({"error": f"there is no group {str(group)[:64]!r}; pg.help() lists them"}).encode()
        except _SoftTimeout:
            self.late = True
            _expire()  # the next alarm interrupts the JS that runs next
            return b"null"

    def _calls(self, json_args: bytes) -> bytes:
        """Send a batch of tool calls and return the server's results, inside the eval that queued them: a host
        call costs a socket round trip, not a new eval (dukpy collects the whole heap twice around each).

        The server owns the time limit while it runs the batch, so the alarm is off meanwhile (an alarm that
        raised would leave half a frame on the wire); the budget that comes back with the results becomes the
        deadline.
        """
        global _DEADLINE
        previous, _DEADLINE = _DEADLINE, None
        signal.setitimer(signal.ITIMER_REAL, 0)
        try:
            body = json_args[1:-1]  # [frame]: the one argument is the frame the server reads
            if len(body) > MAX_FRAME:
                self.problem = error("EXECUTION_FAILED", f"the tool calls of one step carry {len(body)} bytes of "
                                                         f"arguments; at most {MAX_FRAME} fit")
                _DEADLINE = previous
                return b"null"
            assert self._sock is not None
            send_frame(self._sock, Kind.CALLS, body)
            kind, arg, results = recv_frame(self._sock)
            if kind is not Kind.RESULTS:
                self.problem = error("EXECUTION_FAILED", "the server broke the protocol")
                _DEADLINE = previous
                return b"null"
            _DEADLINE = time.monotonic() + arg / 1000
            return results
        except (EOFError, OSError, ProtocolError):
            os._exit(0)  # the server is gone, or broke the framing: there is no one left to answer
        finally:
            signal.setitimer(signal.ITIMER_REAL, _TICK_S, _TICK_S)


def _eval(host: _Host, code: bytes, variables: bytes, deadline: float) -> dict[str, Any]:
    with _soft_deadline(deadline, host.heap):
        raw = _dukpy.eval_string(host, code, variables)
    if host.late:
        raise _SoftTimeout
    state = json.loads(raw) if raw else None
    if not isinstance(state, dict):
        raise JSRuntimeError("the bridge state was replaced by the code")
    return state


def load_sucrase() -> _Host:
    """A context holding the bundled sucrase build (about 35 ms to load; the zygote does it once)."""
    host = _Host(None)
    bundle = pkg_resources.files("pgcode.codemode").joinpath("vendor", "sucrase.js").read_bytes()
    _dukpy.eval_string(host, bundle + b";0", b"{}")
    return host


class Worker:
    """One worker process: a prepared context waiting for the next RUN, and the TypeScript stripper."""

    def __init__(self, sock: socket.socket, config: WorkerConfig, sucrase: _Host | None) -> None:
        self.sock = sock
        self.config = config
        self._sucrase = sucrase
        self._next: _Host | None = None
        self._spent: _Host | None = None  # freed after the answer is sent: freeing a runtime takes ~75 us

    def serve(self) -> None:
        while True:
            self._prepare()
            try:
                kind, arg, body = recv_frame(self.sock)
            except EOFError:
                os._exit(0)
            if kind is not Kind.RUN:
                continue  # nothing else starts an execution
            request = json.loads(body)
            deadline = time.monotonic() + arg / 1000
            try:
                meta, value = self._run(request, deadline)
            except _SoftTimeout:
                meta, value = {"ok": False, "error": error("TIMEOUT", "the code ran past its time limit")}, b""
            except MemoryError:  # the worker's address-space cap: JSON copies of what the code built
                meta, value = {"ok": False, "error": error("MEMORY_LIMIT", OOM)}, b""
            if self._spent is not None:
                if (meta.get("error") or {}).get("code") == "MEMORY_LIMIT":
                    self._spent.heap.exhausted()
                meta["peakMemoryBytes"] = self._spent.heap.peak
            meta_bytes = json.dumps(meta).encode()
            send_frame(self.sock, Kind.DONE, meta_bytes + value, len(meta_bytes))
            self._spent = None

    def _prepare(self) -> None:
        """The next execution's context: fresh, with the prelude run (about 1 ms, done while idle)."""
        if self._next is None:
            host = _Host(self.config, self.sock)
            _dukpy.eval_string(host, self.config.prelude, b"{}")
            self._next = host

    def _take(self) -> _Host:
        self._prepare()
        host, self._next = self._next, None
        assert host is not None
        self._spent = host
        return host

    def _run(self, request: dict[str, Any], deadline: float) -> tuple[dict[str, Any], bytes]:
        code: str = request["code"]
        user_lines = code.count("\n") + 1
        api = request.get("api")  # the `pg` an allow-list leaves; absent: all of it
        variables = json.dumps({"input": request.get("input"), "args": request.get("args"),
                                "api": api if isinstance(api, str) else None}).encode()
        host = self._take()
        if isinstance(api, str):
            allowed = request.get("tools")
            host.narrowed = _narrowed_help(self.config, _visible(api), allowed if isinstance(allowed, list) else [])
        host.heap.limit(self.config.memory_for(request))
        state, language = self._start(host, code, variables, user_lines, deadline)
        if "problem" in state:
            return {"ok": False, "error": state["problem"], "language": language}, b""
        try:
            while not state.get("done") and host.problem is None:
                calls = state.get("calls")
                if not isinstance(calls, list):
                    return {"ok": False, "error": error("SECURITY_ERROR", TAMPERED), "language": language}, b""
                if not calls:
                    problem = error("RUNTIME_ERROR", "the code awaits a promise that never settles "
                                                     "(code mode has no timers or events)")
                    return {"ok": False, "error": problem, "logs": state.get("logs"), "language": language}, b""
                frame = json.dumps({"calls": calls, "logs": state.get("logs")}).encode()
                if len(frame) > MAX_FRAME:
                    problem = error("EXECUTION_FAILED", f"the tool calls of one step carry {len(frame)} bytes of "
                                                        f"arguments; at most {MAX_FRAME} fit")
                    return {"ok": False, "error": problem, "language": language}, b""
                send_frame(self.sock, Kind.CALLS, frame)
                kind, arg, body = recv_frame(self.sock)
                if kind is not Kind.RESULTS:
                    return {"ok": False, "error": error("EXECUTION_FAILED", "the server broke the protocol")}, b""
                state = _eval(host, _SETTLE, body, time.monotonic() + arg / 1000)
        except JSRuntimeError as exc:
            return {"ok": False, "error": from_engine(str(exc), user_lines), "language": language}, b""
        if host.problem is not None:
            return {"ok": False, "error": host.problem, "language": language}, b""
        return self._finish(state, user_lines, language)

    def _start(self, host: _Host, code: str, variables: bytes, user_lines: int,
               deadline: float) -> tuple[dict[str, Any], str]:
        """The first eval: as JavaScript, then after a parse error (nothing ran) as TypeScript, types stripped."""
        try:
            return _eval(host, (_WRAP_HEAD + code + _WRAP_TAIL).encode(), variables, deadline), "javascript"
        except JSRuntimeError as exc:
            compile_error = COMPILE_ERROR_RE.match(str(exc))
            if compile_error is None:
                return {"problem": from_engine(str(exc), user_lines)}, "javascript"
        stripped, ts_problem = self._strip_types(code, deadline)
        if stripped is None:
            return {"problem": syntax_error(compile_error, user_lines, ts_problem)}, "javascript"
        try:  # the context is still pristine: the failed parse ran nothing
            return _eval(host, (_WRAP_HEAD + stripped + _WRAP_TAIL).encode(), variables, deadline), "typescript"
        except JSRuntimeError as exc2:
            again = COMPILE_ERROR_RE.match(str(exc2))
            return {"problem": syntax_error(again, user_lines, None) if again
                    else from_engine(str(exc2), user_lines)}, "typescript"

    def _finish(self, state: dict[str, Any], user_lines: int, language: str) -> tuple[dict[str, Any], bytes]:
        meta: dict[str, Any] = {"ok": state.get("error") is None, "logs": state.get("logs"),
                                "logsDropped": state.get("logsDropped", 0), "unawaited": state.get("unawaited", 0),
                                "language": language}
        if not meta["ok"]:
            err = state["error"]
            meta["error"] = (from_rejection(err, user_lines) if isinstance(err, dict)
                             else error("RUNTIME_ERROR", "the code failed"))
            return meta, b""
        value = state.get("value")
        encoded = value.encode() if isinstance(value, str) else b"null"
        if len(encoded) > self.config.max_result_bytes:
            meta["ok"] = False
            meta["error"] = error("RESULT_TOO_LARGE", f"the result is {len(encoded)} bytes of JSON; code mode "
                                                      f"returns at most {self.config.max_result_bytes}")
            return meta, b""
        return meta, encoded

    def _strip_types(self, code: str, deadline: float) -> tuple[str | None, str | None]:
        """TypeScript → JavaScript with sucrase (types blanked, lines kept); (None, why) if it is not TypeScript."""
        if self._sucrase is None:
            self._sucrase = load_sucrase()
        try:
            with _soft_deadline(deadline):
                raw = _dukpy.eval_string(self._sucrase, b"sucraseStrip(dukpy.src)",
                                         json.dumps({"src": code}).encode())
        except JSRuntimeError as exc:
            return None, str(exc).split("\n", 1)[0]
        except _SoftTimeout:
            self._sucrase = None  # interrupted mid-transform: its context may be unusable
            raise
        out = json.loads(raw) if raw else None
        return (out, None) if isinstance(out, str) else (None, "the TypeScript transform returned nothing")


def check_heap() -> None:
    """Fail at start, not in a run, when this dukpy build's heap cannot be limited and measured."""
    host = _Host(None)
    host.heap.check_layout()


def serve(sock: socket.socket, config: WorkerConfig, sucrase: _Host | None) -> None:
    """Entry point in the forked child: harden, then serve executions until the server goes away."""
    try:
        harden_process(sock.fileno(), _on_alarm, config.max_memory_bytes)
        Worker(sock, config, sucrase).serve()
    finally:
        os._exit(0)
