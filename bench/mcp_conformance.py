"""Run the official MCP conformance suite (@modelcontextprotocol/conformance 0.1.16) against `pgcode serve`.

Usage: TEST_DATABASE_URL=... .venv/bin/python bench/mcp_conformance.py
The suite needs Node 22; it and the suite are installed once with npm (the `node` package at 22.x) into
$PGCODE_CONFORMANCE_DIR (default ~/.cache/pgcode/mcp-conformance). Every scenario of the suite runs ("all", pending
ones included). Many call the SDK's fixture server's own tools, resources and prompts (test_*, test://...), which
pgcode does not have: those failures are counted apart. Prints one line and writes
bench/results/mcp_conformance.json with each scenario's checks.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx2
from _timing import free_port

SUITE = "@modelcontextprotocol/conformance@0.1.16"
NODE = "node@22"
# Names the SDK's fixture server defines and a real server does not have.
FIXTURE_MARKS = ("test_", "test://", "json_schema_2020_12_tool")
NOT_OFFERED = "Method not found"  # a method whose capability the server does not advertise (resources.subscribe)


def _tools_dir() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "pgcode" / "mcp-conformance"
    root = Path(os.environ.get("PGCODE_CONFORMANCE_DIR") or default)
    if not (root / "node_modules" / ".bin" / "conformance").exists():
        root.mkdir(parents=True, exist_ok=True)
        subprocess.run(["npm", "install", "--prefix", str(root), "--no-audit", "--no-fund", NODE, SUITE],
                       check=True, stdout=subprocess.DEVNULL)
    return root / "node_modules" / ".bin"


def _serve(dsn: str, port: int) -> subprocess.Popen[bytes]:
    env = {**os.environ, "PGCODE_DATABASE_URL": dsn}
    server = subprocess.Popen([sys.executable, "-m", "pgcode", "serve", "--port", str(port)], env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(300):
        try:
            if httpx2.get(f"http://127.0.0.1:{port}/healthz").status_code == 200:
                return server
        except httpx2.HTTPError:
            pass
        time.sleep(0.1)
    server.kill()
    raise SystemExit("pgcode serve did not answer /healthz within 30 s")


def _scenarios(out: Path) -> dict[str, dict[str, Any]]:
    results: dict[str, dict[str, Any]] = {}
    for checks_file in sorted(out.glob("server-*/checks.json")):
        name = re.sub(r"-\d{4}-\d{2}-\d{2}T.*$", "", checks_file.parent.name.removeprefix("server-"))
        checks = json.loads(checks_file.read_text())
        failed = [c for c in checks if c["status"] == "FAILURE"]
        errors = [c.get("errorMessage", "")[:300] for c in failed]
        outcome = "pass"
        if errors and all(any(mark in e for mark in FIXTURE_MARKS) for e in errors):
            outcome = "fixture-only"
        elif errors and all(NOT_OFFERED in e for e in errors):
            outcome = "not-offered"
        elif failed:
            outcome = "fail"
        elif not any(c["status"] == "SUCCESS" for c in checks):
            outcome = "warnings-only"  # nothing asserted: e.g. SSE resumption checks on a stateless server
        results[name] = {
            "outcome": outcome, "passed": sum(c["status"] == "SUCCESS" for c in checks), "failed": len(failed),
            "errors": errors, "warnings": [c.get("errorMessage") or c.get("description") for c in checks
                                           if c["status"] == "WARNING"]}
    return results


def main() -> dict[str, Any]:
    dsn = os.environ.get("PGCODE_DATABASE_URL") or os.environ["TEST_DATABASE_URL"]
    bin_dir = _tools_dir()
    env = {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"}
    node = subprocess.run(["node", "--version"], env=env, capture_output=True, text=True, check=True).stdout.strip()
    port = free_port()
    server = _serve(dsn, port)
    try:
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(["conformance", "server", "--url", f"http://127.0.0.1:{port}/mcp", "--suite", "all",
                            "-o", tmp], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           timeout=900, check=False)
            scenarios = _scenarios(Path(tmp))
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {"suite": SUITE, "node": node, "scenarios": scenarios}


if __name__ == "__main__":
    report = main()
    out = Path(__file__).parent / "results" / "mcp_conformance.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    by = {k: sorted(n for n, s in report["scenarios"].items() if s["outcome"] == k)
          for k in ("pass", "warnings-only", "fixture-only", "not-offered", "fail")}
    print(f"{report['suite']} on node {report['node']}: {len(by['pass'])} scenarios pass, "
          f"{len(by['warnings-only'])} only warn ({', '.join(by['warnings-only']) or 'none'}), "
          f"{len(by['fixture-only'])} need the SDK fixture server's test_* tools/resources/prompts, "
          f"{len(by['not-offered'])} test what pgcode does not offer ({', '.join(by['not-offered']) or 'none'}), "
          f"{len(by['fail'])} fail ({', '.join(by['fail']) or 'none'})")
