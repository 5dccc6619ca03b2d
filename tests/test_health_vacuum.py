"""The VACUUM and wraparound advisor against conditions made for real: an open transaction holding the xmin
horizon, a prepared transaction and a replication slot (where the test cluster allows them), IDs consumed while
it samples, and a busy table that needs its own autovacuum scale factor."""

from __future__ import annotations

import threading
from typing import Any

import anyio
import psycopg
import pytest
from psycopg import sql

from tests.fix_db import Call, assert_tool_error
from tests.groups._sessions import idle_session, session_exists, wait_until

pytestmark = pytest.mark.anyio
APP = "t_health_vacuum"


def _holder(out: dict[str, Any], kind: str, holder: str) -> dict[str, Any]:
    return next(h for h in out["horizon"]["holders"] if h["kind"] == kind and h["holder"] == holder)


async def test_an_open_transaction_is_named_with_the_command_that_releases_it(call: Call, dsn: str) -> None:
    with idle_session(dsn, f"{APP}_open", in_transaction=True) as open_tx:
        open_tx.execute("SELECT pg_current_xact_id()")  # an XID: the horizon cannot pass it
        pid = open_tx.info.backend_pid
        out = await call("pg_vacuum_advisor", {"sampleSeconds": 0.5, "limit": 1000})
        h = _holder(out, "session", str(pid))
        assert h["application_name"] == f"{APP}_open" and h["state"] == "idle in transaction"
        assert h["xid_age"] >= 1 and h["seconds"] >= 0
        assert h["tool"] == {"name": "pg_terminate_backend", "args": {"pid": pid}}
        # the health check names it as well, with the same command
        check = (await call("pg_analyze_db_health", {"checks": ["xmin_horizon"],
                                                     "thresholds": {"maxItems": 1000}}))["checks"][0]
        item = next(i for i in check["details"]["items"] if i["pid"] == pid)
        assert item["command"] == h["command"] and check["details"]["horizon_age"] >= h["xid_age"]
        with psycopg.connect(dsn, autocommit=True) as admin:
            assert admin.execute(h["command"]).fetchall() == [(True,)]
            wait_until(lambda: not session_exists(admin, pid), what="the open transaction to end")
    out = await call("pg_vacuum_advisor", {"sampleSeconds": 0.5, "limit": 1000})
    assert str(pid) not in {h["holder"] for h in out["horizon"]["holders"]}


async def test_a_prepared_transaction_is_named_with_rollback_prepared(call: Call, dsn: str, schema: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        row = c.execute("SHOW max_prepared_transactions").fetchone()
    if not row or int(row[0]) == 0:
        pytest.skip("max_prepared_transactions = 0 on this server: PREPARE TRANSACTION is refused")
    gid = f"{APP}_gid"
    with psycopg.connect(dsn) as c:
        c.execute(sql.SQL("CREATE TABLE {} (id int)").format(sql.Identifier(schema, "prepared_t")))
        c.execute(sql.SQL("PREPARE TRANSACTION {}").format(sql.Literal(gid)))
    try:
        out = await call("pg_vacuum_advisor", {"sampleSeconds": 0.5, "limit": 1000})
        h = _holder(out, "prepared transaction", gid)
        assert h["command"].startswith(f"ROLLBACK PREPARED '{gid}'")
    finally:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute(sql.SQL("ROLLBACK PREPARED {}").format(sql.Literal(gid)))


async def test_an_inactive_replication_slot_is_named_with_its_drop_command(call: Call, dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as c:
        row = c.execute("SHOW wal_level").fetchone()
    if not row or row[0] != "logical":
        pytest.skip(f"wal_level = {row[0] if row else '?'}: only logical slots hold a horizon (catalog_xmin) "
                    "without a standby, and they need wal_level = logical")
    slot = f"{APP}_slot"
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (slot,))
    try:
        out = await call("pg_vacuum_advisor", {"sampleSeconds": 0.5, "limit": 1000})
        h = _holder(out, "replication slot", slot)
        assert h["active"] is False and h["command"] == f"SELECT pg_drop_replication_slot('{slot}')"
    finally:
        with psycopg.connect(dsn, autocommit=True) as c:
            c.execute("SELECT pg_drop_replication_slot(%s)", (slot,))


async def test_the_burn_rate_is_measured_and_gives_the_runway(call: Call, dsn: str) -> None:
    stop = threading.Event()

    def burn() -> None:
        with psycopg.connect(dsn, autocommit=True) as c:
            while not stop.is_set():
                c.execute("SELECT pg_current_xact_id()")  # one transaction ID per statement

    thread = threading.Thread(target=burn, daemon=True)
    thread.start()
    try:
        await anyio.sleep(0.2)
        out = await call("pg_vacuum_advisor", {"sampleSeconds": 1})
    finally:
        stop.set()
        thread.join(10)
    xid = out["burn"]["xid"]
    assert xid["per_second"] > 10 and out["burn"]["sample_seconds"] >= 1
    # per_second is shown to two decimals: the runway agrees with it to within that rounding
    runway = (xid["freeze_max_age"] - xid["age"]) / xid["per_second"]
    assert xid["seconds_to_freeze_max_age"] == pytest.approx(runway, rel=1e-3)
    assert xid["seconds_to_exhaustion"] > xid["seconds_to_freeze_max_age"]


async def test_a_busy_table_gets_its_own_scale_factor(call: Call, dsn: str, schema: str) -> None:
    busy, tuned = sql.Identifier(schema, "busy_t"), sql.Identifier(schema, "tuned_t")
    with psycopg.connect(dsn, autocommit=True) as c:
        for t, extra in ((busy, sql.SQL("")), (tuned, sql.SQL("WITH (autovacuum_vacuum_scale_factor = 0.01)"))):
            c.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY, n int) {}").format(t, extra))
            c.execute(sql.SQL("INSERT INTO {} SELECT g, 0 FROM generate_series(1, 20000) g").format(t))
            c.execute(sql.SQL("UPDATE {} SET n = n + 1").format(t))
            c.execute(sql.SQL("ANALYZE {}").format(t))
        if c.info.server_version >= 150000:
            c.execute("SELECT pg_stat_force_next_flush()")
    out = await call("pg_vacuum_advisor", {"sampleSeconds": 0.5, "minRows": 10_000, "limit": 1000})
    mine = {t["table"]: t for t in out["autovacuum"]["tables"] if t["schema"] == schema}
    assert set(mine) == {"busy_t"}  # tuned_t has its own 1 % already
    rec = mine["busy_t"]
    assert rec["current_scale_factor"] == out["autovacuum"]["global_scale_factor"]
    assert 0.01 <= rec["recommended_scale_factor"] <= rec["current_scale_factor"] / 2
    assert rec["fix"] == (f'ALTER TABLE "{schema}"."busy_t" SET (autovacuum_vacuum_scale_factor = '
                          f"{rec['recommended_scale_factor']})")


async def test_bad_input_is_refused(call: Call) -> None:
    for bad in ({"sampleSeconds": 0}, {"sampleSeconds": 60}, {"limit": 0}, {"nope": 1}):
        with pytest.raises(Exception) as exc:
            await call("pg_vacuum_advisor", bad)
        assert_tool_error(exc, "INVALID_INPUT")
