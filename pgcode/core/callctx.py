"""Per-call facts the faces know and invoke() records: who is on the other end, and from where."""

from __future__ import annotations

from contextvars import ContextVar
from dataclasses import dataclass, field

CLIENT_ADDR: ContextVar[str | None] = ContextVar("pgcode_client_addr", default=None)
"""The caller's network address, set by the HTTP face; None for stdio, the CLI and tests."""

IN_CODE_EXECUTION: ContextVar[bool] = ContextVar("pgcode_in_code_execution", default=False)
"""True inside pg_execute_code: its host calls count against the execution's rate limit, not one each."""


@dataclass
class CallWatch:
    """A face following one call while it runs: the backends serving it now, and PostgreSQL's notices to it."""

    backends: set[int] = field(default_factory=set)
    notices: list[tuple[str, str]] = field(default_factory=list)
    """(severity, message) of each NOTICE or WARNING the call's statements raised, oldest first."""


CALL_WATCH: ContextVar[CallWatch | None] = ContextVar("pgcode_call_watch", default=None)
"""Set by a face that reports progress and warnings (MCP); ToolContext fills it as it takes connections."""
