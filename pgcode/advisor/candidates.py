"""Index candidates for the advisor: the tables statements name, the columns they filter, join and sort on,
and values for their $n placeholders; plus the greedy pick both advisor paths share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

from pgcode.advisor.querycols import Level, Use, levels, param_count
from pgcode.core.context import ToolContext
from pgcode.db.queries import SYSTEM_SCHEMAS
from pgcode.errors import ErrorCode, ToolError

GENERIC_PLAN = 160000  # EXPLAIN (GENERIC_PLAN) arrived in PostgreSQL 16
MAX_CANDIDATES = 40  # each candidate costs an EXPLAIN per query it may help, per greedy round
_TIE = 0.95  # candidates within 5% of the best gain are equals: the smaller index wins


@dataclass
class Query:
    """One statement to plan: its text, how to fill its $n, and its weight (calls in the workload)."""

    text: str
    weight: float = 1.0
    params: list[Any] | None = None
    generic: bool = False
    label: str | None = None
    levels: list[Level] = field(default_factory=list)
    tables: set[int] = field(default_factory=set)  # oids of the tables it reads


@dataclass
class Table:
    oid: int
    schema: str
    name: str
    reltuples: float
    relpages: int
    columns: dict[str, dict[str, Any]]  # name -> attnum, typname, btree-able, pg_stats
    index_keys: list[list[int]]  # key columns of its valid, non-partial indexes
    leaves: set[str] = field(default_factory=set)  # "schema.name" of its leaf partitions, when partitioned


@dataclass
class Candidate:
    table: Table
    columns: tuple[str, ...]
    uses: tuple[str, ...]  # the clauses the columns come from: eq, range, join, order
    queries: set[int] = field(default_factory=set)

    @property
    def key(self) -> tuple[int, tuple[str, ...]]:
        return self.table.oid, self.columns

    def ddl(self, *, concurrently: bool = False) -> sql.Composed:
        return sql.SQL("CREATE INDEX {}ON {} ({})").format(
            sql.SQL("CONCURRENTLY " if concurrently else ""), sql.Identifier(self.table.schema, self.table.name),
            sql.SQL(", ").join(map(sql.Identifier, self.columns)))


# A partitioned table's size is its leaf partitions' (plans scan those), listed as (schema, name) pairs.
_TABLES = """
SELECT q.name, c.oid, n.nspname AS schema, c.relname AS table, c.relkind,
       coalesce(p.reltuples, greatest(c.reltuples, 0)) AS reltuples, coalesce(p.relpages, c.relpages) AS relpages,
       coalesce(p.leaves, '{}') AS leaves
FROM unnest(%s::text[]) AS q(name)
JOIN pg_class c ON c.oid = to_regclass(q.name)
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN LATERAL (
    SELECT sum(greatest(lc.reltuples, 0)) AS reltuples, sum(lc.relpages) AS relpages,
           array_agg(ln.nspname || '.' || lc.relname) AS leaves
    FROM pg_partition_tree(c.oid) t JOIN pg_class lc ON lc.oid = t.relid
    JOIN pg_namespace ln ON ln.oid = lc.relnamespace
    WHERE c.relkind = 'p' AND t.isleaf
) p ON true
WHERE c.relkind IN ('r', 'p', 'm') AND n.nspname <> ALL (%s) AND n.nspname NOT LIKE 'pg\\_toast%%'
"""
_COLUMNS = """
SELECT a.attrelid, a.attname, a.attnum, t.typname,
       (t.typcategory NOT IN ('A', 'C', 'G', 'P', 'R', 'U', 'X') OR t.typname = 'uuid') AS btree,
       s.null_frac, s.n_distinct, s.avg_width, s.correlation,
       coalesce((s.most_common_vals::text::text[])[1],
                (s.histogram_bounds::text::text[])[greatest(cardinality(s.histogram_bounds::text::text[]) / 2, 1)])
           AS sample_value
FROM pg_attribute a
JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_stats s ON s.schemaname = n.nspname AND s.tablename = c.relname AND s.attname = a.attname
                    AND s.inherited = (c.relkind = 'p')  -- a partitioned table has only whole-tree statistics
