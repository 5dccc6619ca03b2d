"""What a statement filters, joins and sorts on, read from its parse tree (pglast), for the index advisor."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pglast import ast, parse_sql
from pglast.enums import A_Expr_Kind, NullTestType, SortByDir

from pgcode.db.sqlpolicy import walk


class Use(StrEnum):
    EQ = "eq"  # col = value, col IN (...), col = ANY (...), col IS NULL
    RANGE = "range"  # col < value, col BETWEEN a AND b
    JOIN = "join"  # a.col = b.col
    ORDER = "order"  # ORDER BY col


_RANGE_OPS = {"<", ">", "<=", ">="}
_FLIPPED = {"<": ">", ">": "<", "<=": ">", ">=": "<"}
_AGGREGATES = {"count", "sum", "avg", "min", "max", "array_agg", "string_agg", "bool_and", "bool_or", "every",
               "json_agg", "jsonb_agg", "json_object_agg", "jsonb_object_agg", "stddev", "variance",
               "percentile_cont", "percentile_disc", "mode"}
ColumnKey = tuple[str | None, str]  # (qualifier as written, or None; column)


@dataclass(frozen=True)
class Constant:
    """A condition with a constant, written in the statement itself: `col IS NULL`, `col = 'open'`.
    It can become the predicate of a partial index (placeholders cannot: each call has its own value)."""

    column: ColumnKey
    test: str  # "is null", "is not null" or "="
    value: Any = None


@dataclass
class Level:
    """One SELECT, UPDATE or DELETE of a statement: the relations in its FROM and how it uses their columns."""

    relations: dict[str, tuple[str | None, str]] = field(default_factory=dict)  # alias -> (schema, name)
    uses: list[tuple[ColumnKey, Use]] = field(default_factory=list)
    params: dict[int, ColumnKey] = field(default_factory=dict)  # $n -> the column it is compared with
    ops: dict[int, str] = field(default_factory=dict)  # $n -> "=", ">" or "<" as read from the column's side
    order: list[tuple[ColumnKey, bool]] = field(default_factory=list)  # ORDER BY columns, True when descending
    limit: int | None = None  # a literal LIMIT
    limit_param: int | None = None  # LIMIT $n
    offset_param: int | None = None  # OFFSET $n
    aggregated: bool = False  # GROUP BY, DISTINCT or an aggregate: result rows are not the rows matched
    columns: set[ColumnKey] = field(default_factory=set)  # every plain column reference
    star: bool = False  # SELECT * or t.*: every column is needed
    constants: list[Constant] = field(default_factory=list)
    oids: dict[str, int] = field(default_factory=dict)  # alias -> table oid, once the advisor resolved them


def levels(text: str) -> list[Level]:
    """Every query level of one statement (subqueries and CTEs are levels of their own)."""
    stmts = parse_sql(text)
    out: list[Level] = []
    for node in walk(stmts[0].stmt if stmts else None):
        level = Level()
        if isinstance(node, ast.SelectStmt) and node.larg is None:  # a UNION's branches are levels
            _from(node.fromClause, level)
            _conditions(node.whereClause, level)
            for sort in node.sortClause or ():
                key = _column(sort.node) if isinstance(sort, ast.SortBy) else None
                if key:
                    level.uses.append((key, Use.ORDER))
                    level.order.append((key, sort.sortby_dir == SortByDir.SORTBY_DESC))
            _limits(node, level)
            level.aggregated = bool(node.groupClause or node.distinctClause or _has_aggregate(node.targetList))
            _references(level, node.targetList, node.whereClause, node.sortClause, node.groupClause,
                        node.havingClause, node.fromClause)
        elif isinstance(node, ast.UpdateStmt):
            _from((node.relation, *(node.fromClause or ())), level)
            _conditions(node.whereClause, level)
            level.star = True  # an update writes whole rows
        elif isinstance(node, ast.DeleteStmt):
            _from((node.relation, *(node.usingClause or ())), level)
            _conditions(node.whereClause, level)
            level.star = True
        else:
            continue
        if level.relations:
            out.append(level)
    return out


def param_count(text: str) -> int:
    """The highest $n a statement uses (0 without placeholders)."""
    stmts = parse_sql(text)
    return max((n.number or 0 for n in walk(stmts[0].stmt if stmts else None) if isinstance(n, ast.ParamRef)),
               default=0)


def _limits(node: ast.SelectStmt, level: Level) -> None:
    count, offset = node.limitCount, node.limitOffset
    if isinstance(count, ast.ParamRef) and count.number:
        level.limit_param = count.number
    elif isinstance(count, ast.A_Const) and isinstance(count.val, ast.Integer):
        level.limit = int(count.val.ival or 0)
    if isinstance(offset, ast.ParamRef) and offset.number:
        level.offset_param = offset.number


def _has_aggregate(targets: Any) -> bool:
    for n in walk(targets):
        if isinstance(n, ast.FuncCall) and n.over is None and n.funcname:
            name = n.funcname[-1]
            if isinstance(name, ast.String) and str(name.sval).lower() in _AGGREGATES:
                return True
    return False


def _references(level: Level, *parts: Any) -> None:
    for n in walk(parts):
        if isinstance(n, ast.ColumnRef) and n.fields:
            if isinstance(n.fields[-1], ast.A_Star):
                level.star = True
            else:
                key = _column(n)
                if key:
                    level.columns.add(key)


def _from(items: Any, level: Level) -> None:
    for item in items or ():
        if isinstance(item, ast.RangeVar) and item.relname:
            alias = item.alias.aliasname if item.alias is not None else item.relname
            level.relations[str(alias)] = (item.schemaname, str(item.relname))
        elif isinstance(item, ast.JoinExpr):
            _from((item.larg, item.rarg), level)
            _conditions(item.quals, level)
        # subqueries and functions in FROM: their own levels, or nothing to index


def _conditions(expr: Any, level: Level) -> None:
    if expr is None:
        return
    if isinstance(expr, ast.BoolExpr):  # AND, OR (a BitmapOr can use an index per branch), NOT
        for arg in expr.args or ():
            _conditions(arg, level)
    elif isinstance(expr, ast.NullTest):
        key = _column(expr.arg)
        if key:
            level.uses.append((key, Use.EQ))
            negated = expr.nulltesttype == NullTestType.IS_NOT_NULL
            level.constants.append(Constant(key, "is not null" if negated else "is null"))
    elif isinstance(expr, ast.A_Expr):
        _a_expr(expr, level)


def _a_expr(expr: ast.A_Expr, level: Level) -> None:
    op = str(expr.name[-1].sval) if expr.name and isinstance(expr.name[-1], ast.String) else ""
    kind = expr.kind
    left, right = _column(expr.lexpr), _column(expr.rexpr)
    if kind == A_Expr_Kind.AEXPR_OP and (op == "=" or op in _RANGE_OPS):
        if left and right:
            level.uses += [(left, Use.JOIN), (right, Use.JOIN)]
            return
        key, value = (left, expr.rexpr) if left else (right, expr.lexpr)
        if key and _is_value(value):
            level.uses.append((key, Use.EQ if op == "=" else Use.RANGE))
            seen_from_column = op if left or op == "=" else _FLIPPED[op]
            _note_params(value, key, level, seen_from_column[0])
            if op == "=" and isinstance(value, ast.A_Const) and not value.isnull:
                level.constants.append(Constant(key, "=", _const(value)))
    elif kind in (A_Expr_Kind.AEXPR_IN, A_Expr_Kind.AEXPR_OP_ANY) and op == "=" and left and _is_value(expr.rexpr):
        level.uses.append((left, Use.EQ))
        _note_params(expr.rexpr, left, level, "=")
    elif kind in (A_Expr_Kind.AEXPR_BETWEEN, A_Expr_Kind.AEXPR_BETWEEN_SYM) and left and _is_value(expr.rexpr):
        level.uses.append((left, Use.RANGE))
        bounds = list(expr.rexpr) if isinstance(expr.rexpr, list | tuple) else [expr.rexpr]
        for bound, side in zip(bounds, (">", "<"), strict=False):
            _note_params(bound, left, level, side)


def _const(node: ast.A_Const) -> Any:
    val = node.val
    if isinstance(val, ast.Integer):
        return int(val.ival or 0)
    if isinstance(val, ast.Float):
        return str(val.fval)
    if isinstance(val, ast.Boolean):
        return bool(val.boolval)
    if isinstance(val, ast.String):
        return str(val.sval)
    return None


def _column(node: Any) -> ColumnKey | None:
    """(qualifier, column) of a plain column reference; None for anything else (expressions, casts, *)."""
    if not isinstance(node, ast.ColumnRef) or not node.fields:
        return None
    parts = [f.sval for f in node.fields if isinstance(f, ast.String)]
    if len(parts) != len(node.fields):  # t.* and the like
        return None
    return (parts[-2] if len(parts) >= 2 else None), str(parts[-1])


def _is_value(node: Any) -> bool:
    """A side that does not depend on the row: constants, parameters, subqueries, expressions of those."""
    if isinstance(node, ast.SubLink):
        return True
    return not any(isinstance(n, ast.ColumnRef) for n in walk(node))


def _note_params(value: Any, key: ColumnKey, level: Level, op: str) -> None:
    for n in walk(value):
        if isinstance(n, ast.ParamRef) and n.number and n.number not in level.params:
            level.params[n.number] = key
            level.ops[n.number] = op
