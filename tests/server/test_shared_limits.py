"""Two `pgcode serve` processes on one Redis share one rate-limit budget; `serve` refuses unsafe binds."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

TOKEN = "tok-shared-limit-8d2e"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _wait_http(url: str, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"server exited: {log.read_text()}")
        try:
            httpx2.get(url, timeout=1)
            return
        except httpx2.HTTPError:
            time.sleep(0.1)
    pytest.fail(f"{url} did not come up: {log.read_text()}")


@pytest.fixture
def redis_url(tmp_path: Path) -> Iterator[str]:
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (scripts/test.sh installs Debian's redis-server)")
    port = _free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(tmp_path)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _serve(dsn: str, env_extra: dict[str, str], tmp_path: Path, name: str) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    log = tmp_path / f"{name}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PGCODE_", "PG"))}
    env.update(PGCODE_DATABASE_URL=dsn, **env_extra)
    with log.open("w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "pgcode", "serve", "--port", str(port)], env=env,
                                stdout=subprocess.DEVNULL, stderr=err)
    base = f"http://127.0.0.1:{port}"
    _wait_http(f"{base}/healthz", proc, log)
    return proc, base


def test_two_servers_share_one_budget_through_redis(dsn: str, redis_url: str, tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.json"
    tokens.write_text(json.dumps([{"subject": "shared", "sha256": hashlib.sha256(TOKEN.encode()).hexdigest(),
                                   "scopes": ["read"]}]))
    extra = {"PGCODE_AUTH_TOKENS": str(tokens), "PGCODE_REDIS_URL": redis_url, "PGCODE_RATE_LIMIT_READ": "4/minute"}
    a, base_a = _serve(dsn, extra, tmp_path, "a")
    b, base_b = _serve(dsn, extra, tmp_path, "b")
    try:
        headers = {"Authorization": f"Bearer {TOKEN}"}
        statuses = [httpx2.post(f"{base}/v1/tools/pg_read_query", json={"sql": "SELECT 1"}, headers=headers).status_code
                    for base in (base_a, base_b, base_a, base_b, base_a, base_b)]
        assert statuses == [200, 200, 200, 200, 429, 429]
    finally:
        for proc in (a, b):
            proc.terminate()
            proc.wait(timeout=10)


def test_serve_refuses_a_public_address_without_auth(dsn: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PGCODE_AUTH")}
    env["PGCODE_DATABASE_URL"] = dsn
    out = subprocess.run([sys.executable, "-m", "pgcode", "serve", "--host", "0.0.0.0", "--port", str(_free_port())],
                         env=env, capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 2
    assert "without authentication" in out.stderr and "--insecure" in out.stderr
