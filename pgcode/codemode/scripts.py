"""Saved scripts in pgcode.scripts: unique names per owner, read and changed only by their owner."""

from __future__ import annotations

import re
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

from pgcode.core.context import ToolContext
from pgcode.db.pool import Database
from pgcode.errors import ErrorCode, ToolError
from pgcode.types import TxMode

NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_.-]{0,99}$")
NAME_RULE = "a script name starts with a letter and has up to 100 letters, digits, '_', '.' or '-'"
_FIELDS = sql.SQL("id, name, description, language, readonly, timeout_ms, memory_limit_mb, tools, created_at, "
                  "updated_at, runs, last_run_at")


def check_name(name: str) -> None:
    if not NAME_RE.match(name):
        raise ToolError(ErrorCode.INVALID_INPUT, f"{name[:120]!r} is not a valid script name: {NAME_RULE}")


def check_code(code: str, max_bytes: int) -> None:
    size = len(code.encode())
    if not code.strip():
        raise ToolError(ErrorCode.INVALID_INPUT, "the script has no code")
    if size > max_bytes:
        raise ToolError(ErrorCode.INVALID_INPUT, f"the code is {size} bytes; a saved script holds at most {max_bytes}")


def require_scripts(ctx: ToolContext) -> None:
    if not ctx.rt.schema_ready:
        raise ToolError(ErrorCode.NOT_FOUND, "saved scripts are off: pgcode's schema cannot be written here",
                        hint="run pgcode with a role that may create the pgcode schema, on a writable server")


def _where(owner: str, script_id: int | None, name: str | None) -> tuple[sql.Composable, list[Any]]:
    if script_id is not None:
        return sql.SQL("owner = %s AND id = %s"), [owner, script_id]
    return sql.SQL("owner = %s AND name = %s"), [owner, name]


def _missing(script_id: int | None, name: str | None) -> ToolError:
    what = f"id {script_id}" if script_id is not None else repr(name)
    return ToolError(ErrorCode.NOT_FOUND, f"you have no saved script {what}", hint="pg_script_list lists yours")


async def save(ctx: ToolContext, owner: str, values: dict[str, Any]) -> dict[str, Any]:
    row = await ctx.fetchone(
        sql.SQL("INSERT INTO pgcode.scripts (owner, name, description, code, language, readonly, timeout_ms, "
                "memory_limit_mb, tools) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s) "
                "ON CONFLICT (owner, name) DO NOTHING RETURNING {}").format(_FIELDS),
        [owner, values["name"], values["description"], values["code"], values["language"], values["readonly"],
         values["timeout_ms"], values["memory_limit_mb"], values["tools"]])
    if row is None:
        raise ToolError(ErrorCode.ALREADY_EXISTS, f"you already have a script named {values['name']!r}",
                        hint="pg_script_update changes it; pg_script_delete removes it")
    return row


async def list_scripts(ctx: ToolContext, owner: str, search: str | None, limit: int, offset: int) -> dict[str, Any]:
    pattern = f"%{search}%" if search else None
    rows = await ctx.fetch(
        sql.SQL("SELECT {}, count(*) OVER () AS total FROM pgcode.scripts WHERE owner = %s "
                "AND (%s::text IS NULL OR name ILIKE %s OR description ILIKE %s) "
                "ORDER BY name LIMIT %s OFFSET %s").format(_FIELDS),
        [owner, pattern, pattern, pattern, limit, offset])
    total = rows[0]["total"] if rows else 0
    for r in rows:
        r.pop("total")
    return {"scripts": rows, "total": total, "limit": limit, "offset": offset}


async def get(ctx: ToolContext, owner: str, script_id: int | None, name: str | None) -> dict[str, Any]:
    where, params = _where(owner, script_id, name)
    row = await ctx.fetchone(sql.SQL("SELECT {}, code FROM pgcode.scripts WHERE {}").format(_FIELDS, where), params)
    if row is None:
        raise _missing(script_id, name)
    return row


async def update(ctx: ToolContext, owner: str, script_id: int | None, name: str | None,
                 changes: dict[str, Any]) -> dict[str, Any]:
    where, params = _where(owner, script_id, name)
    sets: list[sql.Composable] = [sql.SQL("{} = %s").format(sql.Identifier(col)) for col in changes]
    sets.append(sql.SQL("updated_at = now()"))
    query = sql.SQL("UPDATE pgcode.scripts SET {} WHERE {} RETURNING {}").format(
        sql.SQL(", ").join(sets), where, _FIELDS)
    try:
        row = await ctx.fetchone(query, [*changes.values(), *params])
    except psycopg.errors.UniqueViolation:
        raise ToolError(ErrorCode.ALREADY_EXISTS, f"you already have a script named {changes.get('name')!r}") from None
    if row is None:
        raise _missing(script_id, name)
    return row


async def delete(ctx: ToolContext, owner: str, script_id: int | None, name: str | None) -> dict[str, Any]:
    where, params = _where(owner, script_id, name)
    row = await ctx.fetchone(sql.SQL("DELETE FROM pgcode.scripts WHERE {} RETURNING id, name").format(where), params)
    if row is None:
        raise _missing(script_id, name)
    return {"deleted": True, **row}


async def load_for_run(db: Database, owner: str, script_id: int | None, name: str | None) -> dict[str, Any]:
    """The script to run, read in a short transaction of its own (the run itself holds no connection)."""
    where, params = _where(owner, script_id, name)
    async with db.transaction(TxMode.READ_ONLY) as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql.SQL("SELECT id, name, code, readonly, timeout_ms, memory_limit_mb, tools "
                                  "FROM pgcode.scripts WHERE {}").format(where), params)
        row = await cur.fetchone()
    if row is None:
        raise _missing(script_id, name)
    return row


async def count_run(db: Database, script_id: int) -> None:
    async with db.transaction(TxMode.READ_WRITE) as conn:
        await conn.execute("UPDATE pgcode.scripts SET runs = runs + 1, last_run_at = now() WHERE id = %s",
                           (script_id,))
