"""cron group: jobs scheduled with pg_cron, which runs each job's command later as the job's owner."""

from __future__ import annotations

import re
from typing import Any, Literal

import psycopg
from pglast import parse_sql
from pglast.parser import ParseError
from psycopg import sql
from pydantic import Field, model_validator

from pgcode.core.context import ToolContext, savepoint
from pgcode.core.registry import ToolInput, tool
from pgcode.db.queries import load_query
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import IDENT_MAX
from pgcode.groups._extensions import create_extension, preloaded
from pgcode.groups._tabular import limit_field
from pgcode.types import Effect

CRON = ("pg_cron",)
# pg_cron always keeps its tables and functions in the schema `cron`, whatever pg_extension.extnamespace says.
_JOB_COLUMNS = sql.SQL("jobid AS job_id, jobname AS name, schedule, command, database, username, active, "
                       "nodename, nodeport")
_MACROS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly", "@reboot"}
_SECONDS_RE = re.compile(r"^([1-9]|[1-5][0-9]) seconds?$")
# minute, hour, day of month, month, day of week: (low, high, names allowed)
_FIELDS = ((0, 59, ()), (0, 23, ()), (1, 31, ()),
           (1, 12, ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")),
           (0, 7, ("sun", "mon", "tue", "wed", "thu", "fri", "sat")))
_ITEM_RE = re.compile(r"^(\*|[0-9a-z]+(-[0-9a-z]+)?)(/[0-9]+)?$")
SECONDS_MIN_VERSION = (1, 5)  # pg_cron 1.5 added '[1-59] seconds' schedules

JobName = Field(min_length=1, max_length=IDENT_MAX, description="Job name (unique per owner)")
Schedule = Field(min_length=1, max_length=200, description="'0 3 * * *' (cron, GMT), '@daily' or '30 seconds'")
Command = Field(min_length=1, max_length=100_000, description="One SQL statement")
RunStatus = Literal["starting", "running", "sending", "connecting", "succeeded", "failed"]


def cron_version(ctx: ToolContext) -> tuple[int, int]:
    m = re.match(r"(\d+)\.(\d+)", ctx.caps.installed.get("pg_cron", ""))
    return (int(m.group(1)), int(m.group(2))) if m else (0, 0)


def check_schedule(ctx: ToolContext, text: str) -> str:
    """The schedule, normalised, or INVALID_INPUT saying what is wrong with it (before pg_cron sees it)."""
    schedule = " ".join(text.split())
    low = schedule.lower()
    if low in _MACROS:
        return low
    if _SECONDS_RE.match(low):
        found = cron_version(ctx)
        if found < SECONDS_MIN_VERSION:
            raise ToolError(ErrorCode.UNSUPPORTED_VERSION,
                            f"schedules in seconds need pg_cron 1.5 or later; this server has pg_cron "
                            f"{ctx.caps.installed.get('pg_cron')}", hint="use a cron schedule such as '* * * * *' "
                            "(every minute), or update pg_cron", details={"schedule": schedule})
        return low
    fields = low.split(" ")
    if len(fields) != 5:
        raise ToolError(ErrorCode.INVALID_INPUT, f"invalid schedule {schedule!r}: a cron schedule has 5 fields "
                        f"(minute hour day-of-month month day-of-week), this has {len(fields)}",
                        hint="e.g. '0 3 * * *' (03:00 daily), '*/10 * * * *', '@hourly' or '30 seconds'")
    names = ("minute", "hour", "day of month", "month", "day of week")
    for value, name, (lo, hi, words) in zip(fields, names, _FIELDS, strict=True):
        for item in value.split(","):
            if not _ITEM_RE.match(item) or not _in_range(item, lo, hi, words):
                raise ToolError(ErrorCode.INVALID_INPUT, f"invalid schedule {schedule!r}: the {name} field "
                                f"{value!r} is not valid (values {lo}-{hi}, '*', ranges a-b, steps /n, lists a,b)")
    return low


def _in_range(item: str, lo: int, hi: int, words: tuple[str, ...]) -> bool:
    head, _, step = item.partition("/")
    if step and not 1 <= int(step) <= hi:
        return False
    if head == "*":
        return True
    for part in head.split("-"):
        if part.isdigit():
            if not lo <= int(part) <= hi:
                return False
        elif part not in words:
            return False
    return True


def check_command(text: str) -> str:
    """The command if it parses as exactly one SQL statement; INVALID_INPUT otherwise."""
    try:
        statements = parse_sql(text)
    except ParseError as exc:
        raise ToolError(ErrorCode.INVALID_INPUT, f"the command does not parse: {exc.args[0]}") from None
    if len(statements) != 1:
        what = "no statement" if not statements else f"{len(statements)} statements"
        raise ToolError(ErrorCode.INVALID_INPUT, f"the command must be exactly one SQL statement; it has {what}",
                        hint="schedule one job per statement, or wrap several in a function or procedure and "
                             "schedule its call")
    return text.strip()


async def require_cron_database(ctx: ToolContext) -> str:
    """Raise unless pg_cron is preloaded and runs jobs from this database; return cron.database_name."""
    libs = await preloaded(ctx)
    if "pg_cron" not in libs:
        raise ToolError(ErrorCode.EXTENSION_MISSING,
                        f"pg_cron is not in shared_preload_libraries (it is {', '.join(libs) or 'empty'}), so no "
                        "job would ever run", hint="add pg_cron to shared_preload_libraries and restart the server",
                        details={"shared_preload_libraries": libs})
    cron_db: str | None = await ctx.fetchval("SELECT current_setting('cron.database_name', true)")
    here: str = await ctx.fetchval("SELECT current_database()")
    if cron_db != here:
        raise ToolError(ErrorCode.EXTENSION_MISSING,
                        f"pg_cron runs jobs from database {cron_db!r} (cron.database_name), not from {here!r}",
                        hint=f"connect pgcode to {cron_db!r} and use pg_cron_schedule_in_database to run a job "
                             f"in {here!r}", details={"cron.database_name": cron_db, "database": here})
    return cron_db


async def _job(ctx: ToolContext, job_id: int | None, name: str | None) -> dict[str, Any]:
    """One job by id, or by name (this role's job of that name first); NOT_FOUND or CONFLICT otherwise."""
    if job_id is not None:
        rows = await ctx.fetch(sql.SQL("SELECT {} FROM cron.job WHERE jobid = %s").format(_JOB_COLUMNS), (job_id,))
    else:
        rows = await ctx.fetch(sql.SQL("SELECT {}, username = current_user AS mine FROM cron.job "
                                       "WHERE jobname = %s ORDER BY mine DESC, jobid").format(_JOB_COLUMNS), (name,))
        if rows and rows[0]["mine"]:  # pg_cron keeps job names unique per role
            rows = rows[:1]
    if not rows:
        what = f"id {job_id}" if job_id is not None else f"name {name!r}"
        raise ToolError(ErrorCode.NOT_FOUND, f"there is no cron job with {what}", hint="pg_cron_list_jobs lists them")
    if len(rows) > 1:
        raise ToolError(ErrorCode.CONFLICT, f"several roles have a cron job named {name!r}; give its jobId",
                        details={"jobIds": [r["job_id"] for r in rows]})
    return _shape(rows[0])


def _shape(row: dict[str, Any]) -> dict[str, Any]:
    return {"jobId": row["job_id"], "name": row["name"], "schedule": row["schedule"], "command": row["command"],
            "database": row["database"], "username": row["username"], "active": row["active"]}


class CreateExtensionIn(ToolInput):
    pass


@tool(group="cron", effect=Effect.ADMIN)
async def cron_create_extension(ctx: ToolContext, args: CreateExtensionIn) -> dict[str, Any]:
    """Create the pg_cron extension (job scheduling).

    Says whether it was already there. pg_cron loads only from shared_preload_libraries and can be created only in the
    database named by cron.database_name; when either is not so, nothing is created and the error says what to change.
    """
    ctx.use_autocommit()
    cron_db = await require_cron_database(ctx) if "pg_cron" in ctx.caps.available else None
    out = await create_extension(ctx, "pg_cron", package="the server package (e.g. postgresql-15-cron)")
    return {**out, "schema": "cron", "cron.database_name": cron_db}


class ScheduleIn(ToolInput):
    name: str = JobName
    schedule: str = Schedule
    command: str = Command
    replace: bool = False


@tool(group="cron", effect=Effect.ADMIN, extensions=CRON, aliases=("scheduleJob",))
async def cron_schedule(ctx: ToolContext, args: ScheduleIn) -> dict[str, Any]:
    """Schedule a named job that runs one SQL statement in this database; returns the job.

    The job (with its jobId) runs later as the connecting role, in its own session. pg.cron.scheduleJob({name,
    schedule, command}) is this tool.

    Arguments: name: unique per owner; schedule: 5-field cron syntax ('*/5 * * * *': minute hour day-of-month
    month day-of-week, in cron.timezone, GMT by default), a macro such as '@daily' or '@hourly', or '[1-59]
    seconds' (pg_cron 1.5 or later); command: exactly one SQL statement, run as the job's owner in a session of
    its own; replace: replace this role's job of the same name instead of refusing.
    """
    schedule, command = check_schedule(ctx, args.schedule), check_command(args.command)
    await require_cron_database(ctx)
    replaced = await _existing(ctx, args.name, args.replace)
    job_id = await ctx.fetchval("SELECT cron.schedule(%s, %s, %s)", (args.name, schedule, command))
    return {**await _job(ctx, job_id, None), "replaced": replaced}


async def _existing(ctx: ToolContext, name: str, replace: bool) -> bool:
    job_id = await ctx.fetchval("SELECT jobid FROM cron.job WHERE jobname = %s AND username = current_user",
                                (name,))
    if job_id is not None and not replace:
        raise ToolError(ErrorCode.ALREADY_EXISTS, f"a cron job named {name!r} already exists (jobId {job_id})",
                        hint="pass replace: true to replace it, or pg_cron_alter_job to change it",
                        details={"jobId": job_id})
    return job_id is not None


class ScheduleInDatabaseIn(ScheduleIn):
    database: str = Field(min_length=1, max_length=IDENT_MAX, description="Database the job runs in")
    username: str | None = Field(None, min_length=1, max_length=IDENT_MAX)
    active: bool = True


@tool(group="cron", effect=Effect.ADMIN, extensions=CRON)
async def cron_schedule_in_database(ctx: ToolContext, args: ScheduleInDatabaseIn) -> dict[str, Any]:
    """Schedule a named job that runs one SQL statement in another database.

    pg_cron's schedule_in_database; name, schedule, command and replace as in pg_cron_schedule. username: the
    role the job runs as (default: the connecting role; another role needs superuser); active: whether the job
    starts active. pgcode must be connected to the database named by cron.database_name, where pg_cron keeps its jobs.
    """
    schedule, command = check_schedule(ctx, args.schedule), check_command(args.command)
    await require_cron_database(ctx)
    if not await ctx.fetchval("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = %s)", (args.database,)):
        raise ToolError(ErrorCode.NOT_FOUND, f"database {args.database!r} does not exist")
    if args.username is not None and not await ctx.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = %s)", (args.username,)):
        raise ToolError(ErrorCode.NOT_FOUND, f"role {args.username!r} does not exist")
    replaced = await _existing(ctx, args.name, args.replace)
    job_id = await ctx.fetchval("SELECT cron.schedule_in_database(%s, %s, %s, %s, %s, %s)",
                                (args.name, schedule, command, args.database, args.username, args.active))
    return {**await _job(ctx, job_id, None), "replaced": replaced}


