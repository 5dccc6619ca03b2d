"""jsonb group internals: paths, the target column, row selection, bound parameters and sampling."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any

from pglast import ast, parse_sql
from psycopg import sql
from psycopg.types.json import Jsonb
from pydantic import Field, StrictInt, StrictStr

from pgcode.core import arguments
from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput
from pgcode.db.queries import load_query
from pgcode.db.sqlpolicy import walk, where_fragment
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import IDENT_MAX, TableRef, split_name

MAX_PATH = 64
_INDEX_RE = re.compile(r"^-?[0-9]+$")

PathArg = list[StrictStr | StrictInt] | str
# A path in the catalog shows its forms by example; each tool's description says the rest: an array
# (['a', 0, 'b']), a dotted string ('a.0.b' or 'a[0].b'), a PostgreSQL text array ('{a,0,b}') or a simple
# JSONPath ('$.a[0].b'); a key containing '.' needs the array form.
PATH_HELP = "['a', 0, 'b'] or 'a.0.b'"


# ---------------------------------------------------------------- paths


def parse_path(value: PathArg | None) -> list[str]:
    """A caller's path as the text[] elements PostgreSQL's #>, jsonb_set and #- take."""
    if value is None:
        return []
    if isinstance(value, list):
        parts = [str(p) for p in value]
    else:
        text = value.strip()
        if text in ("", "$"):
            parts = []
        elif text.startswith("{") and text.endswith("}"):
            parts = _pg_array(text)
        elif text.startswith(("$.", "$[")):
            parts = _steps(text[1:], value)
        else:
            parts = _steps("." + text if not text.startswith("[") else text, value)
    if len(parts) > MAX_PATH:
        raise ToolError(ErrorCode.INVALID_INPUT, f"the path has {len(parts)} elements; at most {MAX_PATH} are allowed")
    return parts


def _bad_path(text: str, why: str) -> ToolError:
    return ToolError(ErrorCode.INVALID_INPUT, f"bad path {text!r}: {why}", hint=f"write the path as {PATH_HELP}")


def _steps(text: str, original: str) -> list[str]:
    """`.a.b[0]."quoted.key"` -> ['a', 'b', '0', 'quoted.key']."""
    parts: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "[":
            end = text.find("]", i)
            inner = text[i + 1:end].strip() if end > 0 else ""
            if end < 0 or not _INDEX_RE.match(inner):
                raise _bad_path(original, "brackets must hold an array index such as [0]")
            parts.append(str(int(inner)))
            i = end + 1
        elif ch == ".":
            i += 1
            if i < len(text) and text[i] == '"':
                try:
                    name, used = json.JSONDecoder().raw_decode(text[i:])
                except json.JSONDecodeError:
                    raise _bad_path(original, "an unterminated quoted key") from None
                parts.append(str(name))
                i += used
            else:
                m = re.compile(r"[^.\[]*").match(text, i)
                assert m is not None
                if not m.group():
                    raise _bad_path(original, "an empty key (two dots in a row, or a trailing dot)")
                parts.append(m.group())
                i = m.end()
        else:
            raise _bad_path(original, f"unexpected {ch!r} at position {i}")
    return parts


def _pg_array(text: str) -> list[str]:
    """PostgreSQL's text array literal: {a,"b,c",0}."""
    inner = text[1:-1]
    if not inner.strip():
        return []
    parts: list[str] = []
    i, n = 0, len(inner)
    while True:
        while i < n and inner[i].isspace():
            i += 1
        if i < n and inner[i] == '"':
            buf, i = [], i + 1
            while i < n and inner[i] != '"':
                if inner[i] == "\\" and i + 1 < n:
                    i += 1
                buf.append(inner[i])
                i += 1
            if i >= n:
                raise _bad_path(text, "an unterminated quoted element")
            parts.append("".join(buf))
            i += 1
            while i < n and inner[i].isspace():
                i += 1
        else:
            start = i
            while i < n and inner[i] != ",":
                if inner[i] in '{}"\\':
                    raise _bad_path(text, f"unexpected {inner[i]!r}; quote the element")
                i += 1
            element = inner[start:i].strip()
            if not element or element.upper() == "NULL":
                raise _bad_path(text, "an empty or NULL element")
            parts.append(element)
        if i >= n:
            return parts
        if inner[i] != ",":
            raise _bad_path(text, "elements must be separated by commas")
        i += 1


