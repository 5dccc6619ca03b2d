"""jsonb: index suggestions for a jsonb column from its sampled keys, its indexes and its queries."""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

import psycopg
from pglast import ast, parse_sql
from pglast.parser import ParseError
from psycopg import sql
from pydantic import Field

from pgcode.core.context import ToolContext
from pgcode.core.registry import tool
from pgcode.db.queries import load_query
from pgcode.db.sqlpolicy import walk
from pgcode.groups.jsonb._base import (
    Bind,
    SampleIn,
    Target,
    describe_sample,
    parse_path,
    resolve_names,
    sample,
    walk_query,
)
from pgcode.types import Effect

GIN_OPS = frozenset({"@>", "?", "?|", "?&", "@?", "@@"})  # what GIN jsonb_ops serves
KEY_OPS = frozenset({"?", "?|", "?&"})  # ... and jsonb_path_ops does not
_CMP_OPS = frozenset({"=", "<", ">", "<=", ">=", "<>", "!=", "~~", "~~*", "!~~", "!~~*", "BETWEEN",
                      "NOT BETWEEN", "BETWEEN SYMMETRIC", "NOT BETWEEN SYMMETRIC"})
_ACCESS_OPS = frozenset({"->", "->>", "#>", "#>>"})
_CAST_RE = re.compile(r"^[a-z][a-z0-9_]*$")
Elem = str | int | None  # None: a parameter (pg_stat_statements replaces every constant with $n)


@dataclass(frozen=True)
class Access:
    """`col -> 'a' ->> 'b'` (optionally cast): the path, whether it ends as text, the cast."""

    path: tuple[Elem, ...]
    text: bool
    cast: str | None

    @property
    def known(self) -> bool:
        return None not in self.path

    def show(self, column: str) -> str:
        out = column
        for i, el in enumerate(self.path):
            op = "->>" if self.text and i == len(self.path) - 1 else "->"
            out += f" {op} " + ("$" if el is None else repr(el) if isinstance(el, str) else str(el))
        return f"({out})::{self.cast}" if self.cast else out


@dataclass
class Usage:
    statements: int = 0
    calls: int = 0

    def __post_init__(self) -> None:
        self.ops: Counter[str] = Counter()
        self.gin_paths: Counter[tuple[Elem, ...]] = Counter()
        self.compares: Counter[Access] = Counter()


# ---------------------------------------------------------------- reading SQL (never run)


def _op(node: ast.A_Expr) -> str:
    return str(node.name[-1].sval) if node.name else ""


def _const(node: Any) -> tuple[bool, Elem]:
    """(True, value) for a constant, (True, None) for a $n parameter, (False, None) for anything else."""
    while isinstance(node, ast.TypeCast):
        node = node.arg
    if isinstance(node, ast.ParamRef):
        return True, None
    if isinstance(node, ast.A_Const) and not node.isnull:
        val: Any = node.val
        if isinstance(val, ast.String):
            return True, str(val.sval)
        if isinstance(val, ast.Integer):
            return True, int(val.ival or 0)
    return False, None


def _is_column(node: Any, column: str) -> bool:
    if not isinstance(node, ast.ColumnRef):
        return False
    fields: Any = node.fields or ()
    return bool(fields) and isinstance(fields[-1], ast.String) and fields[-1].sval == column


def access(node: Any, column: str) -> Access | None:
    """The jsonb access chain on `column` that `node` is, if it is one."""
    cast = None
    if isinstance(node, ast.TypeCast):
        type_name: Any = node.typeName
        names = [str(n.sval) for n in type_name.names or () if isinstance(n, ast.String)]
        if type_name.arrayBounds or not names or not _CAST_RE.match(names[-1]):
            return None
        cast, node = names[-1], node.arg
    steps: list[list[Elem]] = []
    text = None
    while isinstance(node, ast.A_Expr) and _op(node) in _ACCESS_OPS:
        op, (ok, value) = _op(node), _const(node.rexpr)
        if not ok:
            return None
        if op in ("#>", "#>>"):
            if value is None or not isinstance(value, str):
                return None
            try:
                steps.append(list(parse_path(value)))
            except Exception:
                return None
        else:
            steps.append([value])
        text = op in ("->>", "#>>") if text is None else text
        node = node.lexpr
    if not steps or not _is_column(node, column):
        return None
    path = tuple(el for step in reversed(steps) for el in step)
    return Access(path, bool(text), cast)


