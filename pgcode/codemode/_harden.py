"""What a worker gives up before it runs anything: environment, descriptors, children, files, address space."""

from __future__ import annotations

import contextlib
import os
import resource
import signal
from collections.abc import Callable
from typing import Any

HEADROOM_BEYOND_HEAP = 256 << 20  # address space for the JSON copies of what the JS heap holds


def harden_process(keep_fd: int, on_alarm: Callable[[int, Any], None], max_heap_bytes: int) -> None:
    """Drop what a worker must not have; only the socket `keep_fd` (and /dev/null on 0-2) stays open.

    The address space may grow by the largest JS heap a run may ask for, plus room for JSON copies.
    """
    os.environ.clear()
    os.chdir("/")
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(devnull, fd)
    os.closerange(3, keep_fd)
    os.closerange(keep_fd + 1, _max_fd())
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGALRM, on_alarm)
    vm_size = _vm_size_bytes()
    # RLIMIT_NPROC is not enforced for root, RLIMIT_FSIZE=0 makes any file write fail (SIGXFSZ).
    limits = [(resource.RLIMIT_CORE, 0), (resource.RLIMIT_NPROC, 0), (resource.RLIMIT_FSIZE, 0),
              (resource.RLIMIT_NOFILE, 16)]
    if vm_size:
        # Relative to this process's size: a fixed cap breaks C stack growth (research p9).
        limits.append((resource.RLIMIT_AS, vm_size + max_heap_bytes + HEADROOM_BEYOND_HEAP))
    for which, value in limits:
        with contextlib.suppress(ValueError, OSError):  # not permitted here (e.g. above the hard limit)
            resource.setrlimit(which, (value, value))


def _max_fd() -> int:
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return soft if 0 < soft < 1 << 20 else 4096


def _vm_size_bytes() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmSize:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0
