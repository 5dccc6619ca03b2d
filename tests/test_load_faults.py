"""Load and faults, short: about 1,000 mixed calls while PostgreSQL restarts; no write or audit row is lost.

The same code as bench/load.py (10,000 calls): its throwaway cluster, its server, its checks.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "bench"))
import _cluster
import load


def test_a_restart_and_a_flood_under_load_lose_nothing() -> None:
    reason = _cluster.missing_reason()
    if reason is not None:
        pytest.skip(reason)
    res = asyncio.run(load.run_load(calls=1000, clients=32))
    failed = [f"{i['name']}: {i['detail']}" for i in res["invariants"] if not i["passed"]]
    assert not failed, "\n".join([*failed, *res["server_log_warnings"]])
    # The faults happened and the calls did work: a restart, a flood, and writes that were acknowledged.
    assert {"restart_begin", "restart_done", "flood_start", "flood_end"} <= set(res["marks"])
    assert res["flood_requests"] > 0
    assert res["requests"] - res["flood_requests"] >= 950  # a held transaction whose begin failed makes 1 of 3
    assert res["writes"]["acknowledged"] > 300


NOTICE = ('event: message\r\ndata: {"jsonrpc":"2.0","method":"notifications/message","params":{"level":"warning",'
          '"logger":"postgresql","data":"terminating connection due to administrator command"}}\r\n\r\n')


def test_an_mcp_answer_is_its_response_not_a_notification_streamed_before_it() -> None:
    """During the restart a PostgreSQL warning reaches MCP clients as a log message ahead of the response; the
    bench once took it for the answer and counted a failed execution's write as acknowledged."""
    failed_run = ('event: message\r\ndata: {"jsonrpc":"2.0","id":1,"result":{"isError":false,"structuredContent":'
                  '{"success":false,"error":{"code":"CONNECTION_FAILED","message":"lost"},"metrics":{"toolCalls":1}}}}'
                  '\r\n\r\n')
    call = load.Call("mcp_code_write", "admin", "pg_execute_code", 0.0)
    call.status = 200
    load._judge(call, "mcp", load._mcp_result(NOTICE + failed_run))
    assert not call.ok and call.error == {"code": "CONNECTION_FAILED", "message": "lost"} and call.host_calls == 1
    positive = load.Call("mcp_code_write", "admin", "pg_execute_code", 0.0)
    positive.status = 200
    load._judge(positive, "mcp", load._mcp_result(NOTICE + failed_run.replace('"success":false', '"success":true')))
    assert positive.ok and positive.host_calls == 1
    # A stream with nothing but the notification is no answer: an untyped failure, never a success.
    alone = load.Call("mcp_write", "writer", "pg_write_query", 0.0)
    alone.status = 200
    load._judge(alone, "mcp", load._mcp_result(NOTICE))
    assert not alone.ok and alone.error is not None and alone.error["code"] == "UNTYPED"
