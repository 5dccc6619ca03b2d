"""CodeMode: one execution from request to output, over the worker pool and the host bridge."""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from pgcode.codemode import syntax
from pgcode.codemode._outcome import MAX_DETAILS_CHARS
from pgcode.codemode.api import Allowance, SandboxApi
from pgcode.codemode.bridge import Abort, HostBridge, pending_calls
from pgcode.codemode.history import History, new_record
from pgcode.codemode.pool import PoolClosed, WorkerHandle, WorkerPool
from pgcode.codemode.protocol import Kind, ProtocolError, read_frame, write_frame
from pgcode.codemode.settings import CodeModeSettings
from pgcode.core.runtime import Runtime
from pgcode.errors import ToolError
from pgcode.guard.fairshare import FairShare
from pgcode.types import Principal

_CODE_RE = re.compile(r"^[A-Z][A-Z_]{1,39}$")
INPUT_ERRORS = frozenset({"MISSING_CODE", "INVALID_INPUT"})


@dataclass(frozen=True)
class ExecRequest:
    """What pg_execute_code and pg_script_run ask for (already shape-checked by the input model)."""

    code: str
    input: Any = None
    args: Any = None
    readonly: bool = False
    timeout_ms: int | None = None
    memory_mb: int | None = None
    tools: tuple[str, ...] | None = None
    """An allow-list of groups and tool names; None: everything the caller's scopes allow."""
    script_id: int | None = None


def error(code: str, message: str, line: int | None = None, **extra: Any) -> dict[str, Any]:
    return {"code": code, "message": message, "line": line, **{k: v for k, v in extra.items() if v}}


