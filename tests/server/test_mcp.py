"""MCP face: the SDK client in memory, over Streamable HTTP (ASGI) and over stdio (a real subprocess)."""

from __future__ import annotations

import json
import sys
from typing import Any

import httpx2
import pytest
from mcp import Client
from mcp.client.stdio import StdioServerParameters
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPError

pytestmark = pytest.mark.anyio


async def _exercise(client: Any) -> None:
    """The behaviour every transport must show: list, call, list wrapping, error result."""
    listed = await client.list_tools()
    tools = {t.name: t for t in listed.tools}
    assert {"pg_read_query", "pg_drop_table", "pg_transaction_begin"} <= set(tools)
    assert tools["pg_read_query"].annotations.read_only_hint is True
    assert tools["pg_drop_table"].annotations.destructive_hint is True
    # absent readOnlyHint means false (MCP spec): a write sends only whether it destroys
    assert not tools["pg_write_query"].annotations.read_only_hint
    assert tools["pg_write_query"].annotations.destructive_hint is False
    assert "sql" in tools["pg_read_query"].input_schema["properties"]

    ok = await client.call_tool("pg_read_query", {"sql": "SELECT 40 + $1::int AS answer", "params": [2]})
    assert ok.is_error is False
    assert ok.structured_content["rows"] == [{"answer": 42}]
    assert json.loads(ok.content[0].text)["rowCount"] == 1

    listing = await client.call_tool("pg_list_extensions", {})
    assert listing.is_error is False
    assert listing.structured_content["count"] == len(listing.structured_content["items"]) > 0
    assert "plpgsql" in {e["name"] for e in listing.structured_content["items"]}

    bad = await client.call_tool("pg_read_query", {"sql": "DROP TABLE x"})
    assert bad.is_error is True
    error = json.loads(bad.content[0].text)["error"]
    assert error["code"] == "INVALID_INPUT" and "DROP" in error["message"]

    invalid = await client.call_tool("pg_read_query", {"sql": "SELECT 1", "nope": True})
    assert invalid.is_error is True
    assert json.loads(invalid.content[0].text)["error"]["code"] == "INVALID_INPUT"

    with pytest.raises(MCPError) as unknown:  # a protocol error since the MCP spec says so (issue 18)
        await client.call_tool("pg_no_such_tool", {})
    assert unknown.value.code == -32602


async def test_mcp_in_memory(mcp_client: Any) -> None:
    await _exercise(mcp_client)


async def test_mcp_streamable_http(http: httpx2.AsyncClient) -> None:
    async with Client(streamable_http_client("http://127.0.0.1/mcp", http_client=http)) as client:
        await _exercise(client)


async def test_mcp_rejects_foreign_host_header(http: httpx2.AsyncClient) -> None:
    """DNS-rebinding protection: a Host that is not loopback is refused before any tool runs."""
    resp = await http.post("/mcp", headers={"Host": "evil.example", "Accept": "application/json, text/event-stream",
                                            "Content-Type": "application/json"},
                           content=b'{"jsonrpc":"2.0","id":1,"method":"tools/list"}')
    assert resp.status_code == 421


async def test_mcp_stdio(dsn: str) -> None:
    params = StdioServerParameters(command=sys.executable, args=["-m", "pgcode", "stdio"],
                                   env={"PGCODE_DATABASE_URL": dsn})
    async with Client(params) as client:
        await _exercise(client)
