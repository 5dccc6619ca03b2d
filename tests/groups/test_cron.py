"""cron group: jobs that pg_cron really runs, the checks made before pg_cron sees a job, scopes, and no pg_cron."""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import anyio
import psycopg
import pytest
from psycopg import sql

from pgcode.core.runtime import Runtime
from pgcode.errors import ToolError
from pgcode.types import LOCAL_PRINCIPAL, Principal, Scope
from tests.fix_db import Call, assert_tool_error

pytestmark = pytest.mark.anyio

WRITER = Principal.with_scope("writer", Scope.WRITE)
NOBODY = Principal("nobody", frozenset())
PREFIX = "t_cron_"  # every job these tests make is named so, and removed
ADMIN_TOOLS = ["pg_cron_create_extension", "pg_cron_schedule", "pg_cron_schedule_in_database",
               "pg_cron_unschedule", "pg_cron_alter_job", "pg_cron_cleanup_history"]
READ_TOOLS = ["pg_cron_list_jobs", "pg_cron_job_run_details"]
JOB = {"name": PREFIX + "x", "schedule": "0 3 * * *", "command": "SELECT 1"}


def one(conn: psycopg.Connection[Any], query: Any, *params: Any) -> Any:
    row = conn.execute(query, params or None).fetchone()
    assert row is not None
    return row[0]


def cron_version(conn: psycopg.Connection[Any]) -> tuple[int, int] | None:
    row = conn.execute("SELECT extversion FROM pg_extension WHERE extname = 'pg_cron'").fetchone()
    if row is None:
        return None
    m = re.match(r"(\d+)\.(\d+)", row[0])
    assert m
    return int(m.group(1)), int(m.group(2))


def my_jobs(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
    return conn.execute("SELECT jobname, schedule, command, database, active FROM cron.job WHERE jobname LIKE %s "
                        "ORDER BY jobname", (PREFIX + "%",)).fetchall()


def drop_my_jobs(conn: psycopg.Connection[Any]) -> None:
    conn.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname LIKE %s", (PREFIX + "%",))


@pytest.fixture(scope="module")
def cron(dsn: str) -> Iterator[tuple[int, int]]:
    """pg_cron's version; skips where the server has no pg_cron. Removes this module's jobs before and after."""
    with psycopg.connect(dsn, autocommit=True) as c:
        version = cron_version(c)
        if version is None:
            pytest.skip("pg_cron is not installed on this server (test_create_extension_or_missing covers that)")
        drop_my_jobs(c)
    yield version
    with psycopg.connect(dsn, autocommit=True) as c:
        drop_my_jobs(c)


@pytest.fixture
def clean(cron: tuple[int, int], conn: psycopg.Connection[Any]) -> Iterator[psycopg.Connection[Any]]:
    """A connection to check cron.job with; the jobs a test made (other than the running one) go afterwards."""
    yield conn
    conn.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobname LIKE %s AND jobname <> %s",
                 (PREFIX + "%", PREFIX + "runs"))


@pytest.fixture(scope="module")
async def running_job(rt: Runtime, dsn: str, schema: str, cron: tuple[int, int]) -> AsyncIterator[dict[str, Any]]:
    """A job scheduled through the tool that inserts a row; started first so that its first run is near.

    pg_cron 1.4 runs jobs at minute boundaries only ('[1-59] seconds' came in 1.5): there the wait is
    up to a minute, spent mostly while the other tests run.
    """
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(sql.SQL("CREATE TABLE {} (note text, at timestamptz DEFAULT now())").format(
            sql.Identifier(schema, "ran")))
    schedule = "1 seconds" if cron >= (1, 5) else "* * * * *"
    command = f"INSERT INTO {schema}.ran (note) VALUES ('ran')"
    job = await rt.invoke("pg_cron_schedule", {"name": PREFIX + "runs", "schedule": schedule, "command": command},
                          LOCAL_PRINCIPAL)
    try:
        yield {**job, "scheduled_at": time.monotonic(), "seconds": cron >= (1, 5)}
    finally:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("SELECT cron.unschedule(jobid) FROM cron.job WHERE jobid = %s", (job["jobId"],))