def is_index(element: str) -> bool:
    return bool(_INDEX_RE.match(element))


def show_path(path: list[str]) -> str:
    return json.dumps(path)


def nest(path: list[str], value: Any) -> Any:
    """{p0: {p1: ... value}}: the objects pg_jsonb_set creates under a missing key."""
    for element in reversed(path):
        value = {element: value}
    return value


# ---------------------------------------------------------------- bound parameters


class Bind:
    """Named parameters for one tool call: `bind(value)` returns the placeholder that carries it."""

    def __init__(self) -> None:
        self.params: dict[str, Any] = {}

    def __call__(self, value: Any) -> sql.Placeholder:
        name = f"p{len(self.params)}"
        self.params[name] = value
        return sql.Placeholder(name)

    def json(self, value: Any) -> sql.Composable:
        return sql.SQL("{}::jsonb").format(self(Jsonb(value)))

    def path(self, path: list[str]) -> sql.Composable:
        return sql.SQL("{}::text[]").format(self(path))


# ---------------------------------------------------------------- the target column


class ColumnIn(TableRef):
    column: str = Field(min_length=1, max_length=IDENT_MAX, description="jsonb column")


@dataclass(frozen=True)
class Target:
    """A table (or view) and one of its json/jsonb columns, checked against the catalog."""

    schema: str
    table: str
    column: str
    relkind: str
    reltuples: float
    columns: dict[str, tuple[str, str]]  # name -> (type without typmod, typname)
    pk: list[str]

    @property
    def name(self) -> str:
        return f"{self.schema}.{self.table}"

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.table)

    @property
    def col(self) -> sql.Identifier:
        return sql.Identifier(self.column)

    @property
    def is_json(self) -> bool:
        return self.columns[self.column][1] == "json"

    @property
    def doc(self) -> sql.Composable:
        """The column as jsonb (json columns are cast)."""
        return sql.SQL("{}::jsonb").format(self.col) if self.is_json else self.col

    def row_key(self, bind: Bind) -> sql.Composable:
        """A jsonb object naming the row: its primary key columns, else its ctid (which changes on update)."""
        if self.pk:
            return sql.SQL("jsonb_build_object({})").format(sql.SQL(", ").join(
                sql.SQL("{}::text, {}").format(bind(c), sql.Identifier(c)) for c in self.pk))
        if self.relkind in ("r", "m", "p"):
            return sql.SQL("jsonb_build_object('ctid', ctid::text)")
        return sql.SQL("NULL::jsonb")

    @property
    def order(self) -> sql.Composable:
        """ORDER BY the primary key (stable results), or nothing."""
        if not self.pk:
            return sql.SQL("")
        return sql.SQL(" ORDER BY {}").format(sql.SQL(", ").join(map(sql.Identifier, self.pk)))


async def table_info(ctx: ToolContext, schema: str, table: str) -> dict[str, Any]:
    row = await ctx.fetchone(load_query("jsonb_table_info"), {"schema": schema, "table": table})
    if row is None:
        raise ToolError(ErrorCode.NOT_FOUND, f'table "{schema}"."{table}" does not exist',
                        hint="pg_list_tables lists the tables")
    return row


async def resolve(ctx: ToolContext, args: ColumnIn) -> Target:
    """The table and json/jsonb column named by the caller; NOT_FOUND or INVALID_INPUT otherwise."""
    return await resolve_names(ctx, args.schema_name, args.table_name, args.column)


