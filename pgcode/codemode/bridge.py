"""The host side of the async bridge: check what a worker asks for, run it through invoke(), answer.

Everything a worker sends is untrusted: user code can forge the serialised call list (for example
through Array.prototype.toJSON, research/sandbox-probe.md p7), so names, ids and arguments are
checked here, and every call runs through invoke() with the caller's principal and readonly flag.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import Iterable
from typing import Any

from pgcode.codemode.api import CODEMODE_GROUP, Allowance
from pgcode.codemode.protocol import MAX_FRAME
from pgcode.codemode.settings import CodeModeSettings
from pgcode.core.callctx import IN_CODE_EXECUTION
from pgcode.core.context import EXECUTION_CONNECTION, ExecutionConnection
from pgcode.core.invoke import audit
from pgcode.core.runtime import Runtime
from pgcode.errors import ToolError
from pgcode.types import Effect, Principal

log = logging.getLogger("pgcode.codemode")

LOG_LEVELS = frozenset({"log", "info", "warn", "error", "debug"})
_MAX_TOOL_NAME = 128
_BEGIN, _ROLLBACK = "pg_transaction_begin", "pg_transaction_rollback"
_detached: set[asyncio.Task[Any]] = set()
_ENCODE_RESULT = json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode
"""A tool's result as compact JSON: one encoder for every call, not one made by json.dumps per call."""