# ---------------------------------------------------------------- create extension / without pg_cron


async def test_create_extension_or_missing(call: Call, conn: psycopg.Connection[Any], rt: Runtime) -> None:
    """Where pg_cron is installed, creating it again is a no-op; elsewhere every tool says it is missing."""
    if cron_version(conn) is not None:
        out = await call("pg_cron_create_extension", {})
        assert out["created"] is False and out["schema"] == "cron"
        assert out["cron.database_name"] == one(conn, "SELECT current_database()")
        return
    with pytest.raises(ToolError) as exc:
        await call("pg_cron_create_extension", {})
    assert_tool_error(exc, "EXTENSION_MISSING", "pg_cron")
    for name, args in (("pg_cron_schedule", JOB), ("pg_cron_schedule_in_database", {**JOB, "database": "x"}),
                       ("pg_cron_unschedule", {"jobId": 1}), ("pg_cron_alter_job", {"jobId": 1, "active": False}),
                       ("pg_cron_list_jobs", {}), ("pg_cron_job_run_details", {}), ("pg_cron_cleanup_history", {})):
        with pytest.raises(ToolError) as exc:
            await call(name, args)
        err = assert_tool_error(exc, "EXTENSION_MISSING", "pg_cron")
        assert err.details["extension"] == "pg_cron" and err.hint
    assert not rt.db.caps.has_extension("pg_cron")


# ---------------------------------------------------------------- schedule


async def test_schedule_records_the_job(running_job: dict[str, Any], clean: psycopg.Connection[Any],
                                        schema: str) -> None:
    assert running_job["name"] == PREFIX + "runs" and running_job["active"] is True
    assert running_job["replaced"] is False and running_job["jobId"] > 0
    row = clean.execute("SELECT jobname, command, database, username FROM cron.job WHERE jobid = %s",
                        (running_job["jobId"],)).fetchone()
    assert row == (PREFIX + "runs", f"INSERT INTO {schema}.ran (note) VALUES ('ran')",
                   one(clean, "SELECT current_database()"), one(clean, "SELECT current_user"))


@pytest.mark.parametrize("command,problem", [
    ("SELECT 1; SELECT 2", "it has 2 statements"),
    ("-- nothing but a comment", "it has no statement"),
    ("SELEC 1", "does not parse"),
])
async def test_schedule_refuses_anything_but_one_statement(call: Call, clean: psycopg.Connection[Any],
                                                           command: str, problem: str) -> None:
    before = my_jobs(clean)
    with pytest.raises(ToolError) as exc:
        await call("pg_cron_schedule", {**JOB, "command": command})
    assert_tool_error(exc, "INVALID_INPUT", problem)
    assert my_jobs(clean) == before


@pytest.mark.parametrize("schedule,problem", [
    ("* * * *", "5 fields"), ("61 * * * *", "minute"), ("0 24 * * *", "hour"), ("0 0 0 * *", "day of month"),
    ("0 0 * 13 *", "month"), ("0 0 * * 8", "day of week"), ("*/0 * * * *", "minute"), ("bogus", "5 fields"),
    ("@often", "5 fields"), ("0 seconds", "5 fields"), ("60 seconds", "5 fields"), ("1; DROP TABLE x", "5 fields"),
])
async def test_schedule_refuses_bad_schedules(call: Call, clean: psycopg.Connection[Any], schedule: str,
                                              problem: str) -> None:
    before = my_jobs(clean)
    with pytest.raises(ToolError) as exc:
        await call("pg_cron_schedule", {**JOB, "schedule": schedule})
    assert_tool_error(exc, "INVALID_INPUT", "invalid schedule" if problem != "5 fields" else "", problem)
    assert my_jobs(clean) == before