async def resolve_names(ctx: ToolContext, schema: str, table: str, column: str, *,
                        jsonb_only: bool = False) -> Target:
    info = await table_info(ctx, schema, table)
    columns = {name: (typ, typname) for name, typ, typname in info["columns"]}
    target = Target(schema, table, column, info["relkind"], info["reltuples"], columns, list(info["pk"]))
    if column not in columns:
        raise ToolError(ErrorCode.NOT_FOUND, f'{target.name} has no column "{column}"',
                        details={"columns": list(columns)})
    if columns[column][1] not in (("jsonb",) if jsonb_only else ("json", "jsonb")):
        raise ToolError(ErrorCode.INVALID_INPUT,
                        f'column "{column}" of {target.name} is {columns[column][0]}, not jsonb',
                        hint="this tool needs a jsonb column" if jsonb_only else
                        "the jsonb tools work on json and jsonb columns")
    return target


# ---------------------------------------------------------------- row selection


WHERE_HELP = arguments.ROW_CONDITION
KEY_HELP = arguments.KEY


class RowsIn(ColumnIn):
    where: str | None = Field(None, max_length=10_000, description=WHERE_HELP)
    key: dict[str, Any] | None = Field(None, max_length=32, description=KEY_HELP)


class WriteRowsIn(RowsIn):
    all_rows: bool = Field(False, description=arguments.ALL_ROWS)


def fragment(where: str) -> sql.Composable:
    """A caller's where condition, checked by the SQL policy; `%` doubled as the query carries parameters."""
    text = where_fragment(where).as_string()
    return sql.SQL(text.replace("%", "%%"))


def _mentions_column(where: str) -> bool:
    node = parse_sql(f"SELECT 1 WHERE {where}\n")[0].stmt
    return any(isinstance(n, ast.ColumnRef) for n in walk(node))


def selection(target: Target, bind: Bind, where: str | None, key: dict[str, Any] | None) -> sql.Composable | None:
    """The caller's row choice as one boolean expression, or None when none was given."""
    conds: list[sql.Composable] = []
    if where is not None:
        conds.append(fragment(where))
    for name, value in (key or {}).items():
        if name not in target.columns:
            raise ToolError(ErrorCode.NOT_FOUND, f'{target.name} has no column "{name}" (given in key)',
                            details={"columns": list(target.columns)})
        typ, typname = target.columns[name]
        ident = sql.Identifier(name)
        json_col = typname in ("json", "jsonb")
        if value is None:
            conds.append(sql.SQL("{} IS NULL").format(ident))
        elif json_col:
            conds.append(sql.SQL("{}::jsonb = {}").format(ident, bind.json(value)))
        elif isinstance(value, list) and not typname.startswith("_"):
            if not value:
                raise ToolError(ErrorCode.INVALID_INPUT, f'key "{name}" has an empty list of values')
            conds.append(sql.SQL("{} = ANY({}::{}[])").format(ident, bind(value), sql.SQL(typ)))
        else:
            conds.append(sql.SQL("{} = {}::{}").format(ident, bind(value), sql.SQL(typ)))
    if not conds:
        return None
    return sql.SQL(" AND ").join(conds)


def write_selection(target: Target, bind: Bind, args: WriteRowsIn, tool: str) -> sql.Composable | None:
    """The rows a write changes (None: all, as allRows asked); refuses to reach every row without allRows."""
    cond = selection(target, bind, args.where, args.key)
    if cond is None:
        if not args.all_rows:
            raise ToolError(ErrorCode.INVALID_INPUT,
                            f"{tool} would change every row of {target.name}: give where or key, "
                            "or allRows: true to change them all")
        return None
    if args.where is not None and not args.all_rows and not args.key and not _mentions_column(args.where):
        raise ToolError(ErrorCode.INVALID_INPUT,
                        f"the where condition of {tool} names no column, so it matches every row or none",
                        hint="name the rows (e.g. id = 5), or pass allRows: true to change every row")
    return cond


