"""The audit writer keeps writing whatever the calls held: unpaired surrogates, NUL, deep or odd arguments; a row
the database refuses fails alone and is counted."""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import SecretStr

from pgcode.core.runtime import Runtime
from pgcode.guard.audit import MAX_DEPTH, TOO_DEEP, AuditEntry, arguments_json, new_entry_id
from pgcode.settings import Settings
from pgcode.types import Principal, Scope
from tests.codemode._helpers import ok

pytestmark = pytest.mark.anyio


def _principal(tag: str) -> Principal:
    return Principal.with_scope(f"static:audit-{tag}-{uuid.uuid4().hex[:8]}", Scope.ADMIN)


def _entry(principal: str, tool: str = "pg_read_query", arguments: Any = None) -> AuditEntry:
    return AuditEntry(principal=principal, tool=tool, effect="read", outcome="ok", error_code=None, duration_ms=1.0,
                      client_addr="127.0.0.1", arguments=arguments if arguments is not None else {"sql": "SELECT 1"})


def _rows(conn: psycopg.Connection[Any], principal: str) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT principal, tool, arguments FROM pgcode.audit_log WHERE principal = %s ORDER BY id",
                        (principal,)).fetchall()


async def _written(conn: psycopg.Connection[Any], principal: str, count: int) -> list[tuple[Any, ...]]:
    """The rows of `principal` once the writer task (not a flush of ours) has written `count` of them."""
    for _ in range(60):
        rows = _rows(conn, principal)
        if len(rows) >= count:
            return rows
        await asyncio.sleep(0.1)
    return _rows(conn, principal)


class Odd:
    """An argument value that is not JSON (the writer stores its text)."""

    def __str__(self) -> str:
        return "odd\ud800"


def _deep(levels: int) -> Any:
    value: Any = "bottom"
    for _ in range(levels):
        value = {"down": [value]}
    return value


async def test_a_lone_surrogate_from_code_mode_does_not_stop_the_writer(rt: Runtime,
                                                                         conn: psycopg.Connection[Any]) -> None:
    me = _principal("code")
    unwritten = rt.audit.unwritten
    out = await rt.invoke("pg_execute_code", {"code": r"""
        let refused = null;
        try { await pg.call('\ud800x', {}); } catch (e) { refused = e.code; }
        try { await pg.call('pg_read_query', {sql: 'SELECT 1', ['\udc00k']: '\ud83d'}); } catch (e) { }
        return refused"""}, me)
    assert ok(out) == "NOT_FOUND"
    rows = await _written(conn, me.subject, 3)
    assert {r[1] for r in rows} == {"\ufffdx", "pg_read_query", "pg_execute_code"}, rows
    bad_args = next(r[2] for r in rows if r[1] == "pg_read_query")
    assert bad_args["\ufffdk"] == "\ufffd"
    assert rt.audit.stats()["writerRunning"] is True
    # A later call is still recorded by the writer task, without anyone flushing for it.
    await rt.invoke("pg_read_query", {"sql": "SELECT 'after' AS marker"}, me)
    rows = await _written(conn, me.subject, 4)
    assert [r[1] for r in rows].count("pg_read_query") == 2
    assert rt.audit.unwritten == unwritten


async def test_a_steady_stream_of_calls_is_written_in_few_batches(rt: Runtime, conn: psycopg.Connection[Any]) -> None:
    me = _principal("stream")
    started = time.monotonic()
    for _ in range(600):  # a call every millisecond or so
        rt.audit.record(_entry(me.subject))
        await asyncio.sleep(0.001)
    rounds = (time.monotonic() - started) / 0.2  # the writer gathers entries for 0.2 s, then writes them
    rows = await _written(conn, me.subject, 600)
    assert len(rows) == 600
    # Rows of one INSERT share its transaction id: a batch per round of the writer (200 rows at most), not one every
    # few calls, each a round trip and the client CPU of an INSERT taken from the calls.
    batches = conn.execute("SELECT count(DISTINCT xmin::text) FROM pgcode.audit_log WHERE principal = %s",
                           (me.subject,)).fetchone()
    assert batches is not None and batches[0] <= rounds + 3, (batches, rounds)


