"""MCP beyond tools, through the SDK client: resources, prompts, completion, logging, progress, protocol errors."""

from __future__ import annotations

import json
import re
import threading
import uuid
import warnings
from collections.abc import AsyncIterator
from typing import Any

import httpx2
import mcp_types as types
import psycopg
import pytest
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.shared.exceptions import MCPDeprecationWarning, MCPError

from pgcode.core.registry import load_registry
from pgcode.core.runtime import Runtime
from pgcode.server.mcp import build_mcp_server
from pgcode.server.mcp_prompts import PROMPTS

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def table(schema: str, dsn: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"CREATE TABLE {schema}.orders (id int PRIMARY KEY, customer_id int, placed_at timestamptz)")
        c.execute(f"INSERT INTO {schema}.orders SELECT g, g % 10, now() FROM generate_series(1, 200) g")
    return "orders"


@pytest.fixture
async def fast_client(rt: Runtime) -> AsyncIterator[Client]:
    """In memory, with progress every 0.1 s so a call of a second shows several notifications."""
    async with Client(build_mcp_server(rt, progress_interval_s=0.1)) as client:
        yield client


# --- resources ---------------------------------------------------------------------------------------------------

async def test_resources_are_listed(mcp_client: Client) -> None:
    listed = await mcp_client.list_resources()
    assert {r.uri for r in listed.resources} == {"pgcode://schema", "pgcode://report/health",
                                                 "pgcode://codemode/docs"}
    templates = await mcp_client.list_resource_templates()
    assert {t.uri_template for t in templates.resource_templates} == {
        "pgcode://tables/{schema}/{table}", "pgcode://tools/{tool}", "pgcode://scripts/{script}"}


async def test_schema_overview_resource(mcp_client: Client, schema: str, table: str) -> None:
    read = await mcp_client.read_resource("pgcode://schema")
    content = read.contents[0]
    assert content.mime_type == "application/json"
    overview = json.loads(content.text)
    assert schema in {s["name"] for s in overview["schemas"]}
    assert {"schema": schema, "name": table} in [{"schema": t["schema"], "name": t["name"]}
                                                 for t in overview["tables"]]


async def test_health_report_resource(mcp_client: Client) -> None:
    read = await mcp_client.read_resource("pgcode://report/health")
    text = read.contents[0].text
    assert read.contents[0].mime_type == "text/markdown"
    assert text.startswith("# PostgreSQL health report")
    assert "xid_wraparound" in text or "Wraparound" in text


async def test_codemode_docs_resource(mcp_client: Client) -> None:
    read = await mcp_client.read_resource("pgcode://codemode/docs")
    assert "pg.core.listTables" in read.contents[0].text


async def test_table_tool_and_script_templates(mcp_client: Client, schema: str, table: str) -> None:
    described = json.loads((await mcp_client.read_resource(f"pgcode://tables/{schema}/{table}")).contents[0].text)
    assert [c["name"] for c in described["columns"]] == ["id", "customer_id", "placed_at"]
    tool = json.loads((await mcp_client.read_resource("pgcode://tools/pg_read_query")).contents[0].text)
    assert tool["name"] == "pg_read_query" and "sql" in tool["inputSchema"]["properties"]
    name = f"mcp_resource_{uuid.uuid4().hex[:8]}"
    saved = await mcp_client.call_tool("pg_script_save", {"name": name, "code": "return 41 + 1"})
    assert saved.is_error is False
    script = await mcp_client.read_resource(f"pgcode://scripts/{name}")
    assert script.contents[0].text == "return 41 + 1"


async def test_unknown_resources_are_errors(mcp_client: Client, schema: str) -> None:
    with pytest.raises(MCPError) as unknown:
        await mcp_client.read_resource("pgcode://nothing/here")
    assert unknown.value.code == -32002
    with pytest.raises(MCPError) as missing:
        await mcp_client.read_resource(f"pgcode://tables/{schema}/no_such_table")
    assert missing.value.code == -32002
    assert missing.value.data["error"]["code"] == "NOT_FOUND"


# --- prompts -----------------------------------------------------------------------------------------------------

async def test_prompts_render_with_arguments(mcp_client: Client) -> None:
    listed = await mcp_client.list_prompts()
    assert {p.name for p in listed.prompts} == {"health_check", "tune_slow_query", "review_index_plan"}
    review = await mcp_client.get_prompt("review_index_plan", {"table": "orders", "schema": "sales",
                                                               "column": "customer_id"})
    text = review.messages[0].content.text
    assert review.messages[0].role == "user"
    assert "sales.orders" in text and "customer_id" in text and "pg_get_indexes" in text
    slow = await mcp_client.get_prompt("tune_slow_query", {"query": "SELECT * FROM t WHERE a = {x}"})
    assert "SELECT * FROM t WHERE a = {x}" in slow.messages[0].content.text  # braces in a value are kept
    health = await mcp_client.get_prompt("health_check", {"focus": "indexes, tables"})
    assert "['indexes', 'tables']" in health.messages[0].content.text