class JobRefIn(ToolInput):
    job_id: int | None = Field(None, ge=1)
    name: str | None = Field(None, min_length=1, max_length=IDENT_MAX)

    @model_validator(mode="after")
    def _one_ref(self) -> JobRefIn:
        if (self.job_id is None) == (self.name is None):
            raise ValueError("give exactly one of jobId and name")
        return self


@tool(group="cron", effect=Effect.DESTRUCTIVE, extensions=CRON)
async def cron_unschedule(ctx: ToolContext, args: JobRefIn) -> dict[str, Any]:
    """Remove a scheduled job, by jobId or name; returns the job that was removed.

    Give exactly one of jobId (from pg_cron_list_jobs) and name. Its run history stays.
    """
    job = await _job(ctx, args.job_id, args.name)
    await ctx.fetchval("SELECT cron.unschedule(%s::bigint)", (job["jobId"],))
    return {**job, "unscheduled": True}


class AlterJobIn(JobRefIn):
    schedule: str | None = Field(None, min_length=1, max_length=200)
    command: str | None = Field(None, min_length=1, max_length=100_000)
    database: str | None = Field(None, min_length=1, max_length=IDENT_MAX)
    username: str | None = Field(None, min_length=1, max_length=IDENT_MAX)
    active: bool | None = None


