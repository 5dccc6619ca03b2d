"""Index candidates as a DBA writes them: equality columns first, then one range column or the ORDER BY keys,
INCLUDE columns for an index-only scan, a predicate for a constant condition; never one an index already has."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from psycopg import sql

from pgcode.advisor.querycols import Constant, Level, Use
from pgcode.advisor.sizing import btree_size, distinct_count
from pgcode.core.context import ToolContext
from pgcode.db.queries import SYSTEM_SCHEMAS, load_query

MAX_CANDIDATES = 60  # each candidate costs an EXPLAIN per query it may help, per greedy round
MAX_KEYS = 3  # equality columns in one candidate
MAX_INCLUDE = 4  # columns an index-only scan may carry
MAX_INCLUDE_WIDTH = 64  # bytes of INCLUDE columns per row
STATUS_VALUES = 100  # at most this many distinct values: a constant on the column can define a partial index


@dataclass
class Query:
    """One statement to plan: its text, how to fill its $n, and its weight (calls in the workload)."""

    text: str
    weight: float = 1.0
    params: list[Any] | None = None
    generic: bool = False
    label: str | None = None
    rows_per_call: float | None = None  # what the workload saw (pg_stat_statements rows / calls)
    param_notes: list[dict[str, Any]] = field(default_factory=list)  # each $n's value and why
    levels: list[Level] = field(default_factory=list)
    tables: set[int] = field(default_factory=set)  # oids of the tables it reads


@dataclass
class Index:
    """An index that exists: its key columns (attnums, 0 for an expression) and what keeps it."""

    schema: str
    name: str
    keys: list[int]
    desc: list[bool]
    include: list[int]
    droppable: bool  # a plain btree: not unique, not a constraint's, no predicate or expression
    size_bytes: int
    plain: bool  # btree without predicate or expressions: it serves any query on its leading columns


@dataclass
class Table:
    oid: int
    schema: str
    name: str
    reltuples: float
    relpages: int
    columns: dict[str, dict[str, Any]]  # name -> attnum, typname, btree-able, pg_stats
    indexes: list[Index]
    leaves: set[str] = field(default_factory=set)  # "schema.name" of its leaf partitions, when partitioned
    writes_per_second: float = 0.0


@dataclass
class Candidate:
    table: Table
    columns: tuple[str, ...]
    uses: tuple[str, ...]  # the shapes it comes from: eq, range, join, order, eq+range, eq+order, ...
    desc: tuple[bool, ...] = ()
    include: tuple[str, ...] = ()
    predicate: Constant | None = None
    queries: set[int] = field(default_factory=set)

    @property
    def key(self) -> tuple[Any, ...]:
        return self.table.oid, self.columns, self.desc, self.include, self.predicate

    def ddl(self, *, concurrently: bool = False) -> sql.Composed:
        keys = [sql.Identifier(c) + sql.SQL(" DESC" if d else "") for c, d in zip(self.columns, self.desc,
                                                                                    strict=True)]
        parts = [sql.SQL("CREATE INDEX {}ON {} ({})").format(
            sql.SQL("CONCURRENTLY " if concurrently else ""), sql.Identifier(self.table.schema, self.table.name),
            sql.SQL(", ").join(keys))]
        if self.include:
            parts.append(sql.SQL(" INCLUDE ({})").format(sql.SQL(", ").join(map(sql.Identifier, self.include))))
        if self.predicate is not None:
            parts.append(sql.SQL(" WHERE ") + predicate_sql(self.predicate))
        return sql.Composed(parts)

    def estimated_size(self) -> int:
        """Bytes of the built index (pgcode.advisor.sizing): fill factor 90, deduplicated duplicates."""
        rows = self.table.reltuples * predicate_share(self.table, self.predicate)
        cols = self.table.columns
        return btree_size(rows, [cols[c] for c in self.columns], [cols[c] for c in self.include])

    def describe(self) -> str:
        keys = ", ".join(c + (" DESC" if d else "") for c, d in zip(self.columns, self.desc, strict=True))
        text = f"{self.table.schema}.{self.table.name} ({keys})"
        if self.include:
            text += f" INCLUDE ({', '.join(self.include)})"
        if self.predicate is not None:
            p = self.predicate
            text += f" WHERE {p.column[1]} {p.test}" + (f" {p.value!r}" if p.test == "=" else "")
        return text


def predicate_sql(p: Constant) -> sql.Composed:
    column = sql.Identifier(p.column[1])
    if p.test == "=":
        return sql.SQL("{} = {}").format(column, sql.Literal(p.value))
    return sql.SQL("{} IS NULL" if p.test == "is null" else "{} IS NOT NULL").format(column)


def predicate_share(table: Table, p: Constant | None) -> float:
    """The share of rows a partial index keeps, from the column's null_frac and most common values."""
    if p is None:
        return 1.0
    stats = table.columns[p.column[1]]
    nulls = float(stats.get("null_frac") or 0)
    if p.test == "is null":
        return max(nulls, 0.001)
    if p.test == "is not null":
        return 1 - nulls
    for value, freq in zip(stats.get("mcv") or [], stats.get("mcf") or [], strict=False):
        if str(value) == str(p.value):
            return float(freq)
    return (1 - nulls) / distinct_count(stats, max(table.reltuples, 1))


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
    rows = await ctx.fetch(load_query("advisor_tables"), {"names": list(set(names.values())),
                                                          "system": SYSTEM_SCHEMAS})
    by_name = {r["name"]: r for r in rows}
    tables = {int(r["oid"]): Table(int(r["oid"]), r["schema"], r["table"], float(r["reltuples"]),
                                   int(r["relpages"]), {}, [], set(r["leaves"]), float(r["writes_per_second"] or 0))
              for r in rows}
    if not tables:
        return {}
    for c in await ctx.fetch(load_query("advisor_columns"), {"oids": list(tables)}):
        tables[int(c["attrelid"])].columns[c["attname"]] = c
    for x in await ctx.fetch(load_query("advisor_indexes"), {"oids": list(tables)}):
        columns, n = [int(k) for k in x["columns"]], int(x["key_count"])
        plain = x["method"] == "btree" and not x["partial"] and not x["expressions"]
        tables[int(x["indrelid"])].indexes.append(Index(
            x["schema"], x["name"], columns[:n], [bool(int(o) & 1) for o in x["options"][:n]], columns[n:],
            plain and not x["is_unique"] and not x["constraint_backed"], int(x["size_bytes"]), plain))
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