async def test_one_bad_entry_takes_no_other_principals_entries_with_it(rt: Runtime,
                                                                       conn: psycopg.Connection[Any]) -> None:
    others = [_principal(f"other{i}").subject for i in range(3)]
    odd = _principal("odd").subject
    unwritten = rt.audit.unwritten
    for name in others:
        rt.audit.record(_entry(name))
    rt.audit.record(_entry(odd + "\ud800\x00", "pg_\udfff\x00tool", {
        "k\ud800": ["v\udbff", {"nested\x00": "n\x00ul"}], "nan": float("nan"), "big": float("inf"),
        "set": {1, 2}, "deep": _deep(5000), "odd": Odd()}))
    for name in others:
        rt.audit.record(_entry(name, arguments={"sql": "SELECT 2"}))
    await rt.audit.flush()
    for name in others:
        assert [r[2]["sql"] for r in _rows(conn, name)] == ["SELECT 1", "SELECT 2"]
    (principal, tool, arguments), = _rows(conn, odd + "\ufffd\\0")
    assert principal == odd + "\ufffd\\0" and tool == "pg_\ufffd\\0tool"
    assert arguments["k\ufffd"] == ["v\ufffd", {"nested\\0": "n\\0ul"}]
    assert arguments["odd"] == "odd\ufffd" and arguments["nan"] == "nan" and arguments["big"] == "inf"
    assert arguments["set"] in ("{1, 2}", "{2, 1}")
    depth, node = 0, arguments["deep"]
    while isinstance(node, (dict, list)):
        node, depth = (node["down"] if isinstance(node, dict) else node[0]), depth + 1
    assert node == TOO_DEEP and depth < MAX_DEPTH
    assert rt.audit.unwritten == unwritten


def test_audit_arguments_never_raise() -> None:
    kept = json.loads(arguments_json({"deep": _deep(100_000), "odd": Odd(), "password": "p"}, None))
    assert kept["password"] == "[redacted]" and kept["odd"] == "odd\ufffd"
    depth, node = 0, kept["deep"]
    while isinstance(node, (dict, list)):
        node, depth = (node["down"] if isinstance(node, dict) else node[0]), depth + 1
    assert node == TOO_DEEP and depth < MAX_DEPTH
    assert json.loads(arguments_json([_deep(3)], None)) == [_deep(3)]
    assert json.loads(arguments_json({"v": float("nan")}, None)) == {"v": "nan"}  # jsonb has no NaN


def test_audit_arguments_too_big_keep_their_keys_and_size() -> None:
    big = json.loads(arguments_json({"sql": "é" * 9_000}, None))  # 9,000 characters, 18,000 bytes of UTF-8
    assert big == {"_truncated": True, "_bytes": 18_011, "_keys": ["sql"]}
    fits = json.loads(arguments_json({"sql": "é" * 8_000}, None))
    assert fits == {"sql": "é" * 8_000}


AUDIT_DB = "pgcode_faces_audit"


