"""core: the advisors: database health checks, and index advice for a workload or one query (hypopg when installed)."""

from __future__ import annotations

import time
from typing import Any

from pydantic import Field

from pgcode import health
from pgcode.advisor.engine import Query, advise, explain, outline, prepare
from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups.performance._workload import advisable, workload_queries
from pgcode.groups.performance.explain import Kind, inspect
from pgcode.types import Effect, Scope

_MAX_SQL = 1_000_000


class AnalyzeDbHealthIn(ToolInput):
    checks: list[str] | None = Field(None, max_length=100,
                                     description="Areas (" + ", ".join(health.AREAS) + ") or check names")
    thresholds: health.Thresholds = Field(default_factory=health.Thresholds,
                                          description="Overrides, e.g. {longQueryWarningSeconds: 60}")
    include_ok: bool = True


@tool(group="core", effect=Effect.READ)
async def analyze_db_health(ctx: ToolContext, args: AnalyzeDbHealthIn) -> dict[str, Any]:
    """Database health checks, worst first: status, numbers and advice.

    Checks wraparound (transaction IDs, multixacts), sequence and integer overflow, invalid indexes and
    unvalidated constraints, duplicate, unused and bloated indexes, table bloat, dead tuples, vacuum/analyze
    staleness, seq-scan heavy tables, unindexed foreign keys, long queries, idle-in-transaction and prepared
    transactions, lock waits, connections, cache hit ratios, memory settings, replication lag and slots,
    archiving, checkpoints, and security (superuser logins, CREATE on public, SECURITY DEFINER search_path).
    Each result is {check, area, status, summary, value, threshold, details, advice}; a check that cannot
    run (privilege, version) is unknown with the reason. Session checks cover this database. includeOk false
    leaves out the checks that found nothing.

    checks takes areas or check names (default: all): xid_wraparound, multixact_wraparound, xmin_horizon,
    sequence_overflow, integer_column_overflow (wraparound); invalid_indexes, unvalidated_constraints,
    duplicate_indexes, unused_indexes, index_bloat (indexes); table_bloat, dead_tuples, vacuum_staleness,
    seq_scan_heavy, fk_without_index (tables); long_running_queries, idle_in_transaction, prepared_transactions,
    blocking_locks, connections (sessions); memory_settings, table_cache_hit, index_cache_hit (memory);
    replication_lag, replication_slots (replication); archiver, checkpoints (wal); superuser_logins,
    public_schema_create, security_definer_search_path (security).

    thresholds overrides any limit by name; the rest keep their defaults (Warning and Critical pairs grade a check).
    maxItems caps the objects listed per check (the count covers them all). wraparoundWarningRatio is a multiple of
    autovacuum_freeze_max_age (autovacuum_multixact_freeze_max_age for multixacts), wraparoundCriticalFraction a
    share of the 2^31 ID space (writes stop near 1.0). xminHorizon*Seconds: how long a session or prepared
    transaction has held the xmin horizon back; xminHorizonWarningXids: its age in transactions (critical at
    autovacuum_freeze_max_age). overflow*Ratio: share of a sequence's or integer column's range used.
    unusedIndexMinBytes: the smallest never-scanned index counted; unusedIndexCriticalBytes: their total size that
    is critical once statistics cover minObservedDays; statistics younger than minObservedDays (since stats_reset)
    make usage-based findings low-confidence, at most a warning. bloatMinBytes: the least wasted bytes that count as
    bloat; bloat*Ratio: estimated share wasted. deadTuplesMin: the least dead tuples counted; deadTuple*Ratio: dead
    / (live + dead). staleDays: a changed table whose last vacuum or analyze is older is stale, when at least
    staleMinModifiedRatio of its rows changed since the last analyze. seqScanMinRows and seqScanMinScans: the least
    live rows and seq scans for a seq-scan heavy table; seqScanRatio: seq scans / all scans. fkMinRows: the least
    rows of a referencing table whose foreign key needs an index. longQuery*, idleInTransaction*, preparedXact* and
    lockWait*Seconds: ages of running queries, idle-in-transaction sessions, prepared transactions and lock waits.
    connections*Ratio: share of the slots ordinary roles may use. cacheHit*: the hit ratio below which a check
    warns; cacheMinBlocks: fewer block requests are not judged. replicationLag*Bytes and replicationLag*Seconds: a
    standby's replay lag; slotWal*Bytes: WAL a replication slot retains. checkpoint*Ratio: share of checkpoints
    requested (WAL volume) rather than timed; checkpointMinCount: fewer are not judged.
    """
    try:
        selected = health.select(args.checks)
    except ValueError as exc:
        raise ToolError(ErrorCode.INVALID_INPUT, f"unknown check or area {exc}",
                        details={"areas": list(health.AREAS), "checks": list(health.CHECKS)}) from None
    started = time.perf_counter()
    results = await health.run_checks(ctx, args.thresholds, selected)
    out = health.summarize(results)
    if not args.include_ok:
        out["checks"] = [r for r in out["checks"] if r["status"] != "ok"]
    return {**out, "database": ctx.caps.database, "server_version": ctx.caps.server_version,
            "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            "thresholds": args.thresholds.model_dump()}


class AnalyzeWorkloadIndexesIn(ToolInput):
    top_queries: int = Field(20, ge=1, le=200)
    min_calls: int = Field(2, ge=1)
    min_mean_ms: float = Field(0.0, ge=0)
    search: str | None = Field(None, min_length=1, max_length=1000,
                               description="Only statements containing this (any case)")
    max_indexes: int = Field(5, ge=1, le=20)
    min_improvement: float = Field(0.1, gt=0, le=1)
    include_plans: bool = False


@tool(group="core", effect=Effect.READ, extensions=("pg_stat_statements",))
async def analyze_workload_indexes(ctx: ToolContext, args: AnalyzeWorkloadIndexesIn) -> dict[str, Any]:
    """Indexes the busiest statements (pg_stat_statements) need: DDL, size, gain.

    topQueries statements are taken by total execution time; minCalls and minMeanMs (ms) skip the rarely called and
    the fast, search keeps those whose text contains it (case-insensitive). includePlans adds each statement's plan
    outline before and after. An index must cut the cost of the statements it helps by at least minImprovement
    (0-1). pgcode's own statements (its roles), EXPLAIN, catalog and extension queries, DDL and utility statements
    are left out, and statements under minCalls / minMeanMs skipped; the result counts each. $n get values that make
    each condition keep the rows per call the workload saw (pg_stats most common values and histograms; LIMIT the
    rows returned), listed per query with the reason. Candidates follow a DBA's rules (equality columns, then a
    range or the ORDER BY keys; INCLUDE for index-only scans; partial indexes for constant conditions); with hypopg
    they are chosen greedily by planner-cost gain per byte, consolidated, and never duplicate an existing index; an
    existing index a new one makes redundant is listed under drop. Without hypopg gains are estimated from pg_stats
    and method is "heuristic".
    """
    queries, workload = await workload_queries(ctx, top=args.top_queries, min_calls=args.min_calls,
                                               min_mean_ms=args.min_mean_ms, search=args.search)
    out = await advise(ctx, queries, max_indexes=args.max_indexes, min_improvement=args.min_improvement,
                       include_plans=args.include_plans)
    for entry in out["queries"]:
        entry["calls"] = int(entry.pop("weight"))
    out["skipped"] = workload.pop("skipped") + out["skipped"]
    out["statements_analyzed"] = len(out["queries"])
    out["workload"] = workload
    return out


class AnalyzeQueryIndexesIn(ToolInput):
    sql: str = Field(max_length=_MAX_SQL, description="One SELECT (or UPDATE/DELETE, planned); $1, $2 ...")
    params: list[Any] | None = Field(None, max_length=1000, description="Values for $1, $2 ...")
    analyze: bool = Field(False, description="Also run it (reads only) for the actual time")
    max_indexes: int = Field(3, ge=1, le=10)
    min_improvement: float = Field(0.1, gt=0, le=1)


def _plan_scope(args: AnalyzeQueryIndexesIn) -> Scope:
    # Planning an UPDATE or DELETE needs its privileges: the write role plans it, in a READ ONLY transaction.
    return inspect(args.sql).kind.scope


@tool(group="core", effect=Effect.READ, scope_for=_plan_scope)
async def analyze_query_indexes(ctx: ToolContext, args: AnalyzeQueryIndexesIn) -> dict[str, Any]:
    """Indexes one query needs: DDL, size, cost before and after, both plans.

    Candidates come from the query's WHERE conditions, join keys and ORDER BY (parsed with pglast). With hypopg each
    is planned as a hypothetical index (never built) and chosen greedily by cost gain against size (an index must
    cut the query's cost by at least minImprovement, 0-1); without hypopg gains are estimated from pg_stats and
    method is "heuristic". The query is planned, not run, unless analyze is true (EXPLAIN ANALYZE, reads only, in a
    READ ONLY transaction, for its actual time); hypothetical indexes are planned, never run. Without params, $n get
    typical values from pg_stats, listed in the result with the reason.
    """
    stmt = advisable(args.sql)
    if args.analyze and stmt.kind is not Kind.READ:
        raise ToolError(ErrorCode.INVALID_INPUT, "analyze runs the statement, so only reads may be analyzed",
                        hint="leave analyze false to plan it without running it")
    q = Query(args.sql, params=args.params)
    await prepare(ctx, q)
    actual = None
    if args.analyze:
        if q.generic or (q.params is None and stmt.params):
            raise ToolError(ErrorCode.INVALID_INPUT, f"analyze runs the query: give params for $1..${stmt.params}")
        plan = await explain(ctx, q, analyze=True)
        actual = {"execution_time_ms": plan.get("Execution Time"), "planning_time_ms": plan.get("Planning Time"),
                  "actual_rows": plan["Plan"].get("Actual Rows"), "plan": outline(plan)}
    out = await advise(ctx, [q], max_indexes=args.max_indexes, min_improvement=args.min_improvement)
    query = out.pop("queries")
    out["query"] = query[0] if query else None
    if query:
        query[0].pop("weight", None)
    if actual is not None:
        out["actual"] = actual
    return out
