"""The advisor without hypopg: the gain of each candidate estimated against the sequential scans of the
plan, from pg_stats selectivity, the table's size and the planner's cost settings."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pgcode.advisor.candidates import Candidate, Choice, Query, Table, owner, pick
from pgcode.advisor.querycols import Use
from pgcode.core.context import ToolContext

HEURISTIC_NOTE = ("hypopg is not installed: gains are estimated from pg_stats selectivity (n_distinct, null_frac), "
                  "table size and the planner's cost settings against each sequential scan, not planned; only "
                  "WHERE conditions are weighed; CREATE EXTENSION hypopg for planner-verified estimates")


def _cost(plan: dict[str, Any]) -> float:
    return float(plan["Plan"]["Total Cost"])


@dataclass(frozen=True)
class CostSettings:
    seq_page_cost: float
    random_page_cost: float
    cpu_tuple_cost: float
    cpu_index_tuple_cost: float
    cpu_operator_cost: float


async def cost_settings(ctx: ToolContext) -> CostSettings:
    row = await ctx.fetchone(
        "SELECT current_setting('seq_page_cost')::float8 AS seq_page_cost, "
        "current_setting('random_page_cost')::float8 AS random_page_cost, "
        "current_setting('cpu_tuple_cost')::float8 AS cpu_tuple_cost, "
        "current_setting('cpu_index_tuple_cost')::float8 AS cpu_index_tuple_cost, "
        "current_setting('cpu_operator_cost')::float8 AS cpu_operator_cost")
    assert row is not None
    return CostSettings(**row)


def selectivity(table: Table, column: str, use: str) -> float:
    """Share of rows a condition on the column keeps: 1/n_distinct for equality (PostgreSQL's 0.005 without
    statistics), a third for a range (the planner's default for inequalities)."""
    if use != "eq":
        return 1 / 3
    stats = table.columns[column]
    nd = stats["n_distinct"]
    if nd is None:
        return 0.005
    distinct = -float(nd) * max(table.reltuples, 1) if nd < 0 else float(nd)
    return (1 - float(stats["null_frac"] or 0)) / max(distinct, 1)


def heuristic_gain(cand: Candidate, uses: dict[str, str], seq_cost: float, cs: CostSettings) -> tuple[float, int]:
    """(cost removed from a sequential scan by a bitmap scan of this candidate, estimated index size).

    The bitmap heap scan is costed as PostgreSQL does: heap pages fetched from the row count (Mackert-Lohman
    for one pass), each priced between random_page_cost and seq_page_cost by the share of the table read.
    """
    table = cand.table
    sel = 1.0
    for col in cand.columns:
        use = uses.get(col)
        if use is None:
            break  # only a leading run of the query's own conditions narrows the scan
        sel *= selectivity(table, col, use)
        if use != "eq":
            break
    if sel >= 1.0:
        return 0.0, 0
    size = cand.estimated_size()
    rows = max(1.0, table.reltuples * sel)
    pages = max(float(table.relpages), 1.0)
    fetched = max(1.0, pages * (1 - math.exp(-rows / pages)))
    per_page = cs.random_page_cost - (cs.random_page_cost - cs.seq_page_cost) * math.sqrt(fetched / pages)
    index_cost = (math.ceil(sel * size / 8192) + 1) * cs.random_page_cost + rows * (
        cs.cpu_index_tuple_cost + cs.cpu_operator_cost)
    heap_cost = fetched * per_page + rows * (cs.cpu_tuple_cost + cs.cpu_operator_cost)
    return max(seq_cost - index_cost - heap_cost, 0.0), size


def condition_uses(q: Query, table: Table, tables: dict[int, Table]) -> dict[str, str]:
    """Column -> "eq" or "range" for the WHERE conditions the query puts on this table."""
    out: dict[str, str] = {}
    for level in q.levels:
        for (qualifier, column), use in level.uses:
            if use in (Use.EQ, Use.RANGE) and owner(level, qualifier, column, tables) is table:
                out.setdefault(column, use.value)
    return out


def seq_scans(plan: dict[str, Any]) -> list[tuple[str | None, str, float]]:
    """(schema, table, total cost) of every sequential scan of a VERBOSE JSON plan."""
    out = []
    stack = [plan["Plan"]]
    while stack:
        node = stack.pop()
        if node.get("Node Type") == "Seq Scan" and node.get("Relation Name"):
            out.append((node.get("Schema"), node["Relation Name"], float(node["Total Cost"])))
        stack.extend(node.get("Plans") or [])
    return out


def with_heuristics(queries: list[Query], plans: list[dict[str, Any]], cands: list[Candidate],
                    tables: dict[int, Table], cs: CostSettings, *, max_indexes: int,
                    min_improvement: float) -> list[Choice]:
    """Per query and sequentially scanned table, the estimated gain of each candidate; then the same greedy
    pick as with hypopg, each (query, table) scan fixed at most once."""
    by_table: dict[int, list[Candidate]] = {}
    for c in cands:
        by_table.setdefault(c.table.oid, []).append(c)
    gains: dict[tuple[int, tuple[str, ...]], Choice] = {}
    for qi, (q, plan) in enumerate(zip(queries, plans, strict=True)):
        scanned: dict[int, float] = {}  # table oid -> cost of its sequential scans (a partitioned table's add up)
        for schema, rel, seq_cost in seq_scans(plan):
            table = next((t for t in tables.values() if (t.name == rel and schema in (None, t.schema))
                          or f"{schema}.{rel}" in t.leaves), None)
            if table is not None:
                scanned[table.oid] = scanned.get(table.oid, 0.0) + seq_cost
        for oid, seq_cost in scanned.items():
            table = tables[oid]
            uses = condition_uses(q, table, tables)
            for cand in by_table.get(table.oid, []):
                gain, size = heuristic_gain(cand, uses, seq_cost, cs)
                if gain <= 0 or qi not in cand.queries:
                    continue
                choice = gains.setdefault(cand.key, Choice(cand, 0.0, 0.0, size))
                choice.per_query[qi] = max(choice.per_query.get(qi, 0.0), gain)
    for choice in gains.values():
        choice.gain = sum(queries[i].weight * g for i, g in choice.per_query.items())
        base = sum(queries[i].weight * _cost(plans[i]) for i in choice.per_query) or 1.0
        choice.gain_ratio = choice.gain / base
    chosen: list[Choice] = []
    fixed: set[tuple[int, int]] = set()
    remaining = list(gains.values())
    while remaining and len(chosen) < max_indexes:
        open_trials = [c for c in remaining if any((i, c.candidate.table.oid) not in fixed for i in c.per_query)]
        best = pick(open_trials, min_improvement)
        if best is None:
            break
        chosen.append(best)
        remaining.remove(best)
        fixed.update((i, best.candidate.table.oid) for i in best.per_query)
    return chosen