@tool(group="cron", effect=Effect.ADMIN, extensions=CRON)
async def cron_alter_job(ctx: ToolContext, args: AlterJobIn) -> dict[str, Any]:
    """Change a job's schedule, command, database, role or active flag, by jobId or name.

    Returns the job before and after. Give exactly one of jobId and name, and what changes: schedule and command take
    the forms of pg_cron_schedule (command exactly one SQL statement); username (the role it runs as) needs superuser;
    active false pauses the job, true resumes it.
    """
    changes = {k: getattr(args, k) for k in ("schedule", "command", "database", "username", "active")
               if getattr(args, k) is not None}
    if not changes:
        raise ToolError(ErrorCode.INVALID_INPUT, "nothing to change: give schedule, command, database, username "
                        "or active")
    schedule = check_schedule(ctx, args.schedule) if args.schedule is not None else None
    command = check_command(args.command) if args.command is not None else None
    await require_cron_database(ctx)
    before = await _job(ctx, args.job_id, args.name)
    if args.database is not None and not await ctx.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = %s)", (args.database,)):
        raise ToolError(ErrorCode.NOT_FOUND, f"database {args.database!r} does not exist")
    await ctx.execute("SELECT cron.alter_job(%s::bigint, %s, %s, %s, %s, %s)",
                      (before["jobId"], schedule, command, args.database, args.username, args.active))
    return {"before": before, "after": await _job(ctx, before["jobId"], None), "changed": sorted(changes)}


