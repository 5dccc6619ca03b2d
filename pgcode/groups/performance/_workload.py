"""The user's workload for the index advisor: pg_stat_statements rows of this database, pgcode's own left out."""

from __future__ import annotations

from typing import Any

from pglast import ast, parse_sql

from pgcode.advisor.engine import Query, prepare
from pgcode.advisor.workload import REASONS, user_workload
from pgcode.core.context import ToolContext
from pgcode.db.queries import load_query
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups.performance._shared import pgss_fetch, pgss_order, pgss_relation
from pgcode.groups.performance.explain import Kind, Statement, inspect

_WORKLOAD_ROWS = 5000  # pg_stat_statements.max's default: every statement it keeps


async def workload_queries(ctx: ToolContext, *, top: int, min_calls: int, min_mean_ms: float,
                           search: str | None) -> tuple[list[Query], dict[str, Any]]:
    """The user's statements from pg_stat_statements as advisor queries (calls as weight, rows per call as the
    size the parameter values aim at), and a summary of what was left out and why."""
    query = load_query("advisor_workload").format(total=pgss_order(ctx, "total_time"), pgss=await pgss_relation(ctx))
    rows = await pgss_fetch(ctx, query, {"search": search, "limit": _WORKLOAD_ROWS})
    statements, excluded = user_workload(rows, own_roles={ctx.settings.read_role, ctx.settings.write_role},
                                         min_calls=min_calls, min_mean_ms=min_mean_ms, top=top)
    queries, skipped = [], []
    for s in statements:
        label = s.text if len(s.text) <= 500 else s.text[:500] + "…"
        try:
            advisable(s.text)
            q = Query(s.text, weight=float(s.calls), label=label, rows_per_call=s.rows_per_call)
            await prepare(ctx, q)
        except ToolError as err:
            skipped.append({"queryid": s.queryid, "query": label, "reason": err.message})
            continue
        queries.append(q)
    summary = {"statements_seen": len(rows), "excluded": dict(excluded),
               "why": {k: REASONS[k] for k in excluded}, "min_calls": min_calls, "min_mean_ms": min_mean_ms,
               "skipped": skipped}
    return queries, summary


def advisable(text: str) -> Statement:
    """Check a statement for EXPLAIN (sqlpolicy rules) and that it is a SELECT, UPDATE or DELETE: the statements
    whose conditions an index serves. EXPLAIN plans a write without running it."""
    stmt = inspect(text)
    node = parse_sql(text)[0].stmt
    if stmt.kind is Kind.DDL or not isinstance(node, ast.SelectStmt | ast.UpdateStmt | ast.DeleteStmt):
        raise ToolError(ErrorCode.INVALID_INPUT, "index advice takes SELECT, UPDATE or DELETE",
                        hint="INSERT, MERGE and DDL have no conditions an index would serve")
    return stmt
