"""Health checks and pg_analyze_db_health against conditions made for real: each check finds its condition
(warning or critical, naming the object), a clean database reports ok, and a check that cannot run is unknown."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator
from fnmatch import fnmatchcase
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import make_conninfo
from pydantic.alias_generators import to_camel

from pgcode.core.context import ToolContext
from pgcode.core.registry import load_registry
from pgcode.core.runtime import Runtime
from pgcode.health import AREAS, CHECKS, Check, Coverage, Thresholds, run_checks
from pgcode.health._base import result
from pgcode.settings import Settings
from pgcode.types import LOCAL_PRINCIPAL, Principal, Scope
from tests._health_conditions import SESSION_THRESHOLDS, by_check, make_conditions, names_in
from tests.fix_db import Call, assert_tool_error
from tests.groups._sessions import blocked, eventually, idle_session, sleeper

pytestmark = pytest.mark.anyio

NOBODY = Principal("nobody", frozenset())
BAD = {"warning", "critical"}
# The checks the conditions trigger; a clean database reports ok for each.
CONDITION_CHECKS = ["unused_indexes", "duplicate_indexes", "invalid_indexes", "dead_tuples", "sequence_overflow",
                    "integer_column_overflow", "fk_without_index", "unvalidated_constraints",
                    "security_definer_search_path", "long_running_queries", "idle_in_transaction", "blocking_locks"]


@pytest.fixture(scope="module")
def cond(dsn: str, schema: str) -> str:
    make_conditions(dsn, schema)
    return schema


@pytest.fixture(scope="module")
async def health(rt: Runtime, cond: str) -> dict[str, Any]:
    """One full run against the conditions (every check), shared by the object checks."""
    return by_check(await rt.invoke("pg_analyze_db_health", {"thresholds": {"maxItems": 5000}}, LOCAL_PRINCIPAL))


async def test_every_check_runs_and_reports_the_shape(rt: Runtime, cond: str) -> None:
    out = await rt.invoke("pg_analyze_db_health", {}, LOCAL_PRINCIPAL)
    assert {c["check"] for c in out["checks"]} == set(CHECKS)
    assert sum(out["summary"].values()) == len(CHECKS) and out["duration_ms"] < 10_000
    for c in out["checks"]:
        assert set(c) == {"check", "area", "status", "summary", "value", "threshold", "details", "advice",
                          "coverage"}
        assert c["status"] in ("ok", "warning", "critical", "unknown") and c["area"] in AREAS
    rank = {"critical": 3, "warning": 2, "unknown": 1, "ok": 0}
    ranks = [rank[c["status"]] for c in out["checks"]]
    assert ranks == sorted(ranks, reverse=True)  # worst first
    assert out["status"] == out["checks"][0]["status"]
    assert out["thresholds"]["max_items"] == 20


async def test_unused_index_over_a_megabyte(health: dict[str, Any], cond: str) -> None:
    c = health["unused_indexes"]
    assert c["status"] in BAD and "unused_code_idx" in names_in(c, "name", cond)
    item = next(r for r in c["details"]["items"] if r["name"] == "unused_code_idx")
    assert item["size_bytes"] > 1024 * 1024 and item["fix"] == f'DROP INDEX CONCURRENTLY "{cond}"."unused_code_idx"'
    # since the counters' last reset (never reset: no window, they cover the cluster's life)
    assert c["details"]["confidence"] == ("ok" if c["details"]["observed_days"] is None
                                          or c["details"]["observed_days"] >= 7 else "low")
    assert "dup_a_idx" not in names_in(c, "name", cond)  # under 1 MB


async def test_duplicate_index(health: dict[str, Any], cond: str) -> None:
    c = health["duplicate_indexes"]
    assert c["status"] == "warning"
    dup = next(r for r in c["details"]["items"] if r["schema"] == cond and r["table"] == "dup_t")
    assert dup["kind"] == "duplicate" and {dup["index"], dup["redundant_with"]} == {"dup_a_idx", "dup_a_copy"}


async def test_invalid_index_from_a_failed_concurrent_build(health: dict[str, Any], cond: str) -> None:
    c = health["invalid_indexes"]
    assert c["status"] == "warning" and names_in(c, "index", cond) == {"inv_k_uidx"}
    assert "inv_k_uidx" in c["summary"] or c["value"] > 3


async def test_dead_tuples(health: dict[str, Any], cond: str) -> None:
    c = health["dead_tuples"]
    dead = next(r for r in c["details"]["items"] if r["schema"] == cond and r["table"] == "dead_t")
    assert c["status"] == "critical" and dead["dead_tuples"] >= 6000 and float(dead["dead_ratio"]) >= 0.5


async def test_sequences_near_their_limit(health: dict[str, Any], cond: str) -> None:
    c = health["sequence_overflow"]
    assert c["status"] == "critical"
    seqs = {r["table"]: r for r in c["details"]["items"] if r["schema"] == cond}
    assert set(seqs) == {"seq_small", "seq_int", "seq_ident", "seq_wide"}
    assert seqs["seq_small"]["column_type"] == "smallint" and seqs["seq_small"]["limit_value"] == 32767
    assert seqs["seq_small"]["used_ratio"] == pytest.approx(32000 / 32767, abs=1e-4)
    assert seqs["seq_int"]["limit_value"] == 2147483647 and seqs["seq_int"]["used_ratio"] > 0.9
    assert seqs["seq_ident"]["is_identity"] is True and 0.75 < seqs["seq_ident"]["used_ratio"] < 0.9
    wide = seqs["seq_wide"]  # a bigint sequence, capped by the integer column it feeds
    assert wide["sequence_type"] == "bigint" and wide["limited_by"] == "column type"
    assert wide["limit_value"] == 2147483647 and wide["remaining"] == 2147483647 - 2100000000


async def test_integer_column_near_its_limit(health: dict[str, Any], cond: str) -> None:
    c = health["integer_column_overflow"]
    assert c["status"] == "critical"
    col = next(r for r in c["details"]["items"] if r["schema"] == cond)
    assert (col["table"], col["column"], col["column_type"]) == ("ints_t", "v", "int4") and col["used_ratio"] > 0.93


async def test_foreign_key_without_index(health: dict[str, Any], cond: str) -> None:
    c = health["fk_without_index"]
    fk = next(r for r in c["details"]["items"] if r["schema"] == cond)
    assert c["status"] == "warning" and fk["table"] == "fk_child" and fk["columns"] == ["parent_id"]
    assert fk["fix"] == f'CREATE INDEX CONCURRENTLY ON "{cond}"."fk_child" ("parent_id")'
    assert fk["referenced_table"] == "fk_parent"


async def test_unvalidated_constraint_and_definer_function(health: dict[str, Any], cond: str) -> None:
    c = health["unvalidated_constraints"]
    assert c["status"] == "warning" and names_in(c, "constraint", cond) == {"fk_child_id_positive"}
    d = health["security_definer_search_path"]
    assert d["status"] in BAD and names_in(d, "function", cond) == {"definer_fn"}


async def test_session_checks_find_a_long_query_an_idle_transaction_and_a_lock_wait(
        call: Call, dsn: str, cond: str, conn: psycopg.Connection[Any]) -> None:
    app = "t_health_sessions"
    with sleeper(dsn, f"{app}_long", 30) as long_query, \
            idle_session(dsn, f"{app}_idle", in_transaction=True), \
            blocked(dsn, sql.Identifier(cond, "dup_t"), f"{app}_lock") as (_, waiter):
        async def found() -> dict[str, Any] | None:  # once the sessions are past the 0.5 s limits
            out = by_check(await call("pg_analyze_db_health", {"checks": ["sessions"],
                                                               "thresholds": SESSION_THRESHOLDS}))
            return out if f"{app}_long" in _apps(out["long_running_queries"]) and f"{app}_idle" in _apps(
                out["idle_in_transaction"]) else None

        out = await eventually(found, what="the sessions to count as long")
        assert set(out) == {"long_running_queries", "idle_in_transaction", "prepared_transactions",
                            "blocking_locks", "connections"}
        long = out["long_running_queries"]
        assert long["status"] in BAD and f"{app}_long" in _apps(long)
        assert long_query.pid in {r["pid"] for r in long["details"]["items"]}
        idle = out["idle_in_transaction"]
        assert idle["status"] in BAD and f"{app}_idle" in _apps(idle)
        locks = out["blocking_locks"]
        assert locks["status"] in BAD and f"{app}_lock_waiter" in _apps(locks)
        pair = next(r for r in locks["details"]["items"] if r["blocked_pid"] == waiter.pid)
        assert f"{app}_lock_holder" in pair["blocked_by_applications"]
    # the sessions end with their blocks (a backend leaves pg_stat_activity a moment after its client closes)
    await eventually(lambda: conn.execute("SELECT count(*) FROM pg_stat_activity WHERE application_name LIKE %s",
                                          (f"{app}%",)).fetchone() == (0,), what="the test's sessions to end")


def _apps(check: dict[str, Any]) -> set[str]:
    return {str(r.get("application_name")) for r in check["details"]["items"]}


async def test_checks_select_by_name_and_area(call: Call, cond: str) -> None:
    out = await call("pg_analyze_db_health", {"checks": ["wraparound", "dead_tuples"], "includeOk": False})
    assert {c["check"] for c in out["checks"]} <= {"xid_wraparound", "multixact_wraparound", "xmin_horizon",
                                                   "sequence_overflow", "integer_column_overflow", "dead_tuples"}
    assert "sequence_overflow" in {c["check"] for c in out["checks"]}
    assert all(c["status"] != "ok" for c in out["checks"])
    assert sum(out["summary"].values()) == 6


async def test_thresholds_change_the_verdict(call: Call, cond: str) -> None:
    strict = by_check(await call("pg_analyze_db_health", {"checks": ["sequence_overflow"],
                                                          "thresholds": {"overflowWarningRatio": 0.99,
                                                                         "overflow_critical_ratio": 0.999}}))
    assert strict["sequence_overflow"]["status"] in ("ok", "warning")
    assert cond not in {r["schema"] for r in strict["sequence_overflow"]["details"]["items"]}


async def test_a_check_that_cannot_run_is_unknown_and_the_others_still_run(rt: Runtime, cond: str) -> None:
    async def denied(ctx: ToolContext, t: Thresholds, cov: Coverage) -> Any:
        await ctx.execute("SET LOCAL ROLE pg_monitor")  # a role that may not read the schema's tables
        await ctx.fetch(sql.SQL("SELECT * FROM {}").format(sql.Identifier(cond, "dup_t")))

    async def missing(ctx: ToolContext, t: Thresholds, cov: Coverage) -> Any:
        await ctx.fetch("SELECT pgcode_no_such_function()")

    async def fine(ctx: ToolContext, t: Thresholds, cov: Coverage) -> Any:
        user = await ctx.fetchval("SELECT current_user")
        return result("fine", "tables", "ok", f"ran as {user}", 1, 0, "none")

    checks = [Check("denied", "tables", "d", denied), Check("missing", "tables", "m", missing),
              Check("fine", "tables", "f", fine)]
    spec = rt.registry.get("pg_analyze_db_health")
    assert spec is not None
    async with ToolContext(rt, spec, LOCAL_PRINCIPAL) as ctx:
        out = await run_checks(ctx, Thresholds(), checks)
    assert [r["status"] for r in out] == ["unknown", "unknown", "ok"]
    assert "not permitted" in out[0]["details"]["reason"] and out[0]["details"]["sqlstate"] == "42501"
    assert "pg_monitor" in out[0]["advice"]
    assert "not available" in out[1]["details"]["reason"] and out[1]["details"]["sqlstate"] == "42883"
    assert out[2]["summary"] == "ran as pgcode_read"  # the failed check's SET ROLE was rolled back with it


@pytest.fixture(scope="module")
def clean_dsn(dsn: str) -> Iterator[str]:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS t_health_clean")
        c.execute("CREATE DATABASE t_health_clean")
    yield make_conninfo(dsn, dbname="t_health_clean")
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute("DROP DATABASE IF EXISTS t_health_clean WITH (FORCE)")


@pytest.fixture(scope="module")
async def clean_rt(clean_dsn: str) -> AsyncIterator[Runtime]:
    async with Runtime(Settings(database_url=clean_dsn)) as runtime:
        yield runtime


async def test_a_clean_database_reports_ok(clean_rt: Runtime) -> None:
    out = await clean_rt.invoke("pg_analyze_db_health", {"checks": CONDITION_CHECKS,
                                                         "thresholds": SESSION_THRESHOLDS}, LOCAL_PRINCIPAL)
    assert out["database"] == "t_health_clean"
    assert {c["check"]: c["status"] for c in out["checks"]} == dict.fromkeys(CONDITION_CHECKS, "ok")
    assert all(c["advice"] == "none" for c in out["checks"])


async def test_bad_input_is_refused(call: Call, cond: str) -> None:
    for args, fragment in (({"checks": ["no_such_check"]}, "no_such_check"),
                           ({"thresholds": {"noSuchThreshold": 1}}, "noSuchThreshold"),
                           ({"thresholds": {"overflowWarningRatio": 2}}, "overflowWarningRatio"),
                           ({"thresholds": {"maxItems": 0}}, "maxItems")):
        with pytest.raises(Exception) as exc:
            await call("pg_analyze_db_health", args)
        assert_tool_error(exc, "INVALID_INPUT", fragment)


async def test_scope_read_is_needed(call: Call, cond: str) -> None:
    with pytest.raises(Exception) as exc:
        await call("pg_analyze_db_health", {}, NOBODY)
    assert_tool_error(exc, "FORBIDDEN")
    out = await call("pg_analyze_db_health", {"checks": ["connections"]}, Principal.with_scope("r", Scope.READ))
    assert out["checks"][0]["check"] == "connections"


def test_the_tool_documents_every_check_and_threshold() -> None:
    """The catalog shows only the areas; the tool's description names every check and threshold a caller may give."""
    spec = load_registry().get("pg_analyze_db_health")
    assert spec is not None
    for name in (*AREAS, *CHECKS):
        assert name in spec.description, name
    assert all(area in spec.input_schema["properties"]["checks"]["description"] for area in AREAS)
    patterns = [w for w in re.findall(r"[A-Za-z*]+", spec.description) if w.strip("*")]
    for field in Thresholds.model_fields:
        assert any(fnmatchcase(to_camel(field), p) for p in patterns), to_camel(field)
