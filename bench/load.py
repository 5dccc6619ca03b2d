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
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx2
import psycopg
from _cluster import Cluster, throwaway_cluster
from _serve import Server, serving

DATABASE = "pgcode_load"
POOL_SIZE = 10  # pgcode's default PGCODE_POOL_MAX_SIZE, stated so the leak check knows it
STATEMENT_TIMEOUT_MS = 2000
SLEEP_S = 1.0  # the flood's pg_sleep: under the statement timeout
FLOOD_CLIENTS = 12  # more than the reader's fair share of the pool (pool size - 2)
UNLIMITED = "100000000/minute"
PRINCIPALS = {"reader": "read", "writer": "write", "admin": "admin"}

# When each fault happens, as a share of the calls issued.
WARMED_UP_AT = 0.15
FLOOD = (0.15, 0.35)
RESTART_AT = 0.55
RECOVERY_LIMIT_S = 2.0
RSS_GROWTH_LIMIT = 0.10

INSERT = "INSERT INTO load_writes (id, via) VALUES ($1, $2)"
READ = {"sql": "SELECT count(*) AS n, max(at) AS last FROM load_writes"}
CODE_READ = ("const a = await pg.core.readQuery({sql: 'SELECT count(*) AS n FROM load_writes'});"
             " const b = await pg.core.readQuery({sql: 'SELECT 1 AS one'}); return [a.rows[0].n, b.rows[0].one]")
# The write comes last: when the execution fails, its write either failed too or never started.
CODE_WRITE = ("const seen = await pg.core.readQuery({sql: 'SELECT count(*) AS n FROM load_writes'});"
              " await pg.core.writeQuery({sql: 'INSERT INTO load_writes (id, via) VALUES ($1, $2)',"
              " params: [input.id, input.via]}); return seen.rows[0].n")

# (kind, weight): what each client picks, call after call.
MIX = [("rest_read", 20), ("mcp_read", 14), ("rest_write", 14), ("mcp_write", 10), ("held_write", 8),
       ("rest_code_read", 10), ("mcp_code_read", 6), ("rest_code_write", 9), ("mcp_code_write", 9)]

# Failures a fault may cause, each typed: the database restarted (CONNECTION_FAILED, or SQL_ERROR with a
# connection SQLSTATE), a wait for a pool share ran out (BUSY), a statement ran too long (TIMEOUT), a COMMIT's
# outcome is unknown (IN_DOUBT), and the cap on held transactions per caller (CONFLICT, from begin only).
EXPECTED_CODES = {"CONNECTION_FAILED", "BUSY", "TIMEOUT", "IN_DOUBT"}
CONNECTION_SQLSTATE = re.compile(r"^(08...|57P0[123])$")
XID_IN_HINT = re.compile(r"pg_xact_status\('(\d+)'\)")


@dataclass
class Call:
    kind: str
    principal: str
    tool: str
    started: float
    ended: float = 0.0
    status: int = 0
    ok: bool = False
    error: dict[str, Any] | None = None
    host_calls: int = 0  # calls a code execution made (each has its own audit row)
    transaction_id: str | None = None  # what pg_transaction_begin answered
    flood: bool = False


@dataclass
class Write:
    id: str
    via: str
    outcome: str  # acknowledged | failed | in_doubt
    error_code: str | None = None
    xid: str | None = None


@dataclass
class Run:
    calls: list[Call] = field(default_factory=list)
    writes: list[Write] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)
    rss_kb: dict[str, int] = field(default_factory=dict)
    restart_s: float = 0.0
    transport_errors: list[str] = field(default_factory=list)


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
            await self.request(kind, "admin", face, "pg_execute_code", {"code": CODE_READ, "readonly": True})
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
    """The JSON-RPC message of a Streamable HTTP answer (one SSE `data:` line, or plain JSON)."""
    for line in text.splitlines():
        if line.startswith("data:"):
            return _json(line[5:].strip())
    return _json(text)


def _judge(call: Call, face: str, data: Any) -> None:
    """Success or the typed error, from the body each face answers with."""
    if face == "mcp" and call.status == 200 and isinstance(data, dict):
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
            return
        data = content
    if call.status != 200:
        body = data.get("error") if isinstance(data, dict) else None
        call.error = body if isinstance(body, dict) and "code" in body else {"code": "UNTYPED",
                                                                            "message": str(data)[:300]}
        return
    if call.tool == "pg_execute_code" and isinstance(data, dict):
        call.host_calls = int((data.get("metrics") or {}).get("toolCalls") or 0)
        if not data.get("success"):
            call.error = data.get("error") or {"code": "UNTYPED", "message": "no error in a failed execution"}
            return
    call.ok = True
    if call.tool == "pg_transaction_begin" and isinstance(data, dict):
        call.transaction_id = data.get("transactionId")


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


