"""Execution history in pgcode.executions: written in the background, read by the execution tools."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from dataclasses import dataclass, fields
from datetime import UTC, datetime
from typing import Any

import psycopg
from psycopg import sql

from pgcode.core.context import ToolContext
from pgcode.core.runtime import Runtime
from pgcode.errors import ErrorCode, ToolError, database_unavailable
from pgcode.guard.secrets import redact_text
from pgcode.types import Scope

log = logging.getLogger("pgcode.codemode")

MAX_STORED_CODE = 64 * 1024
OUTCOMES = ("success", "error", "timeout")
_PRUNE_EVERY_S = 3600.0
_FLUSH_DELAY_S = 0.05  # batch the inserts of a burst of executions into one round trip
_RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 5.0)  # while the database cannot take the rows (a restart); then they go


@dataclass(frozen=True)
class ExecutionRecord:
    id: uuid.UUID
    principal: str
    code_hash: str
    code: str
    language: str | None
    input_bytes: int
    readonly: bool
    script_id: int | None
    started_at: datetime
    duration_ms: float
    outcome: str
    error_code: str | None
    error_message: str | None
    tool_calls: int
    result_bytes: int


def new_record(exec_id: uuid.UUID, principal: str, code: str, *, language: str | None, input_bytes: int,
               readonly: bool, script_id: int | None, started: float, duration_ms: float,
               error: dict[str, Any] | None, tool_calls: int, result_bytes: int) -> ExecutionRecord:
    err_code = error.get("code") if error else None
    outcome = "success" if error is None else "timeout" if err_code == "TIMEOUT" else "error"
    return ExecutionRecord(
        id=exec_id, principal=principal, code_hash=hashlib.sha256(code.encode()).hexdigest(),
        code=redact_text(code).encode()[:MAX_STORED_CODE].decode("utf-8", "ignore"), language=language,
        input_bytes=input_bytes, readonly=readonly, script_id=script_id,
        started_at=datetime.fromtimestamp(started, UTC), duration_ms=duration_ms, outcome=outcome,
        error_code=err_code, error_message=(error or {}).get("message"), tool_calls=tool_calls,
        result_bytes=result_bytes)


_FIELD_NAMES = tuple(f.name for f in fields(ExecutionRecord))


def _row(rec: ExecutionRecord) -> tuple[Any, ...]:
    return tuple(getattr(rec, name) for name in _FIELD_NAMES)  # not astuple(): it deep-copies every field


_INSERT = sql.SQL(
    "INSERT INTO pgcode.executions (id, principal, code_hash, code, language, input_bytes, readonly, script_id, "
    "started_at, duration_ms, outcome, error_code, error_message, tool_calls, result_bytes) "
    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s) "
    "ON CONFLICT (id) DO NOTHING")  # a batch sent again after its COMMIT was cut off adds nothing
_PRUNE = sql.SQL("DELETE FROM pgcode.executions WHERE started_at < now() - make_interval(days => %s)")


class History:
    """Queues execution records and writes them in batches; readers flush first, so they see their own."""

    def __init__(self, rt: Runtime, retention_days: int) -> None:
        self._rt = rt
        self._days = retention_days
        self._queue: list[ExecutionRecord] = []
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._last_prune = float("-inf")  # prune at the first flush

    def record(self, rec: ExecutionRecord) -> None:
        if not self._rt.schema_ready:
            return
        self._queue.append(rec)
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._flush_later(), name="pgcode-history")

    async def _flush_later(self) -> None:
        await asyncio.sleep(_FLUSH_DELAY_S)
        for delay in _RETRY_DELAYS_S:
            if await self.flush(keep_if_unavailable=True):
                return
            await asyncio.sleep(delay)
            with contextlib.suppress(psycopg.Error):
                await self._rt.db.pool.check()  # drop the connections a restart ended
        await self.flush()

    async def flush(self, *, keep_if_unavailable: bool = False) -> bool:
        """Write the queued records; False when the database could not take them now and, with
        `keep_if_unavailable`, they wait in the queue for the next try."""
        async with self._lock:
            rows, self._queue = self._queue, []
            try:
                if rows:
                    async with self._rt.db.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                        await cur.executemany(_INSERT, [_row(r) for r in rows])
                if time.monotonic() - self._last_prune > _PRUNE_EVERY_S:
                    self._last_prune = time.monotonic()
                    async with self._rt.db.pool.connection() as conn:
                        await conn.execute(_PRUNE, (self._days,))
            except psycopg.Error as exc:
                if keep_if_unavailable and database_unavailable(exc):
                    self._queue[:0] = rows
                    return False
                log.warning("could not write %d code-mode history rows: %s", len(rows), exc.diag.message_primary)
            return True

    async def close(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.flush()


def require_history(ctx: ToolContext) -> None:
    if not ctx.rt.schema_ready:
        raise ToolError(ErrorCode.INTERNAL, "the execution history is unavailable: pgcode's schema could not be "
                                            "created or migrated (read-only server or missing privileges)",
                        hint="the server log says why at startup")


def visible_principal(ctx: ToolContext, requested: str | None) -> str | None:
    """Whose rows the caller may read: anyone's with the admin scope, otherwise only their own."""
    if ctx.principal.allows(Scope.ADMIN):
        return requested
    if requested not in (None, ctx.principal.subject):
        raise ToolError(ErrorCode.FORBIDDEN, "reading another principal's executions needs the 'admin' scope")
    return ctx.principal.subject