async def test_prompt_without_its_required_argument_is_an_error(mcp_client: Client) -> None:
    with pytest.raises(MCPError) as err:
        await mcp_client.get_prompt("tune_slow_query", {})
    assert err.value.code == -32602 and "query" in err.value.message
    with pytest.raises(MCPError) as unknown:
        await mcp_client.get_prompt("no_such_prompt", {})
    assert unknown.value.code == -32602


def test_prompts_name_only_tools_that_exist() -> None:
    names = {s.name for s in load_registry()}
    for spec in PROMPTS.values():
        mentioned = set(re.findall(r"\bpg_[a-z_]+\b", spec.template))
        assert mentioned and mentioned <= names, mentioned - names


# --- completion --------------------------------------------------------------------------------------------------

async def test_completion_of_database_objects(mcp_client: Client, schema: str, table: str) -> None:
    ref = types.PromptReference(name="review_index_plan")
    schemas = await mcp_client.complete(ref, {"name": "schema", "value": schema[:4]})
    assert schema in schemas.completion.values
    assert all(v.lower().startswith(schema[:4]) for v in schemas.completion.values)
    tables = await mcp_client.complete(ref, {"name": "table", "value": "ord"}, {"schema": schema})
    assert tables.completion.values == ["orders"]
    columns = await mcp_client.complete(ref, {"name": "column", "value": "c"}, {"schema": schema, "table": table})
    assert columns.completion.values == ["customer_id"]
    nothing = await mcp_client.complete(ref, {"name": "column", "value": ""}, {"schema": schema, "table": "nope"})
    assert nothing.completion.values == []


async def test_completion_of_tools_and_scripts(mcp_client: Client) -> None:
    tools = await mcp_client.complete(types.ResourceTemplateReference(uri="pgcode://tools/{tool}"),
                                      {"name": "tool", "value": "pg_read_q"})
    assert tools.completion.values == ["pg_read_query"]
    everything = await mcp_client.complete(types.ResourceTemplateReference(uri="pgcode://tools/{tool}"),
                                           {"name": "tool", "value": ""})
    assert len(everything.completion.values) == 100 and everything.completion.has_more is True
    assert everything.completion.total == len(load_registry())
    name = f"mcp_complete_{uuid.uuid4().hex[:8]}"
    await mcp_client.call_tool("pg_script_save", {"name": name, "code": "return 1"})
    scripts = await mcp_client.complete(types.ResourceTemplateReference(uri="pgcode://scripts/{script}"),
                                        {"name": "script", "value": name[:-2]})
    assert scripts.completion.values == [name]


# --- logging -----------------------------------------------------------------------------------------------------

NOTICE_SQL = "SELECT length(to_tsvector('english', repeat('a', 3000))::text) AS n"  # NOTICE: word is too long


async def test_postgres_notices_reach_a_client_at_its_level(rt: Runtime) -> None:
    """2025-11-25: logging/setLevel per connection; a notice below the level is not sent."""
    received: list[types.LoggingMessageNotificationParams] = []

    async def on_log(params: types.LoggingMessageNotificationParams) -> None:
        received.append(params)

    async with Client(build_mcp_server(rt), mode="legacy", logging_callback=on_log) as client:
        assert client.server_capabilities.logging is not None
        quiet = await client.call_tool("pg_read_query", {"sql": NOTICE_SQL})  # default level: warning
        assert quiet.is_error is False and received == []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await client.set_logging_level("notice")
        await client.call_tool("pg_read_query", {"sql": NOTICE_SQL})
    assert [(m.level, m.logger, m.data) for m in received] == [("notice", "postgresql",
                                                                "word is too long to be indexed")]


async def test_log_level_is_per_client(rt: Runtime) -> None:
    """Two clients of one server: the one that asked for notices gets them, the other does not."""
    server = build_mcp_server(rt)
    loud: list[Any] = []
    quiet: list[Any] = []

    async def to_loud(params: Any) -> None:
        loud.append(params)

    async def to_quiet(params: Any) -> None:
        quiet.append(params)

    async with Client(server, mode="legacy", logging_callback=to_loud) as first, \
            Client(server, mode="legacy", logging_callback=to_quiet) as second:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", MCPDeprecationWarning)
            await first.set_logging_level("debug")
            await second.set_logging_level("error")
        await first.call_tool("pg_read_query", {"sql": NOTICE_SQL})
        await second.call_tool("pg_read_query", {"sql": NOTICE_SQL})
    assert len(loud) == 1 and quiet == []


