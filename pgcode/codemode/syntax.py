"""Syntax checks that run nothing: QuickJS compiles the code to bytecode and the bytecode is thrown away.

pg_validate_code, pg_script_save and pg_script_update check code here, in the server process and never in a
sandbox worker, so a check takes milliseconds and cannot hold a worker. The code is only ever compiled
(QuickJS's compile-only mode): not one statement of it is evaluated, whatever it contains.

The code is compiled twice, as the body of the arrow function an execution wraps it in, and as the body of
a function declaration. A body that closes its wrapper early and opens another one (`}); ... (async () =>
{`) can be valid in one of the two but never in both: after the arrow's `}` only `,` or `)` may follow,
after the declaration's `}` neither may. So code that compiles both ways is exactly a function body.

TypeScript: when the code is not JavaScript, the bundled sucrase strips its types. Sucrase is JavaScript of
ours run on the code as a string value (never as source), under a deadline and a memory limit; its output
is then compiled like JavaScript.

QuickJS is reached through the C API that dukpy's extension module exports (QuickJS-ng 0.11), with ctypes,
which releases the GIL for each call: the checks run in a small thread pool and the event loop keeps going.
"""

from __future__ import annotations

import asyncio
import ctypes
import importlib.machinery
import importlib.util
import logging
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from importlib import resources as pkg_resources
from pathlib import Path
from typing import Any

log = logging.getLogger("pgcode.codemode")

TS_BUDGET_S = 1.0
"""How long sucrase may take to strip the types of one piece of code."""
_THREADS = 2
_THREAD_STACK = 8 * 1024 * 1024
_JS_STACK = 1024 * 1024  # QuickJS's default: what a sandbox worker allows the same parser
_COMPILE_MEMORY = 64 * 1024 * 1024
_SUCRASE_MEMORY = 128 * 1024 * 1024

_KNOWN_QUICKJS = ("0.10.", "0.11.")
_EVAL_GLOBAL = 0
_EVAL_COMPILE_ONLY = 1 << 5
_TAG_EXCEPTION = 6

_ARROW = ("(async () => {\n", "\n})")
"""How an execution wraps the code (pgcode.codemode.worker): the verdict that counts."""
_DECLARATION = ("async function __pgcode_body() {\n", "\n}")
"""A second wrapper: code that compiles in both is exactly one function body."""
_HEAD_LINES = 1
_POSITION = re.compile(r"<code>:(\d+):\d+")
_TS_POSITION = re.compile(r"\s*\((\d+):\d+\)")


class _Value(ctypes.Structure):
    """JSValue on 64-bit platforms (QuickJS-ng without NaN boxing): a 64-bit payload and a tag."""

    _fields_ = [("u", ctypes.c_uint64), ("tag", ctypes.c_int64)]


_Interrupt = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p)


def _library_path() -> Path:
    spec = importlib.util.find_spec("dukpy")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ImportError("dukpy is not installed")
    for folder in spec.submodule_search_locations:
        for suffix in importlib.machinery.EXTENSION_SUFFIXES:
            candidate = Path(folder) / f"_dukpy{suffix}"
            if candidate.is_file():
                return candidate
    raise ImportError("dukpy's QuickJS extension module is missing")


def _load() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(_library_path()))
    lib.JS_GetVersion.restype, lib.JS_GetVersion.argtypes = ctypes.c_char_p, []
    version = (lib.JS_GetVersion() or b"").decode("ascii", "replace")
    if not version.startswith(_KNOWN_QUICKJS):  # the declarations below follow this C API
        raise ImportError(f"dukpy bundles QuickJS-ng {version}; the syntax check knows {', '.join(_KNOWN_QUICKJS)}")
    p, v, size = ctypes.c_void_p, _Value, ctypes.c_size_t
    for name, restype, argtypes in (
        ("JS_NewRuntime", p, []), ("JS_FreeRuntime", None, [p]), ("JS_NewContext", p, [p]),
        ("JS_FreeContext", None, [p]), ("JS_SetMemoryLimit", None, [p, size]),
        ("JS_SetMaxStackSize", None, [p, size]), ("JS_UpdateStackTop", None, [p]),
        ("JS_SetInterruptHandler", None, [p, _Interrupt, p]),
        ("JS_Eval", v, [p, ctypes.c_char_p, size, ctypes.c_char_p, ctypes.c_int]),
        ("JS_GetException", v, [p]), ("JS_FreeValue", None, [p, v]), ("JS_GetGlobalObject", v, [p]),
        ("JS_GetPropertyStr", v, [p, v, ctypes.c_char_p]),
        ("JS_SetPropertyStr", ctypes.c_int, [p, v, ctypes.c_char_p, v]),
        ("JS_NewStringLen", v, [p, ctypes.c_char_p, size]),
        ("JS_ToCStringLen2", p, [p, ctypes.POINTER(size), v, ctypes.c_bool]), ("JS_FreeCString", None, [p, p]),
    ):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    return lib