def where_clause(cond: sql.Composable | None) -> sql.Composable:
    return sql.SQL(" WHERE {}").format(cond) if cond is not None else sql.SQL("")


# ---------------------------------------------------------------- sampling and the document walker




class SampleIn(ColumnIn):
    sample_size: int = Field(1000, ge=1, le=100_000)
    where: str | None = Field(None, max_length=10_000, description=arguments.WHERE)
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    max_depth: int = Field(32, ge=1, le=100)


@dataclass(frozen=True)
class Sample:
    source: sql.Composable  # SELECT sid, rk, doc
    method: str
    requested: int
    estimate: float


def sample(target: Target, bind: Bind, args: SampleIn) -> Sample:
    """Up to sampleSize rows: TABLESAMPLE BERNOULLI on big tables, else a random order over all rows."""
    cond = selection(target, bind, args.where, None)
    size = args.sample_size
    cols = sql.SQL("row_number() OVER () AS sid, {} AS rk, {} AS doc").format(target.row_key(bind), target.doc)
    est = target.reltuples
    if cond is None and target.relkind in ("r", "m", "p") and est > 2 * size:
        pct = min(100.0, 100.0 * 2 * size / est)  # twice the rows needed, so the LIMIT rarely comes up short
        repeat = sql.SQL(" REPEATABLE ({})").format(bind(args.seed)) if args.seed is not None else sql.SQL("")
        source = sql.SQL("SELECT {} FROM {} TABLESAMPLE BERNOULLI ({}::real){} LIMIT {}").format(
            cols, target.ident, bind(pct), repeat, bind(size))
        method = f"TABLESAMPLE BERNOULLI ({pct:.4g}%) LIMIT {size}"
    else:
        source = sql.SQL("SELECT {} FROM {}{} ORDER BY random() LIMIT {}").format(
            cols, target.ident, where_clause(cond), bind(size))
        method = f"ORDER BY random() LIMIT {size}"
    return Sample(source, method, size, est)


def describe_sample(s: Sample, rows: int) -> dict[str, Any]:
    return {"rows": rows, "requested": s.requested,
            "method": "all rows" if rows < s.requested and "random" in s.method else s.method,
            "tableRowsEstimate": int(s.estimate) if s.estimate >= 0 else None}


def walk_query(s: Sample, bind: Bind, max_depth: int) -> sql.Composed:
    """WITH RECURSIVE src (the sample), walk (its nodes); the caller appends CTEs and the final SELECT."""
    return load_query("jsonb_walk").format(source=s.source, max_depth=bind(max_depth)) + sql.SQL("\n")


class MaybeColumnIn(ToolInput):
    """For tools that take either a value in the call or a table's column."""

    table: str | None = Field(None, min_length=1, max_length=2 * IDENT_MAX + 1, description=arguments.TABLE)
    schema_: str | None = Field(None, alias="schema", max_length=IDENT_MAX,
                                description=arguments.SCHEMA)
    column: str | None = Field(None, min_length=1, max_length=IDENT_MAX, description="jsonb column")
    where: str | None = Field(None, max_length=10_000, description=WHERE_HELP)
    key: dict[str, Any] | None = Field(None, max_length=32, description=KEY_HELP)

    async def target(self, ctx: ToolContext, value_fields: tuple[str, ...]) -> Target | None:
        """The table column when one is named, None when the call carries its value; refuses both or neither."""
        given = [f for f in value_fields if f in self.model_fields_set]
        if self.table is None and self.column is None:
            if not given:
                raise ToolError(ErrorCode.INVALID_INPUT,
                                f"give {' or '.join(value_fields)}, or table and column")
            return None
        if given:
            raise ToolError(ErrorCode.INVALID_INPUT, f"give either {given[0]} or table and column, not both")
        if self.table is None or self.column is None:
            raise ToolError(ErrorCode.INVALID_INPUT, "table and column go together")
        schema, table = split_name(self.table, self.schema_)
        return await resolve_names(ctx, schema, table, self.column)
