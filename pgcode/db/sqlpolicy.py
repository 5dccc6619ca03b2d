"""Checks on caller-supplied SQL, made on the parse tree (pglast), never on the text."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from pglast import ast, parse_sql
from pglast.enums import ReindexObjectType
from pglast.parser import ParseError
from pglast.stream import RawStream
from psycopg import sql

from pgcode.errors import ErrorCode, ToolError
from pgcode.types import Scope

# Functions that touch files, other sessions, server configuration or connections, or that run SQL
# given as text (which would escape this check). Matched on the unqualified, lower-cased name.
DENIED_FUNCTIONS = frozenset({
    "pg_terminate_backend", "pg_cancel_backend", "pg_signal_backend", "pg_reload_conf",
    "pg_rotate_logfile", "set_config", "pg_switch_wal", "pg_switch_xlog", "pg_create_restore_point",
    "pg_promote", "pg_wal_replay_pause", "pg_wal_replay_resume", "pg_backup_start", "pg_backup_stop",
    "pg_start_backup", "pg_stop_backup", "pg_log_backend_memory_contexts", "pg_import_system_collations",
    "pg_notify", "nextval", "setval", "loread", "lowrite", "pg_logical_emit_message",
    "pg_advisory_lock", "pg_advisory_lock_shared", "pg_try_advisory_lock", "pg_try_advisory_lock_shared",
    "pg_advisory_unlock", "pg_advisory_unlock_shared", "pg_advisory_unlock_all",
    "query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema", "cursor_to_xml",
    "cursor_to_xmlschema", "ts_stat", "ts_rewrite", "pg_stat_statements_reset", "pg_stat_kcache_reset",
    "hypopg_create_index", "hypopg_drop_index", "hypopg_reset", "hypopg_hide_index", "hypopg_unhide_index",
    "hypopg_unhide_all_indexes", "pg_drop_replication_slot", "pg_copy_physical_replication_slot",
    "pg_copy_logical_replication_slot", "setseed",
})
# Refused whatever the scope: their effect outlives the call on a pooled connection.
REFUSED_FUNCTIONS = {
    "setseed": "setseed() would fix the random sequence the next caller of this pooled connection sees",
}
DENIED_PREFIXES = (
    "pg_read_", "pg_ls_", "pg_stat_file", "pg_file_", "pg_logdir_", "lo_", "dblink",
    "pg_stat_reset", "pg_create_physical_replication_slot", "pg_create_logical_replication_slot",
    "pg_logical_slot_", "pg_replication_slot_advance", "pg_replication_origin_",
    "table_to_xml", "schema_to_xml", "database_to_xml",
)

# The volatility gate: where a write-scoped statement or a `where` fragment calls a function, every overload of
# its name must be IMMUTABLE or STABLE (pg_proc), or on these reviewed lists: they act on nothing but their
# result. Anything else may act behind the statement's back (pg_cron's schedule, PostGIS's DropGeometryTable).
VOLATILE_ALLOWED = frozenset({"random", "random_normal", "gen_random_uuid", "uuid_generate_v4", "clock_timestamp",
                              "timeofday"})
VOLATILE_ALLOWED_IN_WRITES = VOLATILE_ALLOWED | {"nextval", "currval", "lastval"}
FUNCTION_VOLATILITY: ContextVar[Mapping[str, str] | None] = ContextVar("pgcode_function_volatility", default=None)
"""The current server's volatility per function name ('i', 's' or 'v', the worst overload), set for each call."""

# Relations caller SQL may name only with the admin scope: pgcode's own schema, and the catalogs that hold
# credentials (pg_read_all_data can read pg_authid's password hashes).
PRIVATE_SCHEMA = "pgcode"
CREDENTIAL_CATALOGS = frozenset({"pg_authid", "pg_shadow", "pg_user_mapping", "pg_user_mappings"})