_lib: ctypes.CDLL | None = None
_lib_lock = threading.Lock()


def _quickjs() -> ctypes.CDLL:
    global _lib
    with _lib_lock:
        if _lib is None:
            _lib = _load()
        return _lib


class _Failure(Exception):
    """What QuickJS threw: the error's text and the line of the stack frame it names (if any)."""

    def __init__(self, text: str, line: int | None) -> None:
        super().__init__(text)
        self.text = text
        self.line = line


class _Engine:
    """One QuickJS runtime and context, used by one thread at a time."""

    def __init__(self, memory: int) -> None:
        self.lib = _quickjs()
        self.deadline = float("inf")
        self.interrupted = False
        self._handler = _Interrupt(self._interrupt)  # kept alive as long as the runtime
        self.rt = self.lib.JS_NewRuntime()
        if not self.rt:
            raise MemoryError("QuickJS could not create a runtime")
        self.lib.JS_SetMemoryLimit(self.rt, memory)
        self.lib.JS_SetMaxStackSize(self.rt, _JS_STACK)
        self.lib.JS_SetInterruptHandler(self.rt, self._handler, None)
        self.ctx = self.lib.JS_NewContext(self.rt)
        if not self.ctx:
            self.lib.JS_FreeRuntime(self.rt)
            raise MemoryError("QuickJS could not create a context")

    def _interrupt(self, rt: Any, opaque: Any) -> int:
        if time.monotonic() > self.deadline:
            self.interrupted = True
            return 1
        return 0

    def close(self) -> None:
        self.lib.JS_FreeContext(self.ctx)
        self.lib.JS_FreeRuntime(self.rt)

    def eval(self, source: bytes, *, compile_only: bool, deadline: float = float("inf")) -> str | None:
        """Compile (and with compile_only=False run) trusted `source`; its string result, or _Failure."""
        self.lib.JS_UpdateStackTop(self.rt)  # the stack limit is measured from the calling thread's stack
        self.deadline, self.interrupted = deadline, False
        flags = _EVAL_GLOBAL | (_EVAL_COMPILE_ONLY if compile_only else 0)
        value = self.lib.JS_Eval(self.ctx, source, len(source), b"<code>", flags)
        if value.tag == _TAG_EXCEPTION:
            raise self._failure()
        try:
            return None if compile_only else self._text(value)
        finally:
            self.lib.JS_FreeValue(self.ctx, value)

    def set_string(self, name: bytes, text: str) -> None:
        """A global variable holding `text` as a string value: how code reaches sucrase as data."""
        data = text.encode("utf-8", "surrogatepass")
        value = self.lib.JS_NewStringLen(self.ctx, data, len(data))
        if value.tag == _TAG_EXCEPTION:
            raise self._failure()
        glob = self.lib.JS_GetGlobalObject(self.ctx)
        try:
            if self.lib.JS_SetPropertyStr(self.ctx, glob, name, value) < 0:  # takes ownership of value
                raise self._failure()
        finally:
            self.lib.JS_FreeValue(self.ctx, glob)

    def _failure(self) -> _Failure:
        exc = self.lib.JS_GetException(self.ctx)
        try:
            text = self._text(exc) or "the engine failed"
            stack = self.lib.JS_GetPropertyStr(self.ctx, exc, b"stack")
            try:
                found = _POSITION.search(self._text(stack) or "")
            finally:
                self.lib.JS_FreeValue(self.ctx, stack)
        finally:
            self.lib.JS_FreeValue(self.ctx, exc)
        return _Failure(text, int(found.group(1)) if found else None)

    def _text(self, value: _Value) -> str | None:
        size = ctypes.c_size_t()
        pointer = self.lib.JS_ToCStringLen2(self.ctx, ctypes.byref(size), value, False)
        if not pointer:
            return None
        try:
            return ctypes.string_at(pointer, size.value).decode("utf-8", "replace")
        finally:
            self.lib.JS_FreeCString(self.ctx, pointer)


def _compile(code: str, wrapper: tuple[str, str]) -> None:
    """Compile `code` inside `wrapper` in a runtime of its own; _Failure if it does not compile."""
    engine = _Engine(_COMPILE_MEMORY)
    try:
        head, tail = wrapper
        engine.eval((head + code + tail).encode("utf-8", "surrogatepass"), compile_only=True)
    finally:
        engine.close()


def _compile_body(code: str) -> None:
    _compile(code, _ARROW)
    _compile(code, _DECLARATION)