async def test_schedule_forms_that_pg_cron_takes(call: Call, clean: psycopg.Connection[Any],
                                                 cron: tuple[int, int]) -> None:
    for i, schedule in enumerate(["*/5 * * * *", "0 3 * * 1-5", "30 2 1,15 jan,jul sun", "@daily", " @Hourly "]):
        out = await call("pg_cron_schedule", {**JOB, "name": f"{PREFIX}form{i}", "schedule": schedule})
        assert out["schedule"] == " ".join(schedule.lower().split())
    assert len(my_jobs(clean)) == 6  # the five and the running job
    if cron < (1, 5):
        with pytest.raises(ToolError) as exc:
            await call("pg_cron_schedule", {**JOB, "schedule": "30 seconds"})
        assert_tool_error(exc, "UNSUPPORTED_VERSION", "pg_cron 1.5")
    else:
        out = await call("pg_cron_schedule", {**JOB, "schedule": "30 seconds"})
        assert out["schedule"] == "30 seconds"


async def test_schedule_same_name_needs_replace(call: Call, clean: psycopg.Connection[Any]) -> None:
    first = await call("pg_cron_schedule", JOB)
    with pytest.raises(ToolError) as exc:
        await call("pg_cron_schedule", {**JOB, "command": "SELECT 2"})
    err = assert_tool_error(exc, "ALREADY_EXISTS", JOB["name"])
    assert err.details["jobId"] == first["jobId"]
    assert [r[2] for r in my_jobs(clean) if r[0] == JOB["name"]] == ["SELECT 1"]
    second = await call("pg_cron_schedule", {**JOB, "command": "SELECT 2", "replace": True})
    assert second["replaced"] is True and second["jobId"] == first["jobId"] and second["command"] == "SELECT 2"


async def test_schedule_in_database(call: Call, clean: psycopg.Connection[Any]) -> None:
    out = await call("pg_cron_schedule_in_database", {**JOB, "database": "postgres", "active": False})
    assert out["database"] == "postgres" and out["active"] is False
    assert (JOB["name"], "0 3 * * *", "SELECT 1", "postgres", False) in my_jobs(clean)
    for args, code in (({"database": "t_cron_no_such_db"}, "NOT_FOUND"), ({"username": "t_cron_no_role",
                       "database": "postgres", "name": PREFIX + "y"}, "NOT_FOUND"),
                       ({"database": "postgres", "name": PREFIX + "y", "command": "SELECT 1; SELECT 2"},
                        "INVALID_INPUT")):
        with pytest.raises(ToolError) as exc:
            await call("pg_cron_schedule_in_database", {**JOB, **args})
        assert_tool_error(exc, code)
    assert [r[0] for r in my_jobs(clean)].count(PREFIX + "y") == 0


# ---------------------------------------------------------------- alter, unschedule, list


async def test_alter_job(call: Call, clean: psycopg.Connection[Any]) -> None:
    job = await call("pg_cron_schedule", JOB)
    out = await call("pg_cron_alter_job", {"name": JOB["name"], "schedule": "15 4 * * *", "active": False})
    assert out["before"]["schedule"] == "0 3 * * *" and out["after"]["schedule"] == "15 4 * * *"
    assert out["after"]["active"] is False and out["changed"] == ["active", "schedule"]
    assert (JOB["name"], "15 4 * * *", "SELECT 1", one(clean, "SELECT current_database()"), False) in my_jobs(clean)
    await call("pg_cron_alter_job", {"jobId": job["jobId"], "command": "SELECT 42", "active": True})
    assert one(clean, "SELECT command FROM cron.job WHERE jobid = %s", job["jobId"]) == "SELECT 42"
    for args, code in (({"jobId": job["jobId"]}, "INVALID_INPUT"),
                       ({"jobId": job["jobId"], "command": "SELECT 1; DROP TABLE x"}, "INVALID_INPUT"),
                       ({"jobId": job["jobId"], "schedule": "99 * * * *"}, "INVALID_INPUT"),
                       ({"name": PREFIX + "nope", "active": False}, "NOT_FOUND"),
                       ({"jobId": job["jobId"], "name": JOB["name"], "active": False}, "INVALID_INPUT"),
                       ({"jobId": job["jobId"], "database": "t_cron_no_such_db"}, "NOT_FOUND")):
        with pytest.raises(ToolError) as exc:
            await call("pg_cron_alter_job", args)
        assert_tool_error(exc, code)
    assert one(clean, "SELECT schedule || ' ' || command FROM cron.job WHERE jobid = %s",
               job["jobId"]) == "15 4 * * * SELECT 42"


