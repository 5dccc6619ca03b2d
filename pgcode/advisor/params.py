"""Values for the $n of normalized statements, chosen so that each predicate keeps as many rows as the
workload saw (rows per call from pg_stat_statements) by the column's pg_stats: most common values and
histogram bounds. Each value comes with the reason it was chosen."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

from pgcode.advisor.candidates import Query, Table, owner
from pgcode.advisor.querycols import Level, param_count
from pgcode.advisor.sizing import distinct_count

GENERIC_PLAN = 160000  # EXPLAIN (GENERIC_PLAN) arrived in PostgreSQL 16
DEFAULT_RANGE_SHARE = 0.01  # a range condition whose result size was not observed: 1% of the rows
DEFAULT_LIMIT = 10  # a LIMIT $n whose result size was not observed: a first page
_INTEGERS = {"int2", "int4", "int8", "oid"}
_FLOATS = {"float4", "float8", "numeric"}
_TIMES = {"timestamp", "timestamptz"}


@dataclass
class Filled:
    value: Any
    why: str
    share: float | None = None  # the share of the table's rows the planner will expect the condition to keep


def fill(q: Query, tables: dict[int, Table], server_version: int) -> None:
    """Set q.params (or q.generic) and q.param_notes, unless the caller gave values."""
    n = param_count(q.text)
    if q.params is not None or n == 0:
        return
    filled: dict[int, Filled] = {}
    columns: dict[int, str] = {}
    target = _target_rows(q)
    for level in q.levels:
        for number, (limit_kind, value, why) in _limits(level, q.rows_per_call).items():
            filled.setdefault(number, Filled(value, why))
            columns[number] = limit_kind
        by_table: dict[int, dict[int, tuple[str, str]]] = {}  # table oid -> $n -> (column, op)
        for number, (qualifier, column) in level.params.items():
            table = owner(level, qualifier, column, tables)
            if table is not None and number not in filled:
                by_table.setdefault(table.oid, {})[number] = (column, level.ops.get(number, "="))
        for oid, params in by_table.items():
            table = tables[oid]
            for number, (column, _) in params.items():
                columns[number] = f"{table.name}.{column}"
            filled.update(_fill_table(table, params, target if len(level.relations) == 1 else None))
    missing = [i for i in range(1, n + 1) if i not in filled or filled[i].value is None]
    if missing and server_version >= GENERIC_PLAN:
        q.generic = True
        q.param_notes = [{"param": i, "value": None, "why": "no column or LIMIT to take a value from: planned "
                                                            "as a generic plan"} for i in missing]
        return
    q.params = [filled[i].value if i in filled else None for i in range(1, n + 1)]
    q.param_notes = [{"param": i, "column": columns.get(i), "value": q.params[i - 1],
                      "why": filled[i].why if i in filled else "no column to take a value from: NULL"}
                     for i in range(1, n + 1)]


def _target_rows(q: Query) -> float | None:
    """Rows per call that measure what the conditions keep: one table, no grouping, aggregate or LIMIT."""
    if q.rows_per_call is None or len(q.levels) != 1:
        return None
    level = q.levels[0]
    if len(level.relations) != 1 or level.aggregated or level.limit is not None or level.limit_param is not None:
        return None
    return max(q.rows_per_call, 1.0)


def _limits(level: Level, rows_per_call: float | None) -> dict[int, tuple[str, Any, str]]:
    out: dict[int, tuple[str, Any, str]] = {}
    if level.limit_param is not None:
        if rows_per_call is not None and rows_per_call > 0:
            out[level.limit_param] = ("LIMIT", max(1, round(rows_per_call)),
                                      f"LIMIT: the {rows_per_call:g} rows a call returned")
        else:
            out[level.limit_param] = ("LIMIT", DEFAULT_LIMIT, f"LIMIT: no observed row count, a first page of "
                                                              f"{DEFAULT_LIMIT}")
    if level.offset_param is not None:
        out[level.offset_param] = ("OFFSET", 0, "OFFSET: the first page")
    return out


def _fill_table(table: Table, params: dict[int, tuple[str, str]], target: float | None) -> dict[int, Filled]:
    """Equality values of typical frequency; then range bounds cut to keep the observed rows."""
    rows = max(table.reltuples, 1.0)
    out: dict[int, Filled] = {}
    eq = {n: c for n, (c, op) in params.items() if op == "="}
    ranges: dict[str, dict[str, int]] = {}  # column -> op -> $n
    for n, (c, op) in params.items():
        if op != "=":
            ranges.setdefault(c, {})[op] = n
    eq_target = target / rows if target is not None and not ranges and len(eq) == 1 else None
    share = 1.0
    for n, column in eq.items():
        filled = _equal_value(table.columns[column], eq_target, rows)
        out[n] = filled
        share *= filled.share or 1.0
    if not ranges:
        return out
    if target is not None:
        needed = min(max(target / (rows * share), 1 / rows), 1.0) ** (1 / len(ranges))
        reason = f"to keep the {target:g} rows a call returned"
    else:
        needed, reason = DEFAULT_RANGE_SHARE, f"no observed row count: {DEFAULT_RANGE_SHARE:.0%} of the rows assumed"
    for column, ops in ranges.items():
        stats = table.columns[column]
        if ">" in ops and "<" in ops:
            low, high = max(0.5 - needed / 2, 0.0), min(0.5 + needed / 2, 1.0)
            out[ops[">"]] = Filled(_quantile(stats, low), f"lower bound of a {needed:.3%} window {reason}", needed)
            out[ops["<"]] = Filled(_quantile(stats, high), f"upper bound of a {needed:.3%} window {reason}", needed)
        elif ">" in ops:
            out[ops[">"]] = Filled(_quantile(stats, 1 - needed), f"top {needed:.3%} of {column} {reason}", needed)
        else:
            out[ops["<"]] = Filled(_quantile(stats, needed), f"bottom {needed:.3%} of {column} {reason}", needed)
    return out


def _equal_value(stats: dict[str, Any], share: float | None, rows: float) -> Filled:
    """A value of the column: the one whose frequency is nearest `share` when it is known, else a value of
    typical frequency (a middle histogram bound, or the median most common value)."""
    mcv, mcf = stats.get("mcv") or [], stats.get("mcf") or []
    hist = stats.get("histogram") or []
    options: list[tuple[Any, float, str]] = [(v, float(f), "a most common value") for v, f in zip(mcv, mcf,
                                                                                                     strict=False)]
    rest = max(1.0 - float(stats.get("null_frac") or 0) - sum(float(f) for f in mcf), 0.0)
    others = distinct_count(stats, rows) - len(mcv)
    if hist and others >= 1:
        options.append((hist[len(hist) // 2], rest / others, "a value of average frequency"))
    if not options:
        return Filled(None, "no statistics for the column (ANALYZE it)")
    if share is not None:
        value, freq, kind = min(options, key=lambda o: abs(math.log(max(o[1], 1e-12) / share)))
        why = f"{kind}, about {freq * rows:.0f} rows, nearest the {share * rows:g} rows a call returned"
    elif hist and others >= 1:
        value, freq, kind = options[-1]
        why = f"{kind}: about {freq * rows:.0f} rows of {others + len(mcv):.0f} distinct values"
    else:
        value, freq, kind = sorted(options, key=lambda o: o[1])[len(options) // 2]
        why = f"the median of the most common values: about {freq * rows:.0f} rows"
    return Filled(value, why, freq)


def _quantile(stats: dict[str, Any], p: float) -> Any:
    """The value with a share p of the column's values at or below it, interpolated between histogram bounds."""
    hist = stats.get("histogram") or []
    if not hist:
        mcv = stats.get("mcv") or []
        return mcv[len(mcv) // 2] if mcv else None
    x = min(max(p, 0.0), 1.0) * (len(hist) - 1)
    i = min(int(x), len(hist) - 2) if len(hist) > 1 else 0
    if len(hist) == 1:
        return hist[0]
    return _between(str(stats.get("typname")), hist[i], hist[i + 1], x - i)


def _between(typname: str, low: str, high: str, frac: float) -> Any:
    try:
        if typname in _INTEGERS:
            return str(round(int(low) + frac * (int(high) - int(low))))
        if typname in _FLOATS:
            return repr(float(low) + frac * (float(high) - float(low)))
        if typname == "date":
            a, b = date.fromisoformat(low), date.fromisoformat(high)
            return (a + (b - a) * frac).isoformat()
        if typname in _TIMES:
            ta, tb = datetime.fromisoformat(low), datetime.fromisoformat(high)
            return (ta + (tb - ta) * frac).isoformat()
    except ValueError:
        pass
    return low if frac < 0.5 else high
