"""citext group: the extension, converting columns with their indexes and views, candidates, search and compare."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import SecretStr

from pgcode.core.runtime import Runtime
from pgcode.errors import ToolError
from pgcode.settings import Settings
from pgcode.types import LOCAL_PRINCIPAL, Principal, Scope
from tests.fix_db import Call, assert_tool_error

pytestmark = pytest.mark.anyio

READER = Principal.with_scope("reader", Scope.READ)
WRITER = Principal.with_scope("writer", Scope.WRITE)
BARE_DB = "t_citext_bare"


def one(conn: psycopg.Connection[Any], query: str, *params: Any) -> Any:
    row = conn.execute(query, params or None).fetchone()
    assert row is not None
    return row[0]


def installed(conn: psycopg.Connection[Any]) -> bool:
    return bool(one(conn, "SELECT count(*) FROM pg_extension WHERE extname = 'citext'"))


def column_type(conn: psycopg.Connection[Any], schema: str, table: str, column: str) -> str:
    return str(one(conn, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass "
                         "AND attname = %s", f'"{schema}"."{table}"', column))


@pytest.fixture
async def citext(call: Call, conn: psycopg.Connection[Any]) -> None:
    """The extension, created through its tool where the server lacks it (the embedded PostgreSQL 18)."""
    await call("pg_citext_create_extension", {})
    assert installed(conn)


@pytest.fixture(scope="module")
def bare_dsn(dsn: str) -> Iterator[str]:
    """A database of this module's own without citext (dropped afterwards)."""
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(BARE_DB)))
        c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(BARE_DB)))
    params = conninfo_to_dict(dsn)
    params["dbname"] = BARE_DB
    yield make_conninfo("", **params)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(BARE_DB)))


async def test_without_the_extension_then_created(bare_dsn: str, settings: Settings) -> None:
    """Without citext the tools that need it say so, the catalog-only ones and search still answer; then it is
    created, and compare works."""
    with psycopg.connect(bare_dsn, autocommit=True) as c:
        c.execute("CREATE TABLE users (email text); INSERT INTO users VALUES ('Alice@Example.com'), ('bob@x.org')")
    async with Runtime(settings.model_copy(update={"database_url": SecretStr(bare_dsn)})) as bare:
        for name, args in (("pg_citext_compare", {"value1": "a", "value2": "A"}),
                           ("pg_citext_convert_column", {"table": "users", "column": "email"})):
            with pytest.raises(ToolError) as exc:
                await bare.invoke(name, args, LOCAL_PRINCIPAL)
            err = assert_tool_error(exc, "EXTENSION_MISSING", "citext")
            assert err.hint == "create it with pg_citext_create_extension"
        listed = await bare.invoke("pg_citext_list_columns", {}, READER)
        assert listed["extension_installed"] is False and listed["columns"] == []
        found = await bare.invoke("pg_citext_search", {"table": "users", "column": "email",
                                                       "value": "alice@example.com"}, READER)
        assert found["rows"] == [{"email": "Alice@Example.com"}] and found["match"] == "lower() ="
        advice = await bare.invoke("pg_citext_schema_advisor", {"table": "users"}, READER)
        assert advice["next_steps"][0] == "pg_citext_create_extension"

        out = await bare.invoke("pg_citext_create_extension", {}, LOCAL_PRINCIPAL)
        assert out["created"] is True and out["schema"] == "public" and bare.db.caps.has_extension("citext")
        assert (await bare.invoke("pg_citext_create_extension", {}, LOCAL_PRINCIPAL))["created"] is False
        cmp = await bare.invoke("pg_citext_compare", {"value1": "a", "value2": "A"}, READER)
        assert cmp["equal"] is True
        converted = await bare.invoke("pg_citext_convert_column", {"table": "users", "column": "email"},
                                      LOCAL_PRINCIPAL)
        assert converted["converted"] is True
    with psycopg.connect(bare_dsn) as c:
        assert one(c, "SELECT extversion FROM pg_extension WHERE extname = 'citext'") == out["version"]
        assert one(c, "SELECT count(*) FROM users WHERE email = 'ALICE@example.com'") == 1


