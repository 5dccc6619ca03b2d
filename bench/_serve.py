"""A real `pgcode serve` subprocess on a free loopback port, for benchmarks that need its process and its log."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
from _timing import free_port


class Server:
    def __init__(self, proc: subprocess.Popen[bytes], base: str, log: Path) -> None:
        self.proc = proc
        self.base = base
        self.log = log

    def rss_kb(self) -> int:
        """The server process's resident set size (VmRSS), in kB."""
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise RuntimeError("no VmRSS in /proc status")

    def stop(self) -> int | None:
        """SIGTERM and wait: the server flushes its audit log and closes its pool on the way out."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        return self.proc.returncode


def _inherited() -> dict[str, str]:
    """This process's environment without PGCODE_* settings: the caller says how the server is configured."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PGCODE_")}


@contextmanager
def serving(env: dict[str, str], log: Path) -> Iterator[Server]:
    """Start `pgcode serve` with `env` (added to this process's), wait until /healthz answers; stop it afterwards."""
    port = free_port()
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "pgcode", "serve", "--port", str(port)],
                                env={**_inherited(), **env}, stdout=subprocess.DEVNULL, stderr=err)
    server = Server(proc, f"http://127.0.0.1:{port}", log)
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"pgcode serve did not come up:\n{log.read_text()[-3000:]}")
            try:
                if httpx2.get(f"{server.base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx2.HTTPError:
                pass
            time.sleep(0.1)
        yield server
    finally:
        server.stop()
