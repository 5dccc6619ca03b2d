"""pgcode's SQL files: long queries live in pgcode/db/sql/queries/<name>.sql, loaded once by name."""

from __future__ import annotations

from functools import cache
from importlib import resources

from psycopg import sql

# Schemas no statistics tool reports unless asked for by name (pg_toast*, pg_temp* are matched in SQL).
SYSTEM_SCHEMAS = ["pg_catalog", "information_schema", "pgcode"]


@cache
def load_query(name: str) -> sql.SQL:
    """The SQL file pgcode/db/sql/queries/<name>.sql as a template ({x} identifier slots, %(x)s values)."""
    text = resources.files("pgcode.db").joinpath("sql", "queries", f"{name}.sql").read_text("utf-8")
    return sql.SQL(text)
