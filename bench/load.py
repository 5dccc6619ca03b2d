"""Load and faults: mixed calls over REST, MCP and code mode while PostgreSQL restarts and one principal floods.

Usage: .venv/bin/python bench/load.py [--calls 10000] [--clients 32]
Starts its own throwaway PostgreSQL cluster (never the shared test cluster) and a `pgcode serve` on loopback,
runs the calls from three principals (read, write, admin scopes), restarts the cluster (pg_ctl restart -m fast)
once and floods slow queries from the reading principal for a window, then checks that nothing was lost.
Prints latency and throughput per phase and one line per invariant, writes bench/results/load.json, and exits 1
when an invariant fails.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import random
import re
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

import httpx2
import psycopg
from _cluster import Cluster, throwaway_cluster
from _load_checks import (
    POOL_SIZE,
    Call,
    Run,
    Write,
    examine,
    phases,
)
from _serve import Server, serving

DATABASE = "pgcode_load"
STATEMENT_TIMEOUT_MS = 2000
SLEEP_S = 1.0  # the flood's pg_sleep: under the statement timeout
FLOOD_CLIENTS = 12  # more than the reader's fair share of the pool (pool size - 2)
UNLIMITED = "100000000/minute"
PRINCIPALS = {"reader": "read", "writer": "write", "admin": "admin"}

# When each fault happens, as a share of the calls issued.
WARMED_UP_AT = 0.15
FLOOD = (0.15, 0.35)
RESTART_AT = 0.55

INSERT = "INSERT INTO load_writes (id, via) VALUES ($1, $2)"
READ = {"sql": "SELECT count(*) AS n, max(at) AS last FROM load_writes"}
# Each execution's reads bind its id, so its audit rows can be told apart from every other execution's.
TAGGED_COUNT = "{sql: 'SELECT count(*) AS n, $1::text AS execution FROM load_writes', params: [input.id]}"
CODE_READ = (f"const a = await pg.core.readQuery({TAGGED_COUNT});"
             " const b = await pg.core.readQuery({sql: 'SELECT 1 AS one, $1::text AS execution', params: [input.id]});"
             " return [a.rows[0].n, b.rows[0].one]")
# The write comes last: when the execution fails, its write either failed too or never started.
CODE_WRITE = (f"const seen = await pg.core.readQuery({TAGGED_COUNT});"
              " await pg.core.writeQuery({sql: 'INSERT INTO load_writes (id, via) VALUES ($1, $2)',"
              " params: [input.id, input.via]}); return seen.rows[0].n")

# (kind, weight): what each client picks, call after call.
MIX = [("rest_read", 20), ("mcp_read", 14), ("rest_write", 14), ("mcp_write", 10), ("held_write", 8),
       ("rest_code_read", 10), ("mcp_code_read", 6), ("rest_code_write", 9), ("mcp_code_write", 9)]

XID_IN_HINT = re.compile(r"pg_xact_status\('(\d+)'\)")


class Load:
    """The clients: each picks a kind of call, makes it, and records what came back."""

    def __init__(self, server: Server, tokens: dict[str, str], cluster: Cluster, calls: int, seed: int) -> None:
        self.server = server
        self.cluster = cluster
        self.target = calls
        self.issued = 0
        self.run = Run()
        self.rng = random.Random(seed)
        self.t0 = time.monotonic()
        self.flooding = asyncio.Event()
        self.http = {name: httpx2.AsyncClient(base_url=server.base, timeout=120,
                                              headers={"Authorization": f"Bearer {token}"},
                                              limits=httpx2.Limits(max_connections=64, max_keepalive_connections=64))
                     for name, token in tokens.items()}
        kinds, weights = zip(*MIX, strict=True)
        self.kinds, self.weights = list(kinds), list(weights)
        self._restart: asyncio.Task[None] | None = None

    def now(self) -> float:
        return time.monotonic() - self.t0

    async def close(self) -> None:
        for client in self.http.values():
            await client.aclose()

    # --- one request ------------------------------------------------------------------------------------------

    async def request(self, kind: str, principal: str, face: str, tool: str, args: dict[str, Any],
                      *, flood: bool = False) -> Call:
        call = Call(kind, principal, tool, self.now(), flood=flood)
        if tool == "pg_execute_code":
            call.execution = args["input"]["id"]
        http = self.http[principal]
        try:
            if face == "mcp":
                body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": tool, "arguments": args}}
                resp = await http.post("/mcp", json=body, headers={"Accept": "application/json, text/event-stream"})
            elif tool == "pg_execute_code":
                resp = await http.post("/v1/execute", json=args)
            else:
                resp = await http.post(f"/v1/tools/{tool}", json=args)
        except httpx2.HTTPError as exc:
            call.ended = self.now()
            call.error = {"code": "TRANSPORT", "message": f"{type(exc).__name__}: {exc}"}
            self.run.transport_errors.append(call.error["message"])
            self.run.calls.append(call)
            return call
        call.ended = self.now()
        call.status = resp.status_code
        data = _mcp_result(resp.text) if face == "mcp" and resp.status_code == 200 else _json(resp.text)
        _judge(call, face, data)
        self.run.calls.append(call)
        return call

    # --- the kinds of call ------------------------------------------------------------------------------------

    async def one(self, kind: str) -> None:
        face = kind.split("_")[0]
        if kind.endswith("code_read"):
            await self.request(kind, "admin", face, "pg_execute_code",
                               {"code": CODE_READ, "readonly": True, "input": {"id": uuid.uuid4().hex}})
        elif kind.endswith("code_write"):
            await self.write(kind, face, "pg_execute_code", lambda i: {"code": CODE_WRITE,
                                                                       "input": {"id": i, "via": kind}})
        elif kind.endswith("_read"):
            await self.request(kind, "reader", face, "pg_read_query", READ)
        elif kind == "held_write":
            await self.held_write()
        else:
            await self.write(kind, face, "pg_write_query", lambda i: {"sql": INSERT, "params": [i, kind]})

    async def write(self, kind: str, face: str, tool: str, make_args: Any) -> None:
        wid = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        principal = "admin" if tool == "pg_execute_code" else "writer"
        call = await self.request(kind, principal, face, tool, make_args(wid))
        self.run.writes.append(_write_outcome(wid, kind, call))

    async def held_write(self) -> None:
        """Begin, insert, commit: three REST calls on one held transaction."""
        wid = str(uuid.UUID(int=self.rng.getrandbits(128), version=4))
        begin = await self.request("held_begin", "writer", "rest", "pg_transaction_begin", {})
        if not begin.ok:
            self.run.writes.append(_write_outcome(wid, "held_write", begin))
            return
        tx_id = begin.transaction_id
        args = {"transactionId": tx_id, "statements": [{"sql": INSERT, "params": [wid, "held_write"]}]}
        step = await self.request("held_execute", "writer", "rest", "pg_transaction_execute", args)
        if step.ok:
            step = await self.request("held_commit", "writer", "rest", "pg_transaction_commit",
                                      {"transactionId": tx_id})
        else:  # a failed statement ended the transaction already; a lost connection left it to be ended
            await self.request("held_rollback", "writer", "rest", "pg_transaction_rollback",
                               {"transactionId": tx_id})
        self.run.writes.append(_write_outcome(wid, "held_write", step))

    # --- clients, the flood, the restart ----------------------------------------------------------------------

    async def client(self) -> None:
        while self.issued < self.target:
            kind = self.rng.choices(self.kinds, self.weights)[0]
            self.issued += 3 if kind == "held_write" else 1
            self.milestones()
            await self.one(kind)

    def milestones(self) -> None:
        share = self.issued / self.target
        marks = self.run.marks
        if share >= WARMED_UP_AT and "warmed_up" not in marks:
            marks["warmed_up"] = self.now()
            self.run.rss_kb["after_warmup"] = self.server.rss_kb()
        if FLOOD[0] <= share < FLOOD[1] and "flood_start" not in marks:
            marks["flood_start"] = self.now()
            self.flooding.set()
        if share >= FLOOD[1] and self.flooding.is_set():
            marks["flood_end"] = self.now()
            self.flooding.clear()
        if share >= RESTART_AT and self._restart is None:
            self._restart = asyncio.create_task(self.restart())

    async def restart(self) -> None:
        self.run.marks["restart_begin"] = self.now()
        self.run.restart_s = await asyncio.to_thread(self.cluster.restart)
        self.run.marks["restart_done"] = self.now()

    async def flooder(self) -> None:
        await self.flooding.wait()
        while self.flooding.is_set():
            await self.request("flood", "reader", "rest", "pg_read_query", {"sql": f"SELECT pg_sleep({SLEEP_S})"},
                               flood=True)

    async def go(self, clients: int) -> Run:
        floods = [asyncio.create_task(self.flooder()) for _ in range(FLOOD_CLIENTS)]
        await asyncio.gather(*(self.client() for _ in range(clients)))
        self.flooding.set()  # a run too short to reach the flood window still ends its flooders
        self.flooding.clear()
        for task in floods:
            task.cancel()
        await asyncio.gather(*floods, return_exceptions=True)
        if self._restart is not None:
            await self._restart
        self.run.marks["end"] = self.now()
        return self.run


def _json(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return None


def _mcp_result(text: str) -> Any:
    """The JSON-RPC response of a Streamable HTTP answer: plain JSON, or the SSE `data:` line that answers the
    request. Notifications may come first in the stream (a PostgreSQL warning as a log message during a
    restart): they are not the answer. None when the stream holds no response."""
    messages = [_json(line[5:].strip()) for line in text.splitlines() if line.startswith("data:")] or [_json(text)]
    return next((m for m in messages if isinstance(m, dict) and ("result" in m or "error" in m)), None)


def _judge(call: Call, face: str, data: Any) -> None:
    """Success or the typed error, from the body each face answers with."""
    if face == "mcp" and call.status == 200:
        if not isinstance(data, dict):
            call.error = {"code": "UNTYPED", "message": "the MCP answer holds no JSON-RPC response"}
            return
        if "error" in data:  # a JSON-RPC error: never expected for a known tool
            call.error = {"code": "JSONRPC", "message": str(data["error"])}
            return
        result = data.get("result") or {}
        content = result.get("structuredContent")
        if result.get("isError"):
            text = (result.get("content") or [{}])[0].get("text", "")
            parsed = _json(text)
            call.error = parsed.get("error", parsed) if isinstance(parsed, dict) else {"code": "UNTYPED",
                                                                                      "message": text}
            call.host_calls = _tool_calls(parsed) if call.tool == "pg_execute_code" else None
            return
        data = content
    if call.status != 200:
        body = data.get("error") if isinstance(data, dict) else None
        call.error = body if isinstance(body, dict) and "code" in body else {"code": "UNTYPED",
                                                                            "message": str(data)[:300]}
        return
    if call.tool == "pg_execute_code":  # acknowledged only on an output that says it succeeded
        if not isinstance(data, dict):
            call.error = {"code": "UNTYPED", "message": "an execution answered without its output object"}
            return
        call.host_calls = _tool_calls(data)
        if not data.get("success"):
            call.error = data.get("error") or {"code": "UNTYPED", "message": "no error in a failed execution"}
            return
    call.ok = True
    if call.tool == "pg_transaction_begin" and isinstance(data, dict):
        call.transaction_id = data.get("transactionId")


def _tool_calls(answer: Any) -> int | None:
    """How many tool calls an execution made, from its answer's metrics; None when it has none."""
    metrics = answer.get("metrics") if isinstance(answer, dict) else None
    calls = metrics.get("toolCalls") if isinstance(metrics, dict) else None
    return calls if isinstance(calls, int) else None


