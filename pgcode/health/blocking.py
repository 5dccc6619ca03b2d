"""Blocking chains: who waits on whom (pg_blocking_pids), down to the root blocker, and how to release it."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from pgcode.core.context import Row, ToolContext
from pgcode.db.queries import load_query

_WAITSTART = 140000  # pg_locks.waitstart (when a lock wait began) arrived in PostgreSQL 14


async def blocking_chains(ctx: ToolContext, query_length: int = 300) -> list[dict[str, Any]]:
    """One entry per root blocker (a session, or a prepared transaction, that blocks others and waits on no one),
    longest wait first: the root, every session waiting behind it (directly or through others) with its
    depth and wait, and the guarded command that releases it."""
    wait_start = sql.SQL("(SELECT min(l.waitstart) FROM pg_locks l WHERE l.pid = a.pid AND NOT l.granted)"
                         if ctx.server_version >= _WAITSTART else "NULL::timestamptz")
    rows = await ctx.fetch(load_query("health_blocking").format(wait_start=wait_start), {"qlen": query_length})
    sessions = {r["pid"]: r for r in rows}
    chains: dict[int, dict[str, Any]] = {}
    for r in rows:
        if not r["blocked_by"]:
            continue
        path = _path_to_root(r["pid"], sessions)
        root = path[-1]
        chain = chains.setdefault(root, {"root_pid": root, "root": _root(root, sessions), "blocked": []})
        chain["blocked"].append({
            "pid": r["pid"], "database": r["database"], "usename": r["usename"],
            "application_name": r["application_name"], "waiting_seconds": _num(r["waiting_seconds"]),
            "blocked_by": r["blocked_by"], "depth": len(path) - 1, "chain": path, "query": r["query"]})
    out = []
    for chain in chains.values():
        chain["blocked"].sort(key=lambda b: (b["depth"], -(b["waiting_seconds"] or 0), b["pid"]))
        chain["blocked_count"] = len(chain["blocked"])
        chain["longest_wait_seconds"] = max((b["waiting_seconds"] or 0.0 for b in chain["blocked"]), default=0.0)
        chain.update(release(chain["root"]))
        out.append(chain)
    out.sort(key=lambda c: (-c["longest_wait_seconds"], -c["blocked_count"], c["root_pid"]))
    return out


def _path_to_root(pid: int, sessions: dict[int, Row]) -> list[int]:
    """pid, its first blocker, that one's first blocker, ... up to one that waits on no one (or a cycle's end)."""
    path = [pid]
    while True:
        blockers = sessions.get(path[-1], {}).get("blocked_by") or []
        nxt = next((b for b in blockers if b not in path), None)
        if nxt is None:
            return path
        path.append(nxt)


def _root(pid: int, sessions: dict[int, Row]) -> dict[str, Any]:
    if pid == 0:
        return {"pid": 0, "kind": "prepared transaction",
                "note": "a prepared (two-phase) transaction holds the lock; pg_prepared_xacts lists it"}
    r = sessions.get(pid)
    if r is None:  # another backend type (autovacuum, a background worker) or gone since
        return {"pid": pid, "kind": "not a client session (or already gone)"}
    return {"pid": pid, "kind": "session", "database": r["database"], "usename": r["usename"],
            "application_name": r["application_name"], "client_addr": r["client_addr"], "state": r["state"],
            "transaction_seconds": _num(r["transaction_seconds"]), "state_seconds": _num(r["state_seconds"]),
            "xact_start": r["xact_start"], "single_statement": r["single_statement"], "query": r["query"]}


def release(root: dict[str, Any]) -> dict[str, Any]:
    """The advice and the command that ends the root's hold, guarded so that it acts only on the same transaction.

    Cancelling is enough only for a lone statement: a cancelled statement inside a longer transaction leaves
    it aborted, still holding its locks until ROLLBACK, so that (and idle in transaction) needs terminate.
    """
    pid = root["pid"]
    if root["kind"] == "prepared transaction":
        return {"action": "resolve the prepared transaction",
                "command": "SELECT gid, prepared, owner FROM pg_prepared_xacts; -- then COMMIT PREPARED or "
                           "ROLLBACK PREPARED '<gid>'"}
    if root["kind"] != "session" or root["xact_start"] is None:
        return {"action": "look again: the root is not a client session in a transaction", "command": None}
    guard = f"FROM pg_stat_activity WHERE pid = {int(pid)} AND xact_start = '{_timestamp(root['xact_start'])}'"
    if root["state"] == "active" and root["single_statement"]:
        return {"action": "cancel the root's statement (its transaction is that one statement); the others go on",
                "command": f"SELECT pg_cancel_backend(pid) {guard}",
                "tool": {"name": "pg_cancel_backend", "args": {"pid": pid}}}
    return {"action": f"terminate the root session ({root['state']}, transaction open "
                      f"{root['transaction_seconds']:g} s): cancelling would leave its transaction and locks in place",
            "command": f"SELECT pg_terminate_backend(pid) {guard}",
            "tool": {"name": "pg_terminate_backend", "args": {"pid": pid}}}


def _timestamp(v: Any) -> str:
    text = v.isoformat() if hasattr(v, "isoformat") else str(v)
    return text.replace("'", "")


def _num(v: Any) -> float | None:
    return float(v) if v is not None else None
