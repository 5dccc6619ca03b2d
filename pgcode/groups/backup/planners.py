"""backup: commands and schedules for pg_dump, pg_restore and pg_basebackup, fitted to this server's version."""

from __future__ import annotations

import shlex
from enum import StrEnum
from typing import Any, Literal

from pydantic import Field

from pgcode.core import arguments
from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import IDENT_MAX
from pgcode.groups.backup._commands import Target, command, target
from pgcode.groups.backup._measure import GB, activity, basebackup_compress, dump_compress, human, wal_rate
from pgcode.types import Effect

_PATH = Field(min_length=1, max_length=1024)
_SAMPLE = Field(1.0, ge=0, le=30)


class DumpFormat(StrEnum):
    CUSTOM = "custom"
    DIRECTORY = "directory"
    TAR = "tar"
    PLAIN = "plain"


_SUFFIX = {DumpFormat.CUSTOM: ".dump", DumpFormat.DIRECTORY: "", DumpFormat.TAR: ".tar", DumpFormat.PLAIN: ".sql"}


def _dump_command(to: Target, path_shell: str, fmt: DumpFormat, jobs: int, level: int) -> str:
    """pg_dump writing to `path_shell`, a shell word already quoted (it may hold a $(date) stamp)."""
    parts = ["pg_dump", *to.args(), f"--format={fmt.value}"]
    if fmt is DumpFormat.DIRECTORY and jobs > 1:
        parts += ["--jobs", str(jobs)]
    if fmt in (DumpFormat.CUSTOM, DumpFormat.DIRECTORY) and level:
        parts += dump_compress(to.major, level)
    return f"{command(*parts, '--file')} {path_shell}"


def _basebackup_command(to: Target, directory_shell: str, *, tar: bool, level: int, fast: bool, label: str,
                        max_rate: str | None = None, wal_method: str = "stream",
                        incremental: str | None = None) -> str:
    parts = ["pg_basebackup", *to.args(database=False), f"--format={'tar' if tar else 'plain'}",
             f"--wal-method={wal_method}", f"--checkpoint={'fast' if fast else 'spread'}", "--label", label,
             "--progress"]
    if to.major >= 13:  # backup manifests (pg_verifybackup reads them) arrived in PostgreSQL 13
        parts.append("--manifest-checksums=SHA256")
    if level:
        parts += basebackup_compress(to.major, level, tar=tar)
    if max_rate:
        parts += ["--max-rate", max_rate]
    if incremental:
        parts += ["--incremental", incremental]
    return f"{command(*parts, '-D')} {directory_shell}"


class BackupPlanIn(ToolInput):
    backup_path: str = Field("/var/backups/postgresql", min_length=1, max_length=1024)
    hour: int = Field(2, ge=0, le=23, description="Server time")
    retention_days: int = Field(14, ge=1, le=3650)
    rpo_minutes: int = Field(60, ge=1, le=10_080)
    compress_level: int = Field(6, ge=0, le=9)
    sample_seconds: float = _SAMPLE