@dataclass
class _Needs:
    """What one query level asks of one table."""

    eq: list[str] = field(default_factory=list)
    range: list[str] = field(default_factory=list)
    join: list[str] = field(default_factory=list)
    order: list[tuple[str, bool]] = field(default_factory=list)
    order_complete: bool = True  # every ORDER BY key is a column of this table
    referenced: set[str] = field(default_factory=set)
    constants: list[Constant] = field(default_factory=list)


def _needs(level: Level, tables: dict[int, Table]) -> dict[int, _Needs]:
    per_table: dict[int, _Needs] = {}

    def add(target: list[Any], item: Any) -> None:
        if item not in target:
            target.append(item)

    for (qualifier, column), use in level.uses:
        table = owner(level, qualifier, column, tables)
        if table is None or not table.columns[column]["btree"]:
            continue
        needs = per_table.setdefault(table.oid, _Needs())
        if use is Use.EQ:
            add(needs.eq, column)
        elif use is Use.RANGE:
            add(needs.range, column)
        elif use is Use.JOIN:
            add(needs.join, column)
    sort_keys = [(owner(level, q, c, tables), c, desc) for (q, c), desc in level.order]
    for table, column, desc in sort_keys:
        if table is not None and table.columns[column]["btree"]:
            add(per_table.setdefault(table.oid, _Needs()).order, (column, desc))
    for oid, needs in per_table.items():  # sort keys from two tables: no one index returns rows in that order
        needs.order_complete = all(t is not None and t.oid == oid for t, _, _ in sort_keys)
    for qualifier, column in level.columns:
        table = owner(level, qualifier, column, tables)
        if table is not None and table.oid in per_table:
            per_table[table.oid].referenced.add(column)
    for constant in level.constants:
        table = owner(level, constant.column[0], constant.column[1], tables)
        if table is not None and table.oid in per_table:
            per_table[table.oid].constants.append(constant)
    return per_table


def _shapes(table: Table, needs: _Needs) -> list[tuple[tuple[str, ...], tuple[bool, ...], str]]:
    """Key columns (with directions) for one table of one query level, and the shape's name."""
    eq = sorted(needs.eq, key=lambda c: -distinct_count(table.columns[c], max(table.reltuples, 1)))[:MAX_KEYS]
    out: list[tuple[tuple[str, ...], tuple[bool, ...], str]] = []

    def add(cols: list[str], desc: list[bool] | None, why: str) -> None:
        cols_t = tuple(dict.fromkeys(cols))
        if cols_t and len(cols_t) == len(cols):
            out.append((cols_t, tuple(desc or [False] * len(cols_t)), why))

    for c in needs.eq:
        add([c], None, "eq")
    for c in needs.range:
        add([c], None, "range")
    for c in needs.join:
        add([c], None, "join")
    if len(eq) > 1:
        add(eq, None, "eq")
    for c in needs.range[:2]:
        if eq:
            add([*eq, c], None, "eq+range")
    if needs.order and needs.order_complete:
        keys = [c for c, _ in needs.order if c not in eq][:MAX_KEYS]
        directions = [d for c, d in needs.order if c not in eq][:MAX_KEYS]
        mixed = len(set(directions)) > 1  # one direction is served by a backward scan; mixed ones need DESC keys
        desc = directions if mixed else [False] * len(keys)
        if keys:
            add([*eq, *keys], [False] * len(eq) + desc, "eq+order" if eq else "order")
    return out


