"""A real `pgcode serve` subprocess on a free loopback port, for tests that need a real socket."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2
import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


@contextmanager
def serving(env: dict[str, str], log: Path) -> Iterator[str]:
    """Start `pgcode serve` with `env`, wait until /healthz answers, yield its base URL; stop it afterwards."""
    port = free_port()
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "pgcode", "serve", "--port", str(port)], env=env,
                                stdout=subprocess.DEVNULL, stderr=err)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                if httpx2.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx2.HTTPError:
                time.sleep(0.1)
        else:
            pytest.fail(f"pgcode serve did not come up: {log.read_text()}")
        yield base
    finally:
        proc.terminate()
        proc.wait(timeout=10)
