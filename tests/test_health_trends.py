"""Health snapshots and what changed since one: two snapshots around a real change (a table grown, an index added,
a query made slower, a finding resolved and one new), retention, the tools' scopes and errors, and `pgcode report
--save` / `--baseline` / `--since` as a subprocess."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx2
import psycopg
import pytest
from psycopg import sql

from pgcode.core.runtime import Runtime
from pgcode.errors import ToolError
from pgcode.report import collect, render
from pgcode.settings import Settings
from pgcode.types import LOCAL_PRINCIPAL, Principal, Scope
from tests.fix_db import Call, assert_tool_error

pytestmark = pytest.mark.anyio

READER = Principal.with_scope("trend-reader", Scope.READ)
WRITER = Principal.with_scope("trend-writer", Scope.WRITE)
# List every table and index and every query of the database, whatever else the test database holds.
WHOLE = {"top": 1000, "queries": 1000, "thresholds": {"fkMinRows": 0, "maxItems": 5000}}
SLOW = "SELECT pg_sleep(%s) FROM {}.slow"


def _run_slow(dsn: str, schema: str, seconds: float, times: int) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        for _ in range(times):
            c.execute(sql.SQL(SLOW).format(sql.Identifier(schema)), (seconds,))


def _flush(c: psycopg.Connection[Any]) -> None:
    if c.info.server_version >= 150000:  # the session's counters now, not within a second
        c.execute("SELECT pg_stat_force_next_flush()")


@pytest.fixture(scope="module")
async def change(rt: Runtime, dsn: str, schema: str) -> dict[str, Any]:
    """Snapshot A; then a table grown by 20,000 rows (1,000 of them deleted), an index added, the foreign key's
    index made (fk_without_index resolved), a failed concurrent unique build (invalid_indexes new), and a query
    20 times slower; snapshot B."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"""
            CREATE TABLE {schema}.grown (id int, pad text) WITH (autovacuum_enabled = false);
            INSERT INTO {schema}.grown SELECT g, repeat('x', 100) FROM generate_series(1, 500) g;
            CREATE TABLE {schema}.slow (id int);
            INSERT INTO {schema}.slow VALUES (1);
            CREATE TABLE {schema}.fk_parent (id int PRIMARY KEY);
            INSERT INTO {schema}.fk_parent VALUES (1);
            CREATE TABLE {schema}.fk_child (id int, parent_id int REFERENCES {schema}.fk_parent);
            CREATE TABLE {schema}.inv_t (k int);
            INSERT INTO {schema}.inv_t VALUES (1), (1);
            ANALYZE {schema}.grown;
        """)
    _run_slow(dsn, schema, 0.001, 12)
    a = await rt.invoke("pg_health_snapshot", WHOLE, LOCAL_PRINCIPAL)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"""
            INSERT INTO {schema}.grown SELECT g, repeat('y', 200) FROM generate_series(1, 20000) g;
            DELETE FROM {schema}.grown WHERE id <= 1000;
            CREATE INDEX grown_id_idx ON {schema}.grown (id);
            CREATE INDEX fk_child_parent_idx ON {schema}.fk_child (parent_id);
        """)
        with pytest.raises(psycopg.errors.UniqueViolation):
            c.execute(sql.SQL("CREATE UNIQUE INDEX CONCURRENTLY inv_k_uidx ON {}.inv_t (k)").format(
                sql.Identifier(schema)))
        _flush(c)
    _run_slow(dsn, schema, 0.02, 12)
    b = await rt.invoke("pg_health_snapshot", WHOLE, LOCAL_PRINCIPAL)
    with psycopg.connect(dsn) as c:  # EXPLAIN VERBOSE names the queryid pg_stat_statements files the query under
        plan = c.execute(sql.SQL("EXPLAIN (VERBOSE, FORMAT JSON) " + SLOW).format(sql.Identifier(schema)),
                         (0.0,)).fetchone()
    assert plan is not None
    diff = await rt.invoke("pg_health_snapshot_diff", {"baseline": a["id"], "target": b["id"]}, LOCAL_PRINCIPAL)
    return {"a": a, "b": b, "diff": diff, "queryid": str(plan[0][0]["Query Identifier"])}


def _row(rows: list[dict[str, Any]], name: str) -> dict[str, Any]:
    found = [r for r in rows if r["object"] == name]
    assert found, f"{name} not in {[r['object'] for r in rows]}"
    return found[0]


async def test_snapshot_returns_its_id_summary_and_retention(change: dict[str, Any], conn: psycopg.Connection[Any]
                                                             ) -> None:
    a, b = change["a"], change["b"]
    assert b["id"] > a["id"] and b["principal"] == "local" and b["database"] == conn.info.dbname
    assert b["summary"]["ok"] + b["summary"]["warning"] + b["summary"]["critical"] + b["summary"]["unknown"] >= 29
    assert b["retention"] == {"days": 90, "max_count": 1000, "deleted": 0}
    stored = conn.execute("SELECT principal, status, figures FROM pgcode.health_snapshots WHERE id = %s",
                          (b["id"],)).fetchone()
    assert stored is not None and stored[0] == "local" and stored[1] == b["status"]
    figures = stored[2]
    assert {"checks", "tables", "indexes", "ids", "queries", "summary"} <= set(figures)
    assert figures["ids"]["next_xid"] > 0 and figures["ids"]["freeze_max_age"] > 0
    assert figures["queries"]["available"] and all({"queryid", "calls", "mean_ms", "total_ms"} <= set(q)
                                                   for q in figures["queries"]["items"])


async def test_diff_shows_the_grown_table_and_the_new_index(change: dict[str, Any], schema: str,
                                                            conn: psycopg.Connection[Any]) -> None:
    d = change["diff"]
    assert d["baseline"]["id"] == change["a"]["id"] and d["current"]["id"] == change["b"]["id"]
    grown = _row(d["tables"]["items"], f"{schema}.grown")
    assert grown["change"] == "grown" and grown["growth_bytes"] > 2 * 1024 * 1024
    assert grown["after"] - grown["before"] == grown["growth_bytes"]
    assert grown["growth_pct"] == round(100 * grown["growth_bytes"] / grown["before"], 1) > 100
    size_now = conn.execute("SELECT pg_total_relation_size(%s::regclass)", (f"{schema}.grown",)).fetchone()
    assert size_now is not None and grown["after"] == size_now[0]
    index = _row(d["indexes"]["items"], f"{schema}.grown_id_idx")
    assert index["change"] == "new" and index["before"] is None and index["after"] > 0
    assert f"{schema}.slow" not in {r["object"] for r in d["tables"]["items"]}  # unchanged: not listed


async def test_diff_shows_dead_tuples_and_the_burn_rate(change: dict[str, Any], schema: str) -> None:
    d = change["diff"]
    dead = _row(d["dead_tuples_and_bloat"]["items"], f"{schema}.grown")
    assert dead["dead_tuples_before"] == 0 and dead["dead_tuples_change"] >= 1000
    ids = d["ids"]
    assert ids["xids_consumed"] >= 3  # the writes between the snapshots took transaction IDs
    hours = (dt.datetime.fromisoformat(d["current"]["taken_at"])
             - dt.datetime.fromisoformat(d["baseline"]["taken_at"])).total_seconds() / 3600
    assert ids["xids_per_hour"] == pytest.approx(ids["xids_consumed"] / hours, rel=0.01)
    assert 0 < ids["hours_to_freeze_max_age"] < ids["hours_to_wraparound"]
    expected = (ids["freeze_max_age"] - ids["xid_age_after"]) / ids["xids_per_hour"]
    assert ids["hours_to_freeze_max_age"] == pytest.approx(expected, rel=0.01)


async def test_diff_names_the_regressed_query(change: dict[str, Any]) -> None:
    q = change["diff"]["queries"]
    assert q["available"] and "≥ 10 calls" in q["rule"]
    slow = [r for r in q["regressions"] if r["queryid"] == change["queryid"]]
    assert slow, q["regressions"]
    r = slow[0]
    assert r["calls_since"] == 12 and r["calls_before"] == 12 and not r["counters_reset"]
    assert r["mean_ms_before"] < 10 and r["mean_ms_since"] >= 19 and r["mean_change_pct"] > 100
    steady = [c for c in q["compared"] if c["queryid"] != change["queryid"] and c["regressed"]]
    assert all(c["calls_since"] >= 10 for c in steady)  # nothing regresses on fewer calls than the rule


async def test_diff_shows_new_and_resolved_findings(change: dict[str, Any], schema: str) -> None:
    f = change["diff"]["findings"]
    new = {c["check"]: c for c in f["new"]}
    added = {c["check"]: c["added"] for c in f["objects"]}
    removed = {c["check"]: c["removed"] for c in f["objects"]}
    invalid = f"{schema}.inv_k_uidx"
    assert invalid in new.get("invalid_indexes", {}).get("objects", []) or invalid in added.get("invalid_indexes",
                                                                                                [])
    gone = {c["check"]: c["objects"] for c in f["resolved"]}
    fk = [o for o in gone.get("fk_without_index", []) + removed.get("fk_without_index", []) if schema in o]
    assert fk == [f"{schema}.fk_child.fk_child_parent_id_fkey"], f


async def test_diff_against_now_and_the_baseline_rules(call: Call, change: dict[str, Any],
                                                       conn: psycopg.Connection[Any]) -> None:
    a = change["a"]
    try:
        first = await call("pg_health_snapshot_diff", {"since": "1h", "target": a["id"]})
        assert first["baseline"]["id"] != a["id"]
        assert dt.datetime.fromisoformat(first["baseline"]["taken_at"]) < dt.datetime.fromisoformat(a["taken_at"])
    except ToolError as err:  # no snapshot older than a: never a itself
        assert_tool_error(err, "NOT_FOUND", "no health snapshot to compare with")
    old = conn.execute(
        "INSERT INTO pgcode.health_snapshots (taken_at, principal, database, status, figures) "
        "SELECT now() - interval '8 days', 'someone', database, status, figures FROM pgcode.health_snapshots "
        "WHERE id = %s RETURNING id", (change["a"]["id"],)).fetchone()
    assert old is not None
    try:
        week = await call("pg_health_snapshot_diff", {"since": "7d"})
        assert week["baseline"]["id"] == old[0] and week["baseline"]["principal"] == "someone"
        assert week["baseline"]["chosen"] == "the newest snapshot at least 7 days old"
        assert week["current"]["id"] is None and 8 * 24 - 1 < week["hours"] < 8 * 24 + 1
        recent = await call("pg_health_snapshot_diff", {"since": "30d"})
        assert recent["baseline"]["id"] == old[0] and recent["baseline"]["chosen"].startswith("no snapshot is 30 days")
        hour = await call("pg_health_snapshot_diff", {"since": "1h", "target": change["b"]["id"]})
        assert hour["baseline"]["id"] == old[0] and hour["current"]["id"] == change["b"]["id"]
        assert hour["baseline"]["chosen"] == "the newest snapshot at least 1 hour old"
    finally:
        conn.execute("DELETE FROM pgcode.health_snapshots WHERE id = %s", (old[0],))


async def test_bad_baselines_are_clear_errors(call: Call, change: dict[str, Any]) -> None:
    with pytest.raises(ToolError) as unknown:
        await call("pg_health_snapshot_diff", {"baseline": 987654321})
    assert_tool_error(unknown, "NOT_FOUND", "987654321")
    for args, fragment in (({"since": "7x"}, "not a duration"), ({"since": "0d"}, "out of range"),
                           ({"baseline": 1, "since": "7d"}, "one of them"), ({}, "one of them"),
                           ({"baseline": change["a"]["id"], "regressionRatio": 0.5}, "regressionRatio")):
        with pytest.raises(ToolError) as bad:
            await call("pg_health_snapshot_diff", args)
        assert_tool_error(bad, "INVALID_INPUT", fragment)
    with pytest.raises(ToolError) as backwards:
        await call("pg_health_snapshot_diff", {"baseline": change["b"]["id"], "target": change["a"]["id"]})
    assert_tool_error(backwards, "INVALID_INPUT", "baseline comes first")


async def test_saving_needs_the_write_scope_reading_the_read_scope(rt: Runtime, change: dict[str, Any],
                                                                    conn: psycopg.Connection[Any]) -> None:
    before = conn.execute("SELECT count(*) FROM pgcode.health_snapshots").fetchone()
    with pytest.raises(ToolError) as denied:
        await rt.invoke("pg_health_snapshot", {}, READER)
    assert_tool_error(denied, "FORBIDDEN")
    assert conn.execute("SELECT count(*) FROM pgcode.health_snapshots").fetchone() == before
    listed = await rt.invoke("pg_health_snapshot_list", {"limit": 1}, READER)
    assert listed["snapshots"][0]["id"] >= change["b"]["id"] and listed["count"] >= 2 and listed["truncated"]
    diff = await rt.invoke("pg_health_snapshot_diff", {"baseline": change["a"]["id"], "target": change["b"]["id"]},
                           READER)
    assert diff["indexes"] == change["diff"]["indexes"]
    # thresholds are pg_analyze_db_health's: a bad one is refused by name, and nothing is saved
    with pytest.raises(ToolError) as bad:
        await rt.invoke("pg_health_snapshot", {"thresholds": {"maxItems": 0}}, WRITER)
    assert_tool_error(bad, "INVALID_INPUT", "thresholds.maxItems")
    assert conn.execute("SELECT count(*) FROM pgcode.health_snapshots").fetchone() == before
    # positive control: write may save
    saved = await rt.invoke("pg_health_snapshot", {"queries": 0, "thresholds": {"maxItems": 5}}, WRITER)
    assert saved["principal"] == "trend-writer" and saved["kept"]["queries"] == 0
    conn.execute("DELETE FROM pgcode.health_snapshots WHERE id = %s", (saved["id"],))


async def test_scope_roles_cannot_read_the_snapshots(dsn: str, change: dict[str, Any], rt: Runtime) -> None:
    """pgcode_read and pgcode_write see no row of the store: row-level security, as for pgcode's other tables."""
    if not rt.roles.enabled:
        pytest.skip(f"role separation is off here: {rt.roles.reason}")
    with psycopg.connect(dsn, autocommit=True) as c:
        for role in (rt.roles.read_role, rt.roles.write_role):
            c.execute(sql.SQL("SET ROLE {}").format(sql.Identifier(role)))
            assert c.execute("SELECT count(*) FROM pgcode.health_snapshots").fetchone() == (0,)
            c.execute("RESET ROLE")
        assert c.execute("SELECT count(*) > 0 FROM pgcode.health_snapshots").fetchone() == (True,)