def candidates(queries: list[Query], tables: dict[int, Table]) -> list[Candidate]:
    """Index candidates per query and table: single columns, equality columns together, equality + range,
    equality + sort keys, their covering (INCLUDE) and partial (constant predicate) variants; those an existing
    index already provides are left out."""
    found: dict[tuple[Any, ...], Candidate] = {}

    def add(cand: Candidate, qi: int) -> None:
        if provided(cand):
            return
        kept = found.setdefault(cand.key, cand)
        if cand.uses[0] not in kept.uses:
            kept.uses = (*kept.uses, cand.uses[0])
        kept.queries.add(qi)

    for qi, q in enumerate(queries):
        for level in q.levels:
            for oid, needs in _needs(level, tables).items():
                table = tables[oid]
                shapes = _shapes(table, needs)
                for cols, desc, why in shapes:
                    add(Candidate(table, cols, (why,), desc), qi)
                if not shapes:
                    continue
                cols, desc, why = max(shapes, key=lambda s: len(s[0]))  # the fullest shape
                extra = sorted(needs.referenced - set(cols))
                width = sum(float(table.columns[c]["avg_width"] or 8) for c in extra)
                if not level.star and extra and len(extra) <= MAX_INCLUDE and width <= MAX_INCLUDE_WIDTH:
                    add(Candidate(table, cols, (why + "+include",), desc, tuple(extra)), qi)
                for constant in needs.constants:
                    keys = [(c, d) for c, d in zip(cols, desc, strict=True) if c != constant.column[1]]
                    if constant.test == "=" and not (keys and _status_like(table, constant.column[1])):
                        continue  # `code = 4242` is one lookup of many, not a subset the statement always reads
                    keys = keys or [(constant.column[1], False)]
                    add(Candidate(table, tuple(c for c, _ in keys), (why + "+partial",),
                                  tuple(d for _, d in keys), (), constant), qi)
    return sorted(found.values(), key=lambda c: -len(c.queries))[:MAX_CANDIDATES]


def _status_like(table: Table, column: str) -> bool:
    """A column of a few values (a status, a flag): a constant on it names a lasting subset of the rows."""
    return distinct_count(table.columns[column], max(table.reltuples, 1)) <= STATUS_VALUES


def provided(cand: Candidate) -> bool:
    """An existing plain btree already leads with the candidate's keys (in its directions, or all reversed)
    and holds its INCLUDE columns: the candidate would duplicate it."""
    cols = cand.table.columns
    nums = [int(cols[c]["attnum"]) for c in cand.columns]
    included = {int(cols[c]["attnum"]) for c in cand.include}
    for index in cand.table.indexes:
        if not index.plain or index.keys[: len(nums)] != nums:
            continue
        directions = list(index.desc[: len(nums)])
        same = directions == list(cand.desc) or directions == [not d for d in cand.desc]
        if same and included <= set(index.keys) | set(index.include):
            return True
    return False


def redundant_existing(cand: Candidate) -> list[Index]:
    """Existing indexes the candidate makes redundant: plain, droppable btrees whose keys lead the candidate's."""
    cols = cand.table.columns
    nums = [int(cols[c]["attnum"]) for c in cand.columns]
    if cand.predicate is not None:
        return []
    return [i for i in cand.table.indexes if i.droppable and not i.include and 0 < len(i.keys) <= len(nums)
            and nums[: len(i.keys)] == i.keys]


@dataclass
class Choice:
    candidate: Candidate
    gain: float  # weighted cost removed
    gain_ratio: float  # share of the cost of the queries it helps
    size: int
    per_query: dict[int, float] = field(default_factory=dict)


def pick(trials: list[Choice], min_improvement: float) -> Choice | None:
    """Among the trials that gain min_improvement and at least half the best gain, the one with the most gain
    per byte: a far smaller index with nearly the gain wins; a tiny one with a sliver of the gain does not."""
    useful = [c for c in trials if c.gain > 0 and c.gain_ratio >= min_improvement]
    if not useful:
        return None
    best = max(c.gain for c in useful)
    return max((c for c in useful if c.gain >= best / 2), key=lambda c: (c.gain / max(c.size, 1), c.gain))


def label(c: Candidate) -> str:
    return f"hypothetical index on {c.describe()}"