async def test_modern_clients_opt_in_per_request(rt: Runtime) -> None:
    received: list[Any] = []

    async def on_log(params: Any) -> None:
        received.append(params)

    async with Client(build_mcp_server(rt), logging_callback=on_log) as silent:
        await silent.call_tool("pg_read_query", {"sql": NOTICE_SQL})
    assert received == []
    async with Client(build_mcp_server(rt), log_level="notice", logging_callback=on_log) as client:
        assert client.protocol_version == "2026-07-28"
        await client.call_tool("pg_read_query", {"sql": NOTICE_SQL})
    assert [m.data for m in received] == ["word is too long to be indexed"]


async def test_pgcode_warnings_about_a_call_reach_the_client(settings: Any, schema: str, dsn: str) -> None:
    """A destructive tool on a server whose own schema is not writable warns that it keeps no snapshot."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"CREATE TABLE {schema}.scratch_warned (id int)")
    received: list[Any] = []

    async def on_log(params: Any) -> None:
        received.append(params)

    async with Runtime(settings) as rt:
        rt.schema_ready = False  # as on a database where pgcode may not create its schema
        async with Client(build_mcp_server(rt), mode="legacy", logging_callback=on_log) as client:
            dropped = await client.call_tool("pg_drop_table", {"schema": schema, "table": "scratch_warned"})
    assert dropped.is_error is False
    assert ("warning", "pgcode.snapshots") in {(m.level, m.logger) for m in received}
    assert any("without pre-mutation snapshots" in m.data for m in received)


# --- progress ----------------------------------------------------------------------------------------------------

async def test_create_index_concurrently_reports_progress_from_postgres(fast_client: Client, schema: str,
                                                                        table: str, dsn: str) -> None:
    """The build waits for a writer's transaction: pg_stat_progress_create_index says so until it commits."""
    blocker = psycopg.connect(dsn)
    blocker.execute(f"INSERT INTO {schema}.{table} VALUES (1000, 1, now())")  # holds its transaction open
    messages: list[tuple[float, str | None]] = []
    released = threading.Event()

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append((progress, message))
        if message and "waiting for writers" in message and not released.is_set():
            released.set()
            blocker.commit()

    try:
        result = await fast_client.call_tool("pg_create_index", {
            "schema": schema, "table": table, "columns": ["customer_id"], "name": "orders_customer_cic",
            "concurrently": True}, progress_callback=on_progress)
    finally:
        blocker.close()
    assert result.is_error is False, result.content[0].text
    assert released.is_set()
    waiting = [m for _, m in messages if m and "waiting for writers" in m]
    assert waiting[0].startswith(f"CREATE INDEX CONCURRENTLY {schema}.{table}: waiting for writers before build")
    values = [p for p, _ in messages]
    assert values == sorted(set(values))  # strictly increasing, as the spec requires


async def test_code_mode_run_reports_progress(fast_client: Client) -> None:
    messages: list[tuple[float, str | None]] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append((progress, message))

    result = await fast_client.call_tool("pg_execute_code", {
        "code": "await pg.core.readQuery({sql: 'SELECT pg_sleep(0.6)'}); return 7"}, progress_callback=on_progress)
    assert result.structured_content["result"] == 7
    assert len(messages) >= 3
    assert all(m and m.startswith("pg_execute_code: running for ") for _, m in messages)


async def test_a_quick_call_sends_no_progress(fast_client: Client) -> None:
    messages: list[Any] = []

    async def on_progress(progress: float, total: float | None, message: str | None) -> None:
        messages.append(message)

    await fast_client.call_tool("pg_read_query", {"sql": "SELECT 1"}, progress_callback=on_progress)
    assert messages == []


# --- protocol shape ----------------------------------------------------------------------------------------------

async def test_unknown_tool_is_a_protocol_error(mcp_client: Client, http: httpx2.AsyncClient) -> None:
    with pytest.raises(MCPError) as in_memory:
        await mcp_client.call_tool("pg_no_such_tool", {})
    assert in_memory.value.code == -32602 and "pg_no_such_tool" in in_memory.value.message
    async with Client(streamable_http_client("http://127.0.0.1/mcp", http_client=http), mode="legacy") as client:
        with pytest.raises(MCPError) as over_http:
            await client.call_tool("pg_no_such_tool", {})
    assert over_http.value.code == -32602


async def test_text_content_is_the_json_of_structured_content(mcp_client: Client) -> None:
    for name, args in (("pg_list_extensions", {}), ("pg_read_query", {"sql": "SELECT 1 AS one"}),
                       ("pg_read_query", {"sql": "DROP TABLE x"})):
        result = await mcp_client.call_tool(name, args)
        assert json.loads(result.content[0].text) == result.structured_content
    listing = await mcp_client.call_tool("pg_list_extensions", {})
    assert set(listing.structured_content) == {"items", "count"}