@tool(group="backup", effect=Effect.READ)
async def create_backup_plan(ctx: ToolContext, args: BackupPlanIn) -> dict[str, Any]:
    """A backup strategy for this server: cron lines, commands, space needed.

    Says what to run and when: backups go to backupPath (on the machine that runs them), the nightly work starts at
    hour (server time), backups are kept retentionDays, rpoMinutes is the most data you accept to lose,
    compressLevel the gzip level for dumps and base backups (0: none), and WAL and write rates are sampled for
    sampleSeconds (0: averages only).

    Sized from the database (pg_database_size) and its WAL and write rates (measured), fitted to the server's major
    version. Commands carry host, port, user and database only; the password comes from ~/.pgpass.
    """
    m = await activity(ctx, args.sample_seconds)
    to = await target(ctx)
    size, wal_per_day = m["database_bytes"], wal_rate(m) * 86_400
    big = size >= 50 * GB
    jobs = 4 if size >= GB else 1
    fmt = DumpFormat.DIRECTORY if jobs > 1 else DumpFormat.CUSTOM
    stamp = "$(date +\\%Y\\%m\\%d)"  # crontab turns an unescaped % into a newline
    dump_path = shlex.quote(f"{args.backup_path}/logical/{to.dbname}-") + stamp + _SUFFIX[fmt]
    schedule = [{
        "what": "logical dump (pg_dump)", "cron": f"0 {args.hour} * * {'0' if big else '*'}",
        "frequency": "weekly" if big else "daily",
        "command": _dump_command(to, dump_path, fmt, jobs, args.compress_level),
    }]
    physical = big or args.rpo_minutes < 24 * 60
    if physical:
        schedule.append({
            "what": "physical base backup (pg_basebackup)", "cron": f"30 {args.hour} * * 0", "frequency": "weekly",
            "command": _basebackup_command(to, shlex.quote(f"{args.backup_path}/base/") + stamp, tar=True,
                                           level=args.compress_level, fast=False, label="pgcode weekly"),
        })
    schedule.append({
        "what": "remove old backups", "cron": f"0 {(args.hour + 6) % 24} * * *", "frequency": "daily",
        "command": f"find {command(args.backup_path)} -mindepth 2 -maxdepth 2 -mtime +{args.retention_days} "
                   "-exec rm -rf {} +",
    })
    notes = [f"use client tools of PostgreSQL {to.major} or newer"]
    if physical and not m["archiving_configured"]:
        notes.append(f"an RPO of {args.rpo_minutes} min needs WAL archiving between base backups: set archive_mode "
                     "= on and archive_command (or pgBackRest/WAL-G), or stream with pg_receivewal")
    if physical and not m["can_replicate"]:
        notes.append(f"pg_basebackup needs a role with REPLICATION; {to.user} has none")
    kept = args.retention_days if not big else args.retention_days / 7
    dump_estimate = size * (0.3 if args.compress_level else 1.0)
    return {
        "measured": m, "connection": to.as_dict(), "schedule": schedule, "notes": notes,
        "estimates": {
            "dump_bytes": round(dump_estimate), "dump": human(dump_estimate),
            "wal_bytes_per_day": round(wal_per_day), "wal_per_day": human(wal_per_day),
            "storage_bytes": round(dump_estimate * kept + (size + wal_per_day * 7) * (1 if physical else 0)),
        },
        "strategy": ("weekly base backup + WAL archiving, weekly logical dump" if big else
                     "daily logical dump" + (" + weekly base backup with WAL archiving" if physical else "")),
    }


class RestoreCommandIn(ToolInput):
    file: str = Field(min_length=1, max_length=1024, description="Backup file or directory")
    format: DumpFormat = DumpFormat.CUSTOM
    database: str | None = Field(None, min_length=1, max_length=IDENT_MAX, description="Default: the connected one")
    jobs: int = Field(1, ge=1, le=64)
    clean: bool = False
    create: bool = False
    no_owner: bool = True
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX, description=arguments.SCHEMA_FILTER)
    table: str | None = Field(None, max_length=IDENT_MAX)
    data_only: bool = False
    schema_only: bool = False
    single_transaction: bool = False


@tool(group="backup", effect=Effect.READ)
async def restore_command(ctx: ToolContext, args: RestoreCommandIn) -> dict[str, Any]:
    """The pg_restore (or psql) command that restores a backup into this server.

    jobs runs in parallel (custom and directory formats); clean drops objects before recreating them (--clean
    --if-exists); create creates the database first (connecting to postgres to do so); noOwner (default true) sets no
    owners, restoring as the connecting role; schema and table restore only those; dataOnly only the rows, schemaOnly
    only the DDL; singleTransaction is all or nothing (not with jobs > 1).
    """
    if args.data_only and args.schema_only:
        raise ToolError(ErrorCode.INVALID_INPUT, "data_only and schema_only exclude each other")
    if args.jobs > 1 and (args.single_transaction or args.format in (DumpFormat.TAR, DumpFormat.PLAIN)):
        raise ToolError(ErrorCode.INVALID_INPUT, "parallel jobs need the custom or directory format, "
                                                 "without single_transaction")
    to = await target(ctx)
    dbname = "postgres" if args.create else (args.database or to.dbname)
    if args.format is DumpFormat.PLAIN:
        if args.clean or args.schema_ or args.table or args.data_only or args.schema_only:
            raise ToolError(ErrorCode.INVALID_INPUT, "a plain SQL dump is replayed as written: clean, schema, "
                                                     "table, data_only and schema_only need pg_restore's formats")
        parts = ["psql", *to.args(dbname=dbname), "--set", "ON_ERROR_STOP=1", "--no-psqlrc"]
        if args.single_transaction:
            parts.append("--single-transaction")
        cmd = command(*parts, "--file", args.file)
    else:
        parts = ["pg_restore", *to.args(dbname=dbname), f"--format={args.format.value}", "--exit-on-error"]
        flags = {"--clean": args.clean, "--if-exists": args.clean, "--create": args.create,
                 "--no-owner": args.no_owner, "--data-only": args.data_only, "--schema-only": args.schema_only,
                 "--single-transaction": args.single_transaction}
        parts += [flag for flag, on in flags.items() if on]
        if args.jobs > 1:
            parts += ["--jobs", str(args.jobs)]
        if args.schema_:
            parts += ["--schema", args.schema_]
        if args.table:
            parts += ["--table", args.table]
        cmd = command(*parts, args.file)
    return {"command": cmd, "list_command": command("pg_restore", "--list", args.file)
            if args.format is not DumpFormat.PLAIN else None,
            "connection": to.as_dict(), "notes": [f"use pg_restore of PostgreSQL {to.major} or newer, at least "
                                                  "the version of the pg_dump that wrote the file"]}