@dataclass
class Invariant:
    name: str
    passed: bool
    detail: str


def typed(call: Call) -> bool:
    """Whether a failure is one a fault may cause, and says so with its code."""
    error = call.error or {}
    code = error.get("code")
    if call.status == 500 or code in (None, "INTERNAL", "UNTYPED", "TRANSPORT", "JSONRPC"):
        return False
    if code in EXPECTED_CODES:
        return True
    if code == "SQL_ERROR":
        return bool(CONNECTION_SQLSTATE.match(str((error.get("details") or {}).get("sqlstate") or "")))
    return code == "CONFLICT" and call.tool == "pg_transaction_begin"


async def examine(run: Run, server: Server, dsn: str, tokens: dict[str, str]) -> tuple[list[Invariant], dict[str, Any]]:
    """Check the invariants; the server is stopped on the way (its audit rows are flushed when it stops)."""
    facts: dict[str, Any] = {}
    inv: list[Invariant] = []
    mixed = [c for c in run.calls if not c.flood]
    failures = [c for c in run.calls if not c.ok]
    facts["failures_by_code"] = dict(Counter(f"{c.tool}:{(c.error or {}).get('code')}" for c in failures))

    status_500 = sum(1 for c in run.calls if c.status == 500)
    await asyncio.sleep(1.0)  # let the last calls hand back their connections
    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True, application_name="pgcode-load") as conn:
        rows = await (await conn.execute(
            "SELECT state, count(*) FROM pg_stat_activity WHERE application_name = 'pgcode' GROUP BY 1")).fetchall()
    sessions = {state or "none": n for state, n in rows}
    facts["pgcode_sessions_after"] = sessions
    idle_in_tx = sum(n for state, n in sessions.items() if state.startswith("idle in transaction"))
    inv.append(Invariant("no leaked connection", sum(sessions.values()) <= POOL_SIZE and idle_in_tx == 0,
                         f"{sum(sessions.values())} pgcode sessions (pool size {POOL_SIZE}), "
                         f"{idle_in_tx} idle in transaction"))

    run.rss_kb["after_run"] = server.rss_kb()
    base, last = run.rss_kb.get("after_warmup", 0), run.rss_kb["after_run"]
    growth = (last - base) / base if base else 0.0
    inv.append(Invariant("server RSS within 10 % of its level after warm-up", growth <= RSS_GROWTH_LIMIT,
                         f"{base / 1024:.1f} MB after warm-up, {last / 1024:.1f} MB after the run ({growth:+.1%})"))

    health = httpx2.get(f"{server.base}/healthz", headers={"Authorization": f"Bearer {tokens['admin']}"}).json()
    facts["audit_writer"] = health.get("audit")
    server.stop()
    log = server.log.read_text()
    tracebacks = log.count("Traceback")
    inv.append(Invariant("no HTTP 500, no traceback in the server log", status_500 == 0 and tracebacks == 0,
                         f"{status_500} answers with status 500, {tracebacks} tracebacks in the log"))
    untyped = [c for c in failures if not typed(c)]
    examples = "; ".join(f"{c.tool} {c.status} {c.error}" for c in untyped[:5])
    inv.append(Invariant("every failure typed", not untyped,
                         f"{len(failures)} failures, {len(untyped)} untyped" + (f": {examples}" if untyped else "")))
    if run.transport_errors:
        facts["transport_errors"] = run.transport_errors[:10]

    async with await psycopg.AsyncConnection.connect(dsn, autocommit=True) as conn:
        present = {str(r[0]) for r in await (await conn.execute("SELECT id FROM load_writes")).fetchall()}
        audit = Counter({(p, t): n for p, t, n in await (await conn.execute(
            "SELECT principal, tool, count(*) FROM pgcode.audit_log GROUP BY 1, 2")).fetchall()})
        resolved = {}
        for w in run.writes:
            if w.outcome == "in_doubt" and w.xid:
                row = await (await conn.execute("SELECT pg_xact_status(%s::xid8)", (w.xid,))).fetchone()
                resolved[w.id] = row[0] if row else None

    acknowledged = [w for w in run.writes if w.outcome == "acknowledged"]
    lost = [w.id for w in acknowledged if w.id not in present]
    inv.append(Invariant("every acknowledged write present", not lost,
                         f"{len(acknowledged)} acknowledged, {len(lost)} missing" + (f": {lost[:5]}" if lost else "")))
    failed = [w for w in run.writes if w.outcome == "failed"]
    ghosts = [f"{w.id} ({w.via}, {w.error_code})" for w in failed if w.id in present]
    inv.append(Invariant("every write that failed before COMMIT absent", not ghosts,
                         f"{len(failed)} failed, {len(ghosts)} present anyway" + (f": {ghosts[:5]}" if ghosts else "")))
    doubts = [w for w in run.writes if w.outcome == "in_doubt"]
    wrong = [w for w in doubts if w.xid is None or resolved.get(w.id) is None
             or (resolved[w.id] == "committed") != (w.id in present)]
    facts["in_doubt"] = [{"id": w.id, "via": w.via, "xid": w.xid, "pg_xact_status": resolved.get(w.id),
                          "present": w.id in present} for w in doubts]
    statuses = ", ".join(f"xid {w.xid}: {resolved.get(w.id)}" for w in doubts[:5])
    inv.append(Invariant("every IN_DOUBT write names its transaction, and pg_xact_status matches the table",
                         not wrong, f"{len(doubts)} in doubt ({statuses}), {len(wrong)} wrong"))

    expected: Counter[tuple[str, str]] = Counter((f"static:{c.principal}", c.tool) for c in run.calls
                                                 if c.status)  # every answered request went through invoke()
    host_calls = sum(c.host_calls for c in run.calls)
    audited_host = sum(n for (p, t), n in audit.items() if p == "static:admin" and t != "pg_execute_code")
    missing = {f"{p} {t}": expected[(p, t)] - audit[(p, t)] for p, t in expected if audit[(p, t)] != expected[(p, t)]}
    inv.append(Invariant("an audit row for every call", not missing and audited_host == host_calls,
                         f"{sum(expected.values())} calls, {sum(audit[k] for k in expected)} audit rows"
                         f"; {host_calls} code-mode host calls, {audited_host} audit rows"
                         + (f"; differences (calls - rows): {missing}" if missing else "")))

    done = run.marks.get("restart_done")
    after = sorted(c.ended for c in mixed if done is not None and c.ok and c.started >= done)
    recovery = after[0] - done if after and done is not None else None
    late = [c for c in mixed if done is not None and c.started >= done + RECOVERY_LIMIT_S and not c.ok
            and (c.error or {}).get("code") in ("CONNECTION_FAILED", "IN_DOUBT", "SQL_ERROR")]
    facts["recovery_s"] = recovery
    inv.append(Invariant("pool back to normal within 2 s of the restart",
                         recovery is not None and recovery <= RECOVERY_LIMIT_S and not late,
                         f"first success {recovery if recovery is None else round(recovery, 3)} s after the "
                         f"restart; {len(late)} connection failures later than {RECOVERY_LIMIT_S:g} s"))
    return inv, facts


