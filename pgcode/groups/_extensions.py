"""Extensions as the tool groups meet them: where one lives, what is preloaded, and the one way to create one."""

from __future__ import annotations

from typing import Any

from psycopg import sql

from pgcode.core.context import ToolContext
from pgcode.errors import ErrorCode, ToolError


async def extension_schema(ctx: ToolContext, extension: str) -> str:
    """The schema an installed extension's objects live in (it need not be on the search_path)."""
    schema: str | None = await ctx.fetchval(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace WHERE e.extname = %s",
        (extension,))
    if schema is None:
        raise ToolError(ErrorCode.EXTENSION_MISSING, f"this tool needs the {extension} extension, which is not "
                        "installed", hint=f"CREATE EXTENSION {extension} (needs admin)",
                        details={"extension": extension})
    return schema


async def preloaded(ctx: ToolContext) -> list[str]:
    """The libraries in shared_preload_libraries, as names."""
    text = await ctx.fetchval("SELECT current_setting('shared_preload_libraries')")
    return [p.strip().strip('"') for p in str(text or "").split(",") if p.strip()]


async def create_extension(ctx: ToolContext, extension: str, *, package: str, schema: str | None = None,
                           create_schema: bool = False, cascade: bool = False) -> dict[str, Any]:
    """CREATE EXTENSION IF NOT EXISTS, for the *_create_extension tools; says whether it was already there.

    The tool calls ctx.use_autocommit() first, so the extension is usable by the next call. `package` names
    what to install on the database host when the server does not ship the extension.
    """
    if extension not in ctx.caps.available:
        raise ToolError(ErrorCode.EXTENSION_MISSING, f"this server does not ship {extension}; nothing was created",
                        hint=f"install {package} on the database host",
                        details={"extension": extension, "available": False})
    existed = bool(await ctx.fetchval("SELECT count(*) > 0 FROM pg_extension WHERE extname = %s", (extension,)))
    if schema and create_schema:
        await ctx.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
    await ctx.execute(sql.SQL("CREATE EXTENSION IF NOT EXISTS {}{}{}").format(
        sql.Identifier(extension), sql.SQL(" SCHEMA {}").format(sql.Identifier(schema)) if schema else sql.SQL(""),
        sql.SQL(" CASCADE" if cascade else "")))
    caps = await ctx.rt.db.refresh_capabilities(await ctx.conn())
    return {"extension": extension, "version": caps.installed.get(extension), "created": not existed,
            "schema": await extension_schema(ctx, extension)}