def _xid(error: dict[str, Any]) -> str | None:
    xid = (error.get("details") or {}).get("transactionId")
    if xid:
        return str(xid)
    found = XID_IN_HINT.search(str(error.get("hint") or ""))  # code mode passes the hint, not the details
    return found.group(1) if found else None


def _write_outcome(wid: str, via: str, call: Call) -> Write:
    if call.ok:
        return Write(wid, via, "acknowledged")
    code = (call.error or {}).get("code")
    if code == "IN_DOUBT":
        return Write(wid, via, "in_doubt", code, _xid(call.error or {}))
    return Write(wid, via, "failed", code)


# --- what must hold afterwards --------------------------------------------------------------------------------


# --- the whole run --------------------------------------------------------------------------------------------


async def prepare(dsn: str) -> str:
    """pgcode's database with the table the writes go to; returns its URL."""
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        await conn.execute(f"CREATE DATABASE {DATABASE}")
    url = dsn.rsplit("/", 1)[0] + f"/{DATABASE}"
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE load_writes (id uuid PRIMARY KEY, via text NOT NULL, "
                           "at timestamptz NOT NULL DEFAULT clock_timestamp())")
    return url


def server_env(url: str, workdir: Path) -> tuple[dict[str, str], dict[str, str]]:
    tokens = {name: f"load-{name}-{uuid.uuid4().hex}" for name in PRINCIPALS}
    token_file = workdir / "tokens.json"
    token_file.write_text(json.dumps([{"subject": name, "sha256": hashlib.sha256(tokens[name].encode()).hexdigest(),
                                       "scopes": [scope]} for name, scope in PRINCIPALS.items()]))
    env = {"PGCODE_DATABASE_URL": url, "PGCODE_AUTH_TOKENS": str(token_file),
           "PGCODE_STATEMENT_TIMEOUT_MS": str(STATEMENT_TIMEOUT_MS), "PGCODE_POOL_MAX_SIZE": str(POOL_SIZE),
           **{f"PGCODE_RATE_LIMIT_{kind}": UNLIMITED for kind in ("READ", "WRITE", "ADMIN", "CODE")}}
    return env, tokens


