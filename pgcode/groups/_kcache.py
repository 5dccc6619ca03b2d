"""pg_stat_kcache and pg_stat_statements plumbing shared by the kcache and monitoring groups."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from pgcode.core.context import ToolContext
from pgcode.db.queries import load_query
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._extensions import extension_schema, preloaded

KCACHE_MIN_VERSION = (2, 2)  # 2.2 split every counter into plan_* and exec_* and added `top`


def version_tuple(text: str) -> tuple[int, ...]:
    parts = []
    for piece in text.split("."):
        digits = "".join(ch for ch in piece if ch.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)




async def kcache_problem(ctx: ToolContext) -> str | None:
    """Why pg_stat_kcache cannot be read here (too old, or its libraries not preloaded), or None."""
    version = ctx.caps.installed.get("pg_stat_kcache")
    if version is None:
        return "the pg_stat_kcache extension is not installed"
    if version_tuple(version) < KCACHE_MIN_VERSION:
        return f"pg_stat_kcache {version} is installed; pgcode reads version 2.2 or later (ALTER EXTENSION UPDATE)"
    missing = [lib for lib in ("pg_stat_statements", "pg_stat_kcache") if lib not in await preloaded(ctx)]
    if missing:
        return (f"{' and '.join(missing)} must be in shared_preload_libraries (a server restart is needed) "
                "before pg_stat_kcache collects anything")
    return None


async def require_kcache(ctx: ToolContext) -> None:
    problem = await kcache_problem(ctx)
    if problem is not None:
        raise ToolError(ErrorCode.EXTENSION_MISSING, problem, hint="pg_kcache_create_extension explains the setup")


async def kcache_statements(ctx: ToolContext) -> sql.Composed:
    """The per-statement kcache query (sql/queries/kcache_statements.sql) with both extensions' schemas filled in."""
    kschema = await extension_schema(ctx, "pg_stat_kcache")
    sschema = await extension_schema(ctx, "pg_stat_statements")
    return load_query("kcache_statements").format(
        kcache=sql.Identifier(kschema, "pg_stat_kcache"), statements=sql.Identifier(sschema, "pg_stat_statements"))


def kcache_params(*, query_max: int = 200, all_databases: bool = False, toplevel_only: bool = True,
                  min_calls: int = 1, **extra: Any) -> dict[str, Any]:
    return {"query_max": query_max, "all_databases": all_databases, "toplevel_only": toplevel_only,
            "min_calls": min_calls, **extra}