async def test_create_extension_where_installed(call: Call, conn: psycopg.Connection[Any], rt: Runtime,
                                                citext: None) -> None:
    out = await call("pg_citext_create_extension", {})
    assert out["created"] is False
    assert out["version"] == one(conn, "SELECT extversion FROM pg_extension WHERE extname = 'citext'")
    assert out["schema"] == one(conn, "SELECT extnamespace::regnamespace::text FROM pg_extension "
                                      "WHERE extname = 'citext'")
    assert rt.db.caps.has_extension("citext")


async def test_convert_keeps_indexes_valid(call: Call, conn: psycopg.Connection[Any], schema: str,
                                           citext: None) -> None:
    conn.execute(f"CREATE TABLE {schema}.accounts (id int PRIMARY KEY, email varchar(200) NOT NULL UNIQUE "
                 f"CHECK (email LIKE '%@%'), handle text DEFAULT 'anon')")
    conn.execute(f"CREATE INDEX accounts_email_prefix ON {schema}.accounts (email text_pattern_ops)")
    conn.execute(f"INSERT INTO {schema}.accounts VALUES (1, 'Alice@Example.com', 'al'), (2, 'bob@example.com', 'b')")
    out = await call("pg_citext_convert_column", {"table": f"{schema}.accounts", "column": "email"})
    assert out["converted"] is True and out["from_type"] == "character varying(200)" and out["to_type"] == "citext"
    assert column_type(conn, schema, "accounts", "email") == "citext"
    by_name = {i["name"]: i for i in out["indexes"]}
    assert set(by_name) == {"accounts_email_key", "accounts_email_prefix"}
    assert all(i["is_valid"] for i in out["indexes"]) and by_name["accounts_email_key"]["is_unique"]
    assert "length limit" in out["notes"][0]
    assert {"kind": "constraint", "name": "accounts_email_check"} in out["kept"]
    # The indexes are there, valid, and the unique one now ignores case.
    assert one(conn, "SELECT bool_and(x.indisvalid) FROM pg_index x WHERE x.indrelid = %s::regclass",
               f"{schema}.accounts") is True
    assert one(conn, f"SELECT id FROM {schema}.accounts WHERE email = 'ALICE@EXAMPLE.COM'") == 1
    with pytest.raises(psycopg.errors.UniqueViolation):
        conn.execute(f"INSERT INTO {schema}.accounts VALUES (3, 'BOB@example.com')")
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(f"INSERT INTO {schema}.accounts VALUES (4, 'no-at-sign')")

    again = await call("pg_citext_convert_column", {"table": "accounts", "schema": schema, "column": "email"})
    assert again["converted"] is False and "already" in again["note"]


async def test_convert_refuses_dependent_views(call: Call, conn: psycopg.Connection[Any], schema: str,
                                               citext: None) -> None:
    conn.execute(f"CREATE TABLE {schema}.members (id int, login text); INSERT INTO {schema}.members VALUES (1, 'Ann')")
    conn.execute(f"CREATE VIEW {schema}.member_logins AS SELECT login FROM {schema}.members")
    conn.execute(f"CREATE MATERIALIZED VIEW {schema}.member_counts AS SELECT login, count(*) FROM {schema}.members "
                 f"GROUP BY login")
    with pytest.raises(ToolError) as exc:
        await call("pg_citext_convert_column", {"table": "members", "schema": schema, "column": "login"})
    err = assert_tool_error(exc, "CONFLICT", f"view {schema}.member_logins",
                            f"materialized view {schema}.member_counts")
    assert {b["name"] for b in err.details["blocking"]} == {f"{schema}.member_logins", f"{schema}.member_counts"}
    assert column_type(conn, schema, "members", "login") == "text"
    assert one(conn, f"SELECT login FROM {schema}.member_logins") == "Ann"