async def run_load(calls: int = 10_000, clients: int = 32, seed: int = 17) -> dict[str, Any]:
    """The whole benchmark: cluster, server, load with faults, invariants. Returns what it found."""
    with tempfile.TemporaryDirectory(prefix="pgcode-load-run-") as tmp, throwaway_cluster() as cluster:
        url = await prepare(cluster.dsn)
        env, tokens = server_env(url, Path(tmp))
        with serving(env, Path(tmp) / "server.log") as server:
            load = Load(server, tokens, cluster, calls, seed)
            try:
                run = await load.go(clients)
            finally:
                await load.close()
            invariants, facts = await examine(run, server, url, tokens)
            log_excerpt = [line for line in server.log.read_text().splitlines()
                           if "WARNING" in line or "ERROR" in line or "Traceback" in line][:50]
        writes = Counter(w.outcome for w in run.writes)
        return {"calls": calls, "clients": clients, "requests": len(run.calls),
                "flood_requests": sum(1 for c in run.calls if c.flood), "seconds": round(run.marks["end"], 3),
                "restart_s": round(run.restart_s, 3), "marks": {k: round(v, 3) for k, v in run.marks.items()},
                "phases": phases(run), "writes": dict(writes), "rss_kb": run.rss_kb, **facts,
                "invariants": [asdict(i) for i in invariants], "passed": all(i.passed for i in invariants),
                "server_log_warnings": log_excerpt}


def report(res: dict[str, Any]) -> None:
    print(f"{res['requests']} requests ({res['flood_requests']} of them the flood) from {res['clients']} clients "
          f"in {res['seconds']:.1f} s; restart took {res['restart_s']:.2f} s; writes {res['writes']}")
    for name, p in res["phases"].items():
        print(f"  {name:<15} {p['calls']:6d} calls {p['seconds']:6.1f} s  p50 {p['p50_ms']:7.1f} ms  "
              f"p99 {p['p99_ms']:7.1f} ms  {p['calls_per_s']:7.1f} calls/s  {p['failed']} failed")
    print(f"  failures by tool and code: {res['failures_by_code']}")
    for inv in res["invariants"]:
        print(f"{'PASS' if inv['passed'] else 'FAIL'}  {inv['name']}: {inv['detail']}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--seed", type=int, default=17)
    ns = parser.parse_args()
    res = asyncio.run(run_load(ns.calls, ns.clients, ns.seed))
    report(res)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "load.json").write_text(json.dumps(res, indent=2))
    return 0 if res["passed"] else 1


if __name__ == "__main__":
    sys.exit(main())