async def test_unschedule_by_name_and_by_id(call: Call, clean: psycopg.Connection[Any]) -> None:
    a = await call("pg_cron_schedule", {**JOB, "name": PREFIX + "a"})
    b = await call("pg_cron_schedule", {**JOB, "name": PREFIX + "b"})
    out = await call("pg_cron_unschedule", {"name": PREFIX + "a"})
    assert out["unscheduled"] is True and out["jobId"] == a["jobId"]
    await call("pg_cron_unschedule", {"jobId": b["jobId"]})
    assert not [r for r in my_jobs(clean) if r[0] in (PREFIX + "a", PREFIX + "b")]
    for args, code in (({"name": PREFIX + "a"}, "NOT_FOUND"), ({"jobId": 2**62}, "NOT_FOUND"), ({}, "INVALID_INPUT")):
        with pytest.raises(ToolError) as exc:
            await call("pg_cron_unschedule", args)
        assert_tool_error(exc, code)


async def test_list_jobs(call: Call, clean: psycopg.Connection[Any], running_job: dict[str, Any]) -> None:
    await call("pg_cron_schedule", {**JOB, "name": PREFIX + "paused"})
    await call("pg_cron_alter_job", {"name": PREFIX + "paused", "active": False})
    mine = await call("pg_cron_list_jobs", {"nameLike": PREFIX + "%"})
    assert [j["name"] for j in mine] == [PREFIX + "runs", PREFIX + "paused"]  # by jobId
    assert set(mine[0]) == {"jobId", "name", "schedule", "command", "database", "username", "active"}
    paused = await call("pg_cron_list_jobs", {"nameLike": PREFIX + "%", "active": False})
    assert [j["name"] for j in paused] == [PREFIX + "paused"]
    assert len(await call("pg_cron_list_jobs", {"limit": 1})) == 1
    with pytest.raises(ToolError) as exc:
        await call("pg_cron_list_jobs", {"limit": 0})
    assert_tool_error(exc, "INVALID_INPUT")


# ---------------------------------------------------------------- scopes


@pytest.mark.parametrize("name", ADMIN_TOOLS)
async def test_admin_tools_are_forbidden_to_a_write_token(call: Call, clean: psycopg.Connection[Any],
                                                          name: str) -> None:
    args = {"pg_cron_schedule": JOB, "pg_cron_schedule_in_database": {**JOB, "database": "postgres"},
            "pg_cron_unschedule": {"name": PREFIX + "runs"}, "pg_cron_alter_job": {"name": PREFIX + "runs",
                                                                                   "active": False}}.get(name, {})
    before = my_jobs(clean)
    with pytest.raises(ToolError) as exc:
        await call(name, args, principal=WRITER)
    assert_tool_error(exc, "FORBIDDEN", "admin")
    assert my_jobs(clean) == before


@pytest.mark.parametrize("name", READ_TOOLS)
async def test_read_tools_need_read_scope(call: Call, cron: tuple[int, int], name: str) -> None:
    with pytest.raises(ToolError) as exc:
        await call(name, {}, principal=NOBODY)
    assert_tool_error(exc, "FORBIDDEN")


# ---------------------------------------------------------------- code mode


