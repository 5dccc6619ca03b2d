"""What a statement filters, joins and sorts on, read from its parse tree (pglast), for the index advisor."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from pglast import ast, parse_sql
from pglast.enums import A_Expr_Kind

from pgcode.db.sqlpolicy import walk


class Use(StrEnum):
    EQ = "eq"  # col = value, col IN (...), col = ANY (...), col IS NULL
    RANGE = "range"  # col < value, col BETWEEN a AND b
    JOIN = "join"  # a.col = b.col
    ORDER = "order"  # ORDER BY col


_RANGE_OPS = {"<", ">", "<=", ">="}
ColumnKey = tuple[str | None, str]  # (qualifier as written, or None; column)


@dataclass
class Level:
    """One SELECT, UPDATE or DELETE of a statement: the relations in its FROM and how it uses their columns."""

    relations: dict[str, tuple[str | None, str]] = field(default_factory=dict)  # alias -> (schema, name)
    uses: list[tuple[ColumnKey, Use]] = field(default_factory=list)
    params: dict[int, ColumnKey] = field(default_factory=dict)  # $n -> the column it is compared with
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
        elif isinstance(node, ast.UpdateStmt):
            _from((node.relation, *(node.fromClause or ())), level)
            _conditions(node.whereClause, level)
        elif isinstance(node, ast.DeleteStmt):
            _from((node.relation, *(node.usingClause or ())), level)
            _conditions(node.whereClause, level)
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
            _note_params(value, key, level)
    elif kind in (A_Expr_Kind.AEXPR_IN, A_Expr_Kind.AEXPR_OP_ANY) and op == "=" and left and _is_value(expr.rexpr):
        level.uses.append((left, Use.EQ))
        _note_params(expr.rexpr, left, level)
    elif kind in (A_Expr_Kind.AEXPR_BETWEEN, A_Expr_Kind.AEXPR_BETWEEN_SYM) and left and _is_value(expr.rexpr):
        level.uses.append((left, Use.RANGE))
        _note_params(expr.rexpr, left, level)


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


def _note_params(value: Any, key: ColumnKey, level: Level) -> None:
    for n in walk(value):
        if isinstance(n, ast.ParamRef) and n.number:
            level.params.setdefault(n.number, key)
