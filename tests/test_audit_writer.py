"""The audit writer keeps writing whatever the calls held: unpaired surrogates, NUL, deep or odd arguments; a row
the database refuses fails alone and is counted."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import SecretStr

from pgcode.core.runtime import Runtime
from pgcode.guard.audit import MAX_DEPTH, TOO_DEEP, AuditEntry, audit_arguments
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
    kept = audit_arguments({"deep": _deep(100_000), "odd": Odd(), "password": "p"}, None)
    assert kept["password"] == "[redacted]" and isinstance(kept["odd"], Odd)
    assert audit_arguments([_deep(3)], None) == [_deep(3)]


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
