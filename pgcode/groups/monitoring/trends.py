"""monitoring: health snapshots kept in pgcode's schema, and what changed since one (growth, burn, regressions)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, WithJsonSchema, field_validator, model_validator

from pgcode.core.context import ToolContext, savepoint
from pgcode.core.registry import ToolInput, tool
from pgcode.db.queries import load_query
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups.performance._shared import pgss_fetch, pgss_order, pgss_relation
from pgcode.groups.performance.statements import statements_info
from pgcode.health import Thresholds, run_checks, summarize
from pgcode.health import snapshots as store
from pgcode.health.locks import locked_relations
from pgcode.health.trends import TrendLimits, diff, parse_since, taken_at
from pgcode.types import Effect

QUERY_TEXT = 200  # characters of each query's text a snapshot keeps: enough to recognise it


async def _top_queries(ctx: ToolContext, limit: int) -> dict[str, Any]:
    """This database's top statements by queryid, or why there are none (extension missing or not loaded)."""
    if limit == 0:
        return {"available": False, "reason": "not asked for (queries: 0)"}
    if not ctx.caps.has_extension("pg_stat_statements"):
        return {"available": False, "reason": "the pg_stat_statements extension is not installed"}
    query = load_query("health_snapshot_queries").format(total=pgss_order(ctx, "total_time"),
                                                         pgss=await pgss_relation(ctx))
    try:
        async with savepoint(ctx, "pgcode_snapshot_pgss"):
            rows = await pgss_fetch(ctx, query, {"qlen": QUERY_TEXT, "limit": limit, "own_roles": [
                ctx.settings.read_role, ctx.settings.write_role]})
            info = await statements_info(ctx)
    except ToolError as err:
        return {"available": False, "reason": err.message}
    for r in rows:
        r["mean_ms"] = r["total_ms"] / r["calls"]
    reset = info.get("stats_reset")
    return {"available": True, "stats_reset": reset.isoformat() if reset else None, "items": rows}


async def figures(ctx: ToolContext, thresholds: Thresholds, top: int, queries: int) -> dict[str, Any]:
    """A snapshot's figures measured now, as a read call sees them (the health report's view)."""
    async with store.as_reader(ctx):
        results = await run_checks(ctx, thresholds)
        measured = await store.measure(ctx, await locked_relations(ctx), top)
        measured["queries"] = await _top_queries(ctx, queries)
    overall = summarize(results)
    return {"version": store.FIGURES_VERSION, "database": ctx.caps.database, "status": overall["status"],
            "summary": overall["summary"], "checks": store.checks(results), **measured}


# Validated as pg_analyze_db_health's thresholds, described once there: this schema just points at it.
ThresholdOverrides = Annotated[Thresholds, WithJsonSchema({"type": "object"})]


class HealthSnapshotIn(ToolInput):
    thresholds: ThresholdOverrides = Field(default_factory=Thresholds, description="Threshold overrides, as "
                                           "pg_analyze_db_health's thresholds")
    top: int = Field(store.TOP, ge=1, le=1000, description="How many of the largest tables and of the largest "
                                                          "indexes to keep")
    queries: int = Field(100, ge=0, le=1000, description="How many top queries by total time to keep (0: none)")


@tool(group="monitoring", effect=Effect.WRITE, own_sql=True)
async def health_snapshot(ctx: ToolContext, args: HealthSnapshotIn) -> dict[str, Any]:
    """Save a health snapshot to compare with later; returns its id, overall status and finding counts.

    A snapshot keeps findings per check (status, value, objects named), the largest tables (sizes, live and
    dead tuples, estimated bloat) and indexes, transaction-ID and multixact ages with the next ID, and this
    database's top queries by queryid. It writes only pgcode.health_snapshots (write scope: saving prunes
    snapshots past PGCODE_HEALTH_SNAPSHOT_RETENTION_DAYS and PGCODE_HEALTH_SNAPSHOT_MAX_COUNT, which others
    may use as their baseline). pg_health_snapshot_diff compares two, or one with now.
    """
    store.require_store(ctx)
    measured = await figures(ctx, args.thresholds, args.top, args.queries)
    row, deleted = await store.save(ctx, ctx.caps.database, measured["status"], measured)
    return {**row, "summary": measured["summary"],
            "findings": [{"check": name, "status": c["status"], "summary": c["summary"]}
                         for name, c in measured["checks"].items() if c["status"] != "ok"],
            "kept": {"tables": len(measured["tables"]["items"]), "indexes": len(measured["indexes"]["items"]),
                     "queries": len(measured["queries"].get("items", []))},
            "retention": {"days": ctx.settings.health_snapshot_retention_days,
                          "max_count": ctx.settings.health_snapshot_max_count, "deleted": deleted}}