class ListJobsIn(ToolInput):
    name_like: str | None = Field(None, min_length=1, max_length=200)
    active: bool | None = None
    limit: int = Field(1000, ge=1, le=10_000)


@tool(group="cron", effect=Effect.READ, extensions=CRON, own_sql=True)
async def cron_list_jobs(ctx: ToolContext, args: ListJobsIn) -> list[dict[str, Any]]:
    """The scheduled jobs, by jobId: name, schedule, command, database, role and whether active.

    nameLike: only jobs whose name matches this LIKE pattern (e.g. 'nightly_%'); active: only active (true) or paused
    (false) jobs; limit: most jobs to return. pg_cron shows a role only its own jobs, unless it is a superuser.
    pg.cron.listJobs() is this tool.
    """
    rows = await ctx.fetch(sql.SQL(
        "SELECT {} FROM cron.job WHERE (%(like)s::text IS NULL OR jobname LIKE %(like)s) "
        "AND (%(active)s::boolean IS NULL OR active = %(active)s) ORDER BY jobid LIMIT %(limit)s").format(
        _JOB_COLUMNS), {"like": args.name_like, "active": args.active, "limit": args.limit})
    return [_shape(r) for r in rows]


class RunDetailsIn(ToolInput):
    job_id: int | None = Field(None, ge=1)
    name: str | None = Field(None, min_length=1, max_length=IDENT_MAX)
    status: RunStatus | None = None
    since: str | None = Field(None, max_length=100, description="Interval, e.g. '1 hour'")
    limit: int = limit_field(100)


@tool(group="cron", effect=Effect.READ, extensions=CRON, own_sql=True)
async def cron_job_run_details(ctx: ToolContext, args: RunDetailsIn) -> dict[str, Any]:
    """Runs of cron jobs, newest first: status, return message, start and end time, duration in ms.

    Filters: jobId, name (of the job), status, and since (only runs that started in this last interval, e.g.
    '1 hour' or '7 days').
    """
    since = await _interval(ctx, args.since) if args.since is not None else None
    rows = await ctx.fetch(load_query("cron_job_run_details"), {
        "job_id": args.job_id, "name": args.name, "status": args.status, "since": since,
        "limit": args.limit + 1})
    return {"runs": rows[:args.limit], "count": min(len(rows), args.limit), "truncated": len(rows) > args.limit}


class CleanupHistoryIn(ToolInput):
    older_than: str = Field("7 days", min_length=1, max_length=100)
    job_id: int | None = Field(None, ge=1)


@tool(group="cron", effect=Effect.DESTRUCTIVE, extensions=CRON)
async def cron_cleanup_history(ctx: ToolContext, args: CleanupHistoryIn) -> dict[str, Any]:
    """Delete cron run history older than an interval; returns how many rows went.

    From cron.job_run_details. olderThan: runs that ended (or started) longer ago than this interval; jobId: only runs
    of this job.
    """
    interval = await _interval(ctx, args.older_than)
    deleted = await ctx.execute(
        "DELETE FROM cron.job_run_details WHERE coalesce(end_time, start_time) < now() - %s::interval "
        "AND (%s::bigint IS NULL OR jobid = %s)", (interval, args.job_id, args.job_id))
    remaining = await ctx.fetchval("SELECT count(*) FROM cron.job_run_details")
    return {"deleted": deleted, "olderThan": interval, "jobId": args.job_id, "remaining": remaining}


async def _interval(ctx: ToolContext, text: str) -> str:
    """The interval as PostgreSQL prints it; INVALID_INPUT unless it is a positive interval."""
    try:
        async with savepoint(ctx, "cron_interval"):
            value = await ctx.fetchone("SELECT %s::interval::text AS text, %s::interval > interval '0' AS positive",
                                       (text, text))
    except psycopg.DataError:
        raise ToolError(ErrorCode.INVALID_INPUT, f"{text!r} is not an interval (e.g. '7 days', '12 hours')") from None
    assert value is not None
    if not value["positive"]:
        raise ToolError(ErrorCode.INVALID_INPUT, f"the interval must be positive, not {text!r}")
    return str(value["text"])
