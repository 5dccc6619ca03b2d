"""Per-call facts the faces know and invoke() records: who is on the other end, and from where."""

from __future__ import annotations

from contextvars import ContextVar

CLIENT_ADDR: ContextVar[str | None] = ContextVar("pgcode_client_addr", default=None)
"""The caller's network address, set by the HTTP face; None for stdio, the CLI and tests."""

IN_CODE_EXECUTION: ContextVar[bool] = ContextVar("pgcode_in_code_execution", default=False)
"""True inside pg_execute_code: its host calls count against the execution's rate limit, not one each."""