async def test_report_saves_and_compares(rt: Runtime, change: dict[str, Any], schema: str) -> None:
    report = await collect(rt, LOCAL_PRINCIPAL, thresholds={"fkMinRows": 0}, save=True, baseline=change["a"]["id"])
    saved, diff = report["snapshot"], report["changes"]
    assert saved["id"] > change["b"]["id"] and diff["current"]["id"] == saved["id"]
    assert diff["baseline"]["id"] == change["a"]["id"] and "chosen" not in diff["baseline"]
    assert diff["checks"]["invalid_indexes"]["direction"] == "up" and diff["checks"]["invalid_indexes"]["worse"]
    html, md = render(report, "html"), render(report, "md")
    assert f"saved as health snapshot #{saved['id']}" in html and f"#{saved['id']}" in md
    for text in (html, md):
        assert "Changed since" in text and "Transaction IDs:" in text and "Query regressions" in text
        assert f"{schema}.grown" in text and f"{schema}.grown_id_idx" in text
    assert '<span class="trend worse" title="was 0">▲</span>' in html and "▲ (was 0)" in md
    json.dumps(report)
    with pytest.raises(ToolError) as denied:
        await collect(rt, READER, save=True)
    assert_tool_error(denied, "FORBIDDEN")


async def test_http_report_compares_with_a_baseline_and_saves_nothing(http: httpx2.AsyncClient, change: dict[str, Any],
                                                                      schema: str, conn: psycopg.Connection[Any]
                                                                      ) -> None:
    count = "SELECT count(*) FROM pgcode.health_snapshots"
    before = conn.execute(count).fetchone()
    resp = await http.get("/v1/report", params={"format": "json", "baseline": change["a"]["id"]})
    assert resp.status_code == 200, resp.text
    diff = resp.json()["changes"]
    assert diff["baseline"]["id"] == change["a"]["id"]
    looked_back = (await http.get("/v1/report", params={"format": "json", "since": "30d"})).json()["changes"]
    assert looked_back["baseline"]["id"] >= 1 and looked_back["baseline"]["chosen"]  # and says how it chose
    md = await http.get("/v1/report", params={"format": "md", "baseline": change["a"]["id"]})
    assert "Changed since" in md.text and f"{schema}.grown" in md.text
    assert conn.execute(count).fetchone() == before  # a GET saves nothing
    for bad in ("0", "x", "-3"):
        refused = await http.get("/v1/report", params={"baseline": bad})
        assert refused.status_code == 400 and refused.json()["error"]["code"] == "INVALID_INPUT"
    unknown = await http.get("/v1/report", params={"format": "json", "baseline": 987654321})
    assert unknown.status_code == 404 and unknown.json()["error"]["code"] == "NOT_FOUND"