_DML = (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)
# Utility statements with a reason they are never taken from callers.
_REFUSED: dict[type[ast.Node], str] = {
    ast.DoStmt: "DO blocks run arbitrary procedural code; use pg_write_query with one plain statement",
    ast.TransactionStmt: "transaction control is not allowed here; use the pg_transaction_* tools",
    ast.VariableSetStmt: "SET/RESET would change the session; settings are managed by pg_set_config",
    ast.ListenStmt: "LISTEN keeps state on a pooled connection",
    ast.UnlistenStmt: "UNLISTEN keeps state on a pooled connection",
    ast.LoadStmt: "LOAD loads a shared library into the server",
    ast.PrepareStmt: "prepared statements keep state on a pooled connection",
    ast.ExecuteStmt: "prepared statements keep state on a pooled connection",
    ast.DeallocateStmt: "prepared statements keep state on a pooled connection",
    ast.DiscardStmt: "DISCARD changes the pooled session",
    ast.DeclareCursorStmt: "cursors keep state on a pooled connection",
    ast.FetchStmt: "cursors keep state on a pooled connection",
    ast.ClosePortalStmt: "cursors keep state on a pooled connection",
    ast.CheckPointStmt: "CHECKPOINT is a server operation; ask an administrator",
}
# Statements PostgreSQL refuses inside a transaction block: run them in autocommit.
_AUTOCOMMIT = (ast.VacuumStmt, ast.CreatedbStmt, ast.DropdbStmt, ast.AlterSystemStmt,
               ast.CreateTableSpaceStmt, ast.DropTableSpaceStmt)
_REINDEX_MANY = (ReindexObjectType.REINDEX_OBJECT_SCHEMA, ReindexObjectType.REINDEX_OBJECT_SYSTEM,
                 ReindexObjectType.REINDEX_OBJECT_DATABASE)


def _refuse(message: str, hint: str | None = None) -> ToolError:
    return ToolError(ErrorCode.INVALID_INPUT, message, hint=hint)


_LEAVES = (str, int, float, bool)


def walk(node: Any) -> Iterator[ast.Node]:
    """Every node below `node` (in no particular order); iterative, as it runs on every caller query."""
    stack = [node]
    while stack:
        item = stack.pop()
        if isinstance(item, ast.Node):
            yield item
            for slot in item.__slots__:  # type: ignore[attr-defined]
                value = getattr(item, slot)
                if value is not None and not isinstance(value, _LEAVES):
                    stack.append(value)
        elif isinstance(item, list | tuple):
            stack.extend(item)


def _function_name(call: ast.FuncCall) -> str:
    return ".".join(str(part.sval) for part in call.funcname or () if isinstance(part, ast.String)).lower()


def denied_function(node: Any, allowed: frozenset[str] = frozenset()) -> str | None:
    """The first call to a denied function anywhere below `node` (FROM, WHERE, subqueries), if any."""
    for n in walk(node):
        if isinstance(n, ast.FuncCall):
            full = _function_name(n)
            base = full.rsplit(".", 1)[-1]
            if base in allowed:
                continue
            if base in DENIED_FUNCTIONS or base.startswith(DENIED_PREFIXES):
                return full
    return None


def called_functions(node: Any) -> frozenset[str]:
    """The unqualified, lower-cased names of the functions called anywhere below `node`."""
    return frozenset(_function_name(n).rsplit(".", 1)[-1] for n in walk(node) if isinstance(n, ast.FuncCall))


def volatile_function(functions: frozenset[str], allowed: frozenset[str]) -> str | None:
    """The first function that fails the volatility gate, or None. Unknown names count as volatile.

    Without the server's catalog at hand (FUNCTION_VOLATILITY unset) nothing is refused here: the
    per-scope database role is the wall, this gate only gives the early, clear error.
    """
    known = FUNCTION_VOLATILITY.get()
    if known is None:
        return None
    for name in sorted(functions - allowed):
        if known.get(name, "v") == "v":
            return name
    return None


def protected_relation(node: Any) -> str | None:
    """The first relation below `node` that only admin may name: pgcode's schema or a credentials catalog."""
    for n in walk(node):
        if isinstance(n, ast.RangeVar) and n.relname:
            schema, name = (n.schemaname or "").lower(), n.relname.lower()
            if schema == PRIVATE_SCHEMA or (schema in ("", "pg_catalog") and name in CREDENTIAL_CATALOGS):
                return f"{schema}.{name}" if schema else name
    return None


def _refused_function(node: Any) -> str | None:
    for name in called_functions(node):
        if name in REFUSED_FUNCTIONS:
            return REFUSED_FUNCTIONS[name]
    return None


def _parse(text: str) -> tuple[ast.RawStmt, ...]:
    if not text or not text.strip():
        raise _refuse("the SQL text is empty")
    try:
        stmts: tuple[ast.RawStmt, ...] = parse_sql(text)
    except ParseError as exc:
        # pglast puts the 0-based offset in args[1] (None at end of input); PostgreSQL counts from 1.
        location = exc.args[1] if len(exc.args) > 1 else None
        raise ToolError(ErrorCode.INVALID_INPUT, f"SQL syntax error: {exc.args[0]}",
                        details={"position": location + 1 if isinstance(location, int) else None}) from None
    return stmts