class CodeMode:
    """The process-wide code-mode engine of one Runtime: worker pool, API catalog, history."""

    def __init__(self, rt: Runtime, settings: CodeModeSettings | None = None) -> None:
        self.rt = rt
        self.settings = settings or CodeModeSettings.from_env()
        self.api = SandboxApi(rt.registry)
        self.history = History(rt, self.settings.history_days)
        self._pool: WorkerPool | None = None
        self.shares = FairShare(self.settings.per_principal, self.settings.workers,
                                timeout_s=self.settings.default_timeout_ms / 1000)
        self._pool_lock = asyncio.Lock()

    async def pool(self) -> WorkerPool:
        if self._pool is None:
            async with self._pool_lock:
                if self._pool is None:
                    s = self.settings
                    init = self.api.worker_init(s.js_limits(), s.memory_limits())
                    pool = WorkerPool(s.workers, init, recycle_after=s.recycle_after)
                    await pool.start()
                    self._pool = pool
        return self._pool

    def limits(self) -> dict[str, Any]:
        s = self.settings
        return {"maxCodeBytes": s.max_code_bytes, "maxInputBytes": s.max_input_bytes,
                "defaultTimeoutMs": s.default_timeout_ms, "maxTimeoutMs": s.max_timeout_ms,
                "maxResultBytes": s.max_result_bytes, "maxToolCalls": s.max_host_calls,
                "maxConcurrentToolCalls": s.max_concurrency,
                "defaultMemoryMB": min(s.default_memory_mb, s.max_memory_mb), "maxMemoryMB": s.max_memory_mb,
                "maxLogEntries": s.max_logs,
                "historyDays": s.history_days}

    # -- execution -------------------------------------------------------------------------------------

    async def execute(self, req: ExecRequest, principal: Principal) -> dict[str, Any]:
        """Run `req` for `principal`; the output object, never an exception for what the code did.

        The per-principal rate limit is not here: invoke() applies it to pg_execute_code and pg_script_run
        (pgcode.guard.ratelimit, class "code", 60/minute by default) and raises RATE_LIMITED before this runs; the
        host calls of an execution are exempt (pgcode.core.callctx.IN_CODE_EXECUTION, set by the bridge).
        """
        loop = asyncio.get_running_loop()
        started, t0 = time.time(), loop.time()
        exec_id = uuid.uuid4()
        input_json = json.dumps(req.input, separators=(",", ":"))
        allowance, problem = self._allowance(req)
        bridge = HostBridge(self.rt, principal, read_only=req.readonly, settings=self.settings, allowance=allowance)
        memory = self._memory(req)
        meta: dict[str, Any]
        value = b""
        problem = problem or self._check(req, input_json)
        if problem is not None:
            meta = {"ok": False, "error": problem}
        else:
            timeout_ms = min(req.timeout_ms or self.settings.default_timeout_ms, self.settings.max_timeout_ms)
            try:
                # One principal never holds every sandbox worker; waiting for a share is part of the time limit.
                async with self.shares.slot(principal.subject, admin=False):
                    meta, value = await self._run(req, bridge, timeout_ms, memory["memoryLimitMB"], allowance)
            except ToolError as busy:
                meta = {"ok": False, "error": error(busy.code.value, busy.message)}
            finally:
                await bridge.close()
        out = self._output(meta, value, bridge, loop.time() - t0)
        out["metrics"].update(memory)
        out["metrics"]["peakMemoryMB"] = _megabytes(meta.get("peakMemoryBytes"), memory["memoryLimitMB"])
        out["executionId"] = str(exec_id)
        self.history.record(new_record(
            exec_id, principal.subject, req.code, language=out["language"], input_bytes=len(input_json),
            readonly=req.readonly, script_id=req.script_id, started=started, duration_ms=out["metrics"]["durationMs"],
            error=out["error"], tool_calls=bridge.calls, result_bytes=out["metrics"]["resultBytes"]))
        return out

    def _allowance(self, req: ExecRequest) -> tuple[Allowance | None, dict[str, Any] | None]:
        if req.tools is None:
            return None, None
        try:
            return self.api.allowance(req.tools), None
        except ValueError as exc:
            return None, error("INVALID_INPUT", str(exc))

    def _memory(self, req: ExecRequest) -> dict[str, int]:
        """The run's heap limit in MB for `metrics`; a request above the server's maximum is lowered and says so."""
        s = self.settings
        wanted = req.memory_mb or s.default_memory_mb
        out = {"memoryLimitMB": min(wanted, s.max_memory_mb)}
        if req.memory_mb is not None and req.memory_mb > s.max_memory_mb:
            out["memoryLimitRequestedMB"] = req.memory_mb  # lowered to PGCODE_CODEMODE_MAX_MEMORY_MB
        return out

    def _check(self, req: ExecRequest, input_json: str) -> dict[str, Any] | None:
        s = self.settings
        if not req.code.strip():
            return error("MISSING_CODE", "there is no code to run: send the body of an async function in `code`")
        size = len(req.code.encode())
        if size > s.max_code_bytes:
            return error("INVALID_INPUT", f"the code is {size} bytes; code mode takes at most {s.max_code_bytes}")
        if len(input_json) > s.max_input_bytes:
            return error("INVALID_INPUT", f"the input is {len(input_json)} bytes of JSON; at most "
                                          f"{s.max_input_bytes} are accepted")
        return None

    async def _run(self, req: ExecRequest, bridge: HostBridge, timeout_ms: int, memory_mb: int,
                   allowance: Allowance | None) -> tuple[dict[str, Any], bytes]:
        late = error("TIMEOUT", f"the code ran past its {timeout_ms} ms time limit and was stopped")
        try:
            pool = await self.pool()  # the first execution of a process starts the pool: not part of the limit
            deadline = asyncio.get_running_loop().time() + timeout_ms / 1000
            async with asyncio.timeout_at(deadline):
                worker = await pool.acquire()
        except TimeoutError:
            busy = error("TIMEOUT", f"no sandbox worker became free within the {timeout_ms} ms time limit (all "
                                    f"{self.settings.workers} are busy); nothing ran")
            return {"ok": False, "error": busy}, b""
        except (PoolClosed, OSError, RuntimeError):
            return {"ok": False, "error": error("EXECUTION_FAILED", "the code-mode sandbox is not available")}, b""
        request: dict[str, Any] = {"code": req.code, "input": req.input, "args": req.args,
                                   "memoryBytes": memory_mb << 20}
        if allowance is not None:
            request.update(api=allowance.api, tools=list(allowance.entries))
        body = json.dumps(request).encode()
        try:
            meta, value = await self._converse(worker, body, bridge, deadline)
        except TimeoutError:
            pool.discard(worker)  # SIGKILL: it may be in a loop its own timer could not stop
            return {"ok": False, "error": late}, b""
        except Abort as stop:
            pool.discard(worker)
            message = f"the code ran past its {timeout_ms} ms time limit {stop.message}" \
                if stop.code == "TIMEOUT" else stop.message
            return {"ok": False, "error": error(stop.code, message)}, b""
        except (EOFError, OSError, ProtocolError, ValueError, RecursionError):
            pool.discard(worker)
            return {"ok": False, "error": error("EXECUTION_FAILED", "the sandbox worker stopped unexpectedly (out of "
                                                                     "memory or crashed); it was replaced")}, b""
        except BaseException:
            pool.discard(worker)
            raise
        code = meta["error"].get("code") if isinstance(meta.get("error"), dict) else None
        if code == "MEMORY_LIMIT":
            pool.discard(worker)  # a fresh process for the next run, whatever the exhausted heap left behind
            meta["error"]["message"] = (f"the code ran past its memory limit of {memory_mb} MB and was stopped "
                                        f"(memoryLimit; this server allows up to {self.settings.max_memory_mb})")
        else:
            pool.release(worker)
        if code == "TIMEOUT":
            meta["error"] = {**late, "line": meta["error"].get("line")}
        return meta, value

    async def _converse(self, worker: WorkerHandle, body: bytes, bridge: HostBridge,
                        deadline: float) -> tuple[dict[str, Any], bytes]:
        """Send the code, answer host calls until DONE; TimeoutError past the hard deadline."""
        loop = asyncio.get_running_loop()
        hard = deadline + self.settings.hard_grace_ms / 1000

        def budget() -> int:
            return max(1, int((deadline - loop.time()) * 1000))

        # One timer for the whole conversation: the calls' own wait ends at `deadline` (Abort), before it fires.
        async with asyncio.timeout_at(hard):
            write_frame(worker.writer, Kind.RUN, body, budget())
            await worker.writer.drain()
            while True:
                kind, arg, payload = await read_frame(worker.reader)
                if kind is Kind.CALLS:
                    results = await bridge.dispatch(bridge.accept(payload), deadline)
                    write_frame(worker.writer, Kind.RESULTS, results, budget())
                    await worker.writer.drain()
                elif kind is Kind.DONE:
                    meta = json.loads(payload[:arg])
                    if not isinstance(meta, dict):
                        raise ProtocolError("DONE without a meta object")
                    return meta, payload[arg:]
                else:
                    raise ProtocolError(f"unexpected frame {kind.name}")

    def _output(self, meta: dict[str, Any], value: bytes, bridge: HostBridge, elapsed_s: float) -> dict[str, Any]:
        """The output object from the worker's (untrusted) meta: every field checked and bounded."""
        bridge.take_logs(meta.get("logs"))
        logs = bridge.logs
        dropped = bridge.logs_dropped + _int(meta.get("logsDropped"))
        if dropped:
            logs.append({"level": "warn", "message": f"{dropped} log entries were dropped (the log limit is "
                                                     f"{self.settings.max_logs} entries)"})
        ok = meta.get("ok") is True
        unawaited = _int(meta.get("unawaited"))
        if unawaited and ok:
            logs.append({"level": "warn", "message": f"{unawaited} tool call(s) were started but not awaited before "
                                                     "the code returned; they did not run"})
        err = None if ok else _clean_error(meta.get("error"))
        result: Any = None
        if err is None:
            try:
                result = json.loads(value) if value else None
            except (ValueError, RecursionError):
                err = error("EXECUTION_FAILED", "the sandbox returned a result that is not JSON")
        language = meta.get("language") if meta.get("language") in ("javascript", "typescript") else None
        return {"success": err is None, "result": result if err is None else None, "logs": logs, "error": err,
                "metrics": {"durationMs": round(elapsed_s * 1000, 3), "toolCalls": bridge.calls,
                            "resultBytes": len(value) if err is None else 0},
                "language": language}

    # -- syntax check (pg_validate_code, saved scripts) ------------------------------------------------

    async def check_syntax(self, code: str) -> dict[str, Any]:
        """Compile without running, in the server and never in a worker: {ok, language, error?}."""
        return await syntax.check(code)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None
        unwinding = pending_calls()  # host calls cancelled at a deadline still hold pool connections
        if unwinding:
            await asyncio.wait(unwinding, timeout=1.0)
        await self.history.close()


