"""performance: a partitioning strategy for one table, from its size and column statistics."""

from __future__ import annotations

import datetime as dt
import math
from typing import Any

from psycopg import sql
from pydantic import Field

from pgcode.core import arguments
from pgcode.core.context import Row, ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.groups._common import IDENT_MAX
from pgcode.groups.performance._shared import resolve_table
from pgcode.types import Effect

_GIB = 1024**3
_TIME_TYPES = ("date", "timestamp", "timestamptz")
_INTERVALS = (("day", 1), ("week", 7), ("month", 30.44), ("quarter", 91.3), ("year", 365.25))

_COLUMNS = """
SELECT a.attname AS column, t.typname AS type, t.typcategory AS category,
       a.attnum = ANY (coalesce((SELECT k.conkey FROM pg_constraint k WHERE k.conrelid = a.attrelid
                                 AND k.contype = 'p'), '{}')) AS in_primary_key,
       s.n_distinct, s.null_frac, s.correlation,
       CASE WHEN t.typname IN ('date', 'timestamp', 'timestamptz') AND s.histogram_bounds IS NOT NULL
            THEN (s.histogram_bounds::text::text[])[1]::timestamptz END AS low,
       CASE WHEN t.typname IN ('date', 'timestamp', 'timestamptz') AND s.histogram_bounds IS NOT NULL
            THEN (s.histogram_bounds::text::text[])[cardinality(s.histogram_bounds::text::text[])]::timestamptz
       END AS high,
       CASE WHEN s.n_distinct > 0 AND s.n_distinct <= 100 THEN s.most_common_vals::text END AS common_values
FROM pg_attribute a
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_stats s ON s.schemaname = %(schema)s AND s.tablename = %(table)s AND s.attname = a.attname
                    AND NOT s.inherited
WHERE a.attrelid = %(oid)s AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attnum
"""


class PartitionStrategySuggestIn(ToolInput):
    table: str = Field(min_length=1, max_length=2 * IDENT_MAX + 1, description=arguments.TABLE)
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX, description=arguments.SCHEMA)
    min_table_bytes: int = Field(10 * _GIB, ge=0)
    target_partition_bytes: int = Field(2 * _GIB, ge=1024 * 1024)


@tool(group="performance", effect=Effect.READ)
async def partition_strategy_suggest(ctx: ToolContext, args: PartitionStrategySuggestIn) -> dict[str, Any]:
    """A partitioning strategy for a table (RANGE, LIST or HASH), DDL, and whether it pays.

    Below minTableBytes (default 10 GiB) partitioning is not recommended; partitions aim at targetPartitionBytes.

    The suggestion carries the interval or partition count, the reasons and caveats; alternatives follow.
    Based on pg_stats (ANALYZE first): a time column that grows with insertion order suggests RANGE, a column
    with few values LIST, a high-cardinality key HASH. Primary keys must include the partition key.
    """
    schema, name = await resolve_table(ctx, args.table, args.schema_)
    rel = await ctx.fetchone(
        "SELECT c.oid, c.relkind, greatest(c.reltuples, 0)::bigint AS estimated_rows, "
        "coalesce((SELECT sum(pg_total_relation_size(t.relid)) FROM pg_partition_tree(c.oid) t), 0)::bigint "
        "AS size_bytes, "
        "CASE WHEN c.relkind = 'p' THEN pg_get_partkeydef(c.oid) END "
        "AS partition_key, (SELECT count(*) FROM pg_inherits i WHERE i.inhparent = c.oid) AS partitions "
        "FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s",
        (schema, name))
    assert rel is not None
    out: dict[str, Any] = {"schema": schema, "table": name, "size_bytes": rel["size_bytes"],
                           "estimated_rows": rel["estimated_rows"], "partitioned": rel["relkind"] == "p"}
    if rel["relkind"] == "p":
        out.update(existing={"key": rel["partition_key"], "partitions": rel["partitions"]}, recommended=False,
                   reason="the table is already partitioned")
        return out
    cols = await ctx.fetch(_COLUMNS, {"schema": schema, "table": name, "oid": rel["oid"]})
    candidates = sorted(_candidates(cols, rel, args.target_partition_bytes), key=lambda c: -c["score"])
    big = rel["size_bytes"] >= args.min_table_bytes
    out["recommended"] = big and bool(candidates)
    out["reason"] = (f"the table is {rel['size_bytes']} bytes, below {args.min_table_bytes}: partitioning adds "
                     "planning overhead and constraints for little gain yet" if not big else
                     "large enough that partition pruning and dropping old partitions pay off" if candidates else
                     "no column suits a partition key (run ANALYZE if the table has no statistics)")
    conn = await ctx.conn()
    for c in candidates:
        c["ddl"] = _ddl(c, schema, name).as_string(conn)
        c.pop("score")
    out["suggestion"] = candidates[0] if candidates else None
    out["alternatives"] = candidates[1:4]
    if not any(c["n_distinct"] is not None for c in cols):
        out["note"] = "the table has no statistics: run ANALYZE for a better suggestion"
    return out