WHERE a.attrelid = ANY (%s) AND a.attnum > 0 AND NOT a.attisdropped
"""
_INDEXES = ("SELECT indrelid, string_to_array(indkey::text, ' ')::int2[] AS keys FROM pg_index "
            "WHERE indrelid = ANY (%s) AND indisvalid AND indpred IS NULL")


async def resolve(ctx: ToolContext, queries: list[Query]) -> dict[int, Table]:
    """The tables the queries name (as the search_path resolves them), with column statistics and indexes."""
    names: dict[tuple[str | None, str], str] = {}
    conn = await ctx.conn()
    for q in queries:
        for level in q.levels:
            for schema, rel in level.relations.values():
                ident = sql.Identifier(schema, rel) if schema else sql.Identifier(rel)
                names[(schema, rel)] = ident.as_string(conn)
    if not names:
        return {}
    rows = await ctx.fetch(_TABLES, (list(set(names.values())), SYSTEM_SCHEMAS))
    by_name = {r["name"]: r for r in rows}
    tables = {int(r["oid"]): Table(int(r["oid"]), r["schema"], r["table"], float(r["reltuples"]),
                                   int(r["relpages"]), {}, [], set(r["leaves"])) for r in rows}
    if not tables:
        return {}
    for c in await ctx.fetch(_COLUMNS, (list(tables),)):
        tables[int(c["attrelid"])].columns[c["attname"]] = c
    for x in await ctx.fetch(_INDEXES, (list(tables),)):
        tables[int(x["indrelid"])].index_keys.append([int(k) for k in x["keys"]])
    for q in queries:
        for level in q.levels:
            for alias, key in level.relations.items():
                row = by_name.get(names[key])
                if row is not None:
                    level.oids[alias] = int(row["oid"])
                    q.tables.add(int(row["oid"]))
    return tables


def owner(level: Level, qualifier: str | None, column: str, tables: dict[int, Table]) -> Table | None:
    """The table a column reference of this level belongs to: by its qualifier, or the only table with it."""
    if qualifier is not None:
        oid = level.oids.get(qualifier)
        table = tables.get(oid) if oid is not None else None
        return table if table is not None and column in table.columns else None
    owners = [tables[oid] for oid in level.oids.values() if column in tables[oid].columns]
    return owners[0] if len(owners) == 1 else None


def candidates(queries: list[Query], tables: dict[int, Table]) -> list[Candidate]:
    """Index candidates per query and table: single columns, equality columns together, equality + range,
    and sort keys; those an existing index already leads with are left out."""
    found: dict[tuple[int, tuple[str, ...]], Candidate] = {}
    for qi, q in enumerate(queries):
        per_table: dict[int, dict[Use, list[str]]] = {}
        for level in q.levels:
            for (qualifier, column), use in level.uses:
                table = owner(level, qualifier, column, tables)
                if table is None or not table.columns[column]["btree"]:
                    continue
                cols = per_table.setdefault(table.oid, {u: [] for u in Use})[use]
                if column not in cols:
                    cols.append(column)
        for oid, by_use in per_table.items():
            eq, rng, join, order = (by_use[u] for u in (Use.EQ, Use.RANGE, Use.JOIN, Use.ORDER))
            shapes: list[tuple[list[str], str]] = [([c], "eq") for c in eq] + [([c], "range") for c in rng]
            shapes += [([c], "join") for c in join]
            if len(eq) > 1:
                shapes.append((eq[:3], "eq"))
            if eq and rng:
                shapes.append((eq[:2] + rng[:1], "eq+range"))
            if order:
                shapes.append((order[:3], "order"))
                if eq:
                    shapes.append((eq[:2] + order[:2], "eq+order"))
            for cols, why in shapes:
                key_cols = tuple(dict.fromkeys(cols))
                if _covered(tables[oid], key_cols):
                    continue
                cand = found.setdefault((oid, key_cols), Candidate(tables[oid], key_cols, (why,)))
                if why not in cand.uses:
                    cand.uses = (*cand.uses, why)
                cand.queries.add(qi)
    return list(found.values())[:MAX_CANDIDATES]


def _covered(table: Table, columns: tuple[str, ...]) -> bool:
    nums = [int(table.columns[c]["attnum"]) for c in columns]
    return any(keys[: len(nums)] == nums for keys in table.index_keys)


async def prepare(ctx: ToolContext, q: Query) -> None:
    """Parse the statement and decide how its $n get values: given, GENERIC_PLAN (16+), or sampled (pg_stats)."""
    q.levels = levels(q.text)
    n = param_count(q.text)
    if q.params is not None:
        if len(q.params) != n:
            raise ToolError(ErrorCode.INVALID_INPUT, f"the statement uses {n} parameter(s) ($1..${n}) and "
                                                     f"{len(q.params)} were given")
        return
    if n and ctx.server_version >= GENERIC_PLAN:
        q.generic = True


def sample_params(q: Query, tables: dict[int, Table]) -> None:
    """Before PostgreSQL 16 (no GENERIC_PLAN): a typical value per $n from pg_stats of the column it is
    compared with (its most common value, else the middle histogram bound); NULL where there is none."""
    if q.generic or q.params is not None:
        return
    n = param_count(q.text)
    values: list[Any] = [None] * n
    for level in q.levels:
        for number, (qualifier, column) in level.params.items():
            table = owner(level, qualifier, column, tables)
            if table is not None and 0 < number <= n and values[number - 1] is None:
                values[number - 1] = table.columns[column]["sample_value"]
    q.params = values if n else None


@dataclass
class Choice:
    candidate: Candidate
    gain: float  # weighted cost removed
    gain_ratio: float  # share of the cost of the queries it helps
    size: int
    per_query: dict[int, float] = field(default_factory=dict)


def pick(trials: list[Choice], min_improvement: float) -> Choice | None:
    """The best trial by gain; trials within 5% of it are equals and the smallest index wins."""
    useful = [c for c in trials if c.gain > 0 and c.gain_ratio >= min_improvement]
    if not useful:
        return None
    best = max(c.gain for c in useful)
    return min((c for c in useful if c.gain >= _TIE * best), key=lambda c: (c.size, -c.gain))


def label(c: Candidate) -> str:
    return f"hypothetical index on {c.table.schema}.{c.table.name} ({', '.join(c.columns)})"
