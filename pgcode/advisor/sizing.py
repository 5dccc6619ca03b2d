"""B-tree size estimates as PostgreSQL builds them: leaf pages filled to the fill factor, duplicates merged
into posting lists (deduplication, PostgreSQL 13+), and the inner pages above them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

PAGE = 8192
USABLE = PAGE - 24 - 16  # page header and the btree special space
LINE_POINTER = 4
TUPLE_HEADER = 8  # IndexTupleData: heap TID and flags
HEAP_TID = 6
MAX_POSTING = USABLE // 3 // 2  # nbtdedup.c: a posting list tuple stays under half of BTMaxItemSize
INNER_FILL = 0.70  # inner pages are built 70% full
DEFAULT_FILLFACTOR = 90
# Types deduplication cannot merge (their equal values need not be bitwise equal).
NO_DEDUP = {"numeric", "float4", "float8", "jsonb", "json", "interval", "money"}


def maxalign(n: float) -> int:
    return int(math.ceil(n / 8) * 8)


def distinct_count(stats: Mapping[str, Any], rows: float) -> float:
    """Distinct non-null values of a column from pg_stats.n_distinct (negative: a share of the rows)."""
    nd = stats.get("n_distinct")
    if nd is None:
        return max(rows / 200, 1.0)  # PostgreSQL's default guess: 200 distinct values
    return max(-float(nd) * rows if nd < 0 else float(nd), 1.0)


def btree_size(rows: float, keys: Sequence[Mapping[str, Any]], include: Sequence[Mapping[str, Any]] = (),
               *, fillfactor: int = DEFAULT_FILLFACTOR) -> int:
    """Bytes of a btree over `rows` rows with these key and INCLUDE columns (pg_stats rows: avg_width,
    n_distinct, typname). Distinct key combinations are the product of the columns' distinct counts, capped
    at the row count; the rows of one combination share a posting list when the types allow it."""
    rows = max(rows, 0.0)
    width = sum(float(c.get("avg_width") or 8) for c in (*keys, *include))
    entry = maxalign(TUPLE_HEADER + width)
    groups = min(rows, math.prod(distinct_count(c, rows) for c in keys)) if keys else rows
    dedup = not include and all(c.get("typname") not in NO_DEDUP for c in keys)
    if dedup and groups >= 1 and rows / groups >= 2:  # mostly unique keys stay plain tuples
        per_group = rows / groups
        per_posting = max((MAX_POSTING - entry) // HEAP_TID, 1)
        postings = math.ceil(per_group / per_posting)
        leaf_bytes = groups * (postings * (entry + LINE_POINTER) + maxalign(per_group * HEAP_TID))
    else:
        leaf_bytes = rows * (entry + LINE_POINTER)
    leaf_pages = max(math.ceil(leaf_bytes / (USABLE * fillfactor / 100)), 1)
    pages, level = leaf_pages, leaf_pages
    fanout = max(int(USABLE * INNER_FILL // (maxalign(TUPLE_HEADER + width) + LINE_POINTER)), 2)
    while level > 1:
        level = math.ceil(level / fanout)
        pages += level
    return (pages + 1) * PAGE  # + the metapage