def phases(run: Run) -> dict[str, dict[str, float]]:
    """p50/p99 latency (ms) and throughput (calls/s) of the mixed calls, by when they started."""
    m = run.marks
    restart_end = m.get("restart_done", m["end"]) + RECOVERY_LIMIT_S
    bounds = {"warm-up": (0.0, m.get("flood_start", m.get("warmed_up", 0.0))),
              "flood": (m.get("flood_start", 0.0), m.get("flood_end", m.get("flood_start", 0.0))),
              "before restart": (m.get("flood_end", 0.0), m.get("restart_begin", m["end"])),
              "during restart": (m.get("restart_begin", m["end"]), min(restart_end, m["end"])),
              "after restart": (min(restart_end, m["end"]), m["end"])}
    out = {}
    for name, (lo, hi) in bounds.items():
        lat = [(c.ended - c.started) * 1000 for c in run.calls if not c.flood and lo <= c.started < hi]
        if not lat or hi <= lo:
            continue
        q = statistics.quantiles(lat, n=100, method="inclusive") if len(lat) > 1 else lat * 99
        out[name] = {"calls": len(lat), "seconds": round(hi - lo, 3), "p50_ms": round(q[49], 2),
                     "p99_ms": round(q[98], 2), "calls_per_s": round(len(lat) / (hi - lo), 1),
                     "failed": sum(1 for c in run.calls if not c.flood and lo <= c.started < hi and not c.ok)}
    return out


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
