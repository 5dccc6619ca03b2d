"""audit group: the audit log pgcode keeps of every call (admin only)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import Field

from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.errors import ErrorCode, ToolError
from pgcode.types import Effect, TxMode


class AuditLogIn(ToolInput):
    principal: str | None = Field(None, max_length=200)
    tool: str | None = Field(None, max_length=200)
    since: datetime | None = None
    limit: int = Field(100, ge=1, le=10_000)


@tool(group="audit", effect=Effect.ADMIN, tx=TxMode.READ_ONLY)
async def audit_log(ctx: ToolContext, args: AuditLogIn) -> dict[str, Any]:
    """Read the audit log: who called which tool, when, the outcome, redacted arguments.

    Newest first. principal (the subject), tool (e.g. pg_write_query) and since (ISO 8601) keep only those calls;
    limit caps the entries.
    """
    if not ctx.rt.audit.enabled:
        raise ToolError(ErrorCode.NOT_FOUND, "the audit log is off: pgcode's schema cannot be written here",
                        hint="run pgcode with a role that may create the pgcode schema, on a writable server")
    await ctx.rt.audit.flush()
    rows = await ctx.fetch(
        "SELECT id, at, principal, tool, effect, outcome, error_code, duration_ms, client_addr, arguments "
        "FROM pgcode.audit_log WHERE (%(principal)s::text IS NULL OR principal = %(principal)s) "
        "AND (%(tool)s::text IS NULL OR tool = %(tool)s) AND (%(since)s::timestamptz IS NULL OR at >= %(since)s) "
        "ORDER BY id DESC LIMIT %(limit)s",
        {"principal": args.principal, "tool": args.tool, "since": args.since, "limit": args.limit + 1})
    return {"entries": rows[: args.limit], "truncated": len(rows) > args.limit,
            "retentionDays": ctx.settings.audit_retention_days}