_COLUMNS = sql.SQL(
    "id::text AS id, principal, code_hash, language, input_bytes, readonly, script_id, started_at, duration_ms, "
    "outcome, error_code, error_message, tool_calls, result_bytes")


async def list_executions(ctx: ToolContext, principal: str | None, outcome: str | None, limit: int,
                          offset: int) -> dict[str, Any]:
    filters = [sql.SQL("true")]
    params: list[Any] = []
    if principal is not None:
        filters.append(sql.SQL("principal = %s"))
        params.append(principal)
    if outcome is not None:
        filters.append(sql.SQL("outcome = %s"))
        params.append(outcome)
    where = sql.SQL(" AND ").join(filters)
    rows = await ctx.fetch(sql.SQL("SELECT {}, count(*) OVER () AS total FROM pgcode.executions WHERE {} "
                                   "ORDER BY started_at DESC, id LIMIT %s OFFSET %s").format(_COLUMNS, where),
                           [*params, limit, offset])
    total = rows[0].pop("total") if rows else 0
    for r in rows[1:]:
        r.pop("total")
    if not rows and offset:
        count = await ctx.fetchval(sql.SQL("SELECT count(*) FROM pgcode.executions WHERE {}").format(where), params)
        total = int(count or 0)
    return {"executions": rows, "total": total, "limit": limit, "offset": offset}


async def get_execution(ctx: ToolContext, exec_id: uuid.UUID, principal: str | None) -> dict[str, Any]:
    row = await ctx.fetchone(sql.SQL("SELECT {}, code FROM pgcode.executions WHERE id = %s").format(_COLUMNS),
                             (exec_id,))
    if row is None or (principal is not None and row["principal"] != principal):
        raise ToolError(ErrorCode.NOT_FOUND, f"there is no execution {exec_id}",
                        hint="GET /v1/executions lists recent ones; history is kept for a limited time")
    return row


_STATS = sql.SQL("""
SELECT principal, count(*) AS executions,
       count(*) FILTER (WHERE outcome = 'success') AS succeeded,
       round((count(*) FILTER (WHERE outcome = 'success'))::numeric / count(*), 4) AS success_rate,
       round(avg(duration_ms)::numeric, 3) AS mean_duration_ms,
       round((percentile_cont(0.95) WITHIN GROUP (ORDER BY duration_ms))::numeric, 3) AS p95_duration_ms,
       count(*) FILTER (WHERE outcome = 'timeout') AS timeouts,
       sum(tool_calls) AS tool_calls, max(started_at) AS last_started_at
FROM pgcode.executions
WHERE started_at >= now() - make_interval(hours => %s) AND {}
GROUP BY principal ORDER BY executions DESC, principal""")


async def execution_stats(ctx: ToolContext, principal: str | None, hours: int) -> dict[str, Any]:
    where = sql.SQL("principal = %s") if principal is not None else sql.SQL("true")
    params: list[Any] = [hours] + ([principal] if principal is not None else [])
    rows = await ctx.fetch(_STATS.format(where), params)
    return {"sinceHours": hours, "principals": rows}