def _single(text: str) -> ast.Node:
    stmts = _parse(text)
    if len(stmts) != 1:
        raise _refuse(f"exactly one SQL statement is allowed, found {len(stmts)}",
                      hint="send one statement per call, or use pg_transaction_execute for several")
    node = stmts[0].stmt
    assert node is not None
    return node


def _read_problem(node: ast.Node) -> str | None:
    """Why `node` is not a plain read, or None if it is."""
    if isinstance(node, ast.VariableShowStmt):
        return None
    if isinstance(node, ast.ExplainStmt):
        analyze = any(isinstance(o, ast.DefElem) and o.defname == "analyze" and _truthy(o)
                      for o in node.options or ())
        inner = node.query
        assert inner is not None
        if analyze or not isinstance(inner, _DML):
            return _read_problem(inner)
        # EXPLAIN without ANALYZE plans a write without running it.
        name = denied_function(inner)
        return f"the function {name}() is not allowed here" if name else None
    if not isinstance(node, ast.SelectStmt):
        classify(node)  # raises with the specific reason for DO, COPY, SET, transaction control, ...
        return f"{_kind(node)} is not a read; pg_read_query takes SELECT, WITH, VALUES, TABLE, SHOW or EXPLAIN"
    return _shared_problem(node)


def _shared_problem(node: ast.Node) -> str | None:
    for n in walk(node):
        if isinstance(n, _DML):
            return f"a data-modifying {_kind(n)} is not allowed in a read"
        if isinstance(n, ast.SelectStmt):
            if n.intoClause is not None:
                return "SELECT INTO creates a table; it is not a read"
            if n.lockingClause:
                return "SELECT ... FOR UPDATE/SHARE takes row locks; it is not a read"
    name = denied_function(node)
    if name:
        return f"the function {name}() is not allowed here"
    return None


def _truthy(opt: ast.DefElem) -> bool:
    arg = opt.arg
    if arg is None:
        return True
    value = getattr(arg, "sval", None) or getattr(arg, "boolval", None)
    if isinstance(arg, ast.Boolean):
        return bool(arg.boolval)
    return str(value).lower() not in ("false", "off", "0")


def _kind(node: ast.Node) -> str:
    name = type(node).__name__.removesuffix("Stmt")
    return re.sub(r"(?<!^)(?=[A-Z])", " ", name).upper()


def check_read(text: str) -> None:
    """Refuse anything but one statement that only reads (the READ ONLY transaction still runs it)."""
    problem = _read_verdict(text)
    if problem:
        raise _refuse(problem, hint="use pg_write_query for statements that change data")


@lru_cache(maxsize=512)
def _read_verdict(text: str) -> str | None:
    # Cached: scripts send the same statements again and again, and parsing costs more than running SELECT 1.
    return _read_problem(_single(text))


@lru_cache(maxsize=512)
def read_scope(text: str) -> Scope:
    """The scope a read needs: admin when it names pgcode's own schema or a credentials catalog, write to plan a
    write (EXPLAIN without ANALYZE), else read."""
    try:
        node = _single(text)
    except ToolError:
        return Scope.READ  # check_read reports the problem itself
    if protected_relation(node):
        return Scope.ADMIN
    if isinstance(node, ast.ExplainStmt) and isinstance(node.query, _DML):
        return Scope.WRITE  # PostgreSQL checks a write's privileges when it plans it (READ ONLY still holds)
    return Scope.READ


@dataclass(frozen=True, slots=True)
class WriteStatement:
    """What pg_write_query learned about its statement."""

    kind: str
    scope: Scope
    autocommit: bool
    functions: frozenset[str] = frozenset()

    def scope_now(self) -> Scope:
        """The scope with the volatility gate applied: a write calling a volatile function needs admin."""
        if self.scope is Scope.WRITE and volatile_function(self.functions, VOLATILE_ALLOWED_IN_WRITES):
            return Scope.ADMIN
        return self.scope


@lru_cache(maxsize=512)
def analyze_write(text: str) -> WriteStatement:
    """Classify one statement for pg_write_query: DML needs write, anything else needs admin."""
    node = _single(text)
    return classify(node)


