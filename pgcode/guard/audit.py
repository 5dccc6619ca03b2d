"""The audit log: one row per call in pgcode.audit_log, written in batches off the call path."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import logging
import math
import os
import re
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psycopg

from pgcode.db.migrate import AuditTable
from pgcode.db.pool import Database
from pgcode.errors import database_unavailable
from pgcode.guard.secrets import REDACTED, redact_text
from pgcode.settings import Settings

log = logging.getLogger("pgcode.guard.audit")

_SECRET_WORDS = frozenset({"password", "passwd", "pwd", "secret", "token", "key", "apikey", "credential",
                           "credentials", "auth", "authorization", "salt", "passphrase", "plaintext", "private"})
_PGCRYPTO_KEEP = frozenset({"algorithm", "cipher", "type", "encoding", "format", "options", "iterations",
                            "rounds", "length", "count"})
MAX_QUEUE = 10_000  # entries waiting to be written; beyond this they are dropped and counted
BATCH = 200
RETRY_DELAYS_S = (0.2, 0.5, 1.0, 2.0, 5.0)  # between attempts while the database cannot take a batch (then 5 s)


@functools.lru_cache(maxsize=4096)
def _words(key: str) -> frozenset[str]:
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1 \2", key).replace("_", " ").replace("-", " ")
    return frozenset({w.lower() for w in spaced.split()} | {key.lower().replace("_", "")})


_SURROGATE = re.compile("[\ud800-\udfff]")
MAX_DEPTH = 32  # arguments nested deeper are kept as TOO_DEEP below this depth
TOO_DEEP = "[nested too deeply]"


def storable(text: str) -> str:
    """Text PostgreSQL can store: an unpaired surrogate becomes U+FFFD, NUL becomes the two characters \\0."""
    return _SURROGATE.sub("\ufffd", text).replace("\x00", "\\0")


def redact(value: Any, *, group: str | None = None, key: str | None = None, depth: int = 0) -> Any:
    """Arguments as the audit log keeps them: secrets (by key name, pgcrypto inputs, SQL passwords) removed,
    every string storable, nesting bounded."""
    if isinstance(value, (dict, list)) and depth >= MAX_DEPTH:
        return TOO_DEEP
    if isinstance(value, dict):
        return {storable(str(k)): redact(v, group=group, key=str(k), depth=depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [redact(v, group=group, key=key, depth=depth + 1) for v in value]
    if key is not None and value is not None and not isinstance(value, bool):
        if _words(key) & _SECRET_WORDS:
            return REDACTED
        if group == "pgcrypto" and key not in _PGCRYPTO_KEEP:
            return REDACTED
    if isinstance(value, str):
        return redact_text(storable(value))
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # jsonb has no NaN or Infinity
    return value


MAX_ARGS_BYTES = 16_384


def bounded(args: Any) -> Any:
    """What a call's entry holds until the writer prepares it: the arguments themselves, or only their keys when
    they are too big to keep (bulk inserts, long code). Cheap, on the call path; redaction waits for the writer."""
    if _larger_than(args, 2 * MAX_ARGS_BYTES):  # 100,000 vectors need not be redacted to be left out
        return _keys_only(args)
    return args


def arguments_json(args: Any, group: str | None) -> str:
    """The arguments as the audit log stores them (JSON text): redacted, or just their keys when they are too big to
    keep (bulk inserts, long code). Serialized once: the text's size is the size check.

    Never raises: the audit entry of a call with strange arguments must still be written."""
    if _larger_than(args, 2 * MAX_ARGS_BYTES):  # 100,000 vectors need not be redacted to be left out
        return json.dumps(_keys_only(args), ensure_ascii=False)
    try:
        kept = redact(args, group=group)
        text = _ENCODE_ARGUMENTS(kept)
    except (TypeError, ValueError, RecursionError):
        return '{"_unserializable": true}'
    size = len(text) if text.isascii() else len(text.encode())
    if size <= MAX_ARGS_BYTES:
        return text
    keys = sorted(kept) if isinstance(kept, dict) else []
    return json.dumps({"_truncated": True, "_bytes": size, "_keys": keys}, ensure_ascii=False)


def _keys_only(args: Any) -> dict[str, Any]:
    return {"_truncated": True, "_keys": sorted(storable(str(k)) for k in args) if isinstance(args, dict) else []}


def _storable_text(value: Any) -> str:
    return storable(str(value))


_ENCODE_ARGUMENTS = json.JSONEncoder(ensure_ascii=False, allow_nan=False, default=_storable_text).encode


_CONTAINERS = (dict, list, tuple)


def _larger_than(value: Any, limit: int) -> bool:
    """Whether `value`, as redact() keeps it (nesting cut at MAX_DEPTH), certainly serializes to more than
    `limit` bytes: a cheap walk that stops early."""
    total, stack = 0, [(value, 0)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, _CONTAINERS) and depth >= MAX_DEPTH:
            total += len(TOO_DEEP)
        elif isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values())
            total += 4 * len(item) + sum(len(k) if type(k) is str else len(str(k)) for k in item)
        elif isinstance(item, list | tuple):
            stack.extend((v, depth + 1) for v in item)
            total += len(item)
        else:
            total += len(item) if isinstance(item, str) else 4
        if total > limit:
            return True
    return False


def new_entry_id(at: float | None = None) -> uuid.UUID:
    """A time-ordered UUID (RFC 9562 version 7: milliseconds since the epoch at `at`, or now, then random bits),
    so new rows land at the right edge of the audit log's unique index instead of all over it."""
    rand = int.from_bytes(os.urandom(10), "big")
    millis = time.time_ns() // 1_000_000 if at is None else int(at * 1000)
    value = (millis & (1 << 48) - 1) << 80 | 0x7 << 76 | (rand >> 64 & 0xFFF) << 64
    return uuid.UUID(int=value | 0b10 << 62 | rand & (1 << 62) - 1)