class Abort(Exception):
    """End the execution now with this error; the code cannot catch it."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def _forged(what: str) -> Abort:
    return Abort("SECURITY_ERROR", f"the sandbox sent a malformed host-call request ({what}); the code tampered "
                                   "with the bridge")


class HostBridge:
    """One execution's host calls: counted, capped, run concurrently up to a limit, results as JSON bytes."""

    def __init__(self, rt: Runtime, principal: Principal, *, read_only: bool, settings: CodeModeSettings,
                 allowance: Allowance | None = None) -> None:
        self._rt = rt
        self._principal = principal
        self._read_only = read_only
        self._allowance = allowance
        self._settings = settings
        self._semaphore = asyncio.Semaphore(settings.max_concurrency)
        self._begun: list[str] = []
        # Sequential calls share one connection; a readonly execution reads from one snapshot.
        self.connection = ExecutionConnection(rt, principal, snapshot=read_only)
        self.calls = 0
        self.logs: list[dict[str, str]] = []
        self.logs_dropped = 0
        self._log_chars = 0

    def accept(self, body: bytes) -> list[tuple[int, str, str]]:
        """Parse and check one CALLS frame; raise Abort when it is forged or over the call cap."""
        try:
            msg = json.loads(body)
        except (ValueError, RecursionError):
            raise _forged("not JSON") from None
        if not isinstance(msg, dict):
            raise _forged("not an object")
        self.take_logs(msg.get("logs"))
        calls = msg.get("calls")
        if not isinstance(calls, list) or not calls:
            raise _forged("no calls")
        checked: list[tuple[int, str, str]] = []
        ids: set[int] = set()
        for item in calls:
            if not (isinstance(item, list) and len(item) == 3 and type(item[0]) is int
                    and isinstance(item[1], str) and isinstance(item[2], str)):
                raise _forged("a call is not [id, tool, arguments]")
            cid, tool, args = item
            if cid in ids or not 0 < cid < 2**53 or len(tool) > _MAX_TOOL_NAME:
                raise _forged("bad call id or name")
            ids.add(cid)
            checked.append((cid, tool, args))
        self.calls += len(checked)
        if self.calls > self._settings.max_host_calls:
            raise Abort("EXECUTION_FAILED", f"the code made more than {self._settings.max_host_calls} tool calls, "
                                            "the limit of one execution")
        return checked

    def take_logs(self, logs: Any) -> None:
        """Keep the worker's log entries, checked and capped again on this side."""
        if not isinstance(logs, list):
            return
        s = self._settings
        for entry in logs:
            if len(self.logs) >= s.max_logs or self._log_chars >= s.max_log_chars:
                self.logs_dropped += 1
                continue
            if not isinstance(entry, dict):
                continue
            level = entry.get("level")
            message = str(entry.get("message", ""))[: s.max_log_entry_chars + 16]
            self._log_chars += len(message)
            self.logs.append({"level": level if level in LOG_LEVELS else "log", "message": message})

    async def dispatch(self, calls: list[tuple[int, str, str]], deadline: float) -> bytes:
        """Run a batch (the calls the code made together: 1, or all of a Promise.all) and encode the results.

        A call made alone (every await in a loop) runs in the execution's own task: a task of its own costs two
        turns of the event loop and a wait (30-50 us of CPU per call here). At the deadline it is cancelled where
        it stands, its statement with it, and the execution answers TIMEOUT once that is done; the calls of a
        batch are cancelled and left to finish unwinding on their own."""
        if len(calls) == 1:
            cid, tool, args = calls[0]
            try:
                async with asyncio.timeout_at(deadline):
                    return b'{"r":[' + self._fit([await self._one(cid, tool, args)], calls)[0] + b"]}"
            except TimeoutError:
                raise Abort("TIMEOUT", f"while waiting for {tool}") from None
        loop = asyncio.get_running_loop()
        tasks = [loop.create_task(self._one(cid, tool, args)) for cid, tool, args in calls]
        try:
            _, pending = await asyncio.wait(tasks, timeout=max(0.0, deadline - loop.time()))
        except asyncio.CancelledError:  # the caller went away: its calls go too
            _abandon(tasks)
            raise
        if pending:
            _abandon(pending)
            waiting = sorted({tool for (_, tool, _), task in zip(calls, tasks, strict=True) if task in pending})
            raise Abort("TIMEOUT", f"while waiting for {', '.join(waiting)}")
        return b'{"r":[' + b",".join(self._fit([t.result() for t in tasks], calls)) + b"]}"

    def _fit(self, parts: list[bytes], calls: list[tuple[int, str, str]]) -> list[bytes]:
        """Keep a batch within one frame: results past the budget become RESULT_TOO_LARGE errors instead."""
        budget = MAX_FRAME - 64 * 1024
        out = []
        for part, (cid, tool, _) in zip(parts, calls, strict=True):
            if len(part) > budget:
                part = _failure(cid, "RESULT_TOO_LARGE", f"the results of this Promise.all batch exceed {MAX_FRAME} "
                                f"bytes; {tool}'s was left out", "ask for fewer rows, or await fewer calls at once")
            budget -= len(part)
            out.append(part)
        return out

    async def _one(self, cid: int, tool: str, args_json: str) -> bytes:
        in_code = IN_CODE_EXECUTION.set(True)  # for this call only: the execution was rate-limited as a whole
        shared = EXECUTION_CONNECTION.set(self.connection)
        started = time.perf_counter()
        try:
            try:
                args = json.loads(args_json)
            except (ValueError, RecursionError):  # forged past the prelude: still a call, and audited as one
                refusal: tuple[str, str, str | None] | None = (
                    "INVALID_INPUT", f"the arguments of {tool} are not JSON", None)
                args = {"_notJson": True, "_chars": len(args_json)}  # the text itself may hold anything
            else:
                refusal = self._refuse(tool)
            if refusal is not None:  # refused before invoke(): recorded in the audit log the same way
                audit(self._rt, tool, self._rt.registry.get(tool), self._principal, args, started, refusal[0])
                return _failure(cid, *refusal)
            async with self._semaphore:
                result = await self._rt.invoke(tool, args, self._principal, read_only=self._read_only)
            if tool == _BEGIN and isinstance(result, dict) and isinstance(result.get("transactionId"), str):
                self._begun.append(result["transactionId"])
            body = _ENCODE_RESULT(result).encode()
            if len(body) > self._settings.max_call_result_bytes:
                return _failure(cid, "RESULT_TOO_LARGE", f"the result of {tool} is {len(body)} bytes of JSON; code "
                                f"mode accepts {self._settings.max_call_result_bytes} per call",
                                "ask for fewer rows (limit) or fewer columns")
            return b"[%d,true,%s]" % (cid, body)
        except ToolError as err:
            return b"[%d,false,%s]" % (cid, json.dumps(err.to_dict()).encode())
        except Exception:
            log.exception("code-mode host call %s failed", tool)
            return _failure(cid, "INTERNAL", f"{tool} failed unexpectedly; the server log has the details")
        finally:
            EXECUTION_CONNECTION.reset(shared)
            IN_CODE_EXECUTION.reset(in_code)

    def _refuse(self, tool: str) -> tuple[str, str, str | None] | None:
        """(code, message, hint) for a call this run may not make: unknown, code mode itself, outside the
        allow-list, a write when readonly. invoke() checks the caller's scopes after these."""
        spec = self._rt.registry.get(tool)
        if spec is None:
            return ("NOT_FOUND", f"there is no tool named {tool!r}",
                    "pg.help() lists the groups and methods; pg.call takes names such as 'pg_read_query'")
        if spec.group == CODEMODE_GROUP:
            return "SECURITY_ERROR", f"{tool} cannot be called from code mode", None
        outside = self._allowance.refusal(tool) if self._allowance is not None else None
        if outside is not None:
            return "FORBIDDEN", outside, "pg.help() lists what this run may call; add the group or tool to `tools`"
        if self._read_only and spec.effect is not Effect.READ:  # before validation: whatever the arguments
            return ("READ_ONLY", f"{tool} changes the database and this execution is readonly",
                    "run without readonly (needs the tool's scope) or use a read tool")
        return None

    async def close(self) -> None:
        """Roll back transactions the code began and left open (pg_transaction_begin without an end)."""
        for tx_id in self._begun:
            with contextlib.suppress(ToolError):  # already ended by the code itself
                await self._rt.invoke(_ROLLBACK, {"transactionId": tx_id}, self._principal)
        if self.connection.busy:  # a call cancelled at the deadline still unwinds on it: it is closed after that
            task = asyncio.get_running_loop().create_task(self.connection.close(), name="pgcode-codemode-close")
            _detached.add(task)
            task.add_done_callback(_forget)
        else:
            await self.connection.close()


def _failure(cid: int, code: str, message: str, hint: str | None = None) -> bytes:
    body: dict[str, Any] = {"code": code, "message": message}
    if hint:
        body["hint"] = hint
    return b"[%d,false,%s]" % (cid, json.dumps(body).encode())


def _abandon(tasks: Iterable[asyncio.Task[Any]]) -> None:
    """Cancel unfinished calls without waiting: psycopg sends a cancel request, the statement stops."""
    for task in tasks:
        if not task.done():
            task.cancel()
            _detached.add(task)
            task.add_done_callback(_forget)


def _forget(task: asyncio.Task[Any]) -> None:
    _detached.discard(task)
    if not task.cancelled() and task.exception() is not None:
        log.debug("a cancelled code-mode host call ended with %r", task.exception())


def pending_calls() -> set[asyncio.Task[Any]]:
    """Host calls cancelled at a deadline that are still unwinding (shutdown waits for them)."""
    loop = asyncio.get_running_loop()
    return {t for t in _detached if t.get_loop() is loop}