async def test_code_mode_seed_names(call: Call, clean: psycopg.Connection[Any]) -> None:
    code = (f"const job = await pg.cron.scheduleJob({{name: '{PREFIX}code', schedule: '@daily', "
            "command: 'SELECT 1'});\n"
            "const jobs = await pg.cron.listJobs();\n"
            "return {id: job.jobId, listed: jobs.some(j => j.jobId === job.jobId), isList: Array.isArray(jobs)};")
    out = await call("pg_execute_code", {"code": code, "readonly": False})
    assert out["success"] is True, out
    assert out["result"]["listed"] is True and out["result"]["isList"] is True
    assert one(clean, "SELECT jobname FROM cron.job WHERE jobid = %s", out["result"]["id"]) == PREFIX + "code"


# ---------------------------------------------------------------- the job ran; run details; history (last: waits)


async def test_scheduled_job_runs_and_is_recorded(call: Call, clean: psycopg.Connection[Any], schema: str,
                                                  running_job: dict[str, Any]) -> None:
    """pg_cron runs the job (a row appears) and records a succeeded run; the wait is bounded."""
    budget = 15 if running_job["seconds"] else 75  # pg_cron 1.4: the next minute boundary, plus its poll
    deadline = running_job["scheduled_at"] + budget
    runs: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        rows = one(clean, sql.SQL("SELECT count(*) FROM {}").format(sql.Identifier(schema, "ran")))
        details = await call("pg_cron_job_run_details", {"jobId": running_job["jobId"], "status": "succeeded"})
        runs = details["runs"]
        if rows and runs:
            break
        await anyio.sleep(0.5)
    assert runs, f"pg_cron did not run job {running_job['jobId']} within {budget} s"
    run = runs[0]
    assert run["job_id"] == running_job["jobId"] and run["name"] == PREFIX + "runs" and run["status"] == "succeeded"
    assert run["return_message"] == "INSERT 0 1" and run["duration_ms"] >= 0
    assert one(clean, sql.SQL("SELECT note FROM {} LIMIT 1").format(sql.Identifier(schema, "ran"))) == "ran"
    by_name = await call("pg_cron_job_run_details", {"name": PREFIX + "runs", "since": "1 hour", "limit": 1})
    assert by_name["runs"][0]["job_id"] == running_job["jobId"] and by_name["count"] == 1
    with pytest.raises(ToolError) as exc:
        await call("pg_cron_job_run_details", {"since": "yesterday-ish"})
    assert_tool_error(exc, "INVALID_INPUT", "interval")


async def test_cleanup_history_deletes_only_old_runs(call: Call, clean: psycopg.Connection[Any],
                                                     running_job: dict[str, Any]) -> None:
    job_id = running_job["jobId"]
    clean.execute("INSERT INTO cron.job_run_details (jobid, runid, database, username, command, status, "
                  "start_time, end_time) SELECT %s, nextval('cron.runid_seq'), current_database(), current_user, "
                  "'SELECT 1', 'succeeded', now() - interval '30 days', now() - interval '30 days'", (job_id,))
    recent = one(clean, "SELECT count(*) FROM cron.job_run_details WHERE jobid = %s AND start_time > now() - "
                 "interval '1 day'", job_id)
    for args in ({"olderThan": "soon"}, {"olderThan": "-1 day"}, {"olderThan": "0"}):
        with pytest.raises(ToolError) as exc:
            await call("pg_cron_cleanup_history", {**args, "jobId": job_id})
        assert_tool_error(exc, "INVALID_INPUT")
    assert one(clean, "SELECT count(*) FROM cron.job_run_details WHERE jobid = %s", job_id) == recent + 1
    out = await call("pg_cron_cleanup_history", {"olderThan": "7 days", "jobId": job_id})
    assert out["deleted"] == 1 and out["olderThan"] == "7 days"
    assert one(clean, "SELECT count(*) FROM cron.job_run_details WHERE jobid = %s", job_id) == recent
