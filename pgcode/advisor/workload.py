"""The user's workload from pg_stat_statements rows: pgcode's own statements, catalog and extension queries,
EXPLAIN, DDL and utility statements left out, and statements below minCalls / minMeanMs skipped."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from pglast import ast, parse_sql
from pglast.parser import ParseError

from pgcode.advisor.querycols import levels
from pgcode.db.queries import SYSTEM_SCHEMAS

REASONS = {
    "pgcode": "run by pgcode's own roles (its tools and probes)",
    "explain": "EXPLAIN statements: tools planning a query, not the workload",
    "utility": "DDL and utility statements (SET, SHOW, VACUUM, transaction control, ...)",
    "insert": "INSERT and MERGE: no condition an index would serve",
    "catalog": "catalog, statistics and extension queries (pg_catalog, information_schema, pg_* views, functions)",
    "unparsable": "text pg_stat_statements cut or could not be parsed",
    "below_min_calls": "called fewer times than minCalls",
    "below_min_mean_ms": "mean execution time below minMeanMs",
}


@dataclass
class Statement:
    """One normalized statement of the workload, its counters summed over the roles that ran it."""

    queryid: str
    text: str
    calls: int = 0
    rows: int = 0
    total_ms: float = 0.0
    roles: set[str] = field(default_factory=set)

    @property
    def mean_ms(self) -> float:
        return self.total_ms / self.calls if self.calls else 0.0

    @property
    def rows_per_call(self) -> float:
        return self.rows / self.calls if self.calls else 0.0


def user_workload(rows: list[dict[str, Any]], *, own_roles: set[str], min_calls: int, min_mean_ms: float,
                  top: int) -> tuple[list[Statement], Counter[str]]:
    """The `top` statements by total time that are the user's, and how many were left out for each reason."""
    excluded: Counter[str] = Counter()
    merged: dict[str, Statement] = {}
    for r in rows:
        if r["username"] in own_roles:
            excluded["pgcode"] += 1
            continue
        s = merged.setdefault(r["query"], Statement(str(r["queryid"]), r["query"]))
        s.calls += int(r["calls"])
        s.rows += int(r["rows"])
        s.total_ms += float(r["total_ms"] or 0)
        s.roles.add(str(r["username"]))
    kept: list[Statement] = []
    for s in sorted(merged.values(), key=lambda s: -s.total_ms):
        reason = kind(s.text)
        if reason is None and s.calls < min_calls:
            reason = "below_min_calls"
        if reason is None and s.mean_ms < min_mean_ms:
            reason = "below_min_mean_ms"
        if reason is not None:
            excluded[reason] += 1
        elif len(kept) < top:
            kept.append(s)
    return kept, excluded


def kind(text: str) -> str | None:
    """Why a statement is not the user's indexable workload, or None when it is."""
    try:
        stmts = parse_sql(text)
    except ParseError:
        return "unparsable"
    if len(stmts) != 1:
        return "unparsable"
    node = stmts[0].stmt
    if isinstance(node, ast.ExplainStmt):
        return "explain"
    if isinstance(node, ast.InsertStmt | ast.MergeStmt):
        return "insert"
    if not isinstance(node, ast.SelectStmt | ast.UpdateStmt | ast.DeleteStmt):
        return "utility"
    relations = [rel for level in levels(text) for rel in level.relations.values()]
    if not any(not _system(schema, name) for schema, name in relations):
        return "catalog"
    return None


def _system(schema: str | None, name: str) -> bool:
    return schema in SYSTEM_SCHEMAS or name.startswith(("pg_", "hypopg"))
