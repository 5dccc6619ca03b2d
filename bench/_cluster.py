"""A throwaway PostgreSQL cluster on a free loopback port, for benchmarks that restart their database."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from _timing import free_port

OS_USER = "postgres"
"""initdb and the server refuse to run as root: as root, they run as this user (as scripts/test-postgres.sh does)."""

# Small, and fast where that costs nothing here: fsync off loses data only when the machine itself crashes. A
# fast shutdown (pg_ctl restart -m fast) is clean: it writes every committed transaction out before it stops,
# so "every acknowledged write is there after the restart" is tested as it would be with fsync on.
# synchronous_commit stays on: a COMMIT is acknowledged only once its WAL is written.
SETTINGS = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{dir}'
max_connections = 100
shared_buffers = 32MB
fsync = off
full_page_writes = off
log_min_messages = warning
"""


def bindir() -> Path | None:
    """Where initdb and pg_ctl are: `pg_config --bindir`, else Debian's PostgreSQL 15; None when absent."""
    candidates = []
    if shutil.which("pg_config"):
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0:
            candidates.append(Path(out.stdout.strip()))
    candidates.append(Path("/usr/lib/postgresql/15/bin"))
    for path in candidates:
        if (path / "initdb").exists() and (path / "pg_ctl").exists():
            return path
    return None


def missing_reason() -> str | None:
    """Why a throwaway cluster cannot be made here, or None."""
    if bindir() is None:
        return "initdb and pg_ctl are not installed (scripts/test.sh installs PostgreSQL 15)"
    if os.geteuid() == 0:
        try:
            import pwd
            pwd.getpwnam(OS_USER)
        except KeyError:
            return f"running as root and there is no {OS_USER!r} user to run PostgreSQL as"
    return None


class Cluster:
    """initdb into a temporary directory, start, restart (fast) and stop; the directory goes with it."""

    def __init__(self, root: Path, bin_path: Path, port: int) -> None:
        self.root = root
        self.data = root / "data"
        self.log = root / "server.log"
        self.port = port
        self._bin = bin_path

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str) -> None:
        cmd = [str(self._bin / args[0]), *args[1:]]
        if os.geteuid() == 0:
            cmd = ["runuser", "-u", OS_USER, "--", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
        if out.returncode != 0:
            tail = self.log.read_text()[-2000:] if self.log.exists() else ""
            raise RuntimeError(f"{args[0]} {args[1] if len(args) > 1 else ''} failed: {out.stderr.strip()}\n{tail}")

    def init(self) -> None:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "--encoding=UTF8",
                  "--locale=C.UTF-8", "--no-sync")
        with (self.data / "postgresql.conf").open("a") as conf:
            conf.write(SETTINGS.format(port=self.port, dir=self.root))

    def start(self) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60", "start")

    def restart(self) -> float:
        """pg_ctl restart -m fast, waiting until the server accepts connections again; its wall time in s."""
        t0 = time.monotonic()
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-m", "fast", "-w", "-t", "60", "restart")
        return time.monotonic() - t0

    def stop(self) -> None:
        if (self.data / "postmaster.pid").exists():
            self._run("pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "-t", "60", "stop")


@contextmanager
def throwaway_cluster() -> Iterator[Cluster]:
    """A started cluster; stopped and removed afterwards, also when the caller fails."""
    bin_path = bindir()
    if bin_path is None:
        raise RuntimeError(missing_reason() or "no PostgreSQL binaries")
    root = Path(tempfile.mkdtemp(prefix="pgcode-load-"))
    try:
        if os.geteuid() == 0:
            shutil.chown(root, OS_USER, OS_USER)
        cluster = Cluster(root, bin_path, free_port())
        cluster.init()
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()
    finally:
        shutil.rmtree(root, ignore_errors=True)