def _references(tree: Any, schema: str, table: str, unqualified: bool) -> bool:
    return any(isinstance(n, ast.RangeVar) and n.relname == table
               and (n.schemaname == schema or (unqualified and n.schemaname is None)) for n in walk(tree))


def read_statement(text: str, calls: int, target: Target, usage: Usage, *, unqualified: bool) -> None:
    """Count how one statement uses the column: GIN operators, access chains compared or sorted.

    `unqualified`: whether a table named without its schema counts as the target.
    """
    try:
        tree = parse_sql(text)
    except ParseError:
        return
    if not _references(tree, target.schema, target.table, unqualified):
        return
    seen = False
    for node in walk(tree):
        if isinstance(node, ast.A_Expr):
            op = _op(node)
            sides = [node.lexpr, node.rexpr]
            if op in GIN_OPS:
                for side in sides:
                    acc = access(side, target.column)
                    if _is_column(side, target.column):
                        usage.ops[op] += calls
                        seen = True
                    elif acc is not None and not acc.text and acc.known:
                        usage.gin_paths[acc.path] += calls
                        seen = True
            elif op in _CMP_OPS:
                for side in sides:
                    acc = access(side, target.column)
                    if acc is not None:
                        usage.compares[acc] += calls
                        seen = True
        elif isinstance(node, ast.SortBy):
            acc = access(node.node, target.column)
            if acc is not None:
                usage.compares[acc] += calls
                seen = True
    if seen:
        usage.statements += 1
        usage.calls += calls


def read_index(definition: str, column: str) -> list[tuple[str, Any]]:
    """What an index offers the column: ("gin", opclass), ("gin_path", (path, opclass)) or ("btree", Access)."""
    try:
        stmt = parse_sql(definition)[0].stmt
    except ParseError:
        return []
    if not isinstance(stmt, ast.IndexStmt):
        return []
    out: list[tuple[str, Any]] = []
    for elem in stmt.indexParams or ():
        opclass = str(elem.opclass[-1].sval) if elem.opclass else "jsonb_ops"
        if elem.name == column and stmt.accessMethod == "gin":
            out.append(("gin", opclass))
        elif elem.expr is not None:
            acc = access(elem.expr, column)
            if acc is None:
                continue
            if stmt.accessMethod == "gin":
                out.append(("gin_path", (acc.path, opclass)))
            elif stmt.accessMethod == "btree":
                out.append(("btree", acc))
    return out


# ---------------------------------------------------------------- the tool


class IndexSuggestIn(SampleIn):
    queries: list[str] | None = Field(None, max_length=100, description="Application SQL to parse (never run)")


@tool(group="jsonb", effect=Effect.READ)
async def jsonb_index_suggest(ctx: ToolContext, args: IndexSuggestIn) -> dict[str, Any]:
    """Suggest GIN or expression B-tree indexes for a jsonb column.

    Each suggestion comes with its reason and DDL.

    Kinds: GIN jsonb_ops or jsonb_path_ops, expression B-tree. queries is SQL the application runs against the
    table: parsed for how it uses the column, never run (pg_stat_statements hides key names, so these give exact
    keys). sampleSize, seed and maxDepth shape the sample as in pg_jsonb_stats.

    They rest on the column's sampled keys, its existing indexes and its queries.
    Queries come from pg_stat_statements when installed (operators and access shapes; it replaces key names
    with $n) and from `queries` (exact keys). Nothing is created: run the DDL with pg_write_query/pg_create_index.
    """
    target = await resolve_names(ctx, args.schema_name, args.table_name, args.column, jsonb_only=True)
    bind = Bind()
    s = sample(target, bind, args)
    row = await ctx.fetchone(walk_query(s, bind, args.max_depth) + load_query("jsonb_index_suggest"), bind.params)
    assert row is not None
    existing = await _existing(ctx, target)
    usage, sources, notes = Usage(), list[str](), list[str]()
    if args.queries:
        for text in args.queries:
            read_statement(text, 1, target, usage, unqualified=True)
        sources.append("queries")
    await _from_pg_stat_statements(ctx, target, usage, sources, notes)
    conn = await ctx.conn()
    suggestions = [{**sug, "ddl": sug["ddl"].as_string(conn)} for sug in
                   _suggest(target, usage, existing, row["keys"], row["documents"])]
    return {
        "table": target.name, "column": target.column,
        "sample": describe_sample(s, row["sampled"]),
        "keys": [_key_summary(k, row["documents"]) for k in row["keys"][:20]],
        "existingIndexes": [{"name": e["name"], "definition": e["definition"]} for e in existing["all"]],
        "queryPatterns": {"sources": sources, "statements": usage.statements, "calls": usage.calls,
                          "operators": dict(usage.ops),
                          "accesses": [{"expression": a.show(target.column), "calls": n}
                                       for a, n in usage.compares.most_common(20)]},
        "suggestions": suggestions,
        "notes": [*notes, "CREATE INDEX CONCURRENTLY does not block writes but cannot run inside a transaction"],
    }


