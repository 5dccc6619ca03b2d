"""admin: pgcode's memo of business insights, kept in the pgcode schema."""

from __future__ import annotations

from typing import Annotated, Any

from psycopg import sql
from pydantic import Field

from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.db import migrate
from pgcode.errors import ErrorCode, ToolError
from pgcode.types import Effect, TxMode

_MIGRATION = "001_insights.sql"
Tag = Annotated[str, Field(min_length=1, max_length=100)]


async def _ensure_table(ctx: ToolContext) -> None:
    """Create pgcode.insights unless it exists: the migration runner may not have run (or been allowed to)."""
    if await ctx.fetchval("SELECT to_regclass('pgcode.insights') IS NOT NULL"):
        return
    # The migration runner's lock, so the two never create the pgcode schema at the same time.
    await ctx.execute("SELECT pg_advisory_xact_lock(%s)", (migrate._LOCK_KEY,))
    await ctx.execute(sql.SQL(dict(migrate.migration_files())[_MIGRATION]))  # shipped with pgcode, not caller text


class AppendInsightIn(ToolInput):
    insight: str | None = Field(None, min_length=1, max_length=10_000, description="Omit to list the stored ones")
    tags: list[Tag] = Field(default_factory=list, max_length=20)
    tag: str | None = Field(None, min_length=1, max_length=100)
    limit: int = Field(20, ge=1, le=1000)


@tool(group="admin", effect=Effect.READ, tx=TxMode.READ_WRITE, own_sql=True)
async def append_insight(ctx: ToolContext, args: AppendInsightIn) -> dict[str, Any]:
    """Record a business insight in pgcode's memo, or list them (without insight).

    Recording returns the insight, filed under its tags, with the count. Listing returns the newest first, at most
    limit, only those with tag when given.

    The memo is the table pgcode.insights (id, created_at, principal, text, tags), created by pgcode's
    migrations (or on first use); it outlives the process. This read-scoped tool writes only that table
    of pgcode's own, which is why it runs in a read-write transaction; in a read-only call it can list
    but not append.
    """
    if args.insight is None:
        if args.tags:
            raise ToolError(ErrorCode.INVALID_INPUT, "tags go with an insight; use tag to filter the list")
        if not await ctx.fetchval("SELECT to_regclass('pgcode.insights') IS NOT NULL"):
            return {"count": 0, "insights": [], "truncated": False}
        rows = await ctx.fetch(
            "SELECT id, created_at, principal, text, tags, count(*) OVER () AS total FROM pgcode.insights "
            "WHERE %(tag)s::text IS NULL OR %(tag)s = ANY(tags) ORDER BY id DESC LIMIT %(limit)s",
            {"tag": args.tag, "limit": args.limit})
        total = rows[0].pop("total") if rows else 0
        for r in rows[1:]:
            r.pop("total")
        return {"count": total, "insights": rows, "truncated": total > len(rows)}
    if ctx.read_only:
        raise ToolError(ErrorCode.READ_ONLY, "appending an insight writes pgcode.insights; this call is read-only",
                        hint="leave out insight to list them")
    await _ensure_table(ctx)
    row = await ctx.fetchone(
        "INSERT INTO pgcode.insights (principal, text, tags) VALUES (%s, %s, %s) "
        "RETURNING id, created_at, principal, text, tags", (ctx.principal.subject, args.insight, args.tags))
    return {"appended": row, "count": await ctx.fetchval("SELECT count(*) FROM pgcode.insights")}