@dataclass(slots=True)
class AuditEntry:
    """One call, as recorded on the call path: cheap to make (not frozen, its id made by the writer)."""

    principal: str
    tool: str
    effect: str | None
    outcome: str
    error_code: str | None
    duration_ms: float
    client_addr: str | None
    arguments: Any
    """The call's arguments as bounded() keeps them: redacted by the writer, off the call path."""
    group: str | None = None
    """The tool's group (pgcrypto's arguments are redacted by position)."""
    at: float = field(default_factory=time.time)
    """When the call ended (the row's `at`), not when the writer got to it."""
    entry_id: uuid.UUID | None = None
    """Made when the writer first prepares the entry, then kept through every attempt to write it: the database
    stores one row per id."""


_COLUMNS = ("entry_id", "at", "principal", "tool", "effect", "outcome", "error_code", "duration_ms", "client_addr",
            "arguments")


def _insert(table: AuditTable) -> str:
    """One INSERT for a batch sent as one jsonb array of rows (one row is a batch of one). With entry ids, a batch
    sent again after its COMMIT was cut off adds nothing; a table made before them (a read-only server facing an
    older schema) gets the rows without ids, at least once."""
    columns = _COLUMNS if table is AuditTable.CURRENT else _COLUMNS[1:]
    casts = {"entry_id": "({})::uuid", "at": "to_timestamp(({})::float8)", "duration_ms": "({})::float8"}
    values = [f"r->{i}" if c == "arguments" else casts.get(c, "{}").format(f"r->>{i}") for i, c in enumerate(columns)]
    conflict = " ON CONFLICT (entry_id) DO NOTHING" if table is AuditTable.CURRENT else ""
    return (f"INSERT INTO pgcode.audit_log ({', '.join(columns)}) SELECT {', '.join(values)} "
            f"FROM jsonb_array_elements(%s::jsonb) AS batch(r){conflict}")


_Row = tuple[uuid.UUID, float, str, str, str | None, str, str | None, float, str | None, str]
_ENCODE = json.JSONEncoder(ensure_ascii=False, allow_nan=False).encode


def _batch(rows: list[_Row], table: AuditTable) -> str:
    """The rows as one JSON array of arrays in _COLUMNS order (without entry_id when the table has none), each
    row's arguments spliced in as the JSON text they already are.

    One C-encoded text per batch: array parameters cost psycopg ~20 us of Python per row, more than the call."""
    first = 0 if table is AuditTable.CURRENT else 1
    encoded = []
    for row in rows:
        head = _ENCODE([str(row[0]), *row[1:-1]][first:])
        encoded.append(f"{head[:-1]},{row[-1]}]")
    return f"[{','.join(encoded)}]"


