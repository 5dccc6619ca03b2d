"""MCP prompts: DBA workflows a client offers its user, each a first message naming the tools to use."""

from __future__ import annotations

from dataclasses import dataclass

import mcp_types as types

from pgcode.errors import ErrorCode, ToolError


@dataclass(frozen=True)
class PromptSpec:
    prompt: types.Prompt
    template: str
    defaults: dict[str, str]


def _arg(name: str, description: str, *, required: bool = False) -> types.PromptArgument:
    return types.PromptArgument(name=name, description=description, required=required)


PROMPTS = {p.prompt.name: p for p in (
    PromptSpec(
        types.Prompt(name="health_check", title="Database health check",
                     description="Check the database's health and explain what to fix first.",
                     arguments=[_arg("focus", "Only these areas, comma-separated: wraparound, indexes, tables, "
                                              "sessions, memory, replication, wal, security (default: all)")]),
        "Check the health of this PostgreSQL database{focus_clause}.\n\n"
        "1. Call pg_analyze_db_health{checks_argument} and read every check that is not ok, worst first.\n"
        "2. For each finding, say what it means for this database in one or two sentences, using its numbers.\n"
        "3. Where a finding names tables or indexes, look closer with pg_describe_table, pg_index_stats or "
        "pg_vacuum_stats before advising.\n"
        "4. End with the fixes in order of urgency, each as the tool call that would make it (pg_vacuum, "
        "pg_reindex, pg_create_index, pg_drop_index ...). Do not run a tool that changes the database until "
        "I confirm it.",
        {"focus": ""},
    ),
    PromptSpec(
        types.Prompt(name="tune_slow_query", title="Tune a slow query",
                     description="Find why one query is slow and what would make it fast.",
                     arguments=[_arg("query", "The SQL statement that is slow", required=True)]),
        "This query is slow:\n\n```sql\n{query}\n```\n\n"
        "1. Show its plan with pg_explain (and pg_explain_analyze when it is a read: it runs the query).\n"
        "2. Describe the tables it reads with pg_describe_table, and their statistics with pg_table_stats.\n"
        "3. Ask pg_analyze_query_indexes which indexes it needs and how much they would save.\n"
        "4. If pg_stat_statements is installed, compare with its history from pg_stat_statements.\n"
        "5. Explain the slow step of the plan, then propose the changes (an index, a rewrite, fresher "
        "statistics with pg_analyze) with the cost before and after. Do not create anything until I confirm.",
        {},
    ),
    PromptSpec(
        types.Prompt(name="review_index_plan", title="Review a table's indexes",
                     description="Review one table's indexes: unused, duplicate, missing, bloated.",
                     arguments=[_arg("table", "The table", required=True),
                                _arg("schema", "Its schema (default: public)"),
                                _arg("column", "A column queries filter or join on, if you know one")]),
        "Review the indexes of {schema}.{table}{column_clause}.\n\n"
        "1. List them with pg_get_indexes and their use with pg_index_stats (scans, size).\n"
        "2. Find unused ones with pg_unused_indexes and overlapping ones with pg_duplicate_indexes.\n"
        "3. Ask pg_analyze_workload_indexes which indexes the busiest statements on this table need.\n"
        "4. Check bloat with pg_analyze_db_health (checks: index_bloat).\n"
        "5. Give a plan: indexes to drop, to create (with the pg_create_index arguments, concurrently) and "
        "to rebuild, with the space and cost each saves. Do not change anything until I confirm.",
        {"schema": "public", "column": ""},
    ),
)}


def render(name: str, arguments: dict[str, str] | None) -> types.GetPromptResult:
    """The prompt's first message with the caller's arguments filled in; INVALID_INPUT for a missing one."""
    spec = PROMPTS.get(name)
    if spec is None:
        raise ToolError(ErrorCode.NOT_FOUND, f"there is no prompt named {name!r}",
                        hint=f"prompts/list has them: {', '.join(PROMPTS)}")
    values = {**spec.defaults, **{k: v.strip() for k, v in (arguments or {}).items() if v is not None}}
    for argument in spec.prompt.arguments or []:
        if argument.required and not values.get(argument.name):
            raise ToolError(ErrorCode.INVALID_INPUT, f"prompt {name} needs the argument {argument.name!r}")
    values["schema"] = values.get("schema") or "public"
    focus = [a.strip() for a in values.get("focus", "").split(",") if a.strip()]
    values["focus_clause"] = f", looking at {', '.join(focus)}" if focus else ""
    values["checks_argument"] = f" with checks {focus}" if focus else ""
    values["column_clause"] = f", for queries on column {values['column']}" if values.get("column") else ""
    text = spec.template.format_map(values)
    return types.GetPromptResult(description=spec.prompt.description, messages=[
        types.PromptMessage(role="user", content=types.TextContent(type="text", text=text))])
