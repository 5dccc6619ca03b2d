"""schema group: schemas, sequences, views and materialized views; drops with dependents; functions, triggers
and constraints listed; everything checked against the catalog afterwards."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgcode.errors import ToolError
from pgcode.types import LOCAL_PRINCIPAL, Principal, Scope
from tests.fix_db import Call, assert_tool_error

pytestmark = pytest.mark.anyio

READER = Principal.with_scope("reader", Scope.READ)
WRITER = Principal.with_scope("writer", Scope.WRITE)
READ_TOOLS = ["pg_list_schemas", "pg_list_sequences", "pg_list_views", "pg_list_functions", "pg_list_triggers",
              "pg_list_constraints"]
ADMIN_TOOLS = ["pg_create_schema", "pg_drop_schema", "pg_create_sequence", "pg_drop_sequence", "pg_create_view",
               "pg_drop_view"]
OTHER = "t_schema_other"  # a second schema of this module's own
ROLE = "t_schema_owner"


def one(conn: psycopg.Connection[Any], query: Any, *params: Any) -> Any:
    row = conn.execute(query, params or None).fetchone()
    return row[0] if row else None


def relkind(conn: psycopg.Connection[Any], schema: str, name: str) -> str | None:
    return one(conn, "SELECT c.relkind::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                     "WHERE n.nspname = %s AND c.relname = %s", schema, name)


def schema_exists(conn: psycopg.Connection[Any], name: str) -> bool:
    return bool(one(conn, "SELECT count(*) FROM pg_namespace WHERE nspname = %s", name))


def run(conn: psycopg.Connection[Any], text: str, schema: str) -> None:
    conn.execute(sql.SQL(text).format(s=sql.Identifier(schema), o=sql.Identifier(OTHER)))


@pytest.fixture(autouse=True)
def _clean_other(conn: psycopg.Connection[Any]) -> Any:
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(OTHER)))
    yield
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(OTHER)))


# ---------------------------------------------------------------- schemas


async def test_list_schemas_counts_owner_size(call: Call, conn: psycopg.Connection[Any], schema: str) -> None:
    run(conn, "CREATE SCHEMA {o}; CREATE TABLE {o}.t (id serial PRIMARY KEY, v text); "
              "INSERT INTO {o}.t (v) SELECT repeat('x', 100) FROM generate_series(1, 500); "
              "CREATE VIEW {o}.v AS SELECT * FROM {o}.t; CREATE MATERIALIZED VIEW {o}.m AS SELECT 1 AS x; "
              "CREATE FUNCTION {o}.f() RETURNS int LANGUAGE sql AS 'SELECT 1'; "
              "CREATE PROCEDURE {o}.p() LANGUAGE sql AS 'SELECT 1'; CREATE TYPE {o}.e AS ENUM ('a'); "
              "COMMENT ON SCHEMA {o} IS 'for tests'", schema)
    out = await call("pg_list_schemas", {"pattern": "t\\_schema%"}, principal=READER)
    by_name = {s["name"]: s for s in out["schemas"]}
    other = by_name[OTHER]
    assert other["owner"] == one(conn, "SELECT current_user")
    assert (other["tables"], other["views"], other["materialized_views"], other["sequences"]) == (1, 1, 1, 1)
    assert (other["functions"], other["procedures"], other["types"], other["indexes"]) == (1, 1, 1, 1)
    assert other["size_bytes"] >= one(conn, "SELECT pg_total_relation_size('t_schema_other.t')") > 0
    assert other["comment"] == "for tests" and other["is_system"] is False and schema in by_name
    assert out["truncated"] is False and out["count"] == len(out["schemas"])

    names = {s["name"] for s in (await call("pg_list_schemas", {}))["schemas"]}
    assert not names & {"pg_catalog", "information_schema", "pg_toast", "pgcode"}
    every = {s["name"]: s for s in (await call("pg_list_schemas", {"includeSystem": True}))["schemas"]}
    assert {"pg_catalog", "information_schema", "pg_toast"} <= set(every) and every["pg_catalog"]["is_system"]
    cut = await call("pg_list_schemas", {"limit": 1, "includeSystem": True})
    assert cut["count"] == 1 and cut["truncated"] is True


async def test_create_schema(call: Call, conn: psycopg.Connection[Any]) -> None:
    out = await call("pg_create_schema", {"name": OTHER})
    assert out == {"schema": OTHER, "created": True, "owner": one(conn, "SELECT current_user")}
    assert schema_exists(conn, OTHER)
    with pytest.raises(ToolError) as exc:
        await call("pg_create_schema", {"name": OTHER})
    assert_tool_error(exc, "ALREADY_EXISTS", OTHER)
    assert (await call("pg_create_schema", {"name": OTHER, "ifNotExists": True}))["created"] is False


async def test_create_schema_with_owner(call: Call, conn: psycopg.Connection[Any]) -> None:
    conn.execute(sql.SQL("DROP ROLE IF EXISTS {0}; CREATE ROLE {0} NOLOGIN").format(sql.Identifier(ROLE)))
    try:
        out = await call("pg_create_schema", {"name": OTHER, "authorization": ROLE})
        assert out["owner"] == ROLE
        assert one(conn, "SELECT pg_get_userbyid(nspowner) FROM pg_namespace WHERE nspname = %s", OTHER) == ROLE
    finally:
        conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(OTHER)))
        conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(ROLE)))


@pytest.mark.parametrize(("args", "code", "fragment"), [
    ({"name": ""}, "INVALID_INPUT", "name"),
    ({"name": "x" * 64}, "INVALID_INPUT", "name"),
    ({"name": "é" * 40}, "INVALID_INPUT", "63 bytes"),
    ({"name": "a\x00b"}, "INVALID_INPUT", "name"),
    ({"name": "pg_mine"}, "INVALID_INPUT", "reserved"),
    ({"name": OTHER, "authorization": "t_schema_no_such_role"}, "NOT_FOUND", "t_schema_no_such_role"),
    ({"name": OTHER, "cascade": True}, "INVALID_INPUT", "cascade"),
])
async def test_create_schema_bad_input(call: Call, conn: psycopg.Connection[Any], args: dict[str, Any], code: str,
                                       fragment: str) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_create_schema", args)
    assert_tool_error(exc, code, fragment)
    assert not schema_exists(conn, OTHER) and not schema_exists(conn, "pg_mine")


async def test_drop_schema_with_dependents_is_refused_then_cascades(call: Call, conn: psycopg.Connection[Any],
                                                                    schema: str) -> None:
    run(conn, "CREATE SCHEMA {o}; CREATE TABLE {o}.t (id int); CREATE VIEW {s}.outside AS SELECT * FROM {o}.t",
        schema)
    with pytest.raises(ToolError) as exc:
        await call("pg_drop_schema", {"name": OTHER})
    err = assert_tool_error(exc, "CONFLICT", OTHER, "nothing was dropped")
    assert err.details is not None
    found = {(d["kind"], d["schema"], d["name"]) for d in err.details["dependents"]}
    assert found == {("table", OTHER, "t"), ("view", schema, "outside")}
    assert err.details["dependent_count"] == 2 and "cascade" in (err.hint or "")
    assert schema_exists(conn, OTHER) and relkind(conn, OTHER, "t") == "r" and relkind(conn, schema, "outside") == "v"

    out = await call("pg_drop_schema", {"name": OTHER, "cascade": True})
    assert out["dropped"] is True and out["cascade"] is True
    assert {(d["kind"], d["name"]) for d in out["dropped_dependents"]} == {("table", "t"), ("view", "outside")}
    assert not schema_exists(conn, OTHER) and relkind(conn, schema, "outside") is None


async def test_drop_schema_empty_missing_and_system(call: Call, conn: psycopg.Connection[Any]) -> None:
    run(conn, "CREATE SCHEMA {o}", OTHER)
    out = await call("pg_drop_schema", {"name": OTHER})
    assert out["dropped"] is True and out["dropped_dependents"] == [] and not schema_exists(conn, OTHER)
    assert (await call("pg_drop_schema", {"name": OTHER, "ifExists": True}))["dropped"] is False
    with pytest.raises(ToolError) as exc:
        await call("pg_drop_schema", {"name": OTHER})
    assert_tool_error(exc, "NOT_FOUND", OTHER)
    for name in ("pg_catalog", "information_schema", "pgcode", "pg_toast"):
        with pytest.raises(ToolError) as exc:
            await call("pg_drop_schema", {"name": name, "cascade": True})
        assert_tool_error(exc, "INVALID_INPUT", name)
    assert schema_exists(conn, "information_schema")


# ---------------------------------------------------------------- sequences


async def test_create_sequence_with_every_option(call: Call, conn: psycopg.Connection[Any], schema: str) -> None:
    run(conn, "CREATE TABLE {s}.owner_t (id bigint)", schema)
    out = await call("pg_create_sequence", {
        "name": f"{schema}.full_seq", "dataType": "integer", "start": 10, "increment": 5, "minValue": 10,
        "maxValue": 1000, "cache": 3, "cycle": True, "ownedBy": "owner_t.id"})
    expected = {"schema": schema, "name": "full_seq", "data_type": "integer", "start_value": 10, "increment": 5,
                "min_value": 10, "max_value": 1000, "cache_size": 3, "cycle": True, "last_value": None,
                "created": True, "owned_by": {"schema": schema, "table": "owner_t", "column": "id"},
                "used_fraction": 0.0, "remaining_values": 199}
    assert {k: out[k] for k in expected} == expected
    row = conn.execute("SELECT data_type::regtype::text, start_value, increment_by, min_value, max_value, "
                       "cache_size, cycle FROM pg_sequences WHERE schemaname = %s AND sequencename = 'full_seq'",
                       (schema,)).fetchone()
    assert row == ("integer", 10, 5, 10, 1000, 3, True)
    assert one(conn, "SELECT count(*) FROM pg_depend WHERE objid = %s::regclass AND refobjid = %s::regclass "
                     "AND deptype = 'a' AND refobjsubid = 1", f"{schema}.full_seq", f"{schema}.owner_t") == 1
    # OWNED BY: dropping the column drops the sequence
    run(conn, "ALTER TABLE {s}.owner_t DROP COLUMN id", schema)
    assert relkind(conn, schema, "full_seq") is None

    plain = await call("pg_create_sequence", {"name": "plain_seq", "schema": schema})
    assert (plain["data_type"], plain["increment"], plain["start_value"], plain["cycle"]) == ("bigint", 1, 1, False)
    again = await call("pg_create_sequence", {"name": "plain_seq", "schema": schema, "ifNotExists": True})
    assert again["created"] is False


@pytest.mark.parametrize(("args", "code", "fragment"), [
    ({"increment": 0}, "INVALID_INPUT", "increment"),
    ({"minValue": 10, "maxValue": 10}, "INVALID_INPUT", "minValue"),
    ({"start": 0, "minValue": 1}, "INVALID_INPUT", "start"),
    ({"cache": 0}, "INVALID_INPUT", "cache"),
    ({"maxValue": 2**63}, "INVALID_INPUT", "maxValue"),
    ({"dataType": "smallint", "maxValue": 100000}, "INVALID_INPUT", "out of range"),
    ({"ownedBy": "no_table.id"}, "NOT_FOUND", "no_table"),
    ({"ownedBy": "just_a_name"}, "INVALID_INPUT", "table.column"),
    ({"ownedBy": "elsewhere.t.id"}, "INVALID_INPUT", "table.column"),
    ({"schema": "t_schema_no_such"}, "NOT_FOUND", "t_schema_no_such"),
    ({"name": "s" * 64}, "INVALID_INPUT", "name"),
    ({"startWith": 3}, "INVALID_INPUT", "startWith"),
])
async def test_create_sequence_bad_input(call: Call, conn: psycopg.Connection[Any], schema: str,
                                         args: dict[str, Any], code: str, fragment: str) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_create_sequence", {"name": "bad_seq", "schema": schema, **args})
    assert_tool_error(exc, code, fragment)
    assert relkind(conn, schema, "bad_seq") is None


async def test_create_sequence_refuses_an_existing_name(call: Call, conn: psycopg.Connection[Any],
                                                        schema: str) -> None:
    run(conn, "CREATE TABLE {s}.taken (id int); CREATE SEQUENCE {s}.taken_seq", schema)
    with pytest.raises(ToolError) as exc:
        await call("pg_create_sequence", {"name": "taken", "schema": schema, "ifNotExists": True})
    assert_tool_error(exc, "ALREADY_EXISTS", "table")
    with pytest.raises(ToolError) as exc:
        await call("pg_create_sequence", {"name": "taken_seq", "schema": schema})
    assert_tool_error(exc, "ALREADY_EXISTS", "taken_seq")


async def test_list_sequences_range_usage(call: Call, conn: psycopg.Connection[Any], schema: str) -> None:
    run(conn, "CREATE SEQUENCE {s}.small MINVALUE 1 MAXVALUE 100; CREATE SEQUENCE {s}.fresh; "
              "CREATE SEQUENCE {s}.down INCREMENT -2 MINVALUE -10 MAXVALUE -1 START -1; "
              "CREATE TABLE {s}.serial_t (id serial, ident int GENERATED ALWAYS AS IDENTITY)", schema)
    for _ in range(25):
        one(conn, sql.SQL("SELECT nextval({})").format(sql.Literal(f"{schema}.small")))
    for _ in range(3):
        one(conn, sql.SQL("SELECT nextval({})").format(sql.Literal(f"{schema}.down")))
    out = await call("pg_list_sequences", {"schema": schema}, principal=READER)
    seqs = {s["name"]: s for s in out["sequences"]}
    small = seqs["small"]
    assert (small["last_value"], small["min_value"], small["max_value"]) == (25, 1, 100)
    assert (small["used_fraction"], small["used_percent"], small["remaining_values"]) == (0.25, 25.0, 75)
    fresh = seqs["fresh"]
    assert fresh["last_value"] is None and fresh["used_fraction"] == 0.0 and fresh["remaining_values"] == str(2**63 - 1)
    down = seqs["down"]  # -1, -3, -5 handed out of -1 .. -10: 6 of 10 values passed, -7 and -9 left
    assert (down["last_value"], down["used_fraction"], down["remaining_values"]) == (-5, 0.5, 2)
    assert seqs["serial_t_id_seq"]["owned_by"] == {"schema": schema, "table": "serial_t", "column": "id"}
    assert seqs["serial_t_id_seq"]["is_identity"] is False and seqs["serial_t_id_seq"]["data_type"] == "integer"
    assert seqs["serial_t_ident_seq"]["is_identity"] is True and seqs["small"]["owned_by"] is None
    cut = await call("pg_list_sequences", {"schema": schema, "limit": 2})
    assert cut["count"] == 2 and cut["truncated"] is True
    assert (await call("pg_list_sequences", {"pattern": "no\\_such\\_seq%"}))["sequences"] == []


async def test_drop_sequence_in_use_is_refused_then_cascades(call: Call, conn: psycopg.Connection[Any],
                                                             schema: str) -> None:
    run(conn, "CREATE SEQUENCE {s}.shared_seq; CREATE TABLE {s}.uses_seq (id bigint DEFAULT "
              "nextval('{s_lit}.shared_seq'), v int)".replace("{s_lit}", schema), schema)
    with pytest.raises(ToolError) as exc:
        await call("pg_drop_sequence", {"name": "shared_seq", "schema": schema})
    err = assert_tool_error(exc, "CONFLICT", "shared_seq", "nothing was dropped")
    assert err.details is not None
    assert [(d["kind"], d["identity"]) for d in err.details["dependents"]] == [
        ("default value", f"for {schema}.uses_seq.id")]
    assert relkind(conn, schema, "shared_seq") == "S"

    out = await call("pg_drop_sequence", {"name": f"{schema}.shared_seq", "cascade": True})
    assert out["dropped"] is True and out["dropped_dependents"][0]["kind"] == "default value"
    assert relkind(conn, schema, "shared_seq") is None and relkind(conn, schema, "uses_seq") == "r"
    assert one(conn, "SELECT column_default FROM information_schema.columns WHERE table_schema = %s "
                     "AND table_name = 'uses_seq' AND column_name = 'id'", schema) is None


async def test_drop_sequence_unused_identity_missing_and_wrong_kind(call: Call, conn: psycopg.Connection[Any],
                                                                    schema: str) -> None:
    run(conn, "CREATE SEQUENCE {s}.lonely; CREATE TABLE {s}.ident_t (id int GENERATED ALWAYS AS IDENTITY)", schema)
    out = await call("pg_drop_sequence", {"name": "lonely", "schema": schema})
    assert out["dropped"] is True and out["dependent_count"] == 0 and relkind(conn, schema, "lonely") is None
    assert (await call("pg_drop_sequence", {"name": "lonely", "schema": schema, "ifExists": True}))["dropped"] is False
    with pytest.raises(ToolError) as exc:
        await call("pg_drop_sequence", {"name": "lonely", "schema": schema})
    assert_tool_error(exc, "NOT_FOUND", "lonely")
    with pytest.raises(ToolError) as exc:
        await call("pg_drop_sequence", {"name": "ident_t_id_seq", "schema": schema, "cascade": True})
    assert_tool_error(exc, "CONFLICT", "identity")
    with pytest.raises(ToolError) as exc:
        await call("pg_drop_sequence", {"name": "ident_t", "schema": schema})
    assert_tool_error(exc, "INVALID_INPUT", "not a sequence")
    assert relkind(conn, schema, "ident_t_id_seq") == "S" and relkind(conn, schema, "ident_t") == "r"


# ---------------------------------------------------------------- views


@pytest.fixture
def items(conn: psycopg.Connection[Any], schema: str) -> str:
    run(conn, "DROP TABLE IF EXISTS {s}.items CASCADE; CREATE TABLE {s}.items (id int PRIMARY KEY, name text, "
              "price numeric); INSERT INTO {s}.items SELECT g, 'item ' || g, g * 1.5 FROM generate_series(1, 10) g",
        schema)
    return f"{schema}.items"


async def test_create_view_and_replace(call: Call, conn: psycopg.Connection[Any], schema: str, items: str) -> None:
    query = f"-- cheap ones\nSELECT id, name FROM {items} WHERE name LIKE 'item 1%' AND name <> '{{x}}'"
    out = await call("pg_create_view", {"name": "cheap", "schema": schema, "query": query})
    assert out["created"] is True and out["replaced"] is False and out["type"] == "view"
    assert out["columns"] == [{"name": "id", "type": "integer"}, {"name": "name", "type": "text"}]
    assert relkind(conn, schema, "cheap") == "v"
    assert [r[0] for r in conn.execute(f"SELECT id FROM {schema}.cheap ORDER BY id")] == [1, 10]

    with pytest.raises(ToolError) as exc:
        await call("pg_create_view", {"name": "cheap", "schema": schema, "query": "SELECT 1 AS id"})
    assert_tool_error(exc, "ALREADY_EXISTS", "cheap")
    out = await call("pg_create_view", {"name": f"{schema}.cheap", "orReplace": True,
                                        "query": f"SELECT id, name, price FROM {items} WHERE price < 3"})
    assert out["replaced"] is True and [c["name"] for c in out["columns"]] == ["id", "name", "price"]
    assert one(conn, f"SELECT count(*) FROM {schema}.cheap") == 1

    named = await call("pg_create_view", {"name": "named", "schema": schema, "columns": ["key", "label"],
                                          "query": f"WITH x AS (SELECT id, name FROM {items}) SELECT * FROM x"})
    assert [c["name"] for c in named["columns"]] == ["key", "label"]
    checked = await call("pg_create_view", {"name": "checked", "schema": schema, "checkOption": "local",
                                            "query": f"SELECT id, name FROM {items} WHERE id < 100"})
    assert "check_option=local" in checked["options"]
    with pytest.raises(psycopg.errors.WithCheckOptionViolation):
        conn.execute(f"INSERT INTO {schema}.checked VALUES (100, 'too big')")


@pytest.mark.parametrize(("query", "fragment"), [
    ("INSERT INTO t_schema.items VALUES (99)", "not INSERT"),
    ("SELECT 1; SELECT 2", "one statement"),
    ("", "query"),
    ("-- only a comment", "one statement"),
    ("SELEC 1", "does not parse"),
    ("SELECT pg_read_file('/etc/passwd')", "pg_read_file"),
    ("SELECT nextval('s')", "nextval"),
    ("WITH d AS (DELETE FROM t_schema.items RETURNING *) SELECT * FROM d", "DELETE"),
    ("SELECT * FROM t_schema.items FOR UPDATE", "FOR UPDATE"),
    ("SELECT * INTO t_schema.copy FROM t_schema.items", "INTO"),
    ("SELECT * FROM t_schema.items WHERE id = $1", "$n"),
    ("SHOW search_path", "not VARIABLE SHOW"),
    ("EXPLAIN SELECT 1", "not EXPLAIN"),
])
async def test_create_view_refuses_anything_but_one_read_query(call: Call, conn: psycopg.Connection[Any],
                                                               schema: str, items: str, query: str,
                                                               fragment: str) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_create_view", {"name": "bad_view", "schema": schema, "query": query})
    assert_tool_error(exc, "INVALID_INPUT", fragment)
    assert relkind(conn, schema, "bad_view") is None and one(conn, f"SELECT count(*) FROM {items}") == 10


@pytest.mark.parametrize(("args", "code", "fragment"), [
    ({"query": "SELECT 1", "materialized": True, "orReplace": True}, "INVALID_INPUT", "orReplace"),
    ({"query": "SELECT 1", "withData": False}, "INVALID_INPUT", "withData"),
    ({"query": "SELECT 1", "concurrently": True}, "INVALID_INPUT", "refresh"),
    ({}, "INVALID_INPUT", "query is required"),
    ({"refresh": True, "query": "SELECT 1"}, "INVALID_INPUT", "query"),
    ({"refresh": True}, "NOT_FOUND", "bad_view"),
    ({"query": "SELECT 1", "schema": "t_schema_no_such"}, "NOT_FOUND", "t_schema_no_such"),
    ({"query": "SELECT 1", "name": "v" * 64}, "INVALID_INPUT", "name"),
    ({"query": "SELECT 1 AS a", "columns": ["a", "b\x00"]}, "INVALID_INPUT", "columns"),
    ({"query": "SELECT * FROM t_schema.no_such_table"}, "NOT_FOUND", "no_such_table"),
])
async def test_create_view_bad_arguments(call: Call, conn: psycopg.Connection[Any], schema: str,
                                         args: dict[str, Any], code: str, fragment: str) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_create_view", {"name": "bad_view", "schema": schema, **args})
    assert_tool_error(exc, code, fragment)
    assert relkind(conn, schema, "bad_view") is None


async def test_materialized_view_without_data_then_refreshed(call: Call, conn: psycopg.Connection[Any],
                                                             schema: str, items: str) -> None:
    query = f"SELECT id, price FROM {items}"
    out = await call("pg_create_view", {"name": "mv_plain", "schema": schema, "query": query, "materialized": True,
                                        "withData": False})
    assert out["type"] == "materialized_view" and out["is_populated"] is False
    assert one(conn, "SELECT relispopulated FROM pg_class WHERE oid = %s::regclass", f"{schema}.mv_plain") is False
    with pytest.raises(ToolError) as exc:
        await call("pg_create_view", {"name": "mv_plain", "schema": schema, "refresh": True, "concurrently": True})
    assert_tool_error(exc, "CONFLICT", "never been populated")

    out = await call("pg_create_view", {"name": "mv_plain", "schema": schema, "refresh": True})
    assert out["refreshed"] is True and out["is_populated"] is True
    assert one(conn, f"SELECT count(*) FROM {schema}.mv_plain") == 10

    # no unique index: a concurrent refresh is refused, naming the reason, and nothing changes
    run(conn, "INSERT INTO {s}.items VALUES (11, 'new', 1)", schema)
    with pytest.raises(ToolError) as exc:
        await call("pg_create_view", {"name": "mv_plain", "schema": schema, "refresh": True, "concurrently": True})
    err = assert_tool_error(exc, "CONFLICT", "unique index")
    assert "pg_create_index" in (err.hint or "")
    assert one(conn, f"SELECT count(*) FROM {schema}.mv_plain") == 10

    # a partial unique index does not count; a plain one does
    run(conn, "CREATE UNIQUE INDEX ON {s}.mv_plain (id) WHERE id > 5", schema)
    listed = (await call("pg_list_views", {"schema": schema, "pattern": "mv\\_plain"}))["views"][0]
    assert listed["can_refresh_concurrently"] is False
    run(conn, "CREATE UNIQUE INDEX mv_plain_id ON {s}.mv_plain (id)", schema)
    out = await call("pg_create_view", {"name": "mv_plain", "schema": schema, "refresh": True, "concurrently": True})
    assert out["concurrently"] is True and out["can_refresh_concurrently"] is True
    assert one(conn, f"SELECT count(*) FROM {schema}.mv_plain") == 11

    emptied = await call("pg_create_view", {"name": "mv_plain", "schema": schema, "refresh": True,
                                            "withData": False})
    assert emptied["is_populated"] is False
    with pytest.raises(ToolError) as exc:
        await call("pg_create_view", {"name": "items", "schema": schema, "refresh": True})
    assert_tool_error(exc, "INVALID_INPUT", "table")


async def test_materialized_view_with_data(call: Call, conn: psycopg.Connection[Any], schema: str,
                                           items: str) -> None:
    out = await call("pg_create_view", {"name": "mv_data", "schema": schema, "materialized": True,
                                        "query": f"SELECT name, price * 2 AS double FROM {items} WHERE id <= 4"})
    assert out["is_populated"] is True and out["created"] is True and out["size_bytes"] > 0
    assert out["columns"] == [{"name": "name", "type": "text"}, {"name": "double", "type": "numeric"}]
    assert one(conn, f"SELECT sum(double) FROM {schema}.mv_data") == 30
    with pytest.raises(ToolError) as exc:
        await call("pg_create_view", {"name": "mv_data", "schema": schema, "query": "SELECT 1", "orReplace": True})
    assert_tool_error(exc, "ALREADY_EXISTS", "materialized view")


async def test_list_views(call: Call, conn: psycopg.Connection[Any], schema: str, items: str) -> None:
    run(conn, "CREATE VIEW {s}.lv_plain AS SELECT id, name FROM {s}.items; "
              "CREATE MATERIALIZED VIEW {s}.lv_mat AS SELECT id FROM {s}.items WITH NO DATA", schema)
    out = await call("pg_list_views", {"schema": schema, "pattern": "lv\\_%"}, principal=READER)
    views = {v["name"]: v for v in out["views"]}
    assert views["lv_plain"]["type"] == "view" and views["lv_plain"]["is_populated"] is None
    assert "items" in views["lv_plain"]["definition"] and views["lv_plain"]["definition_truncated"] is False
    assert views["lv_mat"]["type"] == "materialized_view" and views["lv_mat"]["is_populated"] is False
    assert views["lv_mat"]["can_refresh_concurrently"] is False and views["lv_mat"]["indexes"] == []
    short = await call("pg_list_views", {"schema": schema, "pattern": "lv\\_%", "includeMaterialized": False,
                                         "definitionMaxLength": 5})
    assert [v["name"] for v in short["views"]] == ["lv_plain"]
    assert len(short["views"][0]["definition"]) == 5 and short["views"][0]["definition_truncated"] is True
    bare = await call("pg_list_views", {"schema": schema, "pattern": "lv\\_%", "includeDefinition": False,
                                        "limit": 1})
    assert "definition" not in bare["views"][0] and bare["truncated"] is True


async def test_drop_view_with_dependents_is_refused_then_cascades(call: Call, conn: psycopg.Connection[Any],
                                                                  schema: str, items: str) -> None:
    run(conn, "CREATE SCHEMA {o}; CREATE VIEW {s}.base_v AS SELECT id, name FROM {s}.items; "
              "CREATE VIEW {o}.mid_v AS SELECT id FROM {s}.base_v; "
              "CREATE MATERIALIZED VIEW {s}.top_mv AS SELECT count(*) AS n FROM {o}.mid_v", schema)
    with pytest.raises(ToolError) as exc:
        await call("pg_drop_view", {"name": "base_v", "schema": schema})
    err = assert_tool_error(exc, "CONFLICT", "base_v", "2 dependent objects")
    assert err.details is not None
    assert [(d["kind"], d["schema"], d["name"], d["depth"]) for d in err.details["dependents"]] == [
        ("view", OTHER, "mid_v", 1), ("materialized view", schema, "top_mv", 2)]
    assert relkind(conn, schema, "base_v") == "v" and relkind(conn, OTHER, "mid_v") == "v"

    with pytest.raises(ToolError) as exc:
        await call("pg_drop_view", {"name": "base_v", "schema": schema, "materialized": True})
    assert_tool_error(exc, "INVALID_INPUT", "view")
    out = await call("pg_drop_view", {"name": f"{schema}.base_v", "cascade": True})
    assert out["dropped"] is True and out["type"] == "view" and out["dependent_count"] == 2
    assert [d["name"] for d in out["dropped_dependents"]] == ["mid_v", "top_mv"]
    for s, name in ((schema, "base_v"), (OTHER, "mid_v"), (schema, "top_mv")):
        assert relkind(conn, s, name) is None
    assert relkind(conn, schema, "items") == "r"


async def test_drop_view_materialized_missing_and_wrong_kind(call: Call, conn: psycopg.Connection[Any],
                                                             schema: str, items: str) -> None:
    run(conn, "CREATE MATERIALIZED VIEW {s}.gone_mv AS SELECT 1 AS x; CREATE UNIQUE INDEX ON {s}.gone_mv (x)", schema)
    out = await call("pg_drop_view", {"name": "gone_mv", "schema": schema, "materialized": True})
    assert out["dropped"] is True and out["type"] == "materialized_view" and relkind(conn, schema, "gone_mv") is None
    assert (await call("pg_drop_view", {"name": "gone_mv", "schema": schema, "ifExists": True}))["dropped"] is False
    with pytest.raises(ToolError) as exc:
        await call("pg_drop_view", {"name": "gone_mv", "schema": schema})
    assert_tool_error(exc, "NOT_FOUND", "gone_mv")
    with pytest.raises(ToolError) as exc:
        await call("pg_drop_view", {"name": "items", "schema": schema, "cascade": True})
    assert_tool_error(exc, "INVALID_INPUT", "is a table")
    assert relkind(conn, schema, "items") == "r"


# ---------------------------------------------------------------- functions, triggers, constraints


async def test_list_functions_security_definer_and_search_path(call: Call, conn: psycopg.Connection[Any],
                                                               schema: str) -> None:
    run(conn, "CREATE FUNCTION {s}.pinned(a integer, b text DEFAULT 'x') RETURNS text LANGUAGE plpgsql STABLE "
              "SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS 'BEGIN RETURN b || a; END'; "
              "CREATE FUNCTION {s}.open_def() RETURNS SETOF int LANGUAGE sql SECURITY DEFINER AS 'SELECT 1'; "
              "CREATE FUNCTION {s}.plain(x numeric) RETURNS numeric LANGUAGE sql IMMUTABLE AS 'SELECT x'; "
              "CREATE PROCEDURE {s}.proc() LANGUAGE sql AS 'SELECT 1'", schema)
    out = await call("pg_list_functions", {"schema": schema}, principal=READER)
    funcs = {f["name"]: f for f in out["functions"]}
    pinned = funcs["pinned"]
    assert pinned["signature"] == f"{schema}.pinned(a integer, b text)"
    assert pinned["identity_arguments"] == "a integer, b text"
    assert pinned["arguments"] == "a integer, b text DEFAULT 'x'::text"
    assert (pinned["returns"], pinned["language"], pinned["volatility"]) == ("text", "plpgsql", "stable")
    assert pinned["security_definer"] is True and pinned["search_path"] == "pg_catalog, pg_temp"
    assert pinned["config"] == ["search_path=pg_catalog, pg_temp"] and "definition" not in pinned
    assert funcs["open_def"]["security_definer"] is True and funcs["open_def"]["search_path"] is None
    assert funcs["open_def"]["returns"] == "SETOF integer" and funcs["open_def"]["returns_set"] is True
    assert funcs["plain"]["security_definer"] is False and funcs["plain"]["volatility"] == "immutable"
    assert funcs["proc"]["kind"] == "procedure"

    definers = await call("pg_list_functions", {"schema": schema, "securityDefiner": True,
                                                "includeDefinition": True})
    assert {f["name"] for f in definers["functions"]} == {"pinned", "open_def"}
    assert all("SECURITY DEFINER" in f["definition"] for f in definers["functions"])
    only = await call("pg_list_functions", {"schema": schema, "language": "sql", "kinds": ["function"],
                                            "pattern": "p%"})
    assert [f["name"] for f in only["functions"]] == ["plain"]
    cut = await call("pg_list_functions", {"schema": schema, "limit": 1})
    assert cut["count"] == 1 and cut["truncated"] is True
    system = await call("pg_list_functions", {"pattern": "now", "includeSystem": True})
    assert any(f["schema"] == "pg_catalog" for f in system["functions"])
    assert (await call("pg_list_functions", {"pattern": "now"}))["functions"] == []


async def test_list_triggers(call: Call, conn: psycopg.Connection[Any], schema: str) -> None:
    run(conn, "CREATE TABLE {s}.trig_t (id int PRIMARY KEY, v text, w text); "
              "CREATE TABLE {s}.trig_child (id int REFERENCES {s}.trig_t); "
              "CREATE FUNCTION {s}.touch() RETURNS trigger LANGUAGE plpgsql AS 'BEGIN RETURN NEW; END'; "
              "CREATE TRIGGER row_trig BEFORE INSERT OR UPDATE OF w, v ON {s}.trig_t FOR EACH ROW "
              "EXECUTE FUNCTION {s}.touch(); "
              "CREATE TRIGGER stmt_trig AFTER TRUNCATE OR DELETE ON {s}.trig_t EXECUTE FUNCTION {s}.touch(); "
              "ALTER TABLE {s}.trig_t DISABLE TRIGGER stmt_trig", schema)
    out = await call("pg_list_triggers", {"table": f"{schema}.trig_t"}, principal=READER)
    trigs = {t["name"]: t for t in out["triggers"]}
    assert set(trigs) == {"row_trig", "stmt_trig"}
    row = trigs["row_trig"]
    assert (row["schema"], row["table"], row["timing"], row["level"]) == (schema, "trig_t", "BEFORE", "ROW")
    assert row["events"] == ["INSERT", "UPDATE"] and row["update_columns"] == ["w", "v"]
    assert row["enabled"] is True and row["enabled_mode"] == "origin"
    assert row["function"] == f"{schema}.touch" and "EXECUTE FUNCTION" in row["definition"]
    stmt = trigs["stmt_trig"]
    assert (stmt["timing"], stmt["level"], stmt["events"]) == ("AFTER", "STATEMENT", ["DELETE", "TRUNCATE"])
    assert stmt["enabled"] is False and stmt["enabled_mode"] == "disabled" and stmt["update_columns"] is None
    internal = await call("pg_list_triggers", {"schema": schema, "table": "trig_t", "includeInternal": True})
    assert len(internal["triggers"]) > 2 and any(t["is_internal"] for t in internal["triggers"])


async def test_list_constraints(call: Call, conn: psycopg.Connection[Any], schema: str) -> None:
    run(conn, "CREATE TABLE {s}.con_parent (a int, b int, code text UNIQUE, PRIMARY KEY (a, b)); "
              "CREATE TABLE {s}.con_child (id int PRIMARY KEY, pa int, pb int, qty int NOT NULL "
              "CONSTRAINT qty_positive CHECK (qty > 0), CONSTRAINT to_parent FOREIGN KEY (pb, pa) "
              "REFERENCES {s}.con_parent (b, a) ON DELETE CASCADE ON UPDATE SET NULL DEFERRABLE)", schema)
    out = await call("pg_list_constraints", {"schema": schema, "table": "con_child"}, principal=READER)
    cons = {c["name"]: c for c in out["constraints"]}
    assert {c["type"] for c in cons.values()} == {"primary_key", "check", "foreign_key"}
    fk = cons["to_parent"]
    assert fk["columns"] == ["pb", "pa"] and fk["referenced_columns"] == ["b", "a"]
    assert (fk["referenced_schema"], fk["referenced_table"]) == (schema, "con_parent")
    assert (fk["on_delete"], fk["on_update"], fk["deferrable"], fk["validated"]) == ("CASCADE", "SET NULL", True,
                                                                                      True)
    assert cons["qty_positive"]["definition"] == "CHECK (qty > 0)" and cons["qty_positive"]["on_delete"] is None
    assert cons["con_child_pkey"]["index"] == "con_child_pkey"
    parent = await call("pg_list_constraints", {"table": f"{schema}.con_parent", "types": ["unique"]})
    assert [(c["name"], c["columns"]) for c in parent["constraints"]] == [("con_parent_code_key", ["code"])]
    with pytest.raises(ToolError) as exc:
        await call("pg_list_constraints", {"types": ["nonsense"]})
    assert_tool_error(exc, "INVALID_INPUT", "types")


# ---------------------------------------------------------------- scopes and code mode


@pytest.mark.parametrize("name", ADMIN_TOOLS)
async def test_admin_tools_refuse_a_write_token(call: Call, name: str) -> None:
    with pytest.raises(ToolError) as exc:
        await call(name, {"name": OTHER}, principal=WRITER)
    assert_tool_error(exc, "FORBIDDEN")


@pytest.mark.parametrize("name", READ_TOOLS)
async def test_read_tools_take_a_read_token(call: Call, name: str) -> None:
    out = await call(name, {"limit": 1}, principal=READER)
    assert set(out) >= {"count", "truncated"}


async def test_code_mode_create_schema_and_view(call: Call, conn: psycopg.Connection[Any], schema: str,
                                                items: str) -> None:
    code = f"""
        const s = await pg.schema.createSchema({{name: "{OTHER}"}});
        const v = await pg.schema.createView({{schema: "{OTHER}", name: "priced",
                                               query: "SELECT id, price FROM {items} WHERE price > 10"}});
        return {{created: s.created, columns: v.columns.map(c => c.name)}};
    """
    out = await call("pg_execute_code", {"code": code, "readonly": False}, principal=LOCAL_PRINCIPAL)
    assert out["success"] is True, out.get("error")
    assert out["result"] == {"created": True, "columns": ["id", "price"]}
    assert schema_exists(conn, OTHER) and one(conn, f"SELECT count(*) FROM {OTHER}.priced") == 4
