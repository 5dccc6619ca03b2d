"""The index advisor: candidate indexes from what statements filter, join and sort on, weighed as hypothetical
indexes with hypopg when it is installed (planner costs before and after), by statistics otherwise.

Candidates: pgcode.advisor.candidates; parameter values: pgcode.advisor.params; without hypopg:
pgcode.advisor.heuristics. Both advisor tools and pg_index_recommendations run advise().
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import psycopg
from pglast import ast, parse_sql
from psycopg import AsyncRawCursor, sql

from pgcode.advisor.candidates import (
    Candidate,
    Choice,
    Query,
    candidates,
    label,
    pick,
    predicate_sql,
    redundant_existing,
    resolve,
)
from pgcode.advisor.heuristics import HEURISTIC_NOTE, cost_settings, with_heuristics
from pgcode.advisor.params import fill
from pgcode.advisor.plans import plan_nodes
from pgcode.advisor.querycols import levels, param_count
from pgcode.core.context import ToolContext, savepoint
from pgcode.errors import ErrorCode, ToolError

__all__ = ["Hypothetical", "Query", "advise", "explain", "hypothetical_indexes", "outline", "prepare"]

CONSOLIDATE_TOLERANCE = 0.05  # an index whose removal raises its queries' cost by less than this is redundant
SIZE_NOTE = ("btree estimate: leaf pages at fill factor 90, duplicate keys merged into posting lists "
             "(deduplication), inner pages and metapage; from pg_stats avg_width and n_distinct")


async def prepare(ctx: ToolContext, q: Query) -> None:
    """Parse the statement and check the values given for its $n (the others are filled in advise())."""
    q.levels = levels(q.text)
    n = param_count(q.text)
    if q.params is not None and len(q.params) != n:
        raise ToolError(ErrorCode.INVALID_INPUT, f"the statement uses {n} parameter(s) ($1..${n}) and "
                                                 f"{len(q.params)} were given")


# ---------------------------------------------------------------- EXPLAIN


async def explain(ctx: ToolContext, query: Query | sql.Composable, *, analyze: bool = False) -> dict[str, Any]:
    """The JSON plan (the object inside EXPLAIN's one-element array)."""
    if not isinstance(query, Query):
        doc = await ctx.fetchval(sql.SQL("EXPLAIN (FORMAT JSON) {}").format(query))
        return dict(doc[0])
    options = "FORMAT JSON, VERBOSE true" + (", GENERIC_PLAN true" if query.generic else "") + (
        ", ANALYZE true, BUFFERS false" if analyze else "")
    text = f"EXPLAIN ({options}) {query.text}"
    # The statement was checked alone; make sure the prefix did not change what it means.
    whole = parse_sql(text)
    if len(whole) != 1 or not isinstance(whole[0].stmt, ast.ExplainStmt):
        raise ToolError(ErrorCode.INVALID_INPUT, "the statement cannot be explained as given")
    conn = await ctx.conn()
    async with AsyncRawCursor(conn) as cur:
        await cur.execute(text, query.params or None)
        row = await cur.fetchone()
    assert row is not None
    return dict(row[0][0])


def cost(plan: dict[str, Any]) -> float:
    return float(plan["Plan"]["Total Cost"])


def outline(plan: dict[str, Any], names: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """A plan as a short list of nodes (type, relation, index, cost, rows); hypothetical index names resolved."""
    out = []
    for n in plan_nodes(plan):
        index = n["index"]
        out.append({"depth": n["depth"], "node_type": n["node_type"], "relation": n["relation"],
                    "index": (names or {}).get(index, index) if index else None, "total_cost": n["total_cost"],
                    "estimated_rows": n["estimated_rows"]})
    return out


def indexes_in(plan: dict[str, Any]) -> set[str]:
    return {n["index"] for n in plan_nodes(plan) if n["index"]}


# ---------------------------------------------------------------- hypothetical indexes (hypopg)


class Hypothetical:
    """Create, measure and drop hypothetical indexes on this call's connection (hypopg functions)."""

    def __init__(self, ctx: ToolContext, schema: str) -> None:
        self.ctx = ctx
        self.schema = schema

    def _fn(self, name: str) -> sql.Identifier:
        return sql.Identifier(self.schema, name)

    async def create(self, ddl: str) -> tuple[int, str]:
        row = await self.ctx.fetchone(sql.SQL("SELECT indexrelid, indexname FROM {}(%s)").format(
            self._fn("hypopg_create_index")), (ddl,))
        assert row is not None
        return int(row["indexrelid"]), str(row["indexname"])

    async def drop(self, oid: int) -> None:
        await self.ctx.execute(sql.SQL("SELECT {}(%s)").format(self._fn("hypopg_drop_index")), (oid,))


@asynccontextmanager
async def hypothetical_indexes(ctx: ToolContext) -> AsyncIterator[Hypothetical]:
    """hypopg on this call's connection; hypopg_reset() afterwards, whatever happens.

    hypopg keeps its indexes in the backend's memory, outside any transaction, and DISCARD ALL does not
    clear them: the reset must run before the connection goes back to the pool. A savepoint lets it run
    after a failed statement too; if even the reset fails, the connection is closed so nobody reuses it.
    """
    schema = await ctx.fetchval("SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
                                "WHERE e.extname = 'hypopg'")
    if schema is None:
        raise ToolError(ErrorCode.EXTENSION_MISSING, "hypopg is not installed", details={"extension": "hypopg"})
    hypo = Hypothetical(ctx, str(schema))
    await ctx.execute("SAVEPOINT pgcode_hypopg")
    try:
        yield hypo
    except BaseException:
        with contextlib.suppress(psycopg.Error):
            await ctx.execute("ROLLBACK TO SAVEPOINT pgcode_hypopg")
        raise
    finally:
        try:
            await ctx.execute(sql.SQL("SELECT {}()").format(hypo._fn("hypopg_reset")))
        except BaseException:
            conn = await ctx.conn()
            with contextlib.suppress(Exception):
                await conn.close()
            raise


async def with_hypopg(ctx: ToolContext, queries: list[Query], before: list[dict[str, Any]],
                      cands: list[Candidate], *, max_indexes: int,
                      min_improvement: float) -> tuple[list[Choice], list[dict[str, Any]], dict[str, str]]:
    """Greedy selection with hypothetical indexes: each round adds the candidate with the most planner-cost gain
    per byte (among those with at least half the best gain), until none gains min_improvement or max_indexes
    are chosen; then an index the others make redundant is dropped and the search goes on.
    Returns the choices the final plans use, those plans, and hypothetical index name -> description."""
    current = [cost(p) for p in before]
    chosen: list[Choice] = []
    live: dict[int, tuple[int, str]] = {}  # id(choice) -> hypothetical index oid, name
    conn = await ctx.conn()
    async with hypothetical_indexes(ctx) as hypo:
        remaining = list(cands)
        for _ in range(3):  # consolidation frees slots for another round at most twice
            while remaining and len(chosen) < max_indexes:
                trials = []
                for cand in list(remaining):
                    trial = await _trial(ctx, hypo, cand, queries, current)
                    if trial is None:  # hypopg cannot model it (a partitioned table, say): not a candidate
                        remaining.remove(cand)
                    else:
                        trials.append(trial)
                best = pick(trials, min_improvement)
                if best is None:
                    break
                chosen.append(best)
                remaining.remove(best.candidate)
                live[id(best)] = await hypo.create(best.candidate.ddl().as_string(conn))
                current = [cost(await explain(ctx, q)) for q in queries]
            if not await _consolidate(ctx, hypo, chosen, live, queries, current):
                break
        after = [await explain(ctx, q) for q in queries]
    names = {name: label(c.candidate) for c in chosen for _, name in [live[id(c)]]}
    used = set().union(*(indexes_in(p) for p in after)) if after else set()
    return [c for c in chosen if live[id(c)][1] in used], after, names


async def _consolidate(ctx: ToolContext, hypo: Hypothetical, chosen: list[Choice], live: dict[int, tuple[int, str]],
                       queries: list[Query], current: list[float]) -> bool:
    """Drop chosen indexes (largest first) whose removal leaves their queries' cost within the tolerance: another
    chosen index serves them. Whether any was dropped."""
    conn = await ctx.conn()
    dropped = False
    for choice in sorted(chosen, key=lambda c: -c.size):
        affected = sorted(set().union(*(c.candidate.queries for c in chosen)))
        oid, _ = live[id(choice)]
        await hypo.drop(oid)
        costs = {i: cost(await explain(ctx, queries[i])) for i in affected}
        with_it = sum(queries[i].weight * current[i] for i in affected)
        without = sum(queries[i].weight * costs[i] for i in affected)
        if without <= with_it * (1 + CONSOLIDATE_TOLERANCE):
            chosen.remove(choice)
            del live[id(choice)]
            for i, c in costs.items():
                current[i] = c
            dropped = True
        else:
            live[id(choice)] = await hypo.create(choice.candidate.ddl().as_string(conn))
    return dropped


async def _trial(ctx: ToolContext, hypo: Hypothetical, cand: Candidate, queries: list[Query],
                 current: list[float]) -> Choice | None:
    """The candidate as one more hypothetical index: the cost it removes from the queries it may help."""
    oid = None
    conn = await ctx.conn()
    try:
        async with savepoint(ctx, "pgcode_candidate"):
            oid, _ = await hypo.create(cand.ddl().as_string(conn))
            costs = {i: cost(await explain(ctx, queries[i])) for i in cand.queries}
    except psycopg.Error:
        return None
    finally:
        if oid is not None:  # after the savepoint's rollback, if it failed: hypopg's memory is not transactional
            await hypo.drop(oid)
    per_query = {i: current[i] - c for i, c in costs.items() if c < current[i]}
    gain = sum(queries[i].weight * g for i, g in per_query.items())
    base = sum(queries[i].weight * current[i] for i in cand.queries) or 1.0
    return Choice(cand, gain, gain / base, cand.estimated_size(), per_query)


# ---------------------------------------------------------------- the advice


async def advise(ctx: ToolContext, queries: list[Query], *, max_indexes: int, min_improvement: float,
                 include_plans: bool = True, hypothetical: bool = True) -> dict[str, Any]:
    """Recommend indexes for the queries (each already through prepare()): hypopg when installed, else
    heuristics. Each recommendation has its DDL, estimated size, the cost gain of the queries whose plans use
    it, its write cost, and the existing indexes it makes redundant; each query its cost before and after."""
    tables = await resolve(ctx, queries)
    planned: list[Query] = []
    before: list[dict[str, Any]] = []
    skipped: list[dict[str, Any]] = []
    for q in queries:
        fill(q, tables, ctx.server_version)
        try:
            async with savepoint(ctx, "pgcode_advisor"):
                before.append(await explain(ctx, q))
            planned.append(q)
        except (psycopg.Error, ToolError) as exc:
            reason = exc.message if isinstance(exc, ToolError) else (exc.diag.message_primary or str(exc))
            skipped.append({"query": q.label or q.text[:300], "reason": f"could not be planned: {reason}"})
    cands = candidates(planned, tables)
    hypopg = hypothetical and ctx.caps.has_extension("hypopg")
    names: dict[str, str] = {}
    after: list[dict[str, Any]] | None = None
    if hypopg:
        chosen, after, names = (await with_hypopg(ctx, planned, before, cands, max_indexes=max_indexes,
                                                  min_improvement=min_improvement)) if cands else ([], before, {})
        by_label = {v: k for k, v in names.items()}
        for c in chosen:  # the gain of the queries whose final plans use it, as in their own rows
            name = by_label[label(c.candidate)]
            c.per_query = {i: cost(before[i]) - cost(after[i]) for i in range(len(planned))
                           if name in indexes_in(after[i])}
    else:
        chosen = with_heuristics(planned, before, cands, tables, await cost_settings(ctx), max_indexes=max_indexes,
                                 min_improvement=min_improvement)
    for c in chosen:
        c.gain = sum(planned[i].weight * g for i, g in c.per_query.items())
        base = sum(planned[i].weight * cost(before[i]) for i in c.per_query) or 1.0
        c.gain_ratio = c.gain / base
    conn = await ctx.conn()
    recommendations = [_recommendation(c, conn) for c in chosen]
    per_query = []
    for i, (q, plan) in enumerate(zip(planned, before, strict=True)):
        cost_before = cost(plan)
        if after is not None:
            cost_after = cost(after[i])
            used = sorted(names[n] for n in indexes_in(after[i]) if n in names)
        else:
            helped = [c for c in chosen if i in c.per_query]
            cost_after = max(cost_before - sum(c.per_query[i] for c in helped), 0.0)
            used = [label(c.candidate) for c in helped]
        entry: dict[str, Any] = {
            "query": q.label or q.text, "weight": q.weight, "params": "generic plan" if q.generic else q.params,
            "param_values": q.param_notes, "rows_per_call": q.rows_per_call,
            "estimated_rows": plan["Plan"].get("Plan Rows"),
            "cost_before": cost_before, "cost_after": round(cost_after, 2),
            "gain_ratio": round(1 - cost_after / cost_before, 4) if cost_before else None, "indexes": used}
        if include_plans:
            entry["plan_before"] = outline(plan)
            entry["plan_after"] = outline(after[i], names) if after is not None else None
        per_query.append(entry)
    drops = {d["index"]: d for r in recommendations for d in r["makes_redundant"]}
    out: dict[str, Any] = {
        "method": "hypopg" if hypopg else "heuristic", "recommendations": recommendations,
        "count": len(recommendations), "drop": list(drops.values()), "queries": per_query,
        "candidates_considered": len(cands), "size_estimate": SIZE_NOTE,
        "total_cost_before": round(sum(q.weight * cost(p) for q, p in zip(planned, before, strict=True)), 2),
        "total_cost_after": round(sum(q.weight * e["cost_after"] for q, e in zip(planned, per_query, strict=True)), 2),
        "skipped": skipped}
    if not ctx.caps.has_extension("hypopg"):
        out["note"] = HEURISTIC_NOTE
    return out


def _recommendation(c: Choice, conn: Any) -> dict[str, Any]:
    cand, table = c.candidate, c.candidate.table
    indexes_after = len(table.indexes) + 1
    redundant = redundant_existing(cand)
    return {
        "schema": table.schema, "table": table.name, "columns": list(cand.columns),
        "descending": [col for col, d in zip(cand.columns, cand.desc, strict=True) if d],
        "include": list(cand.include),
        "where": predicate_sql(cand.predicate).as_string(conn) if cand.predicate else None,
        "clauses": list(cand.uses), "ddl": cand.ddl(concurrently=True).as_string(conn),
        "estimated_size_bytes": c.size, "cost_gain": round(c.gain, 2), "gain_ratio": round(c.gain_ratio, 4),
        "queries": sorted(c.per_query),
        "write_cost": {"writes_per_second": round(table.writes_per_second, 3), "indexes_after": indexes_after,
                       "index_writes_per_second": round(table.writes_per_second * indexes_after, 3),
                       "note": "inserts, updates and deletes per second since the statistics began; each writes "
                               "one more index entry per row with this index"},
        "makes_redundant": [{"index": f"{i.schema}.{i.name}", "size_bytes": i.size_bytes,
                             "ddl": sql.SQL("DROP INDEX CONCURRENTLY {}").format(
                                 sql.Identifier(i.schema, i.name)).as_string(conn),
                             "reason": f"its columns lead {cand.describe()}"} for i in redundant],
    }
