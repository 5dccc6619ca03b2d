"""admin: terminate a session or cancel its query, refusing pgcode's own session, superusers and non-clients."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from pydantic import Field

from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.errors import ErrorCode, ToolError
from pgcode.types import Effect

_SESSION = """
SELECT a.pid, a.usename, a.datname, a.application_name, a.state, a.backend_type, a.query_start,
       left(a.query, 200) AS query, coalesce(r.rolsuper, false) AS superuser
FROM pg_stat_activity a
LEFT JOIN pg_roles r ON r.oid = a.usesysid
WHERE a.pid = %s
"""
_POLL_S = 0.05


class BackendIn(ToolInput):
    pid: int = Field(ge=1, le=2**31 - 1, description="Session pid (from pg_connection_stats)")
    allow_superuser: bool = False


async def _target(ctx: ToolContext, args: BackendIn, action: str) -> dict[str, Any]:
    """The session `args.pid`, after the refusals: pgcode's own backend, non-client processes, superusers."""
    ctx.use_autocommit()  # each statement its own transaction: pg_stat_activity is re-read every time
    if args.pid == await ctx.fetchval("SELECT pg_backend_pid()"):
        raise ToolError(ErrorCode.INVALID_INPUT, f"pid {args.pid} is the session pgcode uses for this call; "
                                                 f"it will not {action} itself")
    row = await ctx.fetchone(_SESSION, (args.pid,))
    if row is None:
        raise ToolError(ErrorCode.NOT_FOUND, f"no server process has pid {args.pid}",
                        hint="pg_connection_stats lists the sessions")
    if row["backend_type"] != "client backend":
        raise ToolError(ErrorCode.INVALID_INPUT, f"pid {args.pid} is a {row['backend_type']} process, not a client "
                                                 f"session; pgcode does not {action} server processes")
    if row["superuser"] and not args.allow_superuser:
        raise ToolError(ErrorCode.INVALID_INPUT, f"pid {args.pid} is a session of the superuser {row['usename']!r}; "
                                                 f"nothing was done", hint="pass allowSuperuser: true to go ahead")
    return row


async def _session(ctx: ToolContext, pid: int) -> dict[str, Any] | None:
    return await ctx.fetchone(_SESSION, (pid,))


class TerminateIn(BackendIn):
    wait_ms: int = Field(5000, ge=0, le=60_000)


@tool(group="admin", effect=Effect.DESTRUCTIVE)
async def terminate_backend(ctx: ToolContext, args: TerminateIn) -> dict[str, Any]:
    """End a session (pg_terminate_backend).

    Returns {pid, terminated, usename, state, query, reason}; waits up to waitMs for the session to end (0: does not
    wait).

    Its open transaction is rolled back and its client disconnected. Refuses pgcode's own session, server
    processes that are not client sessions, and superusers' sessions unless allowSuperuser is true.
    terminated is true once the session is confirmed gone.
    """
    row = await _target(ctx, args, "terminate")
    if ctx.server_version >= 140000 and args.wait_ms:  # PG 14: the function itself waits for the exit
        await ctx.fetchval("SELECT pg_terminate_backend(%s, %s)", (args.pid, args.wait_ms))
        gone = await _session(ctx, args.pid) is None
    else:
        await ctx.fetchval("SELECT pg_terminate_backend(%s)", (args.pid,))
        gone = await _wait(ctx, args.pid, args.wait_ms, lambda s: s is None)
    if gone:
        reason = "the session was terminated and has exited"
    else:
        reason = (f"the signal was sent; the session had not exited after {args.wait_ms} ms" if args.wait_ms
                  else "the signal was sent (not waited for)")
    return {"pid": args.pid, "terminated": gone, "usename": row["usename"], "datname": row["datname"],
            "application_name": row["application_name"], "state": row["state"], "query": row["query"],
            "reason": reason}


async def _wait(ctx: ToolContext, pid: int, wait_ms: int, done: Callable[[dict[str, Any] | None], bool]) -> bool:
    deadline = time.monotonic() + wait_ms / 1000
    while True:
        if done(await _session(ctx, pid)):
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(_POLL_S)


class CancelIn(BackendIn):
    wait_ms: int = Field(2000, ge=0, le=30_000)


@tool(group="admin", effect=Effect.ADMIN)
async def cancel_backend(ctx: ToolContext, args: CancelIn) -> dict[str, Any]:
    """Cancel a session's running query (pg_cancel_backend), keeping the session.

    Returns {pid, cancelled, state, reason}; waits up to waitMs to see the query stop (0: does not wait).

    Gentler than pg_terminate_backend: the query fails with "canceling statement due to user request" and the
    client stays connected. Nothing is sent to a session with no running query. Refuses pgcode's own session,
    non-client processes, and superusers' sessions unless allowSuperuser is true. cancelled is true once the
    query is seen to have stopped (within waitMs); signal_sent says whether the request went out.
    """
    row = await _target(ctx, args, "cancel")
    out = {"pid": args.pid, "usename": row["usename"], "datname": row["datname"],
           "application_name": row["application_name"], "state": row["state"], "query": row["query"]}
    if row["state"] != "active":
        return {**out, "cancelled": False, "signal_sent": False, "state_after": row["state"],
                "reason": f"the session is {row['state'] or 'not running a query'}: nothing to cancel"}
    sent = bool(await ctx.fetchval("SELECT pg_cancel_backend(%s)", (args.pid,)))
    started = row["query_start"]
    stopped = sent and await _wait(ctx, args.pid, args.wait_ms, lambda s: s is None or s["state"] != "active"
                                   or s["query_start"] != started)
    after = await _session(ctx, args.pid)
    if stopped:
        reason = "the query was cancelled; the session stays connected"
    elif sent:
        reason = (f"the cancel request was sent; the query was still running after {args.wait_ms} ms"
                  if args.wait_ms else "the cancel request was sent (not waited for)")
    else:
        reason = "the server could not signal the process (it may have just exited)"
    return {**out, "cancelled": stopped, "signal_sent": sent, "state_after": after["state"] if after else None,
            "reason": reason}