@pytest.fixture(scope="module")
def audit_dsn(dsn: str) -> Iterator[str]:
    """A database of this module's own, so a constraint can make PostgreSQL refuse one row."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(AUDIT_DB)))
        c.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(AUDIT_DB)))
    params = conninfo_to_dict(dsn)
    params["dbname"] = AUDIT_DB
    yield make_conninfo("", **params)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(AUDIT_DB)))


@pytest.fixture
async def audit_rt(audit_dsn: str, settings: Settings) -> AsyncIterator[Runtime]:
    async with Runtime(settings.model_copy(update={"database_url": SecretStr(audit_dsn)})) as runtime:
        yield runtime


async def test_a_row_the_database_refuses_fails_alone_and_is_counted(audit_rt: Runtime, audit_dsn: str,
                                                                     caplog: pytest.LogCaptureFixture) -> None:
    with psycopg.connect(audit_dsn, autocommit=True) as c:
        c.execute("ALTER TABLE pgcode.audit_log ADD CONSTRAINT refuse_poison CHECK (principal <> 'static:poison')")
        for name in ("static:a", "static:b", "static:poison", "static:c"):
            audit_rt.audit.record(_entry(name))
        await audit_rt.audit.flush()
        written = [r[0] for r in c.execute("SELECT principal FROM pgcode.audit_log ORDER BY id").fetchall()]
        assert written == ["static:a", "static:b", "static:c"]
        assert audit_rt.audit.unwritten == 1
        assert "1 audit entries could not be written" in caplog.text
        stats = audit_rt.audit.stats()
        assert stats["unwritten"] == 1 and stats["pending"] == 0 and stats["writerRunning"] is True
        # The writer goes on: the next entries are written by its task.
        audit_rt.audit.record(_entry("static:d"))
        for _ in range(50):
            if c.execute("SELECT count(*) FROM pgcode.audit_log WHERE principal = 'static:d'").fetchone() == (1,):
                break
            await asyncio.sleep(0.1)
        assert c.execute("SELECT count(*) FROM pgcode.audit_log WHERE principal = 'static:d'").fetchone() == (1,)


async def test_unreachable_database_counts_the_entries_it_could_not_write(
        audit_rt: Runtime, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    await audit_rt.db.pool.close()  # the writer's connections are gone; recording must still not raise
    before = audit_rt.audit.unwritten
    for name in ("static:x", "static:y"):
        audit_rt.audit.record(_entry(name))
    await audit_rt.audit.flush()
    assert audit_rt.audit.unwritten == before + 2
    assert audit_rt.audit.stats()["pending"] == 0


async def test_a_database_restart_loses_no_audit_row(audit_rt: Runtime, audit_dsn: str) -> None:
    """Every pooled connection ended by the server, as `pg_ctl restart -m fast` ends them: the writer keeps the
    batch it could not write and writes it on a new connection, nothing counted as unwritten."""
    with psycopg.connect(audit_dsn, autocommit=True) as c:
        await audit_rt.invoke("pg_read_query", {"sql": "SELECT 1"}, _principal("warm"))  # a pooled connection
        ended = c.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                          "WHERE datname = current_database() AND pid <> pg_backend_pid()").fetchone()
        assert ended is not None and ended[0] >= 1
        unwritten = audit_rt.audit.unwritten
        names = [f"static:restart-{i}" for i in range(3)]
        for name in names:
            audit_rt.audit.record(_entry(name))
        for _ in range(100):  # the writer task, not a flush of ours
            rows = c.execute("SELECT principal FROM pgcode.audit_log WHERE principal LIKE 'static:restart-%' "
                             "ORDER BY id").fetchall()
            if len(rows) >= len(names):
                break
            await asyncio.sleep(0.1)
        assert [r[0] for r in rows] == names
        assert audit_rt.audit.unwritten == unwritten


async def test_a_batch_sent_again_is_stored_once(audit_rt: Runtime, audit_dsn: str) -> None:
    """A batch whose COMMIT a restart cut off is sent again: each entry's id keeps it to one row. Positive control:
    entries alike in every field but their id are each stored."""
    principal = f"static:again-{uuid.uuid4().hex[:8]}"
    entries = [_entry(principal, arguments={"n": n}) for n in range(3)]
    for _ in range(2):  # the same entries, twice: what a resent batch is
        for entry in entries:
            audit_rt.audit.record(entry)
        await audit_rt.audit.flush()
    look_alike = _entry(principal, arguments={"n": 0})
    audit_rt.audit.record(look_alike)
    await audit_rt.audit.flush()
    with psycopg.connect(audit_dsn) as c:
        rows = c.execute("SELECT entry_id, arguments->>'n' FROM pgcode.audit_log WHERE principal = %s ORDER BY id",
                         (principal,)).fetchall()
    assert [(r[0], r[1]) for r in rows] == [(e.entry_id, n) for e, n in zip([*entries, look_alike],
                                                                             ["0", "1", "2", "0"], strict=True)]
    assert audit_rt.audit.unwritten == 0


async def test_a_row_keeps_the_time_of_its_call_and_ids_are_time_ordered(audit_rt: Runtime, audit_dsn: str) -> None:
    principal = f"static:at-{uuid.uuid4().hex[:8]}"
    an_hour_ago = time.time() - 3600
    old = AuditEntry(principal=principal, tool="pg_read_query", effect="read", outcome="ok", error_code=None,
                     duration_ms=1.0, client_addr=None, arguments={}, at=an_hour_ago)
    audit_rt.audit.record(old)
    await audit_rt.audit.flush()
    with psycopg.connect(audit_dsn) as c:
        at = c.execute("SELECT extract(epoch FROM at) FROM pgcode.audit_log WHERE principal = %s",
                       (principal,)).fetchone()
    assert at is not None and abs(float(at[0]) - an_hour_ago) < 0.001
    # Its id, made by the writer, carries the time of the call too.
    assert old.entry_id is not None and abs((old.entry_id.int >> 80) - an_hour_ago * 1000) <= 1
    ids = [new_entry_id() for _ in range(50)]
    assert all(i.version == 7 and i.variant == uuid.RFC_4122 for i in ids)
    assert len(set(ids)) == 50
    stamps = [i.int >> 80 for i in ids]  # the milliseconds part never goes back
    assert stamps == sorted(stamps) and abs(stamps[0] - time.time() * 1000) < 5000


async def test_a_read_only_server_writes_to_an_audit_log_made_before_entry_ids(audit_dsn: str,
                                                                               settings: Settings) -> None:
    """A read-only server migrates nothing: facing an audit_log without entry_id it still stores every call."""
    with psycopg.connect(audit_dsn, autocommit=True) as c:
        async with Runtime(settings.model_copy(update={"database_url": SecretStr(audit_dsn)})):
            pass  # pgcode's schema, up to date
        c.execute("ALTER TABLE pgcode.audit_log DROP COLUMN entry_id")
        try:
            principal = _principal("legacy")
            ro = settings.model_copy(update={"database_url": SecretStr(audit_dsn), "read_only": True})
            async with Runtime(ro) as runtime:
                assert (await runtime.invoke("pg_read_query", {"sql": "SELECT 1 AS one"}, principal))["rows"] == [
                    {"one": 1}]
                await runtime.audit.flush()
                assert runtime.audit.unwritten == 0
            rows = c.execute("SELECT tool, outcome FROM pgcode.audit_log WHERE principal = %s",
                             (principal.subject,)).fetchall()
            assert rows == [("pg_read_query", "ok")]
        finally:  # the schema as migration 043 leaves it, for the module's other tests
            c.execute("ALTER TABLE pgcode.audit_log ADD COLUMN IF NOT EXISTS entry_id uuid")
            c.execute("CREATE UNIQUE INDEX IF NOT EXISTS audit_log_entry_id_key ON pgcode.audit_log (entry_id)")
