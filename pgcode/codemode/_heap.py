"""The QuickJS heap of one dukpy context: its limit for one execution, and how much of it the code used.

dukpy gives every runtime a fixed 128 MiB limit and no Python API to change or read it
(research/sandbox-probe.md, 3c). Its extension module exports QuickJS-ng's C API, which does both; this
module reaches it with ctypes. Worker-side: standard library and dukpy only.
"""

from __future__ import annotations

import ctypes

from dukpy import _dukpy

_KNOWN_QUICKJS = ("0.10.", "0.11.")
_CAPSULE = b"DUKPY_CONTEXT_CAPSULE"
_PROBE_LIMIT = 123_456_789
_MALLOC_STATE = 5 * ctypes.sizeof(ctypes.c_void_p)
"""struct JSRuntime begins with JSMallocFunctions (five pointers), then JSMallocState {count, size, limit}."""


class _Usage(ctypes.Structure):
    """JSMemoryUsage (quickjs.h): 26 int64 counters, the first two are malloc_size and malloc_limit."""

    _fields_ = [("malloc_size", ctypes.c_int64), ("malloc_limit", ctypes.c_int64),
                *((f"other{i}", ctypes.c_int64) for i in range(24))]


def _load() -> ctypes.CDLL:
    lib = ctypes.CDLL(_dukpy.__file__)
    p = ctypes.c_void_p
    for name, restype, argtypes in (
        ("JS_GetVersion", ctypes.c_char_p, []), ("JS_GetRuntime", p, [p]),
        ("JS_SetMemoryLimit", None, [p, ctypes.c_size_t]),
        ("JS_ComputeMemoryUsage", None, [p, ctypes.POINTER(_Usage)]),
    ):
        fn = getattr(lib, name)
        fn.restype, fn.argtypes = restype, argtypes
    version = (lib.JS_GetVersion() or b"").decode("ascii", "replace")
    if not version.startswith(_KNOWN_QUICKJS):
        raise RuntimeError(f"dukpy bundles QuickJS-ng {version}; code mode's memory limit knows "
                           f"{', '.join(_KNOWN_QUICKJS)}")
    return lib


_lib = _load()
_capsule_pointer = ctypes.pythonapi.PyCapsule_GetPointer
_capsule_pointer.restype, _capsule_pointer.argtypes = ctypes.c_void_p, [ctypes.py_object, ctypes.c_char_p]


class Heap:
    """The runtime behind one dukpy context capsule; valid while the capsule lives (its owner keeps both)."""

    __slots__ = ("_runtime", "_state", "cap", "peak")

    def __init__(self, capsule: object) -> None:
        address = _capsule_pointer(capsule, _CAPSULE)
        runtime, context = (ctypes.c_void_p * 2).from_address(address)  # DukPyContext {runtime, context, ...}
        if not runtime or _lib.JS_GetRuntime(context) != runtime:
            raise RuntimeError("dukpy's context is not laid out as code mode expects: its memory limit cannot be set")
        self._runtime: int = runtime
        self._state = (ctypes.c_size_t * 3).from_address(runtime + _MALLOC_STATE)
        self.peak = 0
        self.cap = 0

    def limit(self, size: int) -> None:
        """Allocations past `size` bytes fail with QuickJS's own catchable `InternalError: out of memory`."""
        _lib.JS_SetMemoryLimit(self._runtime, size)
        self.cap = size

    def sample(self) -> None:
        """Note the bytes the runtime holds now (one memory read: cheap enough for a 1 ms timer).

        Samples are taken where QuickJS polls for interrupts (every few thousand bytecodes) and after each
        eval: a burst inside one native call (`new Array(n).fill(0)`) is seen only when it is kept.
        """
        used: int = self._state[1]
        if used > self.peak:
            self.peak = used

    def exhausted(self) -> None:
        """The code hit the limit: that is its peak, whatever the samples saw."""
        self.peak = max(self.peak, self.cap)

    def check_layout(self) -> None:
        """Compare the field reads with QuickJS's own report once, so that a changed build fails at start."""
        usage = _Usage()
        self.limit(_PROBE_LIMIT)
        _lib.JS_ComputeMemoryUsage(self._runtime, ctypes.byref(usage))
        if (usage.malloc_limit, self._state[2], usage.malloc_size) != (_PROBE_LIMIT, _PROBE_LIMIT, self._state[1]):
            raise RuntimeError("QuickJS's runtime is not laid out as code mode expects: its memory use cannot be read")