class _Sucrase:
    """The bundled sucrase in a runtime of this thread (loaded on first use, ~35 ms)."""

    def __init__(self) -> None:
        self.engine = _Engine(_SUCRASE_MEMORY)
        bundle = pkg_resources.files("pgcode.codemode").joinpath("vendor", "sucrase.js").read_bytes()
        try:
            self.engine.eval(bundle + b";0", compile_only=False, deadline=time.monotonic() + 30)
        except BaseException:
            self.engine.close()
            raise

    def strip(self, code: str) -> str:
        """The code with its TypeScript types blanked (lines kept); _Failure says why not."""
        self.engine.set_string(b"__pgcode_source", code)
        out = self.engine.eval(b"sucraseStrip(__pgcode_source)", compile_only=False,
                               deadline=time.monotonic() + TS_BUDGET_S)
        if out is None:
            raise _Failure("the TypeScript transform returned nothing", None)
        return out


_local = threading.local()


def _sucrase() -> _Sucrase:
    found: _Sucrase | None = getattr(_local, "sucrase", None)
    if found is None:
        found = _Sucrase()
        _local.sucrase = found
    return found


def _drop_sucrase() -> None:
    found: _Sucrase | None = getattr(_local, "sucrase", None)
    _local.sucrase = None
    if found is not None:
        found.engine.close()


def _problem(code: str, message: str, line: int | None = None) -> dict[str, Any]:
    return {"code": code, "message": message[:4000], "line": line}


def _user_line(failure: _Failure, user_lines: int) -> int | None:
    if failure.line is None:
        return None
    return min(max(failure.line - _HEAD_LINES, 1), user_lines)


def _js_problem(failure: _Failure, user_lines: int, ts_text: str | None) -> dict[str, Any]:
    """The parser that got further is the likelier language: report its error (sucrase says "(line:col)")."""
    line = _user_line(failure, user_lines)
    ts = _TS_POSITION.search(ts_text or "")
    if ts_text and ts and line is not None and int(ts.group(1)) > line:
        text = _TS_POSITION.sub("", ts_text.removeprefix("SyntaxError: ")).strip()
        return _problem("SYNTAX_ERROR", f"SyntaxError (TypeScript): {text}", min(int(ts.group(1)), user_lines))
    message = failure.text
    if ts_text:
        message += f" (nor is it valid TypeScript: {ts_text.removeprefix('SyntaxError: ')})"
    return _problem("SYNTAX_ERROR", message, line)


def _too_deep(failure: _Failure) -> bool:
    return not failure.text.startswith("SyntaxError")


def check_sync(code: str) -> dict[str, Any]:
    """{ok, language, error?}: does `code` compile as JavaScript, or as TypeScript once its types are stripped?"""
    user_lines = code.count("\n") + 1
    try:
        _compile_body(code)
        return {"ok": True, "language": "javascript"}
    except _Failure as js:
        js_failure = js
    if _too_deep(js_failure):  # nesting past the parser's stack, or out of memory: no language would help
        return {"ok": False, "language": "javascript",
                "error": _problem("SYNTAX_ERROR", f"{js_failure.text} (the code cannot be compiled: it is nested "
                                                  "too deeply or too large)")}
    sucrase = _sucrase()
    try:
        stripped = sucrase.strip(code)
    except _Failure as ts:
        interrupted = sucrase.engine.interrupted
        if interrupted or _too_deep(ts):
            _drop_sucrase()  # interrupted mid-transform: its context may be unusable
        if interrupted:
            return {"ok": False, "language": None,
                    "error": _problem("TIMEOUT", f"the code is not JavaScript ({js_failure.text}) and checking it "
                                                 f"as TypeScript took longer than {TS_BUDGET_S:g} s")}
        return {"ok": False, "language": "javascript",
                "error": _js_problem(js_failure, user_lines, ts.text.split("\n", 1)[0])}
    try:
        _compile_body(stripped)
    except _Failure as again:
        return {"ok": False, "language": "typescript", "error": _js_problem(again, user_lines, None)}
    return {"ok": True, "language": "typescript"}


_executor: ThreadPoolExecutor | None = None
_executor_lock = threading.Lock()


def _pool() -> ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            previous = threading.stack_size(_THREAD_STACK)  # room below QuickJS's own stack limit
            try:
                executor = ThreadPoolExecutor(_THREADS, thread_name_prefix="pgcode-syntax")
                started = threading.Barrier(_THREADS)  # every thread starts now, while the stack size applies
                for future in [executor.submit(started.wait, 10) for _ in range(_THREADS)]:
                    future.result()
            finally:
                threading.stack_size(previous)
            _executor = executor
        return _executor


def _checked(code: str) -> dict[str, Any]:
    try:
        return check_sync(code)
    except Exception:  # the engine could not be loaded or ran out of memory: say so, never raise
        log.exception("the syntax check failed")
        return {"ok": False, "language": None,
                "error": _problem("EXECUTION_FAILED", "the syntax check failed; the server log says why")}


async def check(code: str) -> dict[str, Any]:
    """check_sync in a checker thread: the event loop and the sandbox workers stay free."""
    return await asyncio.get_running_loop().run_in_executor(_pool(), _checked, code)
