"""core group: every tool against the real server, its happy path, its refusals and its scope rule."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgcode.errors import ToolError
from pgcode.types import Principal, Scope
from tests.fix_db import Call, assert_tool_error

pytestmark = pytest.mark.anyio

READER = Principal.with_scope("reader", Scope.READ)
WRITER = Principal.with_scope("writer", Scope.WRITE)
NOBODY = Principal("nobody", frozenset())

INJECTION = 'x"; DROP TABLE victim; --'
EVIL_WHERES = [
    "1=1; DROP TABLE victim",
    "pg_read_file('/etc/passwd') IS NOT NULL",
    "id IN (WITH d AS (DELETE FROM items RETURNING id) SELECT id FROM d)",
]


# ---------------------------------------------------------------- helpers


def q(conn: psycopg.Connection[Any], query: Any, *params: Any) -> list[tuple[Any, ...]]:
    return conn.execute(query, params or None).fetchall()


def one(conn: psycopg.Connection[Any], query: Any, *params: Any) -> Any:
    row = conn.execute(query, params or None).fetchone()
    assert row is not None
    return row[0]


def rel_exists(conn: psycopg.Connection[Any], schema: str, name: str) -> bool:
    return bool(one(conn, "SELECT EXISTS (SELECT 1 FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                          "WHERE n.nspname = %s AND c.relname = %s)", schema, name))


def items_rows(conn: psycopg.Connection[Any], schema: str) -> list[tuple[Any, ...]]:
    return q(conn, f"SELECT id, name, qty FROM {schema}.items ORDER BY id")


def state(conn: psycopg.Connection[Any], schema: str) -> dict[str, Any]:
    """Everything in the schema: relations, constraints, index definitions and every table's rows.

    Sequence positions are left out: a failed INSERT still uses up serial values, by design.
    """
    rels = q(conn, "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                   "WHERE n.nspname = %s ORDER BY 1", schema)
    out: dict[str, Any] = {
        "relations": rels,
        "constraints": q(conn, "SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                               "WHERE connamespace = %s::regnamespace ORDER BY 1", schema),
        "indexes": q(conn, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s ORDER BY 1", schema),
    }
    for name, kind in rels:
        if kind == "r":
            out[name] = q(conn, sql.SQL("SELECT t::text FROM {} t ORDER BY 1").format(sql.Identifier(schema, name)))
    return out


@pytest.fixture
def db(conn: psycopg.Connection[Any], schema: str) -> Iterator[psycopg.Connection[Any]]:
    """A fresh schema for each test: `items` (3 rows) and `victim` (the target of injection attempts)."""
    conn.execute("SET lock_timeout = '5s'")
    conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {0} CASCADE; CREATE SCHEMA {0}").format(sql.Identifier(schema)))
    conn.execute(f"""
        CREATE TABLE {schema}.items (id serial PRIMARY KEY, name text NOT NULL UNIQUE,
                                     qty integer NOT NULL DEFAULT 0 CHECK (qty >= 0), tags jsonb);
        INSERT INTO {schema}.items (name, qty, tags) VALUES ('apple', 5, '["red"]'), ('pear', 0, NULL),
                                                            ('plum', 12, '{{"ripe": true}}');
        CREATE TABLE {schema}.victim (v text);
        INSERT INTO {schema}.victim VALUES ('still here');
    """)
    yield conn


def assert_victim(conn: psycopg.Connection[Any], schema: str) -> None:
    assert q(conn, f"SELECT v FROM {schema}.victim") == [("still here",)]


ORIGINAL_ITEMS = [(1, "apple", 5), (2, "pear", 0), (3, "plum", 12)]


# ---------------------------------------------------------------- pg_read_query


async def test_read_query_returns_rows_fields_and_count(call: Call, db: Any, schema: str) -> None:
    out = await call("pg_read_query", {"sql": f"SELECT id, name, qty FROM {schema}.items WHERE qty > $1 "
                                              "ORDER BY id", "params": [1]})
    assert set(out) == {"rows", "rowCount", "fields", "truncated"}
    assert out["rows"] == [{"id": 1, "name": "apple", "qty": 5}, {"id": 3, "name": "plum", "qty": 12}]
    assert out["rowCount"] == 2
    assert out["truncated"] is False
    assert out["fields"] == [{"name": "id", "type": "int4"}, {"name": "name", "type": "text"},
                             {"name": "qty", "type": "int4"}]


async def test_read_query_json_and_bigint_values(call: Call, db: Any, schema: str) -> None:
    out = await call("pg_read_query", {"sql": f"SELECT tags, count(*) OVER () AS n, 2^60::numeric AS big "
                                              f"FROM {schema}.items WHERE name = 'plum'"})
    assert out["rows"] == [{"tags": {"ripe": True}, "n": 1, "big": str(2**60)}]
    assert [f["type"] for f in out["fields"]] == ["jsonb", "int8", "numeric"]


async def test_read_query_names_array_columns_as_arrays(call: Call) -> None:
    out = await call("pg_read_query", {"sql": "SELECT '{1,2}'::int4[] AS a, ARRAY['x'] AS t, NULL::jsonb[] AS j, "
                                              "1 AS n"})
    assert out["rows"] == [{"a": [1, 2], "t": ["x"], "j": None, "n": 1}]
    assert [f["type"] for f in out["fields"]] == ["int4[]", "text[]", "jsonb[]", "int4"]


async def test_read_query_limit_truncates(call: Call) -> None:
    out = await call("pg_read_query", {"sql": "SELECT g FROM generate_series(1, 10) g", "limit": 3})
    assert out["rows"] == [{"g": 1}, {"g": 2}, {"g": 3}]
    assert out["rowCount"] == 3 and out["truncated"] is True
    exact = await call("pg_read_query", {"sql": "SELECT g FROM generate_series(1, 10) g", "limit": 10})
    assert exact["rowCount"] == 10 and exact["truncated"] is False


async def test_read_query_params_are_data_not_sql(call: Call, db: Any, schema: str) -> None:
    evil = f"apple'; DROP TABLE {schema}.victim; --"
    out = await call("pg_read_query", {"sql": f"SELECT count(*) AS n FROM {schema}.items WHERE name = $1",
                                       "params": [evil]})
    assert out["rows"] == [{"n": 0}]
    echo = await call("pg_read_query", {"sql": "SELECT $1::text AS v, $2::int + 1 AS w", "params": [evil, 41]})
    assert echo["rows"] == [{"v": evil, "w": 42}]
    assert_victim(db, schema)


@pytest.mark.parametrize("text", [
    "DELETE FROM {s}.items WHERE id = 1",
    "WITH d AS (DELETE FROM {s}.items WHERE id = 1 RETURNING id) SELECT * FROM d",
    "EXPLAIN ANALYZE DELETE FROM {s}.items WHERE id = 1",
    "SELECT 1; DELETE FROM {s}.items WHERE id = 1",
    "SELECT * FROM {s}.items FOR UPDATE",
    "SELECT * INTO {s}.copy FROM {s}.items",
])
async def test_read_query_refuses_writes(call: Call, db: Any, schema: str, text: str) -> None:
    before = state(db, schema)
    with pytest.raises(ToolError) as exc:
        await call("pg_read_query", {"sql": text.format(s=schema)})
    assert_tool_error(exc, "INVALID_INPUT")
    assert state(db, schema) == before
    assert items_rows(db, schema) == ORIGINAL_ITEMS


async def test_read_query_refuses_server_file_functions(call: Call) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_read_query", {"sql": "SELECT pg_read_file('/etc/passwd')"})
    assert_tool_error(exc, "INVALID_INPUT", "pg_read_file")


async def test_read_query_runs_read_only_even_through_a_function(call: Call, db: Any, schema: str) -> None:
    db.execute(f"CREATE FUNCTION {schema}.sneaky() RETURNS int LANGUAGE sql AS "
               f"$$ INSERT INTO {schema}.items (name) VALUES ('sneaky') RETURNING 1 $$")
    with pytest.raises(ToolError) as exc:
        await call("pg_read_query", {"sql": f"SELECT {schema}.sneaky()"})
    assert_tool_error(exc, "READ_ONLY")
    assert items_rows(db, schema) == ORIGINAL_ITEMS


async def test_read_query_bad_input(call: Call) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_read_query", {"sql": "SELEC 1"})
    assert_tool_error(exc, "INVALID_INPUT", "syntax")
    with pytest.raises(ToolError) as exc:
        await call("pg_read_query", {"sql": "SELECT * FROM no_such_table_here"})
    assert_tool_error(exc, "NOT_FOUND", "no_such_table_here")
    with pytest.raises(ToolError) as exc:
        await call("pg_read_query", {"sql": "SELECT 1", "limit": 0})
    assert_tool_error(exc, "INVALID_INPUT", "limit")
    with pytest.raises(ToolError) as exc:
        await call("pg_read_query", {"sql": "SELECT 1", "rowLimit": 5})
    err = assert_tool_error(exc, "INVALID_INPUT", "rowLimit")
    assert err.details["errors"][0]["field"] == "rowLimit"


@pytest.mark.parametrize("key", ["transaction_id", "transactionId"])
async def test_read_query_accepts_both_key_spellings(call: Call, key: str) -> None:
    # The key is accepted (not refused as unknown) and reaches the transaction lookup.
    with pytest.raises(ToolError) as exc:
        await call("pg_read_query", {"sql": "SELECT 1", key: "nope"})
    assert_tool_error(exc, "NOT_FOUND", "no open transaction")


async def test_read_query_needs_read_scope(call: Call) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_read_query", {"sql": "SELECT 1"}, principal=NOBODY)
    err = assert_tool_error(exc, "FORBIDDEN", "read")
    assert err.details == {"requiredScope": "read"}
    out = await call("pg_read_query", {"sql": "SELECT 1 AS one"}, principal=READER)
    assert out["rows"] == [{"one": 1}]


# ---------------------------------------------------------------- pg_write_query


async def test_write_query_insert_returning(call: Call, db: Any, schema: str) -> None:
    out = await call("pg_write_query", {"sql": f"INSERT INTO {schema}.items (name, qty) VALUES ($1, $2) "
                                               "RETURNING id, name, qty", "params": ["fig; DROP TABLE x", 7]},
                     principal=WRITER)
    assert out["command"] == "INSERT 0 1"
    assert out["rows"] == [{"id": 4, "name": "fig; DROP TABLE x", "qty": 7}]
    assert out["rowCount"] == 1 and out["truncated"] is False
    assert items_rows(db, schema)[-1] == (4, "fig; DROP TABLE x", 7)


async def test_write_query_update_and_delete_counts(call: Call, db: Any, schema: str) -> None:
    out = await call("pg_write_query", {"sql": f"UPDATE {schema}.items SET qty = qty + 1 WHERE qty > 0"},
                     principal=WRITER)
    assert out == {"command": "UPDATE 2", "rowCount": 2}
    out = await call("pg_write_query", {"sql": f"DELETE FROM {schema}.items WHERE name = $1", "params": ["pear"]},
                     principal=WRITER)
    assert out == {"command": "DELETE 1", "rowCount": 1}
    assert items_rows(db, schema) == [(1, "apple", 6), (3, "plum", 13)]


async def test_write_query_failure_rolls_back(call: Call, db: Any, schema: str) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_write_query", {"sql": f"INSERT INTO {schema}.items (name) VALUES ('kiwi'), ('apple')"})
    err = assert_tool_error(exc, "CONFLICT")
    assert err.details["sqlstate"] == "23505"
    with pytest.raises(ToolError) as exc:
        await call("pg_write_query", {"sql": f"UPDATE {schema}.items SET qty = -1"})
    assert_tool_error(exc, "INVALID_INPUT", "check")
    assert items_rows(db, schema) == ORIGINAL_ITEMS


async def test_write_query_ddl_needs_admin(call: Call, db: Any, schema: str) -> None:
    ddl = f"CREATE TABLE {schema}.made (id int)"
    with pytest.raises(ToolError) as exc:
        await call("pg_write_query", {"sql": ddl}, principal=WRITER)
    err = assert_tool_error(exc, "FORBIDDEN", "admin")
    assert err.details == {"requiredScope": "admin"}
    assert not rel_exists(db, schema, "made")
    out = await call("pg_write_query", {"sql": ddl})
    assert out["command"] == "CREATE TABLE"
    assert rel_exists(db, schema, "made")


@pytest.mark.parametrize("text", [
    "SELECT * INTO {s}.made FROM {s}.items",
    "EXPLAIN ANALYZE CREATE TABLE {s}.made AS SELECT 1 AS a",
    "EXPLAIN (ANALYZE) CREATE MATERIALIZED VIEW {s}.made AS SELECT 1 AS a",
    "EXPLAIN ANALYZE SELECT 1 INTO {s}.made",
])
async def test_write_query_hidden_ddl_needs_admin(call: Call, db: Any, schema: str, text: str) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_write_query", {"sql": text.format(s=schema)}, principal=WRITER)
    assert_tool_error(exc, "FORBIDDEN", "admin")
    assert not rel_exists(db, schema, "made")
    await call("pg_write_query", {"sql": text.format(s=schema)})
    assert rel_exists(db, schema, "made")


async def test_write_query_explain_analyze_dml_needs_write(call: Call, db: Any, schema: str) -> None:
    out = await call("pg_write_query", {"sql": f"EXPLAIN ANALYZE DELETE FROM {schema}.items WHERE id = 1"},
                     principal=WRITER)
    assert out["command"] == "EXPLAIN" and any("Delete on items" in r["QUERY PLAN"] for r in out["rows"])
    assert items_rows(db, schema) == ORIGINAL_ITEMS[1:]  # ANALYZE really ran it
    with pytest.raises(ToolError) as exc:
        await call("pg_write_query", {"sql": f"EXPLAIN ANALYZE DELETE FROM {schema}.items"}, principal=READER)
    assert_tool_error(exc, "FORBIDDEN", "write")
    assert items_rows(db, schema) == ORIGINAL_ITEMS[1:]


async def test_write_query_terminate_backend_needs_admin(call: Call, dsn: str) -> None:
    with psycopg.connect(dsn, autocommit=True) as target:
        pid = target.info.backend_pid
        query = {"sql": "SELECT pg_terminate_backend($1) AS ok", "params": [pid]}
        for principal in (READER, WRITER):
            with pytest.raises(ToolError) as exc:
                await call("pg_write_query", query, principal=principal)
            assert_tool_error(exc, "FORBIDDEN")
        assert target.execute("SELECT 1").fetchone() == (1,)  # still alive
        out = await call("pg_write_query", query)
        assert out["rows"] == [{"ok": True}]
        with pytest.raises(psycopg.OperationalError):
            target.execute("SELECT 1")


async def test_write_query_vacuum_runs_in_autocommit(call: Call, db: Any, schema: str) -> None:
    assert one(db, "SELECT reltuples FROM pg_class WHERE oid = %s::regclass", f"{schema}.items") < 0
    with pytest.raises(ToolError) as exc:
        await call("pg_write_query", {"sql": f"VACUUM ANALYZE {schema}.items"}, principal=WRITER)
    assert_tool_error(exc, "FORBIDDEN", "admin")
    out = await call("pg_write_query", {"sql": f"VACUUM ANALYZE {schema}.items"})
    assert out["command"] == "VACUUM"
    assert one(db, "SELECT reltuples FROM pg_class WHERE oid = %s::regclass", f"{schema}.items") == 3


async def test_write_query_create_index_concurrently(call: Call, db: Any, schema: str) -> None:
    out = await call("pg_write_query", {"sql": f"CREATE INDEX CONCURRENTLY items_qty_cc ON {schema}.items (qty)"})
    assert out["command"] == "CREATE INDEX"
    assert q(db, "SELECT indisvalid FROM pg_index WHERE indexrelid = %s::regclass", f"{schema}.items_qty_cc") == [
        (True,)]


@pytest.mark.parametrize(("text", "fragment"), [
    ("DO $$ BEGIN DELETE FROM {s}.items; END $$", "DO"),
    ("SET search_path = {s}", "SET"),
    ("BEGIN", "transaction control"),
    ("COPY {s}.items FROM PROGRAM 'id'", "PROGRAM"),
    ("COPY {s}.items TO '/tmp/items.csv'", "server file"),
    ("DELETE FROM {s}.items; DROP TABLE {s}.victim", "exactly one"),
    ("", "empty"),
])
async def test_write_query_refused_statements(call: Call, db: Any, schema: str, text: str, fragment: str) -> None:
    before = state(db, schema)
    with pytest.raises(ToolError) as exc:
        await call("pg_write_query", {"sql": text.format(s=schema)})
    assert_tool_error(exc, "INVALID_INPUT", fragment)
    assert state(db, schema) == before


async def test_write_query_read_only_call_and_scope(call: Call, db: Any, schema: str) -> None:
    query = {"sql": f"DELETE FROM {schema}.items"}
    with pytest.raises(ToolError) as exc:
        await call("pg_write_query", query, principal=READER)
    assert_tool_error(exc, "FORBIDDEN", "write")
    with pytest.raises(ToolError) as exc:
        await call("pg_write_query", query, read_only=True)
    assert_tool_error(exc, "READ_ONLY")
    assert items_rows(db, schema) == ORIGINAL_ITEMS


# ---------------------------------------------------------------- pg_list_tables


async def test_list_tables(call: Call, db: Any, schema: str) -> None:
    db.execute(f"CREATE VIEW {schema}.cheap AS SELECT * FROM {schema}.items WHERE qty < 10; "
               f"ANALYZE {schema}.items")
    out = await call("pg_list_tables", {"schema": schema})
    by_name = {t["name"]: t for t in out}
    assert sorted(by_name) == ["cheap", "items", "victim"]
    items = by_name["items"]
    assert items["schema"] == schema and items["type"] == "table"
    assert items["row_estimate"] == 3 and items["size_bytes"] > 0
    assert items["owner"] == "postgres" and items["is_partition"] is False
    assert by_name["cheap"]["type"] == "view" and by_name["cheap"]["size_bytes"] == 0
    views = await call("pg_list_tables", {"schema": schema, "types": ["view"]})
    assert [t["name"] for t in views] == ["cheap"]
    assert len(await call("pg_list_tables", {"schema": schema, "limit": 1})) == 1


@pytest.mark.parametrize("key", ["include_system", "includeSystem"])
async def test_list_tables_include_system(call: Call, key: str) -> None:
    assert await call("pg_list_tables", {"schema": "pg_catalog"}) == []
    out = await call("pg_list_tables", {"schema": "pg_catalog", key: True})
    assert {"pg_class", "pg_namespace"} <= {t["name"] for t in out}


async def test_list_tables_bad_input(call: Call) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_list_tables", {"types": ["bogus"]})
    assert_tool_error(exc, "INVALID_INPUT", "types")
    with pytest.raises(ToolError) as exc:
        await call("pg_list_tables", {"limit": 0})
    assert_tool_error(exc, "INVALID_INPUT", "limit")
    with pytest.raises(ToolError) as exc:
        await call("pg_list_tables", {"schemaName": "public"})
    assert_tool_error(exc, "INVALID_INPUT", "schemaName")


async def test_list_tables_scope(call: Call, db: Any, schema: str) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_list_tables", {"schema": schema}, principal=NOBODY)
    assert_tool_error(exc, "FORBIDDEN")
    assert len(await call("pg_list_tables", {"schema": schema}, principal=READER)) == 2


# ---------------------------------------------------------------- pg_describe_table


async def test_describe_table(call: Call, db: Any, schema: str) -> None:
    db.execute(f"COMMENT ON TABLE {schema}.items IS 'fruit'")
    out = await call("pg_describe_table", {"table": "items", "schema": schema})
    assert out["name"] == "items" and out["schema"] == schema and out["type"] == "table"
    assert out["comment"] == "fruit" and out["size_bytes"] > 0
    cols = {c["name"]: c for c in out["columns"]}
    assert list(cols) == ["id", "name", "qty", "tags"]
    assert cols["id"]["type"] == "integer" and cols["id"]["is_primary_key"] is True
    assert cols["id"]["default"] == f"nextval('{schema}.items_id_seq'::regclass)"
    assert cols["name"]["nullable"] is False and cols["tags"]["nullable"] is True
    assert cols["qty"]["default"] == "0" and cols["tags"]["type"] == "jsonb"
    assert out["primary_key"] == ["id"]
    cons = {c["name"]: c for c in out["constraints"]}
    assert cons["items_pkey"]["type"] == "primary_key"
    assert cons["items_name_key"] == {"name": "items_name_key", "type": "unique", "definition": "UNIQUE (name)",
                                      "validated": True}
    assert cons["items_qty_check"]["type"] == "check" and "qty >= 0" in cons["items_qty_check"]["definition"]
    idx = {i["name"]: i for i in out["indexes"]}
    assert set(idx) == {"items_pkey", "items_name_key"}
    assert idx["items_pkey"]["is_primary"] is True and idx["items_pkey"]["size_bytes"] > 0
    assert idx["items_name_key"]["is_unique"] is True and "(name)" in idx["items_name_key"]["definition"]


async def test_describe_table_dotted_name_and_view(call: Call, db: Any, schema: str) -> None:
    db.execute(f"CREATE VIEW {schema}.names AS SELECT name FROM {schema}.items")
    out = await call("pg_describe_table", {"table": f"{schema}.items"})
    assert out["schema"] == schema and out["name"] == "items"
    view = await call("pg_describe_table", {"table": "names", "schema": schema})
    assert view["type"] == "view" and [c["name"] for c in view["columns"]] == ["name"]
    assert view["primary_key"] == [] and view["indexes"] == []


async def test_describe_table_not_found_and_injection(call: Call, db: Any, schema: str) -> None:
    for name in ("missing", INJECTION):
        with pytest.raises(ToolError) as exc:
            await call("pg_describe_table", {"table": name, "schema": schema})
        assert_tool_error(exc, "NOT_FOUND", "does not exist")
    with pytest.raises(ToolError) as exc:
        await call("pg_describe_table", {"table": "items", "schema": schema, "columns": True})
    assert_tool_error(exc, "INVALID_INPUT", "columns")
    with pytest.raises(ToolError) as exc:
        await call("pg_describe_table", {"schema": schema})
    assert_tool_error(exc, "INVALID_INPUT", "table")
    assert_victim(db, schema)


async def test_describe_table_scope(call: Call, db: Any, schema: str) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_describe_table", {"table": "items", "schema": schema}, principal=NOBODY)
    assert_tool_error(exc, "FORBIDDEN")
    out = await call("pg_describe_table", {"table": "items", "schema": schema}, principal=READER)
    assert out["primary_key"] == ["id"]


# ---------------------------------------------------------------- pg_create_table


async def test_create_table_full(call: Call, db: Any, schema: str) -> None:
    out = await call("pg_create_table", {"table": "orders", "schema": schema, "columns": [
        {"name": "id", "type": "bigint", "primaryKey": True},
        {"name": "item_id", "type": "integer", "nullable": False,
         "references": {"table": f"{schema}.items", "column": "id", "onDelete": "CASCADE"}},
        {"name": "price", "type": "numeric(10,2)", "check": "price > 0", "default": "1.50"},
        {"name": "code", "type": "text", "unique": True},
        {"name": "at", "type": "timestamp with time zone", "default": "now()"},
        {"name": "labels", "type": "text[]"},
    ]})
    assert out == {"table": "orders", "schema": schema, "created": True,
                   "columns": ["id", "item_id", "price", "code", "at", "labels"], "primary_key": ["id"]}
    cols = q(db, "SELECT column_name, data_type, is_nullable, column_default FROM information_schema.columns "
                 "WHERE table_schema = %s AND table_name = 'orders' ORDER BY ordinal_position", schema)
    assert cols == [("id", "bigint", "NO", None), ("item_id", "integer", "NO", None),
                    ("price", "numeric", "YES", "1.50"), ("code", "text", "YES", None),
                    ("at", "timestamp with time zone", "YES", "now()"), ("labels", "ARRAY", "YES", None)]
    cons = dict(q(db, "SELECT contype::text, pg_get_constraintdef(oid) FROM pg_constraint "
                      "WHERE conrelid = %s::regclass AND contype <> 'u'", f"{schema}.orders"))
    assert cons["p"] == "PRIMARY KEY (id)"
    assert cons["f"] == f"FOREIGN KEY (item_id) REFERENCES {schema}.items(id) ON DELETE CASCADE"
    assert cons["c"] == "CHECK ((price > (0)::numeric))"
    # the constraints really apply
    db.execute(f"INSERT INTO {schema}.orders (id, item_id) VALUES (1, 1)")
    assert q(db, f"SELECT price FROM {schema}.orders")[0][0] == pytest.approx(1.5)
    with pytest.raises(psycopg.errors.CheckViolation):
        db.execute(f"INSERT INTO {schema}.orders (id, item_id, price) VALUES (2, 1, 0)")
    with pytest.raises(psycopg.errors.ForeignKeyViolation):
        db.execute(f"INSERT INTO {schema}.orders (id, item_id) VALUES (3, 99)")


@pytest.mark.parametrize("key", ["if_not_exists", "ifNotExists"])
async def test_create_table_if_not_exists(call: Call, db: Any, schema: str, key: str) -> None:
    args = {"table": "items", "schema": schema, "columns": [{"name": "other", "type": "text"}]}
    with pytest.raises(ToolError) as exc:
        await call("pg_create_table", args)
    assert_tool_error(exc, "ALREADY_EXISTS", "items")
    out = await call("pg_create_table", {**args, key: True})
    assert out["created"] is False
    assert items_rows(db, schema) == ORIGINAL_ITEMS
    assert "other" not in [c for (c,) in q(db, "SELECT column_name FROM information_schema.columns "
                                               "WHERE table_schema = %s AND table_name = 'items'", schema)]


@pytest.mark.parametrize(("column", "fragment"), [
    ({"name": "a", "type": "integer); DROP TABLE victim; --"}, "not a type name"),
    ({"name": "a", "type": "int", "default": "0); DROP TABLE victim; --"}, "does not parse"),
    ({"name": "a", "type": "int", "default": "(SELECT count(*) FROM victim)"}, "subquery"),
    ({"name": "a", "type": "text", "default": "pg_read_file('/etc/passwd')"}, "pg_read_file"),
    ({"name": "a", "type": "int", "check": "a > 0) OR (true"}, "does not parse"),
    ({"name": "a", "type": "int", "references": {"table": "items", "column": "id", "onDelete": "EXPLODE"}},
     "onDelete"),
    ({"name": "a", "type": "int", "colour": "red"}, "colour"),
])
async def test_create_table_bad_columns(call: Call, db: Any, schema: str, column: dict[str, Any],
                                        fragment: str) -> None:
    before = state(db, schema)
    with pytest.raises(ToolError) as exc:
        await call("pg_create_table", {"table": "new_t", "schema": schema, "columns": [column]})
    assert_tool_error(exc, "INVALID_INPUT", fragment)
    assert state(db, schema) == before


async def test_create_table_bad_shape(call: Call, db: Any, schema: str) -> None:
    before = state(db, schema)
    with pytest.raises(ToolError) as exc:
        await call("pg_create_table", {"table": "t2", "schema": schema,
                                       "columns": [{"name": "a", "type": "int"}, {"name": "a", "type": "text"}]})
    assert_tool_error(exc, "INVALID_INPUT", "unique")
    with pytest.raises(ToolError) as exc:
        await call("pg_create_table", {"table": "t2", "schema": schema, "columns": []})
    assert_tool_error(exc, "INVALID_INPUT", "columns")
    with pytest.raises(ToolError) as exc:
        await call("pg_create_table", {"table": "t2", "schema": schema, "columns": [{"name": "a", "type": "nosuch"}]})
    assert_tool_error(exc, "NOT_FOUND", "nosuch")
    assert state(db, schema) == before


async def test_create_table_strange_name_is_an_identifier(call: Call, db: Any, schema: str) -> None:
    out = await call("pg_create_table", {"table": INJECTION, "schema": schema,
                                         "columns": [{"name": "a; DROP TABLE victim", "type": "int"}]})
    assert out["table"] == INJECTION and out["created"] is True
    assert rel_exists(db, schema, INJECTION)
    assert q(db, "SELECT attname FROM pg_attribute WHERE attrelid = %s::regclass AND attnum > 0",
             sql.Identifier(schema, INJECTION).as_string(db)) == [("a; DROP TABLE victim",)]
    assert_victim(db, schema)


async def test_create_table_scope(call: Call, db: Any, schema: str) -> None:
    args = {"table": "nope", "schema": schema, "columns": [{"name": "a", "type": "int"}]}
    for principal in (READER, WRITER):  # creating structure is admin work, not a row change
        with pytest.raises(ToolError) as exc:
            await call("pg_create_table", args, principal=principal)
        assert_tool_error(exc, "FORBIDDEN", "admin")
    with pytest.raises(ToolError) as exc:
        await call("pg_create_table", args, read_only=True)
    assert_tool_error(exc, "READ_ONLY")
    assert not rel_exists(db, schema, "nope")


# ---------------------------------------------------------------- pg_drop_table


async def test_drop_table(call: Call, db: Any, schema: str) -> None:
    out = await call("pg_drop_table", {"table": f"{schema}.victim"})
    assert out == {"table": "victim", "schema": schema, "dropped": True}
    assert not rel_exists(db, schema, "victim")
    assert items_rows(db, schema) == ORIGINAL_ITEMS


@pytest.mark.parametrize("key", ["if_exists", "ifExists"])
async def test_drop_table_missing(call: Call, db: Any, schema: str, key: str) -> None:
    before = state(db, schema)
    with pytest.raises(ToolError) as exc:
        await call("pg_drop_table", {"table": "ghost", "schema": schema})
    assert_tool_error(exc, "NOT_FOUND", "ghost")
    out = await call("pg_drop_table", {"table": "ghost", "schema": schema, key: True})
    assert out == {"table": "ghost", "schema": schema, "dropped": False}
    with pytest.raises(ToolError) as exc:
        await call("pg_drop_table", {"table": INJECTION, "schema": schema})
    assert_tool_error(exc, "NOT_FOUND")
    assert state(db, schema) == before


async def test_drop_table_refuses_views_and_dependents(call: Call, db: Any, schema: str) -> None:
    db.execute(f"CREATE VIEW {schema}.v AS SELECT * FROM {schema}.items; "
               f"CREATE TABLE {schema}.child (item_id int REFERENCES {schema}.items (id))")
    before = state(db, schema)
    with pytest.raises(ToolError) as exc:
        await call("pg_drop_table", {"table": "v", "schema": schema})
    assert_tool_error(exc, "INVALID_INPUT", "not a table")
    with pytest.raises(ToolError) as exc:
        await call("pg_drop_table", {"table": "items", "schema": schema})
    err = assert_tool_error(exc, "CONFLICT", "depend")
    assert err.details["sqlstate"] == "2BP01"
    assert state(db, schema) == before
    out = await call("pg_drop_table", {"table": "items", "schema": schema, "cascade": True})
    assert out["dropped"] is True
    assert not rel_exists(db, schema, "items") and not rel_exists(db, schema, "v")
    assert rel_exists(db, schema, "child")
    assert q(db, "SELECT count(*) FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'f'",
             f"{schema}.child") == [(0,)]


async def test_drop_table_scope(call: Call, db: Any, schema: str) -> None:
    for principal in (READER, WRITER):
        with pytest.raises(ToolError) as exc:
            await call("pg_drop_table", {"table": "items", "schema": schema}, principal=principal)
        err = assert_tool_error(exc, "FORBIDDEN", "admin")
        assert err.details == {"requiredScope": "admin"}
    assert items_rows(db, schema) == ORIGINAL_ITEMS


# ---------------------------------------------------------------- pg_get_indexes


async def test_get_indexes(call: Call, db: Any, schema: str) -> None:
    db.execute(f"CREATE INDEX items_lower_name ON {schema}.items (lower(name))")
    out = await call("pg_get_indexes", {"table": "items", "schema": schema})
    by_name = {i["name"]: i for i in out}
    assert sorted(by_name) == ["items_lower_name", "items_name_key", "items_pkey"]
    pkey = by_name["items_pkey"]
    assert pkey["table"] == "items" and pkey["schema"] == schema and pkey["method"] == "btree"
    assert pkey["is_primary"] is True and pkey["is_unique"] is True and pkey["is_valid"] is True
    assert pkey["columns"] == ["id"] and pkey["size_bytes"] > 0
    assert pkey["definition"] == f"CREATE UNIQUE INDEX items_pkey ON {schema}.items USING btree (id)"
    assert by_name["items_lower_name"]["columns"] == ["lower(name)"]
    assert by_name["items_lower_name"]["is_unique"] is False
    dotted = await call("pg_get_indexes", {"table": f"{schema}.items"})
    assert [i["name"] for i in dotted] == [i["name"] for i in out]
    whole_schema = await call("pg_get_indexes", {"schema": schema})
    assert {i["table"] for i in whole_schema} == {"items"}
    assert len(await call("pg_get_indexes", {"schema": schema, "limit": 1})) == 1


async def test_get_indexes_unknown_table_and_bad_input(call: Call, db: Any, schema: str) -> None:
    assert await call("pg_get_indexes", {"table": INJECTION, "schema": schema}) == []
    with pytest.raises(ToolError) as exc:
        await call("pg_get_indexes", {"limit": -1})
    assert_tool_error(exc, "INVALID_INPUT", "limit")
    with pytest.raises(ToolError) as exc:
        await call("pg_get_indexes", {"tableName": "items"})
    assert_tool_error(exc, "INVALID_INPUT", "tableName")
    assert_victim(db, schema)


async def test_get_indexes_scope(call: Call, db: Any, schema: str) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_get_indexes", {"schema": schema}, principal=NOBODY)
    assert_tool_error(exc, "FORBIDDEN")
    assert len(await call("pg_get_indexes", {"schema": schema}, principal=READER)) == 2


# ---------------------------------------------------------------- pg_create_index


def index_defs(conn: psycopg.Connection[Any], schema: str) -> dict[str, str]:
    return dict(q(conn, "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s", schema))


async def test_create_index_default_name(call: Call, db: Any, schema: str) -> None:
    out = await call("pg_create_index", {"table": "items", "schema": schema, "columns": ["qty", "name"]})
    definition = f"CREATE INDEX items_qty_name_idx ON {schema}.items USING btree (qty, name)"
    assert out == {"name": "items_qty_name_idx", "table": "items", "schema": schema, "definition": definition,
                   "created": True, "is_valid": True}
    assert index_defs(db, schema)["items_qty_name_idx"] == definition


async def test_create_index_unique_partial_include(call: Call, db: Any, schema: str) -> None:
    out = await call("pg_create_index", {"table": "items", "schema": schema, "columns": ["qty"], "name": "big_qty",
                                         "unique": True, "where": "qty > 10 AND name <> 'x'", "include": ["name"]})
    assert out["definition"] == (f"CREATE UNIQUE INDEX big_qty ON {schema}.items USING btree (qty) INCLUDE (name) "
                                 "WHERE ((qty > 10) AND (name <> 'x'::text))")
    assert index_defs(db, schema)["big_qty"] == out["definition"]
    db.execute(f"INSERT INTO {schema}.items (name, qty) VALUES ('a', 1), ('b', 1)")  # outside the predicate
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(f"INSERT INTO {schema}.items (name, qty) VALUES ('c', 12)")


async def test_create_index_gin(call: Call, db: Any, schema: str) -> None:
    out = await call("pg_create_index", {"table": "items", "schema": schema, "columns": ["tags"], "method": "gin"})
    assert out["definition"] == f"CREATE INDEX items_tags_idx ON {schema}.items USING gin (tags)"
    assert q(db, "SELECT amname FROM pg_class c JOIN pg_am a ON a.oid = c.relam WHERE c.oid = %s::regclass",
             f"{schema}.items_tags_idx") == [("gin",)]


async def test_create_index_concurrently(call: Call, db: Any, schema: str) -> None:
    out = await call("pg_create_index", {"table": "items", "schema": schema, "columns": ["qty"],
                                         "name": "qty_cc", "concurrently": True})
    assert out["definition"] == f"CREATE INDEX qty_cc ON {schema}.items USING btree (qty)"
    assert q(db, "SELECT indisvalid, indisready FROM pg_index WHERE indexrelid = %s::regclass",
             f"{schema}.qty_cc") == [(True, True)]


@pytest.mark.parametrize("key", ["if_not_exists", "ifNotExists"])
async def test_create_index_if_not_exists(call: Call, db: Any, schema: str, key: str) -> None:
    args = {"table": "items", "schema": schema, "columns": ["qty"], "name": "dup_idx"}
    await call("pg_create_index", args)
    with pytest.raises(ToolError) as exc:
        await call("pg_create_index", {**args, "columns": ["name"]})
    assert_tool_error(exc, "ALREADY_EXISTS", "dup_idx")
    out = await call("pg_create_index", {**args, "columns": ["name"], key: True})
    assert out["name"] == "dup_idx" and out["definition"].endswith("(qty)")  # the existing one, unchanged
    assert index_defs(db, schema)["dup_idx"].endswith("(qty)")


@pytest.mark.parametrize(("args", "code", "fragment"), [
    ({"table": "ghost", "columns": ["id"]}, "NOT_FOUND", "ghost"),
    ({"table": INJECTION, "columns": ["id"]}, "NOT_FOUND", "does not exist"),
    ({"table": "items", "columns": ["nope"]}, "NOT_FOUND", "nope"),
    ({"table": "items", "columns": []}, "INVALID_INPUT", "columns"),
    ({"table": "items", "columns": ["id"], "method": "rtree"}, "INVALID_INPUT", "method"),
    ({"table": "items", "columns": ["id"], "unique_": True}, "INVALID_INPUT", "unique_"),
    ({"table": "items", "columns": ["name"], "unique": False, "where": "qty >"}, "INVALID_INPUT", "parse"),
])
async def test_create_index_bad_input(call: Call, db: Any, schema: str, args: dict[str, Any], code: str,
                                      fragment: str) -> None:
    before = state(db, schema)
    with pytest.raises(ToolError) as exc:
        await call("pg_create_index", {**args, "schema": schema})
    assert_tool_error(exc, code, fragment)
    assert state(db, schema) == before


@pytest.mark.parametrize("concurrently", [False, True])
async def test_create_index_unique_on_duplicates_conflicts(call: Call, db: Any, schema: str,
                                                           concurrently: bool) -> None:
    db.execute(f"INSERT INTO {schema}.items (name, qty) VALUES ('twin', 5)")
    before = state(db, schema)
    with pytest.raises(ToolError) as exc:
        await call("pg_create_index", {"table": "items", "schema": schema, "columns": ["qty"], "unique": True,
                                       "name": "uq_qty", "concurrently": concurrently})
    err = assert_tool_error(exc, "CONFLICT", "uq_qty")
    assert err.details["sqlstate"] == "23505"
    assert state(db, schema) == before  # no index left behind, valid or not


@pytest.mark.parametrize("where", EVIL_WHERES)
async def test_create_index_refuses_evil_where(call: Call, db: Any, schema: str, where: str) -> None:
    before = state(db, schema)
    with pytest.raises(ToolError) as exc:
        await call("pg_create_index", {"table": "items", "schema": schema, "columns": ["qty"], "where": where})
    assert_tool_error(exc, "INVALID_INPUT")
    assert state(db, schema) == before
    assert_victim(db, schema)


async def test_create_index_scope(call: Call, db: Any, schema: str) -> None:
    before = state(db, schema)
    for concurrently in (False, True):
        for principal in (READER, WRITER):
            with pytest.raises(ToolError) as exc:
                await call("pg_create_index", {"table": "items", "schema": schema, "columns": ["qty"],
                                               "concurrently": concurrently}, principal=principal)
            assert_tool_error(exc, "FORBIDDEN", "admin")
    assert state(db, schema) == before


# ---------------------------------------------------------------- pg_drop_index


async def test_drop_index(call: Call, db: Any, schema: str) -> None:
    db.execute(f"CREATE INDEX qty_idx ON {schema}.items (qty)")
    out = await call("pg_drop_index", {"name": "qty_idx", "schema": schema})
    assert out == {"name": "qty_idx", "schema": schema, "dropped": True,
                   "definition": f"CREATE INDEX qty_idx ON {schema}.items USING btree (qty)"}
    assert "qty_idx" not in index_defs(db, schema)


async def test_drop_index_concurrently_dotted(call: Call, db: Any, schema: str) -> None:
    db.execute(f"CREATE INDEX qty_idx ON {schema}.items (qty)")
    out = await call("pg_drop_index", {"name": f"{schema}.qty_idx", "concurrently": True})
    assert out["dropped"] is True and out["schema"] == schema
    assert "qty_idx" not in index_defs(db, schema)


@pytest.mark.parametrize("key", ["if_exists", "ifExists"])
async def test_drop_index_missing(call: Call, db: Any, schema: str, key: str) -> None:
    before = state(db, schema)
    with pytest.raises(ToolError) as exc:
        await call("pg_drop_index", {"name": "ghost_idx", "schema": schema})
    assert_tool_error(exc, "NOT_FOUND", "ghost_idx")
    out = await call("pg_drop_index", {"name": "ghost_idx", "schema": schema, key: True})
    assert out == {"name": "ghost_idx", "schema": schema, "dropped": False, "definition": None}
    assert state(db, schema) == before


async def test_drop_index_refuses_non_indexes_and_constraint_indexes(call: Call, db: Any, schema: str) -> None:
    before = state(db, schema)
    with pytest.raises(ToolError) as exc:
        await call("pg_drop_index", {"name": "items", "schema": schema})
    assert_tool_error(exc, "INVALID_INPUT", "not an index")
    with pytest.raises(ToolError) as exc:
        await call("pg_drop_index", {"name": "items_pkey", "schema": schema})
    err = assert_tool_error(exc, "CONFLICT", "constraint")
    assert err.details["sqlstate"] == "2BP01"
    with pytest.raises(ToolError) as exc:
        await call("pg_drop_index", {"name": INJECTION, "schema": schema})
    assert_tool_error(exc, "NOT_FOUND")
    assert state(db, schema) == before


async def test_drop_index_scope(call: Call, db: Any, schema: str) -> None:
    db.execute(f"CREATE INDEX qty_idx ON {schema}.items (qty)")
    for principal in (READER, WRITER):
        with pytest.raises(ToolError) as exc:
            await call("pg_drop_index", {"name": "qty_idx", "schema": schema}, principal=principal)
        assert_tool_error(exc, "FORBIDDEN", "admin")
    assert "qty_idx" in index_defs(db, schema)


# ---------------------------------------------------------------- pg_list_objects


@pytest.fixture
def objects(db: psycopg.Connection[Any], schema: str) -> psycopg.Connection[Any]:
    db.execute(f"""
        CREATE SEQUENCE {schema}.ticket START 100;
        CREATE VIEW {schema}.item_names AS SELECT name FROM {schema}.items;
        CREATE MATERIALIZED VIEW {schema}.item_totals AS SELECT sum(qty) AS total FROM {schema}.items;
        CREATE FUNCTION {schema}.double_it(x integer) RETURNS integer LANGUAGE sql IMMUTABLE AS 'SELECT x * 2';
        CREATE FUNCTION {schema}.double_it(x text) RETURNS text LANGUAGE sql AS 'SELECT x || x';
        CREATE PROCEDURE {schema}.noop() LANGUAGE sql AS 'SELECT 1';
        CREATE TYPE {schema}.mood AS ENUM ('sad', 'happy');
        CREATE DOMAIN {schema}.posint AS integer CHECK (VALUE > 0);
    """)
    return db


async def test_list_objects(call: Call, objects: Any, schema: str) -> None:
    out = await call("pg_list_objects", {"schema": schema})
    kinds = {(o["name"], o["type"]) for o in out}
    assert {("items", "table"), ("victim", "table"), ("items_pkey", "index"), ("items_id_seq", "sequence"),
            ("ticket", "sequence"), ("item_names", "view"), ("item_totals", "materialized_view"),
            ("double_it", "function"), ("noop", "procedure"), ("mood", "enum"), ("posint", "domain")} <= kinds
    assert all(o["schema"] == schema and o["owner"] == "postgres" for o in out)
    funcs = await call("pg_list_objects", {"schema": schema, "types": ["function"]})
    assert sorted(f["signature"] for f in funcs) == ["double_it(x integer)", "double_it(x text)"]
    pattern = await call("pg_list_objects", {"schema": schema, "pattern": "ITEM_%", "types": ["view",
                                                                                             "materialized_view"]})
    assert [(o["name"], o["type"]) for o in pattern] == [("item_totals", "materialized_view"),
                                                         ("item_names", "view")]
    assert len(await call("pg_list_objects", {"schema": schema, "limit": 2})) == 2


async def test_list_objects_bad_input_and_scope(call: Call, objects: Any, schema: str) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_list_objects", {"types": ["trigger"]})
    assert_tool_error(exc, "INVALID_INPUT", "types")
    with pytest.raises(ToolError) as exc:
        await call("pg_list_objects", {"namePattern": "x%"})
    assert_tool_error(exc, "INVALID_INPUT", "namePattern")
    with pytest.raises(ToolError) as exc:
        await call("pg_list_objects", {"schema": schema}, principal=NOBODY)
    assert_tool_error(exc, "FORBIDDEN")
    assert await call("pg_list_objects", {"schema": schema, "pattern": "ticket"}, principal=READER) == [
        {"name": "ticket", "schema": schema, "type": "sequence", "owner": "postgres", "signature": None}]


# ---------------------------------------------------------------- pg_object_details


async def test_object_details_relations(call: Call, objects: Any, schema: str) -> None:
    table = await call("pg_object_details", {"name": "items", "schema": schema})
    assert table["type"] == "table" and table["primary_key"] == ["id"] and table["size_bytes"] > 0
    view = await call("pg_object_details", {"name": f"{schema}.item_names"})
    assert view["type"] == "view" and "FROM " in view["definition"] and "items" in view["definition"]
    assert [c["name"] for c in view["columns"]] == ["name"]
    mat = await call("pg_object_details", {"name": "item_totals", "schema": schema, "type": "materialized_view"})
    assert mat["type"] == "materialized_view" and "sum(" in mat["definition"]
    seq = await call("pg_object_details", {"name": "ticket", "schema": schema})
    assert seq["type"] == "sequence" and seq["start_value"] == 100 and seq["increment_by"] == 1
    assert seq["data_type"] == "bigint" and seq["last_value"] is None and seq["cycle"] is False
    idx = await call("pg_object_details", {"name": "items_name_key", "schema": schema})
    assert idx["type"] == "index" and idx["table"] == "items" and idx["is_unique"] is True
    assert idx["definition"].endswith("USING btree (name)") and idx["size_bytes"] > 0


async def test_object_details_function(call: Call, objects: Any, schema: str) -> None:
    out = await call("pg_object_details", {"name": "double_it", "schema": schema, "type": "function"})
    assert out["type"] == "function" and out["name"] == "double_it"
    by_args = {f["arguments"]: f for f in out["overloads"]}
    assert set(by_args) == {"x integer", "x text"}
    assert by_args["x integer"]["returns"] == "integer" and by_args["x integer"]["volatility"] == "immutable"
    assert by_args["x text"]["volatility"] == "volatile" and by_args["x text"]["language"] == "sql"
    assert "SELECT x * 2" in by_args["x integer"]["definition"]
    proc = await call("pg_object_details", {"name": "noop", "schema": schema})
    assert proc["type"] == "function" and proc["overloads"][0]["arguments"] == ""


async def test_object_details_not_found(call: Call, objects: Any, schema: str) -> None:
    for args, fragment in [({"name": "ghost"}, "object"),
                           ({"name": "items", "type": "view"}, "view"),
                           ({"name": "item_names", "type": "function"}, "function"),
                           ({"name": INJECTION}, "object")]:
        with pytest.raises(ToolError) as exc:
            await call("pg_object_details", {**args, "schema": schema})
        assert_tool_error(exc, "NOT_FOUND", fragment, "does not exist")
    with pytest.raises(ToolError) as exc:
        await call("pg_object_details", {"name": "items", "schema": schema, "type": "trigger"})
    assert_tool_error(exc, "INVALID_INPUT", "type")
    with pytest.raises(ToolError) as exc:
        await call("pg_object_details", {"name": "items", "schema": schema}, principal=NOBODY)
    assert_tool_error(exc, "FORBIDDEN")
    assert (await call("pg_object_details", {"name": "items", "schema": schema}, principal=READER))["type"] == "table"


# ---------------------------------------------------------------- pg_list_extensions


async def test_list_extensions(call: Call, conn: psycopg.Connection[Any]) -> None:
    installed = dict(q(conn, "SELECT extname, extversion FROM pg_extension"))
    out = await call("pg_list_extensions", principal=READER)
    assert {e["name"]: e["version"] for e in out} == installed
    assert all(e["installed"] is True and e["schema"] for e in out)
    plpgsql = next(e for e in out if e["name"] == "plpgsql")
    assert plpgsql["schema"] == "pg_catalog" and plpgsql["description"]
    assert [e["name"] for e in out] == sorted(e["name"] for e in out)


@pytest.mark.parametrize("key", ["include_available", "includeAvailable"])
async def test_list_extensions_available(call: Call, conn: psycopg.Connection[Any], key: str) -> None:
    available = {n for (n,) in q(conn, "SELECT name FROM pg_available_extensions")}
    out = await call("pg_list_extensions", {key: True})
    assert {e["name"] for e in out} == available
    missing = [e for e in out if not e["installed"]]
    assert missing and all(e["version"] is None and e["default_version"] for e in missing)


async def test_list_extensions_bad_input_and_scope(call: Call) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_list_extensions", {"includeAvailable": "perhaps"})
    assert_tool_error(exc, "INVALID_INPUT", "includeAvailable")
    with pytest.raises(ToolError) as exc:
        await call("pg_list_extensions", {"all": True})
    assert_tool_error(exc, "INVALID_INPUT", "all")
    with pytest.raises(ToolError) as exc:
        await call("pg_list_extensions", {}, principal=NOBODY)
    assert_tool_error(exc, "FORBIDDEN")


# ---------------------------------------------------------------- pg_upsert


async def test_upsert_inserts_then_updates(call: Call, db: Any, schema: str) -> None:
    out = await call("pg_upsert", {"table": "items", "schema": schema, "data": {"name": "kiwi", "qty": 4,
                                                                                 "tags": {"new": True}},
                                   "conflictColumns": ["name"]}, principal=WRITER)
    assert out == {"action": "inserted", "row": {"id": 4, "name": "kiwi", "qty": 4, "tags": {"new": True}}}
    out = await call("pg_upsert", {"table": "items", "schema": schema, "data": {"name": "apple", "qty": 9},
                                   "conflict_columns": ["name"]}, principal=WRITER)
    assert out == {"action": "updated", "row": {"id": 1, "name": "apple", "qty": 9, "tags": ["red"]}}
    assert items_rows(db, schema) == [(1, "apple", 9), (2, "pear", 0), (3, "plum", 12), (4, "kiwi", 4)]
    assert one(db, f"SELECT tags FROM {schema}.items WHERE id = 4") == {"new": True}


@pytest.mark.parametrize("key", ["update_columns", "updateColumns"])
async def test_upsert_update_columns(call: Call, db: Any, schema: str, key: str) -> None:
    out = await call("pg_upsert", {"table": "items", "schema": schema, "data": {"name": "plum", "qty": 1,
                                                                                 "tags": [1]},
                                   "conflictColumns": ["name"], key: ["qty"]})
    assert out["action"] == "updated" and out["row"]["qty"] == 1 and out["row"]["tags"] == {"ripe": True}
    out = await call("pg_upsert", {"table": "items", "schema": schema, "data": {"name": "pear", "qty": 50},
                                   "conflictColumns": ["name"], key: []})
    assert out == {"action": "unchanged", "row": None}
    assert items_rows(db, schema) == [(1, "apple", 5), (2, "pear", 0), (3, "plum", 1)]


@pytest.mark.parametrize(("args", "code", "fragment"), [
    ({"table": "items", "data": {"colour": "red", "name": "x"}, "conflictColumns": ["name"]}, "NOT_FOUND", "colour"),
    ({"table": "items", "data": {'name"; DROP TABLE victim; --': 1}, "conflictColumns": ["name"]}, "NOT_FOUND",
     "DROP TABLE"),
    ({"table": "ghost", "data": {"name": "x"}, "conflictColumns": ["name"]}, "NOT_FOUND", "ghost"),
    ({"table": INJECTION, "data": {"name": "x"}, "conflictColumns": ["name"]}, "NOT_FOUND", "does not exist"),
    ({"table": "items", "data": {}, "conflictColumns": ["name"]}, "INVALID_INPUT", "data"),
    ({"table": "items", "data": {"name": "x"}}, "INVALID_INPUT", "conflictColumns"),
    ({"table": "items", "data": {"name": "apple", "qty": -3}, "conflictColumns": ["name"]}, "INVALID_INPUT",
     "check"),
    ({"table": "items", "data": {"name": "x", "qty": "lots"}, "conflictColumns": ["name"]}, "INVALID_INPUT",
     "integer"),
    ({"table": "items", "data": {"name": "x", "qty": 1}, "conflictColumns": ["qty"]}, "SQL_ERROR",
     "no unique or exclusion constraint"),
])
async def test_upsert_bad_input(call: Call, db: Any, schema: str, args: dict[str, Any], code: str,
                                fragment: str) -> None:
    before = state(db, schema)
    with pytest.raises(ToolError) as exc:
        await call("pg_upsert", {**args, "schema": schema})
    assert_tool_error(exc, code, fragment)
    assert state(db, schema) == before


async def test_upsert_scope(call: Call, db: Any, schema: str) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_upsert", {"table": "items", "schema": schema, "data": {"name": "kiwi"},
                                 "conflictColumns": ["name"]}, principal=READER)
    assert_tool_error(exc, "FORBIDDEN", "write")
    assert items_rows(db, schema) == ORIGINAL_ITEMS


# ---------------------------------------------------------------- pg_batch_insert


async def test_batch_insert(call: Call, db: Any, schema: str) -> None:
    out = await call("pg_batch_insert", {"table": "items", "schema": schema, "rows": [
        {"name": "kiwi", "qty": 1}, {"name": "lime"}, {"name": "fig", "tags": ["a", "b"]}]}, principal=WRITER)
    assert out == {"inserted": 3}
    assert items_rows(db, schema)[3:] == [(4, "kiwi", 1), (5, "lime", 0), (6, "fig", 0)]
    assert one(db, f"SELECT tags FROM {schema}.items WHERE name = 'fig'") == ["a", "b"]


async def test_batch_insert_returning(call: Call, db: Any, schema: str) -> None:
    out = await call("pg_batch_insert", {"table": f"{schema}.items", "returning": True,
                                         "rows": [{"name": "kiwi", "tags": {"k": 1}}, {"name": "lime", "qty": 2}]})
    assert out == {"inserted": 2, "rows": [{"id": 4, "name": "kiwi", "qty": 0, "tags": {"k": 1}},
                                           {"id": 5, "name": "lime", "qty": 2, "tags": None}]}
    assert len(items_rows(db, schema)) == 5


async def test_json_values_of_every_kind(call: Call, db: Any, schema: str) -> None:
    values: list[Any] = [5, 2.5, True, False, [1, "a"], {"k": [None]}, "text"]
    out = await call("pg_batch_insert", {"table": "items", "schema": schema, "returning": True,
                                         "rows": [{"name": f"j{i}", "tags": v} for i, v in enumerate(values)]})
    assert [r["tags"] for r in out["rows"]] == [5, 2.5, True, False, [1, "a"], {"k": [None]}, "text"]
    stored = q(db, f"SELECT jsonb_typeof(tags) FROM {schema}.items WHERE name LIKE 'j%%' ORDER BY id")
    assert [t for (t,) in stored] == ["number", "number", "boolean", "boolean", "array", "object", "string"]
    up = await call("pg_upsert", {"table": "items", "schema": schema, "data": {"name": "apple", "tags": 7},
                                  "conflictColumns": ["name"]})
    assert up == {"action": "updated", "row": {"id": 1, "name": "apple", "qty": 5, "tags": 7}}


@pytest.mark.parametrize(("args", "code", "fragment"), [
    ({"table": "items", "rows": [{"name": "kiwi"}, {"name": "apple"}]}, "CONFLICT", "duplicate"),
    ({"table": "items", "rows": [{"name": "kiwi"}, {"qty": 1}]}, "INVALID_INPUT", "null"),
    ({"table": "items", "rows": [{"name": "kiwi", "colour": "green"}]}, "NOT_FOUND", "colour"),
    ({"table": "items", "rows": [{}]}, "INVALID_INPUT", "no columns"),
    ({"table": "items", "rows": []}, "INVALID_INPUT", "rows"),
    ({"table": "ghost", "rows": [{"name": "kiwi"}]}, "NOT_FOUND", "ghost"),
    ({"table": INJECTION, "rows": [{"name": "kiwi"}]}, "NOT_FOUND", "does not exist"),
    ({"table": "items", "rows": [{"name": "kiwi"}], "returnRows": True}, "INVALID_INPUT", "returnRows"),
])
async def test_batch_insert_all_or_nothing(call: Call, db: Any, schema: str, args: dict[str, Any], code: str,
                                           fragment: str) -> None:
    before = state(db, schema)
    with pytest.raises(ToolError) as exc:
        await call("pg_batch_insert", {**args, "schema": schema})
    assert_tool_error(exc, code, fragment)
    assert state(db, schema) == before


async def test_batch_insert_scope(call: Call, db: Any, schema: str) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_batch_insert", {"table": "items", "schema": schema, "rows": [{"name": "kiwi"}]},
                   principal=READER)
    assert_tool_error(exc, "FORBIDDEN", "write")
    assert items_rows(db, schema) == ORIGINAL_ITEMS


# ---------------------------------------------------------------- pg_count / pg_exists


async def test_count(call: Call, db: Any, schema: str) -> None:
    db.execute(f"INSERT INTO {schema}.items (name, qty) VALUES ('fig', 5)")
    base = {"table": "items", "schema": schema}
    assert await call("pg_count", base, principal=READER) == {"count": 4, "table": "items", "schema": schema}
    assert (await call("pg_count", {**base, "where": "qty > 0 AND name <> 'fig'"}))["count"] == 2
    assert (await call("pg_count", {**base, "where": "tags ? 'ripe'"}))["count"] == 1
    assert (await call("pg_count", {**base, "column": "tags"}))["count"] == 2
    assert (await call("pg_count", {**base, "column": "qty", "distinct": True}))["count"] == 3
    assert (await call("pg_count", {"table": f"{schema}.victim"}))["count"] == 1


async def test_count_bad_input(call: Call, db: Any, schema: str) -> None:
    base = {"table": "items", "schema": schema}
    with pytest.raises(ToolError) as exc:
        await call("pg_count", {**base, "distinct": True})
    assert_tool_error(exc, "INVALID_INPUT", "distinct")
    with pytest.raises(ToolError) as exc:
        await call("pg_count", {**base, "column": "colour"})
    assert_tool_error(exc, "NOT_FOUND", "colour")
    with pytest.raises(ToolError) as exc:
        await call("pg_count", {**base, "where": "colour = 'red'"})
    assert_tool_error(exc, "NOT_FOUND", "colour")
    with pytest.raises(ToolError) as exc:
        await call("pg_count", {**base, "where": "qty = 'many'"})
    assert_tool_error(exc, "INVALID_INPUT", "integer")
    for table in ("ghost", INJECTION):
        with pytest.raises(ToolError) as exc:
            await call("pg_count", {"table": table, "schema": schema})
        assert_tool_error(exc, "NOT_FOUND", "does not exist")
    with pytest.raises(ToolError) as exc:
        await call("pg_count", {**base, "filter": "qty > 0"})
    assert_tool_error(exc, "INVALID_INPUT", "filter")
    with pytest.raises(ToolError) as exc:
        await call("pg_count", base, principal=NOBODY)
    assert_tool_error(exc, "FORBIDDEN")
    assert_victim(db, schema)


@pytest.mark.parametrize("tool", ["pg_count", "pg_exists"])
@pytest.mark.parametrize("where", [*EVIL_WHERES, "qty > 0) OR (1=1", "true UNION SELECT 1",
                                   "pg_sleep(10) IS NULL OR nextval('x') > 0"])
async def test_where_fragments_refused(call: Call, db: Any, schema: str, tool: str, where: str) -> None:
    before = state(db, schema)
    with pytest.raises(ToolError) as exc:
        await call(tool, {"table": "items", "schema": schema, "where": where})
    assert_tool_error(exc, "INVALID_INPUT")
    assert state(db, schema) == before
    assert_victim(db, schema)


async def test_where_fragment_comment_cannot_hide_sql(call: Call, db: Any, schema: str) -> None:
    out = await call("pg_count", {"table": "items", "schema": schema, "where": "qty > 1 -- ) OR (true"})
    assert out["count"] == 2


async def test_exists(call: Call, db: Any, schema: str) -> None:
    base = {"table": "items", "schema": schema}
    assert await call("pg_exists", {**base, "where": "name = 'apple'"}, principal=READER) == {
        "exists": True, "table": "items", "schema": schema}
    assert (await call("pg_exists", {**base, "where": "name = 'banana'"}))["exists"] is False
    assert (await call("pg_exists", base))["exists"] is True
    db.execute(f"CREATE TABLE {schema}.empty (a int)")
    assert (await call("pg_exists", {"table": f"{schema}.empty"}))["exists"] is False


async def test_exists_bad_input(call: Call, db: Any, schema: str) -> None:
    for table in ("ghost", INJECTION):
        with pytest.raises(ToolError) as exc:
            await call("pg_exists", {"table": table, "schema": schema})
        assert_tool_error(exc, "NOT_FOUND", "does not exist")
    with pytest.raises(ToolError) as exc:
        await call("pg_exists", {"table": "items", "schema": schema, "where": "nosuch > 1"})
    assert_tool_error(exc, "NOT_FOUND", "nosuch")
    with pytest.raises(ToolError) as exc:
        await call("pg_exists", {"table": "items", "schema": schema, "limit": 1})
    assert_tool_error(exc, "INVALID_INPUT", "limit")
    with pytest.raises(ToolError) as exc:
        await call("pg_exists", {"table": "items", "schema": schema}, principal=NOBODY)
    assert_tool_error(exc, "FORBIDDEN")
    assert_victim(db, schema)


# ---------------------------------------------------------------- pg_truncate


async def test_truncate(call: Call, db: Any, schema: str) -> None:
    out = await call("pg_truncate", {"table": "items", "schema": schema})
    assert out == {"table": "items", "schema": schema, "truncated": True, "restart_identity": False,
                   "cascade": False}
    assert items_rows(db, schema) == []
    db.execute(f"INSERT INTO {schema}.items (name) VALUES ('kiwi')")
    assert items_rows(db, schema) == [(4, "kiwi", 0)]
    assert_victim(db, schema)


@pytest.mark.parametrize("key", ["restart_identity", "restartIdentity"])
async def test_truncate_restart_identity(call: Call, db: Any, schema: str, key: str) -> None:
    out = await call("pg_truncate", {"table": f"{schema}.items", key: True})
    assert out["restart_identity"] is True
    db.execute(f"INSERT INTO {schema}.items (name) VALUES ('kiwi')")
    assert items_rows(db, schema) == [(1, "kiwi", 0)]


async def test_truncate_cascade(call: Call, db: Any, schema: str) -> None:
    db.execute(f"CREATE TABLE {schema}.child (item_id int REFERENCES {schema}.items (id)); "
               f"INSERT INTO {schema}.child VALUES (1), (3)")
    before = state(db, schema)
    with pytest.raises(ToolError) as exc:
        await call("pg_truncate", {"table": "items", "schema": schema})
    assert_tool_error(exc, "SQL_ERROR", "foreign key")
    assert state(db, schema) == before
    out = await call("pg_truncate", {"table": "items", "schema": schema, "cascade": True})
    assert out["cascade"] is True
    assert items_rows(db, schema) == [] and q(db, f"SELECT * FROM {schema}.child") == []
    assert_victim(db, schema)


async def test_truncate_bad_input(call: Call, db: Any, schema: str) -> None:
    before = state(db, schema)
    for table in ("ghost", INJECTION):
        with pytest.raises(ToolError) as exc:
            await call("pg_truncate", {"table": table, "schema": schema})
        assert_tool_error(exc, "NOT_FOUND", "does not exist")
    with pytest.raises(ToolError) as exc:
        await call("pg_truncate", {"table": "items", "schema": schema, "where": "qty > 0"})
    assert_tool_error(exc, "INVALID_INPUT", "where")
    assert state(db, schema) == before


async def test_truncate_scope(call: Call, db: Any, schema: str) -> None:
    for principal in (READER, WRITER):
        with pytest.raises(ToolError) as exc:
            await call("pg_truncate", {"table": "items", "schema": schema}, principal=principal)
        assert_tool_error(exc, "FORBIDDEN", "admin")
    assert items_rows(db, schema) == ORIGINAL_ITEMS


# ---------------------------------------------------------------- every tool: its scope and the registry


CORE_TOOLS: dict[str, tuple[str, Callable[[str], dict[str, Any]]]] = {
    "pg_read_query": ("read", lambda s: {"sql": "SELECT 1"}),
    "pg_list_tables": ("read", lambda s: {"schema": s}),
    "pg_describe_table": ("read", lambda s: {"table": "items", "schema": s}),
    "pg_get_indexes": ("read", lambda s: {"schema": s}),
    "pg_list_objects": ("read", lambda s: {"schema": s}),
    "pg_object_details": ("read", lambda s: {"name": "items", "schema": s}),
    "pg_list_extensions": ("read", lambda s: {}),
    "pg_analyze_db_health": ("read", lambda s: {}),
    "pg_analyze_workload_indexes": ("read", lambda s: {}),
    "pg_analyze_query_indexes": ("read", lambda s: {"sql": f"SELECT * FROM {s}.items WHERE qty = 1"}),
    "pg_count": ("read", lambda s: {"table": "items", "schema": s}),
    "pg_exists": ("read", lambda s: {"table": "items", "schema": s}),
    "pg_write_query": ("write", lambda s: {"sql": f"DELETE FROM {s}.items"}),
    "pg_create_table": ("admin", lambda s: {"table": "n", "schema": s, "columns": [{"name": "a", "type": "int"}]}),
    "pg_create_index": ("admin", lambda s: {"table": "items", "schema": s, "columns": ["qty"]}),
    "pg_upsert": ("write", lambda s: {"table": "items", "schema": s, "data": {"name": "z"},
                                      "conflictColumns": ["name"]}),
    "pg_batch_insert": ("write", lambda s: {"table": "items", "schema": s, "rows": [{"name": "z"}]}),
    "pg_drop_table": ("admin", lambda s: {"table": "items", "schema": s, "cascade": True}),
    "pg_drop_index": ("admin", lambda s: {"name": "items_name_key", "schema": s, "cascade": True}),
    "pg_truncate": ("admin", lambda s: {"table": "items", "schema": s}),
}
_BELOW = {"read": NOBODY, "write": READER, "admin": WRITER}


async def test_every_core_tool_is_covered(rt: Any) -> None:
    core = {spec.name: spec.scope.value for spec in rt.registry if spec.group == "core"}
    assert core == {name: scope for name, (scope, _) in CORE_TOOLS.items()}


@pytest.mark.parametrize("name", sorted(CORE_TOOLS))
async def test_one_scope_below_is_forbidden(call: Call, db: Any, schema: str, name: str) -> None:
    scope, make_args = CORE_TOOLS[name]
    before = state(db, schema)
    with pytest.raises(ToolError) as exc:
        await call(name, make_args(schema), principal=_BELOW[scope])
    err = assert_tool_error(exc, "FORBIDDEN", name)
    assert err.details == {"requiredScope": scope}
    assert state(db, schema) == before


@pytest.mark.parametrize("name", sorted(CORE_TOOLS))
async def test_unknown_key_is_refused(call: Call, db: Any, schema: str, name: str) -> None:
    _, make_args = CORE_TOOLS[name]
    before = state(db, schema)
    with pytest.raises(ToolError) as exc:
        await call(name, {**make_args(schema), "bogusKey": 1})
    err = assert_tool_error(exc, "INVALID_INPUT", "bogusKey")
    assert [e["field"] for e in err.details["errors"]] == ["bogusKey"]
    assert state(db, schema) == before


async def test_create_index_refuses_name_of_an_invalid_leftover(call: Call, db: Any, schema: str) -> None:
    """An INVALID index left by someone else's failed concurrent build is reported, not taken as done."""
    db.execute(f"INSERT INTO {schema}.items (name, qty) VALUES ('dup_a', 77), ('dup_b', 77)")
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute(f"CREATE UNIQUE INDEX CONCURRENTLY leftover_idx ON {schema}.items (qty)")
    try:
        with pytest.raises(ToolError) as exc:
            await call("pg_create_index", {"table": "items", "schema": schema, "columns": ["qty"],
                                           "name": "leftover_idx", "ifNotExists": True})
        assert_tool_error(exc, "CONFLICT", "invalid")
    finally:
        db.execute(f"DROP INDEX IF EXISTS {schema}.leftover_idx")
        db.execute(f"DELETE FROM {schema}.items WHERE name IN ('dup_a', 'dup_b')")


async def test_create_table_default_may_use_nextval(call: Call, db: Any, schema: str) -> None:
    db.execute(f"CREATE SEQUENCE {schema}.ticket_seq START 100")
    await call("pg_create_table", {"table": "tickets", "schema": schema, "columns": [
        {"name": "id", "type": "bigint", "default": f"nextval('{schema}.ticket_seq')", "primaryKey": True},
        {"name": "title", "type": "text"}]})
    out = await call("pg_batch_insert", {"table": "tickets", "schema": schema, "rows": [{"title": "a"}],
                                         "returning": True})
    assert out["rows"] == [{"id": 100, "title": "a"}]
    with pytest.raises(ToolError) as exc:
        await call("pg_create_table", {"table": "bad", "schema": schema, "columns": [
            {"name": "x", "type": "text", "default": "pg_read_file('/etc/passwd')"}]})
    assert_tool_error(exc, "INVALID_INPUT", "pg_read_file")
    assert q(db, "SELECT to_regclass(%s)", f"{schema}.bad") == [(None,)]