def _text(value: Any, limit: int) -> str:
    return storable(str(value))[:limit]


def _optional(value: Any, limit: int) -> str | None:
    return None if value is None else _text(value, limit)


def _row(e: AuditEntry) -> _Row:
    """An entry as values PostgreSQL accepts whatever they held (strings storable, JSON serializable)."""
    if e.entry_id is None:
        e.entry_id = new_entry_id(e.at)
    arguments = arguments_json(e.arguments, e.group)  # redacted: no secret is kept, every string is storable
    try:
        duration = round(float(e.duration_ms), 3)
    except (TypeError, ValueError):
        duration = 0.0
    return (e.entry_id, e.at, _text(e.principal, 1000), _text(e.tool, 200), _optional(e.effect, 40),
            "error" if e.outcome == "error" else "ok", _optional(e.error_code, 40),
            duration if math.isfinite(duration) else 0.0, _optional(e.client_addr, 200), arguments)


class AuditLog:
    """Collects entries and writes them in batches off the call path.

    The writer never stops: a batch that fails is written row by row, so one bad entry never takes others
    with it, and what cannot be written is counted (`stats()`, shown to admins by /healthz) and logged. A batch
    the database cannot take for now (it restarted, ended the session, or no connection came) stays queued and is
    tried again, so a restart of PostgreSQL loses no row. A batch whose COMMIT was cut off is sent again, and each
    entry's id keeps it from being stored twice: one row per call.
    """

    def __init__(self, db: Database, settings: Settings) -> None:
        self._db = db
        self._settings = settings
        self._pending: list[AuditEntry] = []
        self._wake = asyncio.Event()
        self._write_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._stop = asyncio.Event()  # set with _closing: ends a pause between retries
        self.enabled = False
        self._dropped = 0
        self._file: Path | None = None
        self._table = AuditTable.ABSENT
        self._insert = _insert(AuditTable.CURRENT)
        self.unwritten = 0
        """Entries the writer could not store (the database refused them or could not be reached)."""

    def start(self, table: AuditTable) -> None:
        """Write to pgcode.audit_log when it is there, else to PGCODE_AUDIT_FILE; never silently off."""
        table_ready = table is not AuditTable.ABSENT
        self._table = table
        self._insert = _insert(table)
        self._file = None if table_ready else self._settings.audit_file
        self.enabled = table_ready or self._file is not None
        if not self.enabled:
            log.warning("the audit log is off: pgcode.audit_log does not exist and cannot be created here; "
                        "set PGCODE_AUDIT_FILE to keep it as JSON lines")
            return
        if self._file is not None:
            log.info("audit rows go to %s (pgcode.audit_log is not available)", self._file)
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

    def stats(self) -> dict[str, Any]:
        """The writer's state: entries waiting, dropped (backlog full) and unwritten (refused or unreachable)."""
        return {"enabled": self.enabled, "writerRunning": self._task is not None and not self._task.done(),
                "pending": len(self._pending), "dropped": self._dropped, "unwritten": self.unwritten}

    async def flush(self) -> None:
        """Write everything recorded so far (tests, shutdown, and readers of the log); what cannot be written now
        is counted as unwritten."""
        await self._drain(keep=False)

    async def _drain(self, *, keep: bool) -> bool:
        """Write the queue in batches. With `keep`, a batch the database cannot take now goes back to the front of
        the queue and False is returned: the writer task tries it again later."""
        async with self._write_lock:
            # The writer takes what is queued now: entries recorded while it writes wait for its next round, so a
            # steady stream of calls makes one INSERT every 0.2 s and not one per call or two.
            queued = len(self._pending)
            while self._pending and (queued > 0 or not keep):
                batch, self._pending = self._pending[:BATCH], self._pending[BATCH:]
                queued -= len(batch)
                try:
                    await self._write(batch, keep_if_unreachable=keep)
                except _Unreachable:
                    self._pending[:0] = batch
                    return False
        return True

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            # Told, not cancelled: a cancellation would drop the batch in hand, and Python 3.11's
            # asyncio.wait_for (psycopg_pool waits for a connection with it) swallows one that lands just as
            # its wait ends, after which close() waited forever for a writer gone back to waiting for entries.
            self._closing = True
            self._stop.set()
            self._wake.set()
            await task
        if self.enabled:
            await self.flush()

    async def _run(self) -> None:
        last_prune = 0.0
        failures = 0
        while not self._closing:
            await self._wake.wait()
            self._wake.clear()
            if not self._closing:
                await asyncio.sleep(0.2)  # let a burst gather into one batch
            try:
                if not await self._drain(keep=True):
                    delay = RETRY_DELAYS_S[min(failures, len(RETRY_DELAYS_S) - 1)]
                    failures += 1
                    log.warning("the database cannot take audit entries now; %d wait, next try in %g s",
                                len(self._pending), delay)
                    await self._pause(delay)
                    await self._check_pool()
                    self._wake.set()
                    continue
                failures = 0
                if time.monotonic() - last_prune > 3600 and self._file is None and not self._settings.read_only:
                    last_prune = time.monotonic()
                    await self.prune()
            except Exception:  # the writer must outlive anything: the next entries still need writing
                log.exception("the audit writer failed; it goes on with the next entries")

    async def _check_pool(self) -> None:
        """Drop the pooled connections the server ended (a restart ends every one): the next try gets a new one."""
        try:
            await self._db.pool.check()
        except psycopg.Error as exc:
            log.info("checking the pool's connections failed: %s", type(exc).__name__)

    async def _pause(self, seconds: float) -> None:
        """Sleep, but no longer than until close() is called (it writes what is left itself)."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._stop.wait()

    async def _write(self, batch: list[AuditEntry], *, keep_if_unreachable: bool = False) -> None:
        if not batch:
            return
        rows = []
        for entry in batch:
            try:
                rows.append(_row(entry))
            except Exception:
                self._lost(1, "an entry could not be prepared")
        if self._file is not None:
            await asyncio.to_thread(self._append, rows)
            return
        try:
            # One statement per batch, its rows as one jsonb text: an INSERT per row cost ~20x more client CPU. Not
            # COPY: a backend inside COPY FROM STDIN cannot take a server-wide barrier (DROP DATABASE waits on
            # it) until the client sends the rest, and a client that stalls mid-batch would stall those too.
            async with self._db.pool.connection() as conn:
                await conn.execute(self._insert, (_batch(rows, self._table),))
        except Exception as exc:
            if keep_if_unreachable and database_unavailable(exc):
                raise _Unreachable from exc
            if len(rows) > 1:
                log.warning("could not write %d audit entries as one batch (%s); writing them one by one",
                            len(rows), type(exc).__name__)
                await self._write_each(rows)
            else:
                self._lost(len(rows), type(exc).__name__)

    def _append(self, rows: list[_Row]) -> None:
        """The rows as JSON lines, appended to PGCODE_AUDIT_FILE (a read-only server without pgcode's schema)."""
        assert self._file is not None
        try:
            with self._file.open("a", encoding="utf-8") as out:
                for row in rows:
                    fields = dict(zip(_COLUMNS, row, strict=True))
                    fields["entry_id"] = str(row[0])
                    fields["arguments"] = json.loads(row[-1])
                    out.write(json.dumps(fields, ensure_ascii=False) + "\n")
        except OSError as exc:
            self._lost(len(rows), type(exc).__name__)

    async def _write_each(self, rows: list[_Row]) -> None:
        """Row by row on one connection, each in its own transaction: a bad row fails alone."""
        remaining = len(rows)
        try:
            async with self._db.pool.connection() as conn:
                for row in rows:
                    try:
                        async with conn.transaction():
                            await conn.execute(self._insert, (_batch([row], self._table),))
                    except Exception as exc:
                        if conn.closed:
                            raise
                        self._lost(1, type(exc).__name__)
                    remaining -= 1
        except Exception as exc:  # no connection, or it broke: the rest cannot be written now
            if remaining:
                self._lost(remaining, type(exc).__name__)

    def _lost(self, count: int, why: str) -> None:
        self.unwritten += count
        log.warning("%d audit entries could not be written (%s); %d so far", count, why, self.unwritten)

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


class _Unreachable(Exception):
    """The database could not take a batch now: the writer keeps it and tries again."""

