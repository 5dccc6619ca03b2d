"""performance: EXPLAIN, EXPLAIN ANALYZE (writes always rolled back) and plan comparison."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from functools import lru_cache
from typing import Any

from pglast import ast, parse_sql
from pglast.parser import ParseError
from psycopg import AsyncRawCursor
from pydantic import Field

from pgcode.advisor.plans import Format, json_buffers, plan_nodes, summarize, text_buffers
from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.db.sqlpolicy import analyze_write, check_read, denied_function, walk
from pgcode.errors import ErrorCode, ToolError
from pgcode.types import Effect, Scope, TxMode

_MAX_SQL = 1_000_000
_GENERIC_PLAN = 160000  # EXPLAIN (GENERIC_PLAN) arrived in PostgreSQL 16
_EXPLAINABLE = (ast.SelectStmt, ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt,
                ast.CreateTableAsStmt)
_SAVEPOINT = "pgcode_explain"


class Kind(StrEnum):
    READ = "read"
    WRITE = "write"  # INSERT/UPDATE/DELETE/MERGE, data-modifying WITH, SELECT ... FOR UPDATE
    DDL = "ddl"  # CREATE TABLE AS, SELECT INTO

    @property
    def scope(self) -> Scope:
        return {Kind.READ: Scope.READ, Kind.WRITE: Scope.WRITE}.get(self, Scope.ADMIN)


@dataclass(frozen=True, slots=True)
class Statement:
    text: str
    kind: Kind
    params: int  # the highest $n it uses


@lru_cache(maxsize=256)
def inspect(text: str) -> Statement:
    """Check a statement for EXPLAIN and classify it; raises INVALID_INPUT with the reason."""
    analyze_write(text)  # one statement; DO, COPY, SET, transaction control ... refused with their reason
    node = parse_sql(text)[0].stmt
    if isinstance(node, ast.ExplainStmt):
        raise ToolError(ErrorCode.INVALID_INPUT, "give the statement without EXPLAIN; its options are arguments")
    if not isinstance(node, _EXPLAINABLE):
        raise ToolError(ErrorCode.INVALID_INPUT, f"EXPLAIN cannot plan {analyze_write(text).kind}",
                        hint="EXPLAIN takes SELECT, WITH, VALUES, TABLE, INSERT, UPDATE, DELETE, MERGE "
                             "or CREATE TABLE AS")
    name = denied_function(node)
    if name:
        raise ToolError(ErrorCode.INVALID_INPUT, f"the function {name}() is not allowed here: "
                                                 "its effects could not be rolled back")
    params = max((n.number or 0 for n in walk(node) if isinstance(n, ast.ParamRef)), default=0)
    try:
        check_read(text)
        kind = Kind.READ
    except ToolError:
        into = isinstance(node, ast.CreateTableAsStmt) or any(
            isinstance(n, ast.SelectStmt) and n.intoClause is not None for n in walk(node))
        kind = Kind.DDL if into else Kind.WRITE
    return Statement(text, kind, params)


class ExplainIn(ToolInput):
    sql: str = Field(max_length=_MAX_SQL, description="One statement; $1, $2 ... for parameters")
    params: list[Any] | None = Field(None, max_length=1000, description="Values for $1, $2 ...")
    format: Format = Format.JSON
    verbose: bool = False
    settings: bool = False


def _plan_scope(args: ExplainIn) -> Scope:
    # PostgreSQL checks a write's privileges when it plans it: planning a write needs the write role.
    return inspect(args.sql).kind.scope


@tool(group="performance", effect=Effect.READ, scope_for=_plan_scope)
async def explain(ctx: ToolContext, args: ExplainIn) -> dict[str, Any]:
    """Show a statement's estimated plan (EXPLAIN), without running it.

    sql is one SELECT/WITH/VALUES/TABLE, or INSERT/UPDATE/DELETE/MERGE (planned, never run). Without params a
    parameterized statement gets a generic plan (GENERIC_PLAN, PostgreSQL 16+). format json gives the plan tree as
    an object, text the classic output; verbose adds output columns and schema-qualified names (VERBOSE); settings
    lists the non-default planner settings that shaped the plan (SETTINGS).

    Writes are planned only, in a READ ONLY transaction; planning one needs the write scope. A statement
    with $n placeholders and no params gets a generic plan on PostgreSQL 16+ (UNSUPPORTED_VERSION before;
    pass params there).
    """
    stmt = inspect(args.sql)
    generic = _needs_generic_plan(ctx, stmt, args.params, analyze=False)
    options = _options(args.format, verbose=args.verbose, settings=args.settings, generic=generic)
    out = summarize(await _explain_rows(ctx, stmt, options, args.params), args.format)
    return {**out, "statement_kind": stmt.kind.value, "generic_plan": generic, "executed": False}


class ExplainAnalyzeIn(ExplainIn):
    params: list[Any] | None = Field(None, max_length=1000, description="Values for $1, $2 ...")
    buffers: bool = False


def _analyze_scope(args: ExplainIn) -> Scope:
    return inspect(args.sql).kind.scope


@tool(group="performance", effect=Effect.READ, tx=TxMode.READ_WRITE, scope_for=_analyze_scope)
async def explain_analyze(ctx: ToolContext, args: ExplainAnalyzeIn) -> dict[str, Any]:
    """Run a statement and show its actual plan (EXPLAIN ANALYZE): rows, loops, timing.

    Real rows, loops and timing per node, and the total time. params are required when the statement has $n; buffers
    adds buffer usage per node (BUFFERS); format, verbose and settings as in pg_explain.

    Reads run in a READ ONLY transaction. A write runs inside a savepoint that is always rolled back, so
    nothing it changes remains (sequences it advanced stay advanced); analyzing INSERT/UPDATE/DELETE/MERGE
    needs the write scope, CREATE TABLE AS the admin scope, and read-only calls may analyze only reads.
    """
    return await _analyze(ctx, args, buffers=args.buffers)


class ExplainBuffersIn(ExplainIn):
    params: list[Any] | None = Field(None, max_length=1000, description="Values for $1, $2 ...")


@tool(group="performance", effect=Effect.READ, tx=TxMode.READ_WRITE, scope_for=_analyze_scope)
async def explain_buffers(ctx: ToolContext, args: ExplainBuffersIn) -> dict[str, Any]:
    """Run a statement and show its plan with buffer usage (EXPLAIN ANALYZE, BUFFERS).

    Shared hits and reads, dirtied and temp blocks per node. params are required when the statement has $n; format,
    verbose and settings as in pg_explain.

    The statement runs as in pg_explain_analyze: reads READ ONLY, writes always rolled back.
    """
    out = await _analyze(ctx, args, buffers=True)
    plan = out.get("plan")
    out["buffers"] = (json_buffers(plan["Plan"]) if isinstance(plan, dict)
                      else text_buffers(str(plan)))
    if isinstance(plan, dict) and isinstance(plan.get("Planning"), dict):
        out["planning_buffers"] = json_buffers(plan["Planning"])
    return out


async def _analyze(ctx: ToolContext, args: ExplainIn, *, buffers: bool) -> dict[str, Any]:
    stmt = inspect(args.sql)
    _refuse_write_when_read_only(ctx, [stmt])
    _needs_generic_plan(ctx, stmt, args.params, analyze=True)
    options = _options(args.format, verbose=args.verbose, settings=args.settings, analyze=True, buffers=buffers)
    rows = await _run_rolled_back(ctx, [stmt], [(options, args.params)])
    out = summarize(rows[0], args.format)
    return {**out, "statement_kind": stmt.kind.value, "executed": True, "rolled_back": True}


def _refuse_write_when_read_only(ctx: ToolContext, stmts: list[Statement]) -> None:
    writes = [s for s in stmts if s.kind is not Kind.READ]
    if writes and ctx.read_only:
        raise ToolError(ErrorCode.READ_ONLY, f"EXPLAIN ANALYZE runs the statement, and this call is read-only: "
                                             f"only reads may be analyzed ({writes[0].kind.value} given)")


async def _run_rolled_back(ctx: ToolContext, stmts: list[Statement],
                           runs: list[tuple[str, list[Any] | None]]) -> list[list[tuple[Any, ...]]]:
    """EXPLAIN each statement inside a savepoint that is rolled back, so the outer COMMIT commits nothing."""
    if all(s.kind is Kind.READ for s in stmts):
        # Reads get the database's own guarantee: a function that writes fails here.
        await ctx.execute("SET TRANSACTION READ ONLY")
    results = []
    for stmt, (options, params) in zip(stmts, runs, strict=True):
        await ctx.execute("SAVEPOINT " + _SAVEPOINT)
        results.append(await _explain_rows(ctx, stmt, options, params))
        await ctx.execute("ROLLBACK TO SAVEPOINT " + _SAVEPOINT)
    return results


def _needs_generic_plan(ctx: ToolContext, stmt: Statement, params: list[Any] | None, *, analyze: bool) -> bool:
    """Whether to ask for GENERIC_PLAN; checks the number of params against the $n used."""
    if params:
        if len(params) != stmt.params:
            raise ToolError(ErrorCode.INVALID_INPUT, f"the statement uses {stmt.params} parameter(s) "
                                                     f"($1..${stmt.params}) and {len(params)} were given")
        return False
    if not stmt.params:
        return False
    if analyze:
        raise ToolError(ErrorCode.INVALID_INPUT, f"EXPLAIN ANALYZE runs the statement: give params for "
                                                 f"$1..${stmt.params}", hint="pg_explain plans it without values")
    if ctx.server_version < _GENERIC_PLAN:
        raise ToolError(ErrorCode.UNSUPPORTED_VERSION,
                        f"planning a statement with $n placeholders without values needs EXPLAIN (GENERIC_PLAN), "
                        f"PostgreSQL 16 or later; this server is {ctx.caps.server_version}",
                        hint="pass params with values for the placeholders",
                        details={"needed": _GENERIC_PLAN, "found": ctx.server_version})
    return True


def _options(fmt: Format, *, verbose: bool = False, settings: bool = False, analyze: bool = False,
             buffers: bool = False, generic: bool = False) -> str:
    # BUFFERS is always spelled out: PostgreSQL 18 turns it on by default with ANALYZE.
    opts = [f"FORMAT {fmt.value.upper()}", f"VERBOSE {_on(verbose)}", f"SETTINGS {_on(settings)}"]
    if analyze:
        opts += ["ANALYZE true", f"BUFFERS {_on(buffers)}"]
    if generic:
        opts.append("GENERIC_PLAN true")
    return "EXPLAIN (" + ", ".join(opts) + ") "


def _on(flag: bool) -> str:
    return "true" if flag else "false"


async def _explain_rows(ctx: ToolContext, stmt: Statement, options: str,
                        params: list[Any] | None) -> list[tuple[Any, ...]]:
    text = options + stmt.text
    # The caller's text was checked alone; make sure the prefix did not change what it means.
    try:
        whole = parse_sql(text)
    except ParseError:
        whole = ()
    if len(whole) != 1 or not isinstance(whole[0].stmt, ast.ExplainStmt):
        raise ToolError(ErrorCode.INVALID_INPUT, "the statement cannot be explained as given")
    conn = await ctx.conn()
    async with AsyncRawCursor(conn) as cur:
        await cur.execute(text, params or None)
        return await cur.fetchall()


# ---------------------------------------------------------------- plan comparison


class QueryPlanCompareIn(ToolInput):
    query1: str = Field(max_length=_MAX_SQL, description="The baseline statement")
    query2: str = Field(max_length=_MAX_SQL, description="The statement compared with it")
    params1: list[Any] | None = Field(None, max_length=1000)
    params2: list[Any] | None = Field(None, max_length=1000)
    analyze: bool = Field(False, description="Run both (writes rolled back)")
    include_plans: bool = False


def _compare_scope(args: QueryPlanCompareIn) -> Scope:
    scopes = [inspect(q).kind.scope for q in (args.query1, args.query2)]  # checks both statements
    return max(scopes, key=lambda s: s.rank) if args.analyze else Scope.READ


@tool(group="performance", effect=Effect.READ, tx=TxMode.READ_WRITE, scope_for=_compare_scope)
async def query_plan_compare(ctx: ToolContext, args: QueryPlanCompareIn) -> dict[str, Any]:
    """Compare two statements' plans: cost and time deltas, node changes, misestimates.

    Node types added or removed and row misestimates are listed. params1 and params2 are the values for $1, $2 ...
    of query1 and query2; includePlans returns both JSON plans in full.

    Without analyze both are planned only. With analyze both run, as in pg_explain_analyze: reads READ ONLY,
    writes inside a savepoint that is always rolled back.
    """
    stmts = [inspect(args.query1), inspect(args.query2)]
    if args.analyze:
        _refuse_write_when_read_only(ctx, stmts)
    params = [args.params1, args.params2]
    generic = [_needs_generic_plan(ctx, s, p, analyze=args.analyze) for s, p in zip(stmts, params, strict=True)]
    runs = [(_options(Format.JSON, analyze=args.analyze, generic=g), p)
            for g, p in zip(generic, params, strict=True)]
    if args.analyze:
        results = await _run_rolled_back(ctx, stmts, runs)
    else:
        await ctx.execute("SET TRANSACTION READ ONLY")
        results = [await _explain_rows(ctx, s, o, p) for s, (o, p) in zip(stmts, runs, strict=True)]
    one, two = (summarize(rows, Format.JSON) for rows in results)
    return _compare(one, two, analyze=args.analyze, include_plans=args.include_plans)


def _compare(one: dict[str, Any], two: dict[str, Any], *, analyze: bool, include_plans: bool) -> dict[str, Any]:
    nodes = [plan_nodes(one["plan"]), plan_nodes(two["plan"])]
    counts = [Counter(_signature(n) for n in ns) for ns in nodes]
    out: dict[str, Any] = {
        "analyzed": analyze,
        "query1": _side(one, nodes[0]), "query2": _side(two, nodes[1]),
        "cost_delta": _delta(one["total_cost"], two["total_cost"]),
        "cost_ratio": _div(two["total_cost"], one["total_cost"]),
        "cheaper": _which(one["total_cost"], two["total_cost"]),
        "nodes_added": sorted((counts[1] - counts[0]).elements()),
        "nodes_removed": sorted((counts[0] - counts[1]).elements()),
        "node_type_changes": _type_changes(nodes),
    }
    if analyze:
        out["time_delta_ms"] = _delta(one["execution_time_ms"], two["execution_time_ms"])
        out["time_ratio"] = _div(two["execution_time_ms"], one["execution_time_ms"])
        out["faster"] = _which(one["execution_time_ms"], two["execution_time_ms"])
    if include_plans:
        out["plans"] = {"query1": one["plan"], "query2": two["plan"]}
    return out


def _side(summary: dict[str, Any], nodes: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("total_cost", "startup_cost", "estimated_rows", "actual_rows", "planning_time_ms", "execution_time_ms")
    side = {k: summary.get(k) for k in keys}
    side["node_count"] = len(nodes)
    side["nodes"] = nodes
    side["misestimates"] = [
        {**n, "ratio": round(n["actual_rows"] / max(n["estimated_rows"], 1), 2)} for n in nodes
        if n["actual_rows"] is not None and n["loops"]
        and not 0.1 <= (n["actual_rows"] + 1) / (n["estimated_rows"] + 1) <= 10]
    return side


def _signature(node: dict[str, Any]) -> str:
    text = str(node["node_type"])
    if node["index"]:
        text += f" using {node['index']}"
    if node["relation"]:
        text += f" on {node['relation']}"
    return text


def _type_changes(nodes: list[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    types = [Counter(str(n["node_type"]) for n in ns) for ns in nodes]
    return [{"node_type": t, "query1": types[0][t], "query2": types[1][t]}
            for t in sorted(set(types[0]) | set(types[1])) if types[0][t] != types[1][t]]


def _delta(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else round(b - a, 3)


def _div(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else round(a / b, 4)


def _which(a: float | None, b: float | None) -> str | None:
    if a is None or b is None:
        return None
    return "equal" if a == b else ("query1" if a < b else "query2")