def _pgcode(*args: str, dsn: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DATABASE_URL"))}
    env["PGCODE_DATABASE_URL"] = dsn
    return subprocess.run([sys.executable, "-m", "pgcode", "report", *args], env=env, capture_output=True,
                          text=True, timeout=120, check=False)


def test_cli_save_then_baseline(dsn: str, schema: str, change: dict[str, Any], tmp_path: Path) -> None:
    first = tmp_path / "first.json"
    done = _pgcode("--save", "--output", str(first), dsn=dsn)
    assert done.returncode == 0, done.stderr
    snapshot_id = json.loads(first.read_text())["snapshot"]["id"]
    assert f"saved health snapshot #{snapshot_id}" in done.stderr
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"INSERT INTO {schema}.grown SELECT g, repeat('z', 300) FROM generate_series(1, 5000) g")
    time.sleep(0.01)
    page = tmp_path / "since.html"
    done = _pgcode("--baseline", str(snapshot_id), "--output", str(page), dsn=dsn)
    assert done.returncode == 0, done.stderr
    assert f"compared with health snapshot #{snapshot_id}" in done.stderr
    html = page.read_text()
    assert "<h2>Changed since" in html and f"{schema}.grown" in html.split('<section id="findings">')[0]
    for args, code, fragment in ((("--since", "7x"), 2, "not a duration"), (("--baseline", "0"), 2, "positive"),
                                 (("--since", "7d", "--baseline", "1"), 2, "not allowed with"),
                                 (("--baseline", "987654321", "--format", "json"), 1, "987654321")):
        bad = _pgcode(*args, dsn=dsn)
        assert bad.returncode == code, (args, bad.stderr)
        assert fragment in (bad.stderr if code == 2 else json.loads(bad.stdout)["error"]["message"])
        assert "Traceback" not in bad.stderr