class HealthSnapshotListIn(ToolInput):
    limit: int = Field(50, ge=1, le=1000, description="Most snapshots to return, newest first")
    offset: int = Field(0, ge=0, le=1_000_000, description="Skip this many (for paging)")


@tool(group="monitoring", effect=Effect.READ, own_sql=True)
async def health_snapshot_list(ctx: ToolContext, args: HealthSnapshotListIn) -> dict[str, Any]:
    """Saved health snapshots, newest first: id, taken_at, principal, database, status and finding counts."""
    out = await store.list_snapshots(ctx, args.limit, args.offset)
    out["retention"] = {"days": ctx.settings.health_snapshot_retention_days,
                        "max_count": ctx.settings.health_snapshot_max_count}
    return out


class HealthSnapshotDiffIn(TrendLimits):
    baseline: int | None = Field(None, ge=1, description="The snapshot to compare from, by id")
    since: str | None = Field(None, max_length=20, description="Or a look-back such as 7d, 12h or 30m: the newest "
                              "snapshot at least that old, else the oldest one within it (the result says which)")
    target: int | None = Field(None, ge=1, description="The snapshot to compare to, by id (default: measure now)")
    thresholds: ThresholdOverrides = Field(default_factory=Thresholds, description="When measuring now: threshold "
                                           "overrides, as pg_analyze_db_health's thresholds")
    top: int = Field(store.TOP, ge=1, le=1000, description="When measuring now: how many of the largest tables and "
                                                          "indexes to look at")
    queries: int = Field(100, ge=1, le=1000, description="When measuring now: how many top queries to look at")

    @field_validator("since")
    @classmethod
    def _duration(cls, value: str | None) -> str | None:
        if value is not None:
            parse_since(value)
        return value

    @model_validator(mode="after")
    def _one_baseline(self) -> HealthSnapshotDiffIn:
        if (self.baseline is None) == (self.since is None):
            raise ValueError("give the baseline snapshot's id or a look-back `since` (one of them)")
        return self


@tool(group="monitoring", effect=Effect.READ, own_sql=True)
async def health_snapshot_diff(ctx: ToolContext, args: HealthSnapshotDiffIn) -> dict[str, Any]:
    """What changed since a health snapshot: new and resolved findings, growth, dead tuples, XID burn, slower queries.

    Growth is of the largest tables and indexes; the XID burn rate comes with the time left until
    autovacuum_freeze_max_age and wraparound; queries are compared by queryid. Compares with a later snapshot
    (target) or with the database now (measured as pg_health_snapshot would, nothing saved). A regression needs
    regressionMinCalls calls since the baseline and a mean time since then of at least regressionRatio times the
    baseline's mean and regressionMinMs more.
    """
    if args.target is not None:
        target = await store.get(ctx, args.target)
        now, before, exclude = target["figures"], target["taken_at"], target["id"]
        now.update(id=target["id"], taken_at=before)
    else:
        now = await figures(ctx, args.thresholds, args.top, args.queries)
        before, exclude = taken_at(now), None
    if args.baseline is not None:
        base = await store.get(ctx, args.baseline)
    else:
        assert args.since is not None  # the model allows one of the two
        base = await store.baseline(ctx, parse_since(args.since), before, exclude)
    if base["taken_at"] >= before:
        raise ToolError(ErrorCode.INVALID_INPUT, f"snapshot {base['id']} is not older than what it is compared "
                        "with: the baseline comes first", details={"baseline": base["id"], "target": args.target})
    limits = TrendLimits.model_validate(args.model_dump(include=set(TrendLimits.model_fields)))
    return diff(base, now, limits)