async def test_convert_refusals_change_nothing(call: Call, conn: psycopg.Connection[Any], schema: str,
                                               citext: None) -> None:
    conn.execute(f"CREATE TABLE {schema}.teams (name text PRIMARY KEY, size int)")
    conn.execute(f"CREATE TABLE {schema}.players (id int, team text REFERENCES {schema}.teams (name))")
    conn.execute(f"CREATE TABLE {schema}.tags (tag text UNIQUE, lowered text GENERATED ALWAYS AS (lower(tag)) "
                 f"STORED)")
    conn.execute(f"INSERT INTO {schema}.tags (tag) VALUES ('Red'), ('red')")
    with pytest.raises(ToolError) as exc:
        await call("pg_citext_convert_column", {"table": "teams", "schema": schema, "column": "name"})
    err = assert_tool_error(exc, "CONFLICT", "foreign key players_team_fkey")
    assert "text" in err.details["blocking"][0]["reason"]
    with pytest.raises(ToolError) as exc:
        await call("pg_citext_convert_column", {"table": "tags", "schema": schema, "column": "tag"})
    assert_tool_error(exc, "CONFLICT", "generated column lowered")
    conn.execute(f"ALTER TABLE {schema}.tags DROP COLUMN lowered")
    # Values that differ only by case break the unique index: PostgreSQL's reason, nothing changed.
    with pytest.raises(ToolError) as exc:
        await call("pg_citext_convert_column", {"table": "tags", "schema": schema, "column": "tag"})
    err = assert_tool_error(exc, "CONFLICT", "could not create unique index")
    assert "red" in err.details["detail"].lower()
    for table, column in (("teams", "name"), ("tags", "tag"), ("players", "team")):
        assert column_type(conn, schema, table, column) == "text"
    cases: list[tuple[dict[str, Any], str, str]] = [
        ({"table": "teams", "schema": schema, "column": "size"}, "INVALID_INPUT", "only text and varchar"),
        ({"table": "teams", "schema": schema, "column": "nope"}, "NOT_FOUND", "no column"),
        ({"table": "nope", "schema": schema, "column": "x"}, "NOT_FOUND", "does not exist"),
    ]
    for args, code, fragment in cases:
        with pytest.raises(ToolError) as exc:
            await call("pg_citext_convert_column", args)
        assert_tool_error(exc, code, fragment)


async def test_list_columns(call: Call, conn: psycopg.Connection[Any], schema: str, citext: None) -> None:
    conn.execute(f"CREATE TABLE {schema}.listed (a citext NOT NULL, b text, c citext[]); "
                 f"CREATE INDEX ON {schema}.listed (a)")
    out = await call("pg_citext_list_columns", {"schema": schema}, READER)
    rows = {(r["table"], r["column"]): r for r in out["columns"]}
    assert ("listed", "b") not in rows and out["extension_installed"] is True
    assert rows[("listed", "a")] == {"schema": schema, "table": "listed", "column": "a", "type": "citext",
                                     "table_type": "table", "nullable": False, "indexed": True}
    assert rows[("listed", "c")]["type"] == "citext[]" and rows[("listed", "c")]["indexed"] is False
    cut = await call("pg_citext_list_columns", {"schema": schema, "limit": 1})
    assert cut["count"] == 1 and cut["truncated"] is True and cut["total"] == out["total"]
    everywhere = await call("pg_citext_list_columns", {})
    assert {(r["schema"], r["table"], r["column"]) for r in everywhere["columns"]} >= {(schema, "listed", "a")}