class PhysicalIn(ToolInput):
    directory: str = Field("/var/backups/postgresql/base", min_length=1, max_length=1024)
    format: Literal["tar", "plain"] = "tar"
    compress_level: int = Field(6, ge=0, le=9)
    wal_method: Literal["stream", "fetch", "none"] = "stream"
    fast_checkpoint: bool = True
    max_rate: str | None = Field(None, pattern=r"^\d+[kM]?$", description="Bytes/s, e.g. 50M (k or M)")
    incremental_from: str | None = Field(None, max_length=1024,
                                         description="backup_manifest of an earlier backup (PG 17+)")
    label: str = Field("pgcode base backup", min_length=1, max_length=100)


@tool(group="backup", effect=Effect.READ)
async def backup_physical(ctx: ToolContext, args: PhysicalIn) -> dict[str, Any]:
    """The pg_basebackup command for a physical backup, and whether it is allowed.

    directory must be empty or missing. format tar writes one file per tablespace, plain a copy of the data
    directory; compressLevel is the gzip level (0: none); walMethod is how WAL is included; fastCheckpoint starts at
    once instead of with a spread checkpoint; maxRate throttles; incrementalFrom takes an incremental backup from an
    earlier backup's backup_manifest (PostgreSQL 17+, summarize_wal = on); label is the backup label.
    """
    to = await target(ctx)
    if args.incremental_from:
        ctx.caps.require_version(170000, "incremental base backups (pg_basebackup --incremental)")
    m = await activity(ctx, 0)
    cmd = _basebackup_command(to, shlex.quote(args.directory), tar=args.format == "tar", level=args.compress_level,
                              fast=args.fast_checkpoint, label=args.label, max_rate=args.max_rate,
                              wal_method=args.wal_method, incremental=args.incremental_from)
    checks = {
        "replication_role": bool(m["can_replicate"]),
        "wal_senders": m["max_wal_senders"] > 0,
        "wal_level": m["wal_level"] in ("replica", "logical"),
    }
    if args.incremental_from:
        checks["summarize_wal"] = m["summarize_wal"] == "on"
    problems = {
        "replication_role": f"role {to.user} needs REPLICATION (ALTER ROLE ... REPLICATION)",
        "wal_senders": "max_wal_senders is 0", "wal_level": "wal_level must be replica or logical",
        "summarize_wal": "incremental backups need summarize_wal = on",
    }
    return {"command": cmd, "estimated_bytes": m["cluster_bytes"], "estimated": human(m["cluster_bytes"]),
            "checks": checks, "problems": [problems[k] for k, ok in checks.items() if not ok],
            "ready": all(checks.values()), "connection": to.as_dict(),
            "verify_command": command("pg_verifybackup", args.directory) if to.major >= 13 else None,
            "notes": ["pg_hba.conf must allow a replication connection for this role and host",
                      f"use pg_basebackup of PostgreSQL {to.major} (the server's major version)"]}


class ValidateIn(ToolInput):
    file: str = Field(min_length=1, max_length=1024, description="Backup file or directory")
    format: Literal["custom", "directory", "tar", "plain", "physical"] = "custom"
    scratch_database: str | None = Field(None, min_length=1, max_length=IDENT_MAX,
                                         description="Default: <db>_restore_check")


