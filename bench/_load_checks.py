"""The load bench's records and its invariants: what a run saw, and whether nothing was lost.

Used by bench/load.py (and, through it, tests/test_load_faults.py).
"""

from __future__ import annotations

import asyncio
import re
import statistics
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx2
import psycopg
from _serve import Server

POOL_SIZE = 10  # pgcode's default PGCODE_POOL_MAX_SIZE, stated so the leak check knows it
RECOVERY_LIMIT_S = 2.0
RSS_GROWTH_LIMIT = 0.10

# Failures a fault may cause, each typed: the database restarted (CONNECTION_FAILED, or SQL_ERROR with a
# connection SQLSTATE), a wait for a pool share ran out (BUSY), a statement ran too long (TIMEOUT), a COMMIT's
# outcome is unknown (IN_DOUBT), and the cap on held transactions per caller (CONFLICT, from begin only).
EXPECTED_CODES = {"CONNECTION_FAILED", "BUSY", "TIMEOUT", "IN_DOUBT"}
CONNECTION_SQLSTATE = re.compile(r"^(08...|57P0[123])$")


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
    host_calls: int | None = None  # calls a code execution made, as its answer's metrics say (None: no metrics)
    execution: str | None = None  # the id a code execution binds in each of its calls, to find their audit rows
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
        per_execution = Counter({e: n for e, n in await (await conn.execute(
            "SELECT arguments->'params'->>0, count(*) FROM pgcode.audit_log "
            "WHERE principal = 'static:admin' AND tool <> 'pg_execute_code' GROUP BY 1")).fetchall()})
        resolved = {}
        for w in run.writes:
            if w.outcome == "in_doubt" and w.xid:
                row = await (await conn.execute("SELECT pg_xact_status(%s::xid8)", (w.xid,))).fetchone()
                resolved[w.id] = row[0] if row else None

    acknowledged = [w for w in run.writes if w.outcome == "acknowledged"]
    lost = [f"{w.id} ({w.via})" for w in acknowledged if w.id not in present]
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
    host_calls = sum(c.host_calls or 0 for c in run.calls)
    audited_host = sum(n for (p, t), n in audit.items() if p == "static:admin" and t != "pg_execute_code")
    missing = {f"{p} {t}": expected[(p, t)] - audit[(p, t)] for p, t in expected if audit[(p, t)] != expected[(p, t)]}
    # An execution answered with its metrics says how many calls it made: their audit rows must be that many. One
    # answered with an HTTP error (or not at all) says nothing, so its rows are only shown.
    executions = [c for c in run.calls if c.execution]
    differ = [f"{c.execution[:8]} ({c.status}, {(c.error or {}).get('code')}): {c.host_calls} calls, "
              f"{per_execution[c.execution]} rows" for c in executions
              if c.host_calls is not None and c.host_calls != per_execution[c.execution]]
    unanswered = {c.execution: per_execution[c.execution] for c in executions if c.host_calls is None
                  and per_execution[c.execution]}
    untagged = audited_host - sum(per_execution[c.execution] for c in executions)  # rows of no execution of ours
    if unanswered:
        facts["audit_rows_of_executions_without_metrics"] = unanswered
    inv.append(Invariant("an audit row for every call", not missing and not differ and not untagged,
                         f"{sum(expected.values())} calls, {sum(audit[k] for k in expected)} audit rows"
                         f"; {host_calls} code-mode host calls, {audited_host} audit rows"
                         + (f"; differences (calls - rows): {missing}" if missing else "")
                         + (f"; executions whose rows differ: {differ[:5]}" if differ else "")
                         + (f"; {untagged} rows of no execution" if untagged else "")
                         + (f"; {len(unanswered)} executions answered without metrics have "
                            f"{sum(unanswered.values())} rows" if unanswered else "")))

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
