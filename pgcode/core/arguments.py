"""Arguments many tools share, described once.

A tool field of one of these names takes its description from here. The MCP catalog then states each once, in
the server instructions, instead of in every tool's input schema: the catalog is read by a model on every turn,
and these few descriptions were a fifth of it. OpenAPI and the per-tool docs keep them in place.
"""

from __future__ import annotations

TABLE = "Table name; `schema.table` is accepted when `schema` is not given"
SCHEMA = "Schema of the table (default: public)"
SCHEMA_FILTER = "Only this schema"
SCHEMA_OF_OBJECT = "Schema of the object (default: public)"
WHERE = "Optional row filter, a boolean condition such as status = 'active' (checked by the SQL policy)"
ROW_CONDITION = "Condition choosing rows, e.g. id = 5 or data->>'status' = 'pending'"
LIMIT = "Most rows to return (the result says truncated when there were more)"
RETURN_COLUMNS = "Columns to return with each row (default: all columns)"
KEY = ('Key columns and values choosing rows, e.g. {"id": 5} or {"id": [1, 2]} (the `row` objects other jsonb '
       'tools return fit here)')
ALL_ROWS = ("Needed to change every row: without it a call with neither where nor key, or whose where matches "
            "every row, is refused")
TRANSACTION_ID = "A transaction from pg_transaction_begin: the call runs inside it"
LOCK_TIMEOUT = ("Give up if the table's lock is not granted within this time, so that waiting does not queue "
                "other sessions behind the command (0 = wait up to the statement timeout)")

SHARED: dict[str, tuple[str, ...]] = {
    "table": (TABLE,),
    "schema": (SCHEMA, SCHEMA_FILTER, SCHEMA_OF_OBJECT),
    "where": (WHERE, ROW_CONDITION),
    "limit": (LIMIT,),
    "returnColumns": (RETURN_COLUMNS,),
    "key": (KEY,),
    "allRows": (ALL_ROWS,),
    "lockTimeoutSeconds": (LOCK_TIMEOUT,),
    "transactionId": (TRANSACTION_ID,),
}
"""Argument name -> the descriptions it has across tools (a tool's field uses exactly one of them)."""


def is_shared(name: str, description: str | None) -> bool:
    return description is not None and description in SHARED.get(name, ())


def glossary() -> str:
    """The shared arguments as one paragraph for the MCP server instructions."""
    parts = [f"{name}: {' | '.join(texts)}" for name, texts in SHARED.items()]
    return "Arguments described here, not in each tool: " + "; ".join(parts) + "."
