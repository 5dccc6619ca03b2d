"""Runtimes opened and closed many times in one process close promptly, whatever their background writers do.

The embedded PostgreSQL 18 pass used to hang at a Runtime's close: the audit writer was cancelled just as
psycopg_pool handed it a connection, Python 3.11's asyncio.wait_for swallowed the cancellation, and close()
waited for a writer that had gone back to waiting for the next entry.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import psycopg
import pytest

from pgcode.codemode.engine import engine
from pgcode.core.runtime import Runtime
from pgcode.guard.audit import AuditEntry
from pgcode.settings import Settings
from pgcode.types import LOCAL_PRINCIPAL

pytestmark = pytest.mark.anyio

CLOSE_WITHIN_S = 10.0


def _entry(marker: str) -> AuditEntry:
    return AuditEntry(principal=marker, tool="pg_read_query", effect="read", outcome="ok", error_code=None,
                      duration_ms=1.0, client_addr=None, arguments={})


def _audit_rows(conn: psycopg.Connection[Any], marker: str) -> int:
    row = conn.execute("SELECT count(*) FROM pgcode.audit_log WHERE principal = %s", (marker,)).fetchone()
    return int(row[0]) if row else 0


async def test_close_while_the_audit_writer_receives_a_connection(dsn: str, conn: psycopg.Connection[Any]) -> None:
    """The exact race: the writer's wait for a pooled connection ends in the same step as its cancellation."""
    marker = f"lifecycle-{uuid.uuid4().hex[:8]}"
    rt = Runtime(Settings(database_url=dsn, pool_min_size=1, pool_max_size=1))
    await rt.open()
    try:
        async with rt.db.pool.connection():  # the only connection: the writer has to wait for it
            rt.audit.record(_entry(marker))
            await asyncio.sleep(0.5)  # past the writer's 0.2 s gathering pause: it now waits in getconn
        # The connection went to the waiting writer just now; close() cancels it in this same step.
        async with asyncio.timeout(CLOSE_WITHIN_S):
            await rt.audit.close()
    finally:
        async with asyncio.timeout(CLOSE_WITHIN_S):
            await rt.close()
    assert _audit_rows(conn, marker) == 1  # and the entry in hand was written, once


async def test_many_runtimes_with_code_mode_open_and_close(dsn: str, conn: psycopg.Connection[Any]) -> None:
    marker = f"lifecycle-{uuid.uuid4().hex[:8]}"
    code = "const r = await Promise.all([pg.core.readQuery({sql: 'SELECT 1 AS one'}), " \
           "pg.core.readQuery({sql: 'SELECT 2 AS two'})]); return r[0].rows[0].one + r[1].rows[0].two"
    for _ in range(6):
        async with asyncio.timeout(CLOSE_WITHIN_S * 2):
            async with Runtime(Settings(database_url=dsn, pool_min_size=1, pool_max_size=3,
                                        statement_timeout_ms=300)) as rt:
                out = await rt.invoke("pg_execute_code", {"code": code}, LOCAL_PRINCIPAL)
                assert out["success"] is True and out["result"] == 3
                rt.audit.record(_entry(marker))
                # the runtime closes with its audit writer and code-mode workers busy
                await rt.invoke("pg_read_query", {"sql": "SELECT 1"}, LOCAL_PRINCIPAL)
            assert engine(rt) is not None
    assert _audit_rows(conn, marker) == 6