def _key_summary(k: dict[str, Any], documents: int) -> dict[str, Any]:
    return {"path": k["gpath"], "docs": k["docs"], "frequency": round(k["docs"] / documents, 4) if documents else 0,
            "distinctValues": k["distinct_values"],
            "types": {t: k[c] for t, c in (("string", "strings"), ("number", "numbers"), ("boolean", "booleans"),
                                           ("container", "containers")) if k[c]}}


async def _existing(ctx: ToolContext, target: Target) -> dict[str, Any]:
    rows = await ctx.fetch(
        "SELECT ic.relname AS name, pg_get_indexdef(i.indexrelid) AS definition FROM pg_index AS i "
        "JOIN pg_class AS ic ON ic.oid = i.indexrelid JOIN pg_class AS c ON c.oid = i.indrelid "
        "JOIN pg_namespace AS n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s ORDER BY 1",
        (target.schema, target.table))
    out: dict[str, Any] = {"all": [], "gin": set(), "gin_paths": {}, "btree": set()}
    for r in rows:
        offers = read_index(r["definition"], target.column)
        if offers:
            out["all"].append(r)
        for kind, what in offers:
            if kind == "gin":
                out["gin"].add(what)
            elif kind == "gin_path":
                out["gin_paths"].setdefault(what[0], set()).add(what[1])
            else:
                out["btree"].add(what)
    return out


async def _from_pg_stat_statements(ctx: ToolContext, target: Target, usage: Usage, sources: list[str],
                                   notes: list[str]) -> None:
    if not ctx.caps.has_extension("pg_stat_statements"):
        notes.append("pg_stat_statements is not installed in this database, so the server's own query patterns "
                     "were not read; pass `queries` or install it (pg_stat_statements must be preloaded)")
        return
    # PostgreSQL 13 renamed total_time to total_exec_time; only calls is read here, which both have.
    await ctx.savepoint("jsonb_index_suggest")
    try:
        rows = await ctx.fetch(
            "SELECT query, calls FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database "
            "WHERE datname = current_database()) AND query ILIKE %s ORDER BY calls DESC LIMIT 500",
            ("%" + target.column + "%",))
    except psycopg.Error as exc:
        await ctx.execute("ROLLBACK TO SAVEPOINT jsonb_index_suggest")
        notes.append(f"pg_stat_statements could not be read: {exc.diag.message_primary or exc.sqlstate}")
        return
    before = usage.statements
    for r in rows:
        # Unqualified names count only for public (the usual search_path); other schemas must be named.
        read_statement(r["query"], int(r["calls"]), target, usage, unqualified=target.schema == "public")
    sources.append("pg_stat_statements")
    if usage.statements == before:
        notes.append(f"pg_stat_statements holds no statement using {target.table}.{target.column}")