def classify(node: ast.Node) -> WriteStatement:
    for refused, why in _REFUSED.items():
        if isinstance(node, refused):
            raise _refuse(f"{_kind(node)} is refused: {why}")
    why_not = _refused_function(node)
    if why_not:
        raise _refuse(why_not)
    if isinstance(node, ast.CopyStmt):
        if node.is_program:
            raise _refuse("COPY ... PROGRAM runs a program on the database server and is refused")
        if node.filename:
            raise _refuse("COPY to or from a server file is refused: it reads or writes the server's files")
        raise _refuse("COPY needs a data stream, which this tool does not carry",
                      hint="use pg_batch_insert to load rows, or pg_read_query to export them")
    kind = _kind(node)
    if isinstance(node, ast.ExplainStmt):
        # EXPLAIN ANALYZE runs its statement: EXPLAIN ANALYZE CREATE TABLE AS is still DDL.
        inner = classify(node.query) if node.query is not None else None
        return WriteStatement(kind, inner.scope if inner else Scope.ADMIN, autocommit=False)
    denied = denied_function(node) or protected_relation(node)
    if isinstance(node, (ast.SelectStmt, ast.VariableShowStmt, *_DML)):
        into = any(isinstance(n, ast.SelectStmt) and n.intoClause is not None for n in walk(node))
        return WriteStatement(kind, Scope.ADMIN if denied or into else Scope.WRITE, autocommit=False,
                              functions=called_functions(node))
    return WriteStatement(kind, Scope.ADMIN, autocommit=_needs_autocommit(node))


def _needs_autocommit(node: ast.Node) -> bool:
    """Whether PostgreSQL refuses `node` inside a transaction block."""
    if isinstance(node, _AUTOCOMMIT) or getattr(node, "concurrent", False):
        return True
    if isinstance(node, ast.ReindexStmt):  # CONCURRENTLY is an option here, not a flag
        return node.kind in _REINDEX_MANY or any(
            isinstance(o, ast.DefElem) and o.defname == "concurrently" and _truthy(o) for o in node.params or ())
    if isinstance(node, ast.ClusterStmt):  # CLUSTER without a table reclusters them all
        return node.relation is None
    if isinstance(node, ast.AlterTableStmt):  # DETACH PARTITION ... CONCURRENTLY
        return any(isinstance(n, ast.PartitionCmd) and n.concurrent for n in walk(node.cmds))
    return False


def statements_scope(texts: list[str]) -> Scope:
    """The scope a list of statements needs: the highest any of them needs, volatility gate included."""
    return max((analyze_write(t).scope_now() for t in texts), key=lambda s: s.rank, default=Scope.WRITE)


@lru_cache(maxsize=1024)
def _fragment_text(fragment: str) -> tuple[str, frozenset[str]]:
    try:
        stmts = parse_sql(f"SELECT 1 WHERE {fragment}\n")
    except ParseError as exc:
        raise _refuse(f"the where condition does not parse: {exc.args[0]}") from None
    if len(stmts) != 1:
        raise _refuse("a where condition must be one boolean expression, not statements")
    node = stmts[0].stmt
    if not (isinstance(node, ast.SelectStmt) and node.whereClause is not None and node.fromClause is None
            and node.groupClause is None and node.havingClause is None and node.sortClause is None
            and node.limitCount is None and node.limitOffset is None and node.lockingClause is None
            and node.withClause is None and node.windowClause is None and node.larg is None
            and node.intoClause is None and len(node.targetList or ()) == 1):
        raise _refuse("a where condition must be a single boolean expression")
    if any(isinstance(n, ast.ParamRef) for n in walk(node.whereClause)):
        raise _refuse("a where condition cannot use $n parameters; write the value into the condition")
    problem = _shared_problem(node.whereClause)
    if problem:
        raise _refuse(problem)
    relation = protected_relation(node.whereClause)
    if relation:
        raise _refuse(f"a where condition cannot read {relation}: it is private to pgcode or holds credentials")
    # Re-emit from the tree: comments and any trailing text are gone, so nothing else reaches SQL.
    return str(RawStream()(node.whereClause)), called_functions(node.whereClause)


def where_fragment(fragment: str) -> sql.Composable:
    """A caller's `where` condition, checked and rebuilt from its parse tree, in parentheses."""
    text, functions = _fragment_text(fragment)
    volatile = volatile_function(functions, VOLATILE_ALLOWED)
    if volatile:
        raise _refuse(f"the function {volatile}() is not allowed in a where condition: it is not IMMUTABLE or "
                      "STABLE, so it could act beyond the rows it filters",
                      hint="filter with plain comparisons; an administrator can run such a statement with "
                           "pg_write_query")
    return sql.SQL("({})").format(sql.SQL(text))