@tool(group="backup", effect=Effect.READ)
async def restore_validate(ctx: ToolContext, args: ValidateIn) -> dict[str, Any]:
    """Commands that prove a backup restores (into a scratch database).

    format is custom, directory, tar or plain (pg_dump) or physical (pg_basebackup). The steps read its table of
    contents, restore it into scratchDatabase (a throwaway database) and compare it with this one.
    """
    to = await target(ctx)
    m = await activity(ctx, 0)
    scratch = args.scratch_database or f"{to.dbname}_restore_check"[:IDENT_MAX]
    steps: list[dict[str, str]] = []
    if args.format == "physical":
        if to.major >= 13:
            steps.append({"step": "check the files against the backup manifest",
                          "command": command("pg_verifybackup", args.file)})
        steps += [
            {"step": "start a scratch server on the copy (another port)",
             "command": command("pg_ctl", "-D", args.file, "-o", "-p 54399 -c archive_mode=off", "-w", "start")},
            {"step": "check it answers", "command": command("psql", "-h", "localhost", "-p", "54399", "-U", to.user,
                                                            "-d", to.dbname, "-c", "SELECT count(*) FROM pg_class")},
            {"step": "stop the scratch server", "command": command("pg_ctl", "-D", args.file, "-w", "stop")},
        ]
        if to.major < 18:
            steps[0:0] = [{"step": "unpack a tar backup first (pg_verifybackup reads tar only from 18 on)",
                           "command": "mkdir restore && tar -xf base.tar -C restore"}]
    else:
        if args.format != "plain":
            steps.append({"step": "read the table of contents", "command": command("pg_restore", "--list", args.file)})
        steps.append({"step": "create a scratch database", "command": command("createdb", *to.args(database=False),
                                                                                scratch)})
        restore = (command("psql", *to.args(dbname=scratch), "--set", "ON_ERROR_STOP=1", "--no-psqlrc", "--file",
                           args.file) if args.format == "plain" else
                   command("pg_restore", *to.args(dbname=scratch), "--exit-on-error", "--no-owner", args.file))
        steps.append({"step": "restore into it, stopping at the first error", "command": restore})
        steps.append({"step": "count its tables (expect the number below)", "command": command(
            "psql", *to.args(dbname=scratch), "-Atc", "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON "
            "n.oid = c.relnamespace WHERE c.relkind IN ('r','p') AND n.nspname NOT IN ('pg_catalog', "
            "'information_schema') AND n.nspname NOT LIKE 'pg_toast%'")})
        if to.major >= 14:
            steps.append({"step": "check the heap and btree indexes (amcheck)",
                          "command": command("pg_amcheck", *to.args(database=False), "--install-missing", scratch)})
        steps.append({"step": "drop the scratch database", "command": command("dropdb", *to.args(database=False),
                                                                                scratch)})
    return {"format": args.format, "steps": steps, "connection": to.as_dict(),
            "expect": {"tables": m["tables"], "database_bytes": m["database_bytes"]}}


class ScheduleIn(ToolInput):
    rpo_minutes: int = Field(60, ge=1, le=10_080)
    throughput_mb_s: float = Field(100, gt=0, le=100_000)
    sample_seconds: float = Field(2.0, ge=0, le=30)


@tool(group="backup", effect=Effect.READ)
async def backup_schedule_optimize(ctx: ToolContext, args: ScheduleIn) -> dict[str, Any]:
    """How often to back up, from measured size, WAL and write rates.

    Rates are given on average and now (sampled for sampleSeconds); rpoMinutes is the most data you accept to lose, and
    throughputMbS the backup throughput (MB/s) assumed for the duration estimate.

    PostgreSQL keeps no per-hour history, so the quiet hour is not measured: the live sample says whether now is busier
    than the average since the statistics were reset.
    """
    m = await activity(ctx, args.sample_seconds)
    size = m["database_bytes"]
    duration_s = size / (args.throughput_mb_s * 1024 * 1024)
    wal_day = wal_rate(m) * 86_400
    sample = m.get("sample") or {}
    avg = m["avg_tuples_written_per_s"] or 0
    now = sample.get("tuples_written_per_s")
    load = None if now is None or not avg else round(now / avg, 2)
    # A full backup is worth redoing once the WAL since the last one outgrows the database itself.
    full_days = 1 if wal_day >= size / 7 or size < 10 * GB else 7
    continuous = args.rpo_minutes < full_days * 24 * 60
    recommendations = [f"full backup every {'day' if full_days == 1 else 'week'} "
                       f"(takes about {max(duration_s / 60, 0.1):.1f} min at {args.throughput_mb_s:g} MB/s)"]
    if continuous:
        recommendations.append(
            f"an RPO of {args.rpo_minutes} min needs continuous WAL archiving (about {human(wal_day)} a day)"
            + ("" if m["archiving_configured"] else "; archiving is not configured"))
    if load is not None:
        recommendations.append("now is " + ("busier" if load > 1.2 else "quieter" if load < 0.8 else "as busy")
                               + f" than the average since {m['stats_seconds'] / 3600:.1f} h ago (x{load})")
    return {"measured": m, "full_backup_every_days": full_days, "continuous_archiving": continuous,
            "cron": "0 2 * * *" if full_days == 1 else "0 2 * * 0", "estimated_duration_s": round(duration_s, 1),
            "wal_bytes_per_day": round(wal_day), "load_vs_average": load, "recommendations": recommendations}
