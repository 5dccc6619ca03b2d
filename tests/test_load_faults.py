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
