"""The faces as fixtures: REST over the ASGI transport, MCP in memory, so one test can drive all three."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx2
import pytest
from mcp import Client
from starlette.applications import Starlette

from pgcode.core.runtime import Runtime
from pgcode.server.app import create_app
from pgcode.server.mcp import build_mcp_server


@pytest.fixture
def app(rt: Runtime) -> Starlette:
    """A fresh app per test: the MCP session manager runs once per instance."""
    return create_app(rt)


@pytest.fixture
async def http(app: Starlette) -> AsyncIterator[httpx2.AsyncClient]:
    """An HTTP client on the whole app (REST and /mcp) through the ASGI transport, lifespan running."""
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
            yield client


@pytest.fixture
async def mcp_client(rt: Runtime) -> AsyncIterator[Any]:
    """An MCP client connected in memory to the same low-level server the transports use."""
    async with Client(build_mcp_server(rt)) as client:
        yield client