def _suggest(target: Target, usage: Usage, existing: dict[str, Any], keys: list[dict[str, Any]],
             documents: int) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    col, ident = sql.Identifier(target.column), target.ident
    have_gin: set[str] = existing["gin"]
    whole_ops = {op: n for op, n in usage.ops.items() if n}
    if whole_ops:
        opclass = "jsonb_ops" if KEY_OPS & set(whole_ops) else "jsonb_path_ops"
        if "jsonb_ops" not in have_gin and opclass not in have_gin:
            used = ", ".join(f"{op} ({n} calls)" for op, n in sorted(whole_ops.items(), key=lambda x: -x[1]))
            why = ("the key-existence operators ?, ?| and ?& need jsonb_ops" if opclass == "jsonb_ops" else
                   "jsonb_path_ops is smaller and faster for @>, @? and @@, and no query tests key existence")
            out.append(_gin(target, opclass, "high", f"queries use {used} on the column; {why}"))
    elif not have_gin and not usage.statements:
        out.append(_gin(target, "jsonb_path_ops", "low",
                        "no query patterns were seen; a GIN jsonb_path_ops index serves containment (@>) and "
                        "JSONPath (@?, @@) searches on any key; choose jsonb_ops if you test keys with ?"))
    for path, n in usage.gin_paths.most_common(5):
        if path in existing["gin_paths"]:
            continue
        expr = _expression(col, Access(path, False, None))
        out.append({"kind": "gin", "opclass": "jsonb_path_ops", "expression": _show(target, path, False, None),
                    "confidence": "high", "reason": f"queries search inside {_show(target, path, False, None)} with "
                                                    f"@>/@?/@@ ({n} calls)",
                    "ddl": sql.SQL("CREATE INDEX CONCURRENTLY ON {} USING gin (({}) jsonb_path_ops)").format(
                        ident, expr)})
    scalar = [k for k in keys if not k["containers"] and (k["strings"] or k["numbers"])]
    for acc, n in usage.compares.most_common():
        if acc.known and acc not in existing["btree"]:
            out.append(_btree(target, acc, "high", f"queries filter or sort on {acc.show(target.column)} ({n} calls)"))
    shapes = [(acc, n) for acc, n in usage.compares.most_common() if not acc.known]
    for acc, n in shapes[:5]:
        for k in _matching(scalar, acc, documents)[:2]:
            cand = Access(tuple(k["path"]), acc.text, acc.cast)
            if cand not in existing["btree"]:
                out.append(_btree(target, cand, "medium", f"queries compare {acc.show(target.column)} ({n} calls; "
                                  f"pg_stat_statements hides the key); {k['gpath']} is in {k['docs']} of "
                                  f"{documents} sampled rows with {k['distinct_values']} distinct values"))
    if not usage.statements and documents:
        picks = [k for k in scalar if k["docs"] >= documents / 2 and k["distinct_values"] >= max(2, k["docs"] / 5)]
        for k in picks[:3]:
            cand = Access(tuple(k["path"]), True, "numeric" if k["numbers"] > k["strings"] else None)
            if cand not in existing["btree"] and not any(e.path == cand.path for e in existing["btree"]):
                out.append(_btree(target, cand, "low", f"{k['gpath']} is in {k['docs']} of {documents} sampled rows "
                                  f"with {k['distinct_values']} distinct values: worth it if queries filter or sort "
                                  "on it"))
    return _dedupe(out)


def _matching(keys: list[dict[str, Any]], acc: Access, documents: int) -> list[dict[str, Any]]:
    """Sampled scalar keys with the shape of a parameterized access, most present and selective first."""
    fits = [k for k in keys if len(k["path"]) == len(acc.path) and k["docs"] >= documents / 2
            and all(el is None or str(el) == p for el, p in zip(acc.path, k["path"], strict=True))]
    return sorted(fits, key=lambda k: (-k["docs"], -k["distinct_values"], k["gpath"]))


def _expression(col: sql.Identifier, acc: Access) -> sql.Composable:
    expr: sql.Composable = col
    for i, el in enumerate(acc.path):
        op = "->>" if acc.text and i == len(acc.path) - 1 else "->"
        expr = sql.SQL("{} {} {}").format(expr, sql.SQL(op), sql.Literal(el))
    if acc.cast:
        expr = sql.SQL("({})::{}").format(expr, sql.SQL(acc.cast))
    return expr


def _show(target: Target, path: tuple[Elem, ...], text: bool, cast: str | None) -> str:
    return Access(path, text, cast).show(target.column)


def _gin(target: Target, opclass: str, confidence: str, reason: str) -> dict[str, Any]:
    return {"kind": "gin", "opclass": opclass, "expression": target.column, "confidence": confidence,
            "reason": reason, "ddl": sql.SQL("CREATE INDEX CONCURRENTLY ON {} USING gin ({} {})").format(
                target.ident, target.col, sql.SQL(opclass))}


def _btree(target: Target, acc: Access, confidence: str, reason: str) -> dict[str, Any]:
    return {"kind": "btree", "expression": acc.show(target.column), "confidence": confidence, "reason": reason,
            "ddl": sql.SQL("CREATE INDEX CONCURRENTLY ON {} (({}))").format(
                target.ident, _expression(sql.Identifier(target.column), acc))}


def _dedupe(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[tuple[str, str]] = set()
    out = []
    for item in items:
        k = (item["kind"], str(item.get("expression")) + str(item.get("opclass")))
        if k not in seen:
            seen.add(k)
            out.append(item)
    return out
