"""The zygote: a small clean process that preloads dukpy and sucrase and forks sandbox workers on request.

The server starts it with `python -c` (a fresh interpreter: none of the server's threads, sockets or
secrets) and talks to it over one socket. Each fork request is answered with the new worker's pid and
two descriptors passed by SCM_RIGHTS: the worker's end of a socket pair and a pidfd, so the server can
kill exactly that process even after its pid is reused (research/sandbox-probe.md, p9 and section 7).
Standard library and dukpy only.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import struct
import sys

_LEN = struct.Struct("!I")
BOOT = ("import sys, json; sys.path[:] = json.loads(sys.argv[1]); "
        "from pgcode.codemode.zygote import main; main(int(sys.argv[2]))")
"""The `python -c` program the server runs; argv: the server's sys.path as JSON, the control fd."""


def main(control_fd: int) -> None:
    control = socket.socket(fileno=control_fd)
    (length,) = _LEN.unpack(_recv_exactly(control, _LEN.size))
    init = json.loads(_recv_exactly(control, length))

    from pgcode.codemode.worker import WorkerConfig, check_heap, load_sucrase, serve

    check_heap()
    config = WorkerConfig.from_init(init)
    sucrase = load_sucrase()
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps workers; the server holds pidfds
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the whole process group: the server decides
    control.sendall(b"R")  # ready
    while True:
        request = control.recv(1)
        if not request:
            os._exit(0)  # the server has gone
        ours, theirs = socket.socketpair()
        pid = os.fork()
        if pid == 0:
            control.close()
            ours.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            serve(theirs, config, sucrase)
        theirs.close()
        pidfd = os.pidfd_open(pid)
        try:
            socket.send_fds(control, [str(pid).encode()], [ours.fileno(), pidfd])
        finally:
            ours.close()
            os.close(pidfd)


def _recv_exactly(sock: socket.socket, n: int) -> bytes:
    buf = b""
    while len(buf) < n:
        chunk = sock.recv(n - len(buf))
        if not chunk:
            sys.exit(0)
        buf += chunk
    return buf


def encode_init(init: dict[str, object]) -> bytes:
    body = json.dumps(init).encode()
    return _LEN.pack(len(body)) + body