async def test_retention_deletes_old_snapshots_when_one_is_saved(dsn: str, change: dict[str, Any],
                                                                conn: psycopg.Connection[Any]) -> None:
    ids = [conn.execute(
        "INSERT INTO pgcode.health_snapshots (taken_at, principal, database, status, figures) "
        "SELECT now() - make_interval(days => %s), 'retention', database, status, figures "
        "FROM pgcode.health_snapshots WHERE id = %s RETURNING id", (days, change["a"]["id"])).fetchone()[0]
        for days in (100, 91, 89)]
    settings = Settings(database_url=dsn, health_snapshot_retention_days=90)
    async with Runtime(settings) as short:
        saved = await short.invoke("pg_health_snapshot", {"queries": 0}, LOCAL_PRINCIPAL)
    assert saved["retention"]["deleted"] == 2
    left = {r[0] for r in conn.execute("SELECT id FROM pgcode.health_snapshots WHERE id = ANY(%s)",
                                       ([*ids, saved["id"]],)).fetchall()}
    assert left == {ids[2], saved["id"]}
    total = conn.execute("SELECT count(*) FROM pgcode.health_snapshots").fetchone()
    assert total is not None
    async with Runtime(Settings(database_url=dsn, health_snapshot_max_count=2)) as few:
        newest = await few.invoke("pg_health_snapshot", {"queries": 0}, LOCAL_PRINCIPAL)
    assert newest["retention"]["deleted"] == total[0] + 1 - 2
    kept = conn.execute("SELECT id FROM pgcode.health_snapshots ORDER BY taken_at DESC, id DESC").fetchall()
    assert [r[0] for r in kept] == [newest["id"], saved["id"]]