def _megabytes(peak: Any, limit_mb: int) -> float | None:
    """The worker's (untrusted) peak heap in MB, within what its limit allows; None when it sent none."""
    if type(peak) is not int or peak < 0:
        return None
    return round(min(peak, limit_mb << 20) / (1 << 20), 2)


def _int(value: Any) -> int:
    return value if type(value) is int and 0 <= value < 2**31 else 0


def _clean_error(raw: Any) -> dict[str, Any]:
    if not isinstance(raw, dict):
        return error("EXECUTION_FAILED", "the code failed")
    code = str(raw["code"]) if isinstance(raw.get("code"), str) and _CODE_RE.match(raw["code"]) else "RUNTIME_ERROR"
    line = raw.get("line") if type(raw.get("line")) is int and raw["line"] > 0 else None
    extra: dict[str, Any] = {k: str(raw[k])[:500] for k in ("tool", "hint") if isinstance(raw.get(k), str)}
    if isinstance(raw.get("details"), dict) and len(json.dumps(raw["details"], default=str)) <= MAX_DETAILS_CHARS:
        extra["details"] = raw["details"]
    return error(code, str(raw.get("message") or code)[:4000], line, **extra)


def engine(rt: Runtime) -> CodeMode:
    """The code-mode engine of `rt`, created on first use (its workers start with the first run)."""
    return rt.component(CodeMode)
