"""Who is calling, as the server faces see it."""

from __future__ import annotations

from typing import Any

from pgcode.types import LOCAL_PRINCIPAL, Principal

PRINCIPAL_KEY = "pgcode.principal"
"""ASGI scope key an authentication middleware sets; without one the caller is the local principal."""


def request_principal(request: Any) -> Principal:
    if request is None:  # stdio and in-memory MCP: the local user
        return LOCAL_PRINCIPAL
    principal = request.scope.get(PRINCIPAL_KEY)
    return principal if isinstance(principal, Principal) else LOCAL_PRINCIPAL
