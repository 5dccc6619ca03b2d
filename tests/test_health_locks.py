"""Never blocked: with tables held in ACCESS EXCLUSIVE by another session, the checks, the monitoring tools and
the whole report still run (in seconds, not statement timeouts), lose no section, and name what they skipped."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgcode.core.runtime import Runtime
from pgcode.report import collect
from pgcode.types import LOCAL_PRINCIPAL
from tests._health_conditions import by_check, make_conditions
from tests.groups._sessions import Background

pytestmark = pytest.mark.anyio

LOCKED = ("fk_child", "dup_t", "unused_t", "dead_t")  # tables the size, index and constraint checks read


@pytest.fixture(scope="module")
def cond(dsn: str, schema: str) -> str:
    make_conditions(dsn, schema)
    return schema


@pytest.fixture
def holder(dsn: str, cond: str) -> Iterator[psycopg.Connection[Any]]:
    """A session of ours holding ACCESS EXCLUSIVE on the LOCKED tables, as a migration would."""
    with psycopg.connect(dsn, application_name="t_health_lock_holder") as c:
        for t in LOCKED:
            c.execute(sql.SQL("LOCK TABLE {} IN ACCESS EXCLUSIVE MODE").format(sql.Identifier(cond, t)))
        yield c
        c.rollback()


def _skipped(check: dict[str, Any]) -> dict[str, str]:
    return {s["object"]: s["reason"] for s in check["coverage"]["skipped"]}


async def test_report_with_locked_tables_is_complete_fast_and_names_what_it_skipped(
        rt: Runtime, cond: str, holder: psycopg.Connection[Any]) -> None:
    pid = holder.info.backend_pid
    started = time.perf_counter()
    report = await collect(rt, LOCAL_PRINCIPAL, thresholds={"maxItems": 5000})
    seconds = time.perf_counter() - started
    assert seconds < 3, f"the report took {seconds:.1f} s with locked tables"  # a lock wait takes 30 s
    checks = {c["check"]: c for area in report["areas"] for c in area["checks"]}
    assert not [n for n, c in checks.items() if c["status"] == "unknown"]
    assert set(report["unavailable"]) <= {"top_queries"}  # every section is there
    # the duplicate check compares definitions, which needs the table: it skips the locked ones, by name
    dup = _skipped(checks["duplicate_indexes"])
    assert dup[f"{cond}.dup_t"].startswith(f"locked by pid {pid} (ACCESS EXCLUSIVE, ")
    assert checks["duplicate_indexes"]["coverage"]["complete"] is False
    assert "locked objects skipped" in checks["duplicate_indexes"]["summary"]
    # the other checks work around the lock: the objects stay listed, with catalog estimates
    fk = next(r for r in checks["fk_without_index"]["details"]["items"] if r["table"] == "fk_child")
    assert fk["locked"] is True and fk["table_bytes"] > 0
    assert f"{cond}.fk_child" in _skipped(checks["fk_without_index"])
    unused = next(r for r in checks["unused_indexes"]["details"]["items"] if r["name"] == "unused_code_idx")
    assert unused["locked"] is True and unused["definition"] is None and unused["size_bytes"] > 1024 * 1024
    dead = next(r for r in checks["dead_tuples"]["details"]["items"] if r["table"] == "dead_t")
    assert dead["dead_tuples"] >= 6000 and dead["locked"] is True
    constraint = next(r for r in checks["unvalidated_constraints"]["details"]["items"] if r["table"] == "fk_child")
    assert constraint["constraint"] == "fk_child_id_positive" and constraint["definition"] is None
    # the table-size section lists the locked tables, sized from the catalog
    sizes = {t["table"]: t for t in report["tables"] if t["schema"] == cond} if report["tables"] else {}
    assert sizes["unused_t"]["size_estimated"] is True and sizes["unused_t"]["size_bytes"] > 1024 * 1024
    assert sizes["unused_t"]["locked_by"].startswith(f"locked by pid {pid}")
    # coverage at the top names the skipped objects
    assert f"{cond}.dup_t" in {s["object"] for s in report["coverage"]["skipped"]}


async def test_without_locks_nothing_is_skipped_and_definitions_are_read(rt: Runtime, cond: str) -> None:
    """The positive control: the same checks, nothing locked, read every definition and exact size."""
    out = by_check(await rt.invoke("pg_analyze_db_health", {"thresholds": {"maxItems": 5000}}, LOCAL_PRINCIPAL))
    assert all(not c["coverage"]["skipped"] and c["coverage"]["complete"] for c in out.values())
    unused = next(r for r in out["unused_indexes"]["details"]["items"] if r["name"] == "unused_code_idx")
    assert "locked" not in unused and unused["definition"].startswith("CREATE INDEX unused_code_idx")
    sizes = await rt.invoke("pg_table_sizes", {"schema": cond}, LOCAL_PRINCIPAL)
    assert {t["size_estimated"] for t in sizes} == {False}


async def test_a_lock_request_waiting_in_the_queue_is_worked_around_too(
        rt: Runtime, dsn: str, cond: str) -> None:
    """An ACCESS EXCLUSIVE request queued behind a reader blocks new readers: the checks see it and skip."""
    table = sql.Identifier(cond, "dup_t")
    with psycopg.connect(dsn) as reader:
        reader.execute(sql.SQL("SELECT count(*) FROM {}").format(table))  # holds ACCESS SHARE
        alter = Background(dsn, "t_health_lock_alter",
                           sql.SQL("ALTER TABLE {} ADD COLUMN z int").format(table).as_string(reader))
        try:
            alter.start(dsn, wait_event_type="Lock")
            out = by_check(await rt.invoke("pg_analyze_db_health", {"checks": ["duplicate_indexes"]},
                                           LOCAL_PRINCIPAL))
            reason = _skipped(out["duplicate_indexes"])[f"{cond}.dup_t"]
            assert reason.startswith(f"ACCESS EXCLUSIVE lock requested by pid {alter.pid}")
            assert out["duplicate_indexes"]["status"] != "unknown"
        finally:
            reader.rollback()
            alter.join()
            alter.close(dsn)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(sql.SQL("ALTER TABLE {} DROP COLUMN IF EXISTS z").format(table))
