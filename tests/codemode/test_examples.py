"""The four scripts users run (../shared/examples, copied verbatim into tests/codemode/examples) on the demo data.

The copies must stay byte-identical to the shared ones; test_example_copies_match_the_shared_ones checks it
whenever the shared folder is present. An example whose tools are not registered yet is skipped, naming them.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import psycopg
import pytest

from pgcode.core.runtime import Runtime
from pgcode.types import LOCAL_PRINCIPAL
from tests.codemode._helpers import failed, ok

pytestmark = pytest.mark.anyio

HERE = Path(__file__).parent / "examples"
SHARED = Path(__file__).parents[2].parent / "shared" / "examples"
_CALL = re.compile(r"\bpg\.(\w+)\.(\w+)\(")


def _code(name: str) -> str:
    return (HERE / name).read_text()


def _need_tools(rt: Runtime, name: str) -> None:
    missing = sorted({f"pg.{g}.{m}" for g, m in _CALL.findall(_code(name)) if rt.registry.by_method(g, m) is None})
    if missing:
        pytest.skip(f"{name} calls tools that are not registered yet: {', '.join(missing)}")


async def _run(rt: Runtime, name: str, **kw: Any) -> dict[str, Any]:
    out: dict[str, Any] = await rt.invoke("pg_execute_code", {"code": _code(name), **kw}, LOCAL_PRINCIPAL)
    return out


def test_example_copies_match_the_shared_ones() -> None:
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is not here; the copies in {HERE} are what runs")
    for shared in sorted(SHARED.glob("*.js")):
        assert (HERE / shared.name).read_bytes() == shared.read_bytes(), shared.name
    assert sorted(p.name for p in HERE.glob("*.js")) == sorted(p.name for p in SHARED.glob("*.js"))


async def test_example_01_tables_by_rows(demo_rt: Runtime) -> None:
    _need_tools(demo_rt, "01-tables-by-rows.js")
    result = ok(await _run(demo_rt, "01-tables-by-rows.js"))
    names = {t["name"] for t in await demo_rt.invoke("pg_list_tables", {}, LOCAL_PRINCIPAL)}
    assert {r["table"] for r in result} == names and len(result) == len(names)
    assert all(isinstance(r["rows"], int | float) and isinstance(r["size"], int | float) for r in result)
    rows = [r["rows"] for r in result]
    assert rows == sorted(rows, reverse=True)
    assert {r["table"]: r for r in result}["orders"]["rows"] > 0


async def test_example_02_unused_indexes(demo_rt: Runtime, demo_dsn: str) -> None:
    _need_tools(demo_rt, "02-unused-indexes.js")
    result = ok(await _run(demo_rt, "02-unused-indexes.js"))
    with psycopg.connect(demo_dsn) as c:
        expected = {r[0] for r in c.execute(
            "SELECT indexrelname FROM pg_stat_user_indexes WHERE idx_scan = 0 "
            "AND pg_relation_size(indexrelid) > 1024 * 1024").fetchall()}
    assert expected, "the demo data should have unused indexes over 1 MB"
    assert {r["index"] for r in result} == expected
    for r in result:
        assert r["table"] and r["definition"].upper().startswith("CREATE") and r["sizeMb"] >= 1


async def test_example_03_health_report(demo_rt: Runtime, monkeypatch: pytest.MonkeyPatch) -> None:
    _need_tools(demo_rt, "03-health-report.js")
    from pgcode.codemode.bridge import HostBridge

    batches: list[int] = []
    dispatch = HostBridge.dispatch

    async def spy(self: HostBridge, calls: Any, deadline: float) -> bytes:
        batches.append(len(calls))
        return await dispatch(self, calls, deadline)

    monkeypatch.setattr(HostBridge, "dispatch", spy)
    out = await _run(demo_rt, "03-health-report.js")
    report = ok(out)
    assert batches == [4] and out["metrics"]["toolCalls"] == 4  # the four calls went out together
    conns = report["connections"]
    assert all(isinstance(conns[k], int) and conns[k] >= 0 for k in ("active", "idle", "total"))
    assert conns["active"] + conns["idle"] <= conns["total"]
    assert len(report["largestTables"]) == 5 and all(t["name"] for t in report["largestTables"])
    assert isinstance(report["activeLocks"], int) and report["activeLocks"] >= 0
    assert 0 <= report["cacheHitRatio"] <= 1


async def test_example_04_batch_jsonb_readonly_changes_nothing(demo_rt: Runtime, demo_dsn: str) -> None:
    _need_tools(demo_rt, "04-batch-jsonb.js")
    out = await _run(demo_rt, "04-batch-jsonb.js", readonly=True)
    err = failed(out, "READ_ONLY", "readonly")
    assert err["line"] == 8 and err["tool"] == demo_rt.registry.by_method("jsonb", "set").name  # type: ignore[union-attr]
    with psycopg.connect(demo_dsn) as c:
        assert c.execute("SELECT count(*) FROM products WHERE data->>'status' = 'pending'").fetchone() == (50,)


async def test_example_04_batch_jsonb(demo_rt: Runtime, demo_dsn: str) -> None:
    _need_tools(demo_rt, "04-batch-jsonb.js")
    with psycopg.connect(demo_dsn) as c:
        pending = sorted(r[0] for r in c.execute("SELECT id FROM products WHERE data->>'status' = 'pending'"))
    assert len(pending) == 50
    result = ok(await _run(demo_rt, "04-batch-jsonb.js", timeout=120_000))
    assert result == {"updated": 50, "ids": pending}
    with psycopg.connect(demo_dsn) as c:
        assert c.execute("SELECT count(*) FROM products WHERE data->>'status' = 'pending'").fetchone() == (0,)
        assert c.execute("SELECT count(*) FROM products WHERE data->>'status' = 'processed'").fetchone() == (50,)