@pytest.fixture
def people(conn: psycopg.Connection[Any], schema: str) -> str:
    conn.execute(f"DROP TABLE IF EXISTS {schema}.people")
    conn.execute(f"CREATE TABLE {schema}.people (id int PRIMARY KEY, email text, login text, bio text, "
                 f"country text)")
    conn.execute(f"CREATE INDEX people_login_lower ON {schema}.people (lower(login))")
    conn.execute(f"INSERT INTO {schema}.people SELECT g, 'user' || g || '@example.com', 'u' || g, "
                 f"'bio number ' || g, 'de' FROM generate_series(1, 40) g")
    conn.execute(f"INSERT INTO {schema}.people VALUES (41, 'Alice@Example.com', 'Alice', 'x', 'fr'), "
                 f"(42, 'alice@example.com', 'alice2', 'y', 'fr'), (43, 'BOB@example.com', 'bob', 'z', 'FR')")
    return "people"


async def test_analyze_candidates(call: Call, schema: str, people: str) -> None:
    out = await call("pg_citext_analyze_candidates", {"schema": schema, "table": people}, READER)
    found = {c["column"]: c for c in out["candidates"]}
    assert out["columns_examined"] == 4 and out["text_columns"] == 4 and not out["truncated"]
    assert set(found) == {"email", "login", "country"}
    email = found["email"]
    assert email["confidence"] == "high" and email["evidence"]["sampled"] == 43
    assert email["evidence"]["case_variant_values"] == 1 and email["evidence"]["distinct_values"] == 43
    assert email["evidence"]["mixed_case_share"] == round(2 / 43, 4)
    assert "email" in email["reasons"][0]
    assert found["login"]["evidence"]["case_insensitive_index"].endswith("(lower(login))")
    assert found["country"]["confidence"] == "medium" and found["country"]["evidence"]["case_variant_values"] == 1
    assert [c["column"] for c in out["candidates"]][-1] == "country"
    small = await call("pg_citext_analyze_candidates", {"schema": schema, "table": people, "sampleSize": 10,
                                                        "maxColumns": 2, "limit": 1})
    assert small["columns_examined"] == 2 and small["truncated"] is True and small["count"] == 1
    assert small["candidates"][0]["evidence"]["sampled"] == 10


async def test_schema_advisor(call: Call, conn: psycopg.Connection[Any], schema: str, people: str,
                              citext: None) -> None:
    conn.execute(f"CREATE VIEW {schema}.people_emails AS SELECT email FROM {schema}.people")
    conn.execute(f"ALTER TABLE {schema}.people ADD COLUMN nick citext")
    out = await call("pg_citext_schema_advisor", {"table": f"{schema}.{people}"}, READER)
    cols = {c["column"]: c for c in out["columns"]}
    assert cols["email"]["recommendation"] == "convert"
    assert cols["email"]["blockers"] == [{"kind": "view", "name": f"{schema}.people_emails"}]
    assert cols["login"]["recommendation"] == "convert" and cols["login"]["blockers"] == []
    assert cols["bio"]["recommendation"] == "keep" and cols["nick"]["recommendation"] == "already_citext"
    assert out["summary"] == {"convert": 3, "consider": 0, "keep": 1, "already_citext": 1}
    assert any("'login'" in s for s in out["next_steps"]) and not any("'email'" in s for s in out["next_steps"])
    with pytest.raises(ToolError) as exc:
        await call("pg_citext_schema_advisor", {"table": "nope", "schema": schema})
    assert_tool_error(exc, "NOT_FOUND", "does not exist")
    conn.execute(f"DROP VIEW {schema}.people_emails")


async def test_compare(call: Call, citext: None) -> None:
    out = await call("pg_citext_compare", {"value1": "Alice@Example.com", "value2": "alice@EXAMPLE.com"}, READER)
    assert out["equal"] is True and out["comparison"] == 0 and out["case_sensitive_equal"] is False
    assert out["lower1"] == out["lower2"] == "alice@example.com"
    out = await call("pg_citext_compare", {"value1": "apple", "value2": "Banana"})
    assert out["equal"] is False and out["comparison"] == -1
    with pytest.raises(ToolError) as exc:
        await call("pg_citext_compare", {"value1": "a"})
    assert_tool_error(exc, "INVALID_INPUT", "value2")


