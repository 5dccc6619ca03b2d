"""The audit log: one row per call in pgcode.audit_log, written in batches off the call path."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

from pgcode.db.pool import Database
from pgcode.settings import Settings

log = logging.getLogger("pgcode.guard.audit")

REDACTED = "[redacted]"
_SECRET_WORDS = frozenset({"password", "passwd", "pwd", "secret", "token", "key", "apikey", "credential",
                           "credentials", "auth", "authorization", "salt", "passphrase", "plaintext", "private"})
_PASSWORD_LITERAL = re.compile(r"(\b(?:PASSWORD|IDENTIFIED\s+BY)\s+)(E?'(?:[^']|'')*')", re.IGNORECASE)
_PGCRYPTO_KEEP = frozenset({"algorithm", "cipher", "type", "encoding", "format", "options", "iterations",
                            "rounds", "length", "count"})
MAX_QUEUE = 10_000  # entries waiting to be written; beyond this they are dropped and counted
BATCH = 200


def _words(key: str) -> set[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", key).replace("_", " ").replace("-", " ")
    return {w.lower() for w in spaced.split()} | {key.lower().replace("_", "")}


def redact(value: Any, *, group: str | None = None, key: str | None = None) -> Any:
    """Arguments as the audit log keeps them: secrets (by key name, pgcrypto inputs, SQL passwords) removed."""
    if isinstance(value, dict):
        return {str(k).replace("\x00", "\\0"): redact(v, group=group, key=str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, group=group, key=key) for v in value]
    if key is not None and value is not None and not isinstance(value, bool):
        if _words(key) & _SECRET_WORDS:
            return REDACTED
        if group == "pgcrypto" and key not in _PGCRYPTO_KEEP:
            return REDACTED
    if isinstance(value, str):
        value = value.replace("\x00", "\\0")  # PostgreSQL text cannot hold NUL; the row must still be written
        return _PASSWORD_LITERAL.sub(lambda m: m.group(1) + "'" + REDACTED + "'", value)
    return value


MAX_ARGS_BYTES = 16_384


def audit_arguments(args: Any, group: str | None) -> Any:
    """Redacted arguments, or just their keys when they are too big to keep (bulk inserts, long code)."""
    kept = redact(args, group=group)
    try:
        size = len(json.dumps(kept, default=str))
    except (TypeError, ValueError):
        return {"_unserializable": True}
    if size <= MAX_ARGS_BYTES:
        return kept
    keys = sorted(kept) if isinstance(kept, dict) else []
    return {"_truncated": True, "_bytes": size, "_keys": keys}


@dataclass(frozen=True, slots=True)
class AuditEntry:
    principal: str
    tool: str
    effect: str | None
    outcome: str
    error_code: str | None
    duration_ms: float
    client_addr: str | None
    arguments: Any


class AuditLog:
    """Collects entries and writes them in batches; if the schema cannot be written it says so once."""

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._settings = settings
        self._pending: list[AuditEntry] = []
        self._wake = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self.enabled = False
        self._dropped = 0

    def start(self, schema_ready: bool) -> None:
        self.enabled = schema_ready
        if not schema_ready:
            log.warning("the audit log is off: pgcode's schema cannot be written (read-only server or no CREATE)")
            return
        self._task = asyncio.create_task(self._run(), name="pgcode-audit")

    def record(self, entry: AuditEntry) -> None:
        if not self.enabled:
            return
        if len(self._pending) >= MAX_QUEUE:
            self._dropped += 1
            if self._dropped in (1, 1000) or self._dropped % 100_000 == 0:
                log.warning("audit backlog full: %d entries dropped so far", self._dropped)
            return
        self._pending.append(entry)
        self._wake.set()

    async def flush(self) -> None:
        """Write everything recorded so far (the writer task, tests, shutdown, and readers of the log)."""
        async with self._write_lock:
            while self._pending:
                batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
                await self._write(batch)

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if self.enabled:
            await self.flush()

    async def _run(self) -> None:
        last_prune = 0.0
        while True:
            await self._wake.wait()
            self._wake.clear()
            await asyncio.sleep(0.2)  # let a burst gather into one batch
            await self.flush()
            if time.monotonic() - last_prune > 3600:
                last_prune = time.monotonic()
                await self.prune()

    async def _write(self, batch: list[AuditEntry]) -> None:
        if not batch:
            return
        try:
            async with self._db.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                await cur.executemany(
                    "INSERT INTO pgcode.audit_log (principal, tool, effect, outcome, error_code, duration_ms, "
                    "client_addr, arguments) VALUES (%s, %s, %s, %s, %s, %s, %s, %s)",
                    [(e.principal, e.tool[:200], e.effect, e.outcome, e.error_code, e.duration_ms, e.client_addr,
                      Jsonb(e.arguments)) for e in batch])
        except psycopg.Error as exc:
            log.warning("could not write %d audit entries: %s", len(batch), type(exc).__name__)

    async def prune(self) -> int:
        """Delete entries older than the retention period; return how many."""
        try:
            async with self._db.pool.connection() as conn:
                cur = await conn.execute(
                    "DELETE FROM pgcode.audit_log WHERE at < now() - make_interval(days => %s)",
                    (self._settings.audit_retention_days,))
                return cur.rowcount
        except psycopg.Error as exc:
            log.warning("could not prune the audit log: %s", type(exc).__name__)
            return 0
