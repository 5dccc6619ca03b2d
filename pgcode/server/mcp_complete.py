"""completion/complete: values for prompt and resource-template arguments that name database objects or pgcode's own.

Arguments are completed by name wherever they appear: schema, table (in the `schema` already chosen), column (of
the `table` chosen), tool, script. Database names come from the read tools through invoke(), as the caller.
"""

from __future__ import annotations

from typing import Any

import mcp_types as types

from pgcode.core.invoke import visible_tools
from pgcode.core.runtime import Runtime
from pgcode.errors import ToolError
from pgcode.types import Principal

MAX_VALUES = 100  # the spec's cap per response


async def _candidates(rt: Runtime, argument: str, context: dict[str, str], principal: Principal) -> list[str]:
    if argument == "schema":
        found = await rt.invoke("pg_list_schemas", {}, principal)
        return [s["name"] for s in found["schemas"]]
    if argument == "table":
        tables = await rt.invoke("pg_list_tables", {"schema": context.get("schema") or "public"}, principal)
        return [t["name"] for t in tables]
    if argument == "column":
        if not context.get("table"):
            return []
        table = await rt.invoke("pg_describe_table", {"schema": context.get("schema") or "public",
                                                      "table": context["table"]}, principal)
        return [c["name"] for c in table["columns"]]
    if argument == "tool":
        return [s.name for s in visible_tools(rt, principal)]
    if argument == "script":
        found = await rt.invoke("pg_script_list", {"limit": 1000}, principal)
        return [s["name"] for s in found["scripts"]]
    return []


async def complete(rt: Runtime, params: types.CompleteRequestParams, principal: Principal) -> types.CompleteResult:
    """Names starting with what was typed (case-insensitive), sorted; none when the caller may not read them."""
    context: dict[str, Any] = (params.context.arguments or {}) if params.context else {}
    try:
        names = await _candidates(rt, params.argument.name, context, principal)
    except ToolError:  # no read scope, no such table yet, no pgcode schema for scripts: nothing to offer
        names = []
    typed = params.argument.value.lower()
    matches = sorted({n for n in names if n.lower().startswith(typed)})
    return types.CompleteResult(completion=types.Completion(
        values=matches[:MAX_VALUES], total=len(matches), has_more=len(matches) > MAX_VALUES))