async def test_search(call: Call, conn: psycopg.Connection[Any], schema: str, people: str, citext: None) -> None:
    out = await call("pg_citext_search", {"table": people, "schema": schema, "column": "email",
                                          "value": "alice@example.com", "returnColumns": ["id", "email"]}, READER)
    assert out["match"] == "lower() =" and out["truncated"] is False
    assert sorted(out["rows"], key=lambda r: r["id"]) == [{"id": 41, "email": "Alice@Example.com"},
                                                           {"id": 42, "email": "alice@example.com"}]
    conn.execute(f"CREATE TABLE {schema}.ci_people AS SELECT id, email::citext AS email FROM {schema}.people")
    out = await call("pg_citext_search", {"table": "ci_people", "schema": schema, "column": "email",
                                          "value": "ALICE@example.COM", "limit": 1})
    assert out["match"] == "citext =" and out["rowCount"] == 1 and out["truncated"] is True
    assert out["rows"][0]["email"].lower() == "alice@example.com"
    with pytest.raises(ToolError) as exc:
        await call("pg_citext_search", {"table": people, "schema": schema, "column": "id", "value": "1"})
    assert_tool_error(exc, "INVALID_INPUT", "not a text type")


async def test_scopes(call: Call, conn: psycopg.Connection[Any], schema: str) -> None:
    conn.execute(f"CREATE TABLE {schema}.guarded (v text)")
    for name, args in (("pg_citext_create_extension", {}),
                       ("pg_citext_convert_column", {"table": "guarded", "schema": schema, "column": "v"})):
        with pytest.raises(ToolError) as exc:
            await call(name, args, WRITER)
        assert_tool_error(exc, "FORBIDDEN", "admin")
    assert column_type(conn, schema, "guarded", "v") == "text"


async def test_code_mode_seed_names(rt: Runtime, schema: str, people: str, citext: None) -> None:
    code = f"""
    const found = await pg.citext.citextSearch({{table: "people", schema: "{schema}", column: "email",
                                                value: "alice@example.com"}});
    const cmp = await pg.citext.citextCompare({{value1: "Alice@Example.com", value2: "alice@example.com"}});
    return {{emails: found.rows.map(r => r.email).sort(), equal: cmp.equal}};
    """
    out = await rt.invoke("pg_execute_code", {"code": code, "readonly": True}, LOCAL_PRINCIPAL)
    assert out["success"], out
    assert out["result"] == {"emails": ["Alice@Example.com", "alice@example.com"], "equal": True}


async def test_convert_a_partitioned_table(call: Call, conn: psycopg.Connection[Any], schema: str,
                                           citext: None) -> None:
    conn.execute(f"CREATE TABLE {schema}.signups (id int, email text) PARTITION BY RANGE (id); "
                 f"CREATE TABLE {schema}.signups_1 PARTITION OF {schema}.signups FOR VALUES FROM (0) TO (100); "
                 f"CREATE TABLE {schema}.signups_2 PARTITION OF {schema}.signups FOR VALUES FROM (100) TO (200); "
                 f"CREATE INDEX signups_email ON {schema}.signups (email); "
                 f"INSERT INTO {schema}.signups VALUES (1, 'Ann@X.org'), (150, 'ben@x.org')")
    with pytest.raises(ToolError) as exc:
        await call("pg_citext_convert_column", {"table": "signups_1", "schema": schema, "column": "email"})
    assert_tool_error(exc, "CONFLICT", "inherited column")
    out = await call("pg_citext_convert_column", {"table": "signups", "schema": schema, "column": "email"})
    assert out["converted"] and [i["name"] for i in out["indexes"]] == ["signups_email"]
    for part in ("signups", "signups_1", "signups_2"):
        assert column_type(conn, schema, part, "email") == "citext"
    assert one(conn, "SELECT count(*) FROM pg_index WHERE indrelid IN (%s::regclass, %s::regclass) AND indisvalid",
               f"{schema}.signups_1", f"{schema}.signups_2") == 2
    assert one(conn, f"SELECT id FROM {schema}.signups WHERE email = 'ANN@x.org'") == 1
