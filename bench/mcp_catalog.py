"""Bytes of the MCP tools/list response a client receives: full catalog, read-only server, chosen groups, code mode.

Usage: .venv/bin/python bench/mcp_catalog.py
No database is needed: tools/list is answered from the registry. Each figure is the JSON-RPC response as it goes
over Streamable HTTP (the `data:` payload of the SSE event, UTF-8 bytes), plus the initialize result, which carries
the server instructions. Prints one line and writes bench/results/mcp_catalog.json.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import httpx2

from pgcode.core.runtime import Runtime
from pgcode.server.app import create_app
from pgcode.settings import Settings

HEADERS = {"Accept": "application/json, text/event-stream", "Content-Type": "application/json",
           "MCP-Protocol-Version": "2025-11-25"}
CATALOGS: dict[str, dict[str, Any]] = {
    "full": {},
    "read_only": {"read_only": True},
    "core_performance": {"tools": ["core", "performance"]},
    "codemode_group": {"tools": ["codemode"]},
    "execute_code_and_docs": {"tools": ["pg_execute_code", "pg_codemode_docs"]},
}


def _payload(body: bytes) -> bytes:
    """The JSON-RPC message inside an SSE response (or the body itself for a JSON response)."""
    for line in body.splitlines():
        if line.startswith(b"data: "):
            return line.removeprefix(b"data: ")
    return body


async def _measure(settings: Settings) -> dict[str, int]:
    app = create_app(Runtime(settings))
    async with app.router.lifespan_context(app):
        transport = httpx2.ASGITransport(app=app)
        async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as http:
            init = await http.post("/mcp", headers=HEADERS, json={
                "jsonrpc": "2.0", "id": 1, "method": "initialize",
                "params": {"protocolVersion": "2025-11-25", "capabilities": {},
                           "clientInfo": {"name": "bench", "version": "0"}}})
            listed = await http.post("/mcp", headers=HEADERS,
                                     json={"jsonrpc": "2.0", "id": 2, "method": "tools/list"})
    body = _payload(listed.content)
    return {"tools": len(json.loads(body)["result"]["tools"]), "tools_list_bytes": len(body),
            "initialize_bytes": len(_payload(init.content))}


async def main() -> dict[str, dict[str, int]]:
    return {name: await _measure(Settings(database_url="postgresql://unused", **extra))
            for name, extra in CATALOGS.items()}


if __name__ == "__main__":
    results = asyncio.run(main())
    out = Path(__file__).parent / "results" / "mcp_catalog.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=2) + "\n")
    print("mcp tools/list bytes: " + ", ".join(
        f"{name} {r['tools_list_bytes']:,} ({r['tools']} tools)" for name, r in results.items()))