def _candidates(cols: list[Row], rel: Row, target: int) -> list[dict[str, Any]]:
    rows, size = max(rel["estimated_rows"], 1), max(rel["size_bytes"], 1)
    found: list[dict[str, Any]] = []
    for c in cols:
        distinct = c["n_distinct"]
        if distinct is None or (c["null_frac"] or 0) > 0.05:
            continue
        values = -distinct * rows if distinct < 0 else distinct
        base = {"column": c["column"], "type": c["type"], "in_primary_key": c["in_primary_key"],
                "n_distinct": round(values)}
        caveat = None if c["in_primary_key"] else f"the primary key must be extended to include {c['column']}"
        if c["type"] in _TIME_TYPES and c["low"] and c["high"]:
            span_days = max((c["high"] - c["low"]).total_seconds() / 86400, 1.0)
            per_day = size / span_days
            label, days = next(((lbl, d) for lbl, d in reversed(_INTERVALS) if per_day * d <= target),
                               _INTERVALS[0])
            order = abs(c["correlation"] or 0)
            found.append({**base, "method": "range", "interval": label, "score": 3 + order,
                          "partitions_estimate": math.ceil(span_days / days), "first_value": c["low"],
                          "last_value": c["high"],
                          "why": f"time column spanning {span_days:.0f} days, {order:.2f} correlated with the "
                                 "physical order: old partitions can be detached or dropped whole",
                          "caveat": caveat})
        elif 2 <= values <= 50 and c["category"] in ("S", "E", "N", "B") and distinct > 0:
            found.append({**base, "method": "list", "score": 2, "partitions_estimate": round(values),
                          "why": f"{round(values)} distinct values: one partition per value (or group of values)",
                          "caveat": caveat or "a row whose value changes moves between partitions"})
        elif values >= rows * 0.5 and c["category"] in ("N", "S", "U") and c["type"] in (
                "int2", "int4", "int8", "uuid", "text", "varchar"):
            modulus = max(4, 2 ** math.ceil(math.log2(max(size / target, 1))))
            found.append({**base, "method": "hash", "score": 1 + (0.5 if c["in_primary_key"] else 0),
                          "partitions_estimate": modulus,
                          "why": "high-cardinality key: spreads rows evenly, lookups by this key prune to one "
                                 "partition", "caveat": caveat})
    return found


def _ddl(c: dict[str, Any], schema: str, table: str) -> sql.Composed:
    new = sql.Identifier(schema, f"{table}_partitioned"[:63])
    head = sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS) PARTITION BY {} ({});").format(
        new, sql.Identifier(schema, table), sql.SQL(c["method"].upper()), sql.Identifier(c["column"]))
    if c["method"] == "range":
        start, end = _first_partition(c["first_value"], c["interval"])
        part = sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES FROM ({}) TO ({});").format(
            sql.Identifier(schema, f"{table}_p{start:%Y%m%d}"[:63]), new, sql.Literal(start.isoformat()),
            sql.Literal(end.isoformat()))
    elif c["method"] == "list":
        part = sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES IN (...);").format(
            sql.Identifier(schema, f"{table}_p1"[:63]), new)
    else:
        part = sql.SQL("CREATE TABLE {} PARTITION OF {} FOR VALUES WITH (MODULUS {}, REMAINDER 0);").format(
            sql.Identifier(schema, f"{table}_p0"[:63]), new, sql.Literal(c["partitions_estimate"]))
    return sql.SQL("\n").join([head, part])


def _first_partition(low: dt.datetime, interval: str) -> tuple[dt.date, dt.date]:
    """Bounds of the partition holding the oldest value, aligned to the interval."""
    day = low.date()
    if interval == "day":
        return day, day + dt.timedelta(days=1)
    if interval == "week":
        monday = day - dt.timedelta(days=day.weekday())
        return monday, monday + dt.timedelta(days=7)
    months = {"month": 1, "quarter": 3, "year": 12}[interval]
    first_month = (day.month - 1) // months * months + 1 if months < 12 else 1
    start = dt.date(day.year, first_month, 1)
    index = start.month - 1 + months
    return start, dt.date(start.year + index // 12, index % 12 + 1, 1)
