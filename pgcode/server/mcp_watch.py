"""What an MCP client sees while a call runs: pgcode's and PostgreSQL's warnings, and progress from pg_stat_progress_*.

Progress is polled here rather than reported by the tools: every backend a call takes is recorded in CALL_WATCH
(core/context.py), and while the call runs this layer reads pg_stat_progress_* for those backends and sends one
`notifications/progress` per interval. That covers VACUUM, ANALYZE, CLUSTER / VACUUM FULL, CREATE INDEX and REINDEX
whichever tool (or code-mode run) issues them; a call with nothing in those views gets a heartbeat with its age.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from contextvars import ContextVar
from typing import Any

import mcp_types as types
import psycopg
from mcp.server import ServerRequestContext
from mcp.server.connection import allowed_log_levels
from mcp_types.version import MODERN_PROTOCOL_VERSIONS
from psycopg.rows import dict_row

from pgcode.core.callctx import CALL_WATCH, CallWatch
from pgcode.core.runtime import Runtime
from pgcode.db.queries import load_query

LEVELS: tuple[types.LoggingLevel, ...] = ("debug", "info", "notice", "warning", "error", "critical", "alert",
                                          "emergency")
DEFAULT_LEVEL: types.LoggingLevel = "warning"
"""What a client that never sent logging/setLevel receives: warnings and worse."""
_LEVEL_KEY = "pgcode.log_level"
_PG_LEVELS: dict[str, types.LoggingLevel] = {"DEBUG": "debug", "LOG": "info", "INFO": "info", "NOTICE": "notice",
                                             "WARNING": "warning"}
_POLL_TIMEOUT_S = 2.0
log = logging.getLogger(__name__)

Record = tuple[types.LoggingLevel, str, str]
_RECORDS: ContextVar[list[Record] | None] = ContextVar("pgcode_mcp_log_records", default=None)


class _ToCaller(logging.Handler):
    """Keeps pgcode's log records made while serving a call, for that call's client."""

    def emit(self, record: logging.LogRecord) -> None:
        records = _RECORDS.get()
        if records is not None:
            level: types.LoggingLevel = ("error" if record.levelno >= logging.ERROR else "warning"
                                         if record.levelno >= logging.WARNING else "info"
                                         if record.levelno >= logging.INFO else "debug")
            records.append((level, record.name, record.getMessage()))


_HANDLER = _ToCaller()


def install_log_forwarding() -> None:
    logger = logging.getLogger("pgcode")
    if _HANDLER not in logger.handlers:
        logger.addHandler(_HANDLER)


def _client_state(ctx: ServerRequestContext[Any]) -> dict[str, Any]:
    # Per-client state lives on the SDK's Connection; the low-level handler context reaches it through the session.
    state: dict[str, Any] = ctx.session._connection.state
    return state


async def on_set_level(ctx: ServerRequestContext[Any], params: types.SetLevelRequestParams) -> types.EmptyResult:
    """logging/setLevel: this client's threshold, kept for its connection (2025-11-25 and earlier)."""
    _client_state(ctx)[_LEVEL_KEY] = params.level
    return types.EmptyResult()


def client_wants(ctx: ServerRequestContext[Any], level: types.LoggingLevel) -> bool:
    """2026-07-28 clients opt in per request (`_meta` logLevel); older ones set a level per connection."""
    if level not in allowed_log_levels(ctx.protocol_version, ctx.meta):
        return False
    if ctx.protocol_version in MODERN_PROTOCOL_VERSIONS:
        return True
    threshold = _client_state(ctx).get(_LEVEL_KEY, DEFAULT_LEVEL)
    return LEVELS.index(level) >= LEVELS.index(threshold)


async def _send_logs(ctx: ServerRequestContext[Any], watch: CallWatch, records: list[Record]) -> None:
    pending = [(_PG_LEVELS.get(severity, "warning"), "postgresql", message) for severity, message in watch.notices]
    pending += records
    watch.notices.clear()
    records.clear()
    for level, logger, message in pending:
        if client_wants(ctx, level):
            note = types.LoggingMessageNotification(params=types.LoggingMessageNotificationParams(
                level=level, logger=logger, data=message))
            await ctx.session.send_notification(note, related_request_id=ctx.request_id)


async def _progress_rows(rt: Runtime, backends: set[int]) -> list[dict[str, Any]]:
    if not backends:
        return []
    try:
        async with rt.db.pool.connection(timeout=_POLL_TIMEOUT_S) as conn, conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(load_query("call_progress"), {"pids": sorted(backends)})
            return await cur.fetchall()
    except (psycopg.Error, TimeoutError, psycopg.OperationalError):
        return []  # no spare connection or the views are not readable: the heartbeat still goes out


def describe(label: str, rows: list[dict[str, Any]], elapsed_s: float) -> str:
    """One line per progress row, e.g. `VACUUM public.big: scanning heap, 1200 of 5000 blocks (24%)`."""
    if not rows:
        return f"{label}: running for {elapsed_s:.1f} s"
    parts = []
    for row in rows:
        text = f"{row['command']} {row['relation']}: {row['phase']}"
        if row["total"]:
            text += f", {row['done']} of {row['total']} {row['unit']} ({100 * row['done'] // row['total']}%)"
        parts.append(text)
    return "; ".join(parts)


async def _tick(rt: Runtime, ctx: ServerRequestContext[Any], watch: CallWatch, records: list[Record], label: str,
                interval_s: float) -> None:
    started = time.monotonic()
    count = 0
    while True:
        await asyncio.sleep(interval_s)
        try:
            await _send_logs(ctx, watch, records)
            rows = await _progress_rows(rt, set(watch.backends))
            count += 1  # the spec wants a value that grows with every notification; the message has the figures
            await ctx.session.report_progress(count, None, describe(label, rows, time.monotonic() - started))
        except Exception as exc:  # a client gone or a closed stream must not fail the call it watches
            log.debug("progress for %s not sent: %s", label, type(exc).__name__)


@asynccontextmanager
async def watching(rt: Runtime, ctx: ServerRequestContext[Any], label: str, *, interval_s: float
                   ) -> AsyncIterator[None]:
    """Follow the call made inside: progress every `interval_s`, warnings as they come and when it ends."""
    watch, records = CallWatch(), list[Record]()
    watch_token, records_token = CALL_WATCH.set(watch), _RECORDS.set(records)
    ticker = asyncio.get_running_loop().create_task(_tick(rt, ctx, watch, records, label, interval_s))
    try:
        yield
    finally:
        ticker.cancel()
        await asyncio.wait([ticker])
        CALL_WATCH.reset(watch_token)
        _RECORDS.reset(records_token)
        await _send_logs(ctx, watch, records)
