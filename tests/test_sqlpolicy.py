"""The SQL policy: caller SQL that tries to write or escape through the read tools is refused, and nothing moves.

Every attack runs through invoke() against the real database; afterwards a canary table, a sequence, the
catalog (relations, roles, databases, large objects, ACLs), advisory locks, server configuration, a victim
backend and a set of server-side files are compared with what they were before.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgcode.db import sqlpolicy
from pgcode.errors import ToolError
from pgcode.types import Scope
from tests.fix_db import Call, assert_tool_error

pytestmark = pytest.mark.anyio

CANARY_ROWS = [(1, "one"), (2, "two"), (3, "three"), (4, "four"), (5, "five")]
_TOKEN = uuid.uuid4().hex[:12]
# Names and values the attacks would create, looked for afterwards.
ATTACK_NAMES = ("pgcode_policy_evil", "evil", "stolen", "sneaky_t")
ATTACK_VALUE = "1234kB"
ADVISORY_KEYS = (4242, 424201, 424202, 424203, 424204, 424205)
# Server-side files an attack would create; each must still be missing afterwards.
FILES = {name: f"/tmp/pgcode_policy_{_TOKEN}_{name}" for name in ("copy", "copy_query", "program_to",
                                                                    "program_from", "lo_export")}


@dataclass(frozen=True)
class Canary:
    schema: str
    lo: int  # a large object that lo_export/lo_unlink attempts point at
    victim: psycopg.Connection[Any]  # another backend that pg_terminate_backend/pg_cancel_backend aim at
    victim_pid: int

    def fill(self, text: str) -> str:
        return text.format(s=self.schema, lo=self.lo, pid=self.victim_pid, **FILES)


@pytest.fixture(scope="module")
def canary(dsn: str, schema: str) -> Iterator[Canary]:
    s = sql.Identifier(schema)
    with psycopg.connect(dsn, autocommit=True) as c, psycopg.connect(dsn, autocommit=True) as victim:
        c.execute(sql.SQL("CREATE TABLE {}.canary (id int PRIMARY KEY, v text NOT NULL)").format(s))
        with c.cursor() as cur:
            cur.executemany(sql.SQL("INSERT INTO {}.canary VALUES (%s, %s)").format(s), CANARY_ROWS)
        c.execute(sql.SQL("CREATE SEQUENCE {}.canary_seq").format(s))
        c.execute("SELECT nextval(%s)", (f"{schema}.canary_seq",))
        # Functions that write: the policy cannot see inside them, the READ ONLY transaction refuses them.
        c.execute(sql.SQL(
            "CREATE FUNCTION {0}.sneaky_delete() RETURNS bigint LANGUAGE sql AS "
            "$$ WITH d AS (DELETE FROM {0}.canary RETURNING 1) SELECT count(*) FROM d $$").format(s))
        c.execute(sql.SQL("CREATE FUNCTION {0}.sneaky_nextval() RETURNS bigint LANGUAGE sql AS "
                          "$$ SELECT nextval('{1}') $$").format(s, sql.SQL(f"{schema}.canary_seq")))
        c.execute(sql.SQL("CREATE FUNCTION {0}.sneaky_create() RETURNS void LANGUAGE plpgsql AS "
                          "$$ BEGIN EXECUTE 'CREATE TABLE {0}.sneaky_t (a int)'; END $$").format(s))
        lo = c.execute("SELECT lo_from_bytea(0, 'canary large object')::int").fetchone()
        pid = victim.execute("SELECT pg_backend_pid()").fetchone()
        assert lo is not None and pid is not None
        missing = c.execute("SELECT bool_and(pg_stat_file(p, true) IS NULL) FROM unnest(%s::text[]) p",
                            (list(FILES.values()),)).fetchone()
        assert missing == (True,), "a policy test file exists before the tests ran"
        yield Canary(schema, lo[0], victim, pid[0])
        c.execute("SELECT lo_unlink(%s)", (lo[0],))


def snapshot(conn: psycopg.Connection[Any], canary: Canary) -> dict[str, Any]:
    """Everything an attack could change, read behind pgcode's back."""

    def rows(query: str, *params: Any) -> list[tuple[Any, ...]]:
        return conn.execute(query, params or None).fetchall()

    s = canary.schema
    # Other test runs may share this server: look only at what these attacks aim at.
    return {
        "canary": rows(f"SELECT id, v FROM {s}.canary ORDER BY id"),
        "sequence": rows(f"SELECT last_value, is_called FROM {s}.canary_seq"),
        "relations": rows("SELECT n.nspname, c.relname, c.relkind FROM pg_class c "
                          "JOIN pg_namespace n ON n.oid = c.relnamespace "
                          "WHERE n.nspname = %s OR c.relname = ANY(%s) ORDER BY 1, 2", s, list(ATTACK_NAMES)),
        "acl": rows("SELECT relacl::text FROM pg_class WHERE oid = %s::regclass", f"{s}.canary"),
        "roles": rows("SELECT rolname, rolsuper FROM pg_roles WHERE rolname IN (current_user, %s) ORDER BY 1",
                      ATTACK_NAMES[0]),
        "databases": rows("SELECT datname FROM pg_database WHERE datname = %s", ATTACK_NAMES[0]),
        "large_objects": rows("SELECT m.oid::int, lo_get(m.oid) = pg_read_binary_file('PG_VERSION') "
                              "FROM pg_largeobject_metadata m WHERE m.oid = %s "
                              "OR lo_get(m.oid) = pg_read_binary_file('PG_VERSION')", canary.lo),
        "advisory_locks": rows("SELECT objid::int FROM pg_locks WHERE locktype = 'advisory' AND objid = ANY(%s)",
                               list(ADVISORY_KEYS)),
        "file_settings": rows("SELECT name, setting FROM pg_file_settings WHERE setting = %s", ATTACK_VALUE),
        "files": rows("SELECT p, pg_stat_file(p, true) IS NOT NULL FROM unnest(%s::text[]) p ORDER BY 1",
                      list(FILES.values())),
        "victim": canary.victim.execute("SELECT pg_backend_pid()").fetchall(),
        "victim_alive": rows("SELECT count(*) FROM pg_stat_activity WHERE pid = %s", canary.victim_pid),
    }


def assert_untouched(before: dict[str, Any], after: dict[str, Any], canary: Canary) -> None:
    assert after["canary"] == CANARY_ROWS
    assert after["sequence"] == [(1, True)]
    assert after["files"] == [(p, False) for p in sorted(FILES.values())]
    assert after["victim"] == [(canary.victim_pid,)] and after["victim_alive"] == [(1,)]
    assert after["large_objects"] == [(canary.lo, False)]
    assert len(after["roles"]) == 1 and after["roles"][0][0] != ATTACK_NAMES[0] and after["roles"][0][1] is True
    assert after["databases"] == []
    assert after["advisory_locks"] == [] and after["file_settings"] == []
    assert all(r[0] == canary.schema for r in after["relations"])
    for key in before:
        assert after[key] == before[key], f"{key} changed"


# (id, SQL, code, fragment of the message). {s} is the test schema, {pid} a victim backend, {lo} a large
# object, {copy} ... {lo_export} server-side paths that must never appear.
REFUSED: list[tuple[str, str, str, str]] = [
    # data-modifying statements and CTEs
    ("cte_insert", "WITH x AS (INSERT INTO {s}.canary VALUES (99, 'evil') RETURNING id) SELECT * FROM x",
     "INVALID_INPUT", "data-modifying INSERT"),
    ("cte_update", "WITH x AS (UPDATE {s}.canary SET v = 'evil' RETURNING id) SELECT count(*) FROM x",
     "INVALID_INPUT", "data-modifying UPDATE"),
    ("cte_delete", "WITH x AS (DELETE FROM {s}.canary RETURNING id) SELECT 1", "INVALID_INPUT",
     "data-modifying DELETE"),
    ("cte_merge", "WITH m AS (MERGE INTO {s}.canary t USING (VALUES (1)) v(id) ON t.id = v.id "
                  "WHEN MATCHED THEN DELETE RETURNING t.id) SELECT * FROM m", "INVALID_INPUT", "MERGE"),
    ("cte_nested", "WITH a AS (WITH b AS (DELETE FROM {s}.canary RETURNING id) SELECT id FROM b) "
                   "SELECT * FROM a", "INVALID_INPUT", "data-modifying DELETE"),
    ("cte_in_from_subquery", "SELECT * FROM (WITH d AS (UPDATE {s}.canary SET v = 'x' RETURNING id) "
                             "SELECT id FROM d) q", "INVALID_INPUT", "data-modifying UPDATE"),
    ("cte_in_scalar_subquery", "SELECT (WITH d AS (DELETE FROM {s}.canary RETURNING id) "
                               "SELECT count(*) FROM d)", "INVALID_INPUT", "data-modifying DELETE"),
    ("plain_insert", "INSERT INTO {s}.canary VALUES (99, 'evil')", "INVALID_INPUT", "INSERT is not a read"),
    ("plain_update", "UPDATE {s}.canary SET v = 'evil'", "INVALID_INPUT", "UPDATE is not a read"),
    ("plain_delete_returning", "DELETE FROM {s}.canary RETURNING *", "INVALID_INPUT", "DELETE is not a read"),
    ("plain_merge", "MERGE INTO {s}.canary t USING (VALUES (1)) v(id) ON t.id = v.id WHEN MATCHED THEN DELETE",
     "INVALID_INPUT", "MERGE is not a read"),
    ("update_pg_settings", "UPDATE pg_settings SET setting = '1234kB' WHERE name = 'work_mem'",
     "INVALID_INPUT", "UPDATE is not a read"),
    # statements chained with ;
    ("chain_drop", "SELECT 1; DROP TABLE {s}.canary", "INVALID_INPUT", "exactly one SQL statement"),
    ("chain_comment_between", "SELECT 1; /* nothing to see */ DROP TABLE {s}.canary", "INVALID_INPUT",
     "found 2"),
    ("chain_semicolon_in_comment", "SELECT 1 /* ; */ ; DELETE FROM {s}.canary", "INVALID_INPUT", "found 2"),
    ("chain_after_line_comment", "SELECT 1 -- the rest is a comment, or is it?\n; DELETE FROM {s}.canary",
     "INVALID_INPUT", "found 2"),
    ("chain_after_string_semicolon", "SELECT ';' ; DELETE FROM {s}.canary", "INVALID_INPUT", "found 2"),
    ("chain_after_dollar_quote", "SELECT $q$ ; $q$; DELETE FROM {s}.canary", "INVALID_INPUT", "found 2"),
    ("chain_commit_escape", "COMMIT; DROP TABLE {s}.canary", "INVALID_INPUT", "found 2"),
    ("chain_three", "/* ; */ SELECT 1; COMMIT; DELETE FROM {s}.canary", "INVALID_INPUT", "found 3"),
    ("chain_two_reads", "SELECT 1; SELECT 2", "INVALID_INPUT", "found 2"),
    ("chain_unterminated_comment", "SELECT 1; DROP TABLE {s}.canary; /*", "INVALID_INPUT", "syntax error"),
    # procedural code
    ("do_block", "DO $$ BEGIN DELETE FROM {s}.canary; END $$", "INVALID_INPUT", "DO blocks"),
    ("do_language", "DO LANGUAGE plpgsql 'BEGIN DROP TABLE {s}.canary; END'", "INVALID_INPUT", "DO blocks"),
    ("call_procedure", "CALL {s}.nothing()", "INVALID_INPUT", "CALL is not a read"),
    # COPY
    ("copy_to_program", "COPY {s}.canary TO PROGRAM 'touch {program_to}'", "INVALID_INPUT", "PROGRAM"),
    ("copy_from_program", "COPY {s}.canary FROM PROGRAM 'touch {program_from}'", "INVALID_INPUT", "PROGRAM"),
    ("copy_to_file", "COPY {s}.canary TO '{copy}'", "INVALID_INPUT", "server file"),
    ("copy_query_to_file", "COPY (SELECT * FROM {s}.canary) TO '{copy_query}'", "INVALID_INPUT", "server file"),
    ("copy_from_file", "COPY {s}.canary FROM 'PG_VERSION'", "INVALID_INPUT", "server file"),
    ("copy_to_stdout", "COPY {s}.canary TO STDOUT", "INVALID_INPUT", "data stream"),
    # files and large objects
    ("pg_read_file", "SELECT pg_read_file('postgresql.conf')", "INVALID_INPUT", "pg_read_file()"),
    ("pg_read_binary_file", "SELECT pg_read_binary_file('postgresql.conf')", "INVALID_INPUT",
     "pg_read_binary_file()"),
    ("pg_ls_dir", "SELECT pg_ls_dir('.')", "INVALID_INPUT", "pg_ls_dir()"),
    ("pg_stat_file", "SELECT pg_stat_file('postgresql.conf')", "INVALID_INPUT", "pg_stat_file()"),
    ("pg_ls_dir_in_from", "SELECT * FROM pg_ls_dir('.')", "INVALID_INPUT", "pg_ls_dir()"),
    ("pg_ls_dir_rows_from", "SELECT * FROM ROWS FROM (pg_ls_dir('.')) AS f(name)", "INVALID_INPUT",
     "pg_ls_dir()"),
    ("pg_read_file_quoted", "SELECT \"pg_read_file\"('postgresql.conf')", "INVALID_INPUT", "pg_read_file()"),
    ("pg_read_file_unicode_escape", "SELECT U&\"pg\\005fread_file\"('postgresql.conf')", "INVALID_INPUT",
     "pg_read_file()"),
    ("pg_read_file_qualified", "SELECT pg_catalog.pg_read_file('postgresql.conf')", "INVALID_INPUT",
     "pg_catalog.pg_read_file()"),
    ("pg_read_file_in_values", "VALUES (pg_read_file('postgresql.conf'))", "INVALID_INPUT", "pg_read_file()"),
    ("pg_read_file_in_aggregate", "SELECT string_agg(pg_read_file(v), '') FROM {s}.canary", "INVALID_INPUT",
     "pg_read_file()"),
    ("lo_import", "SELECT lo_import('PG_VERSION')", "INVALID_INPUT", "lo_import()"),
    ("lo_export", "SELECT lo_export({lo}, '{lo_export}')", "INVALID_INPUT", "lo_export()"),
    ("lo_unlink", "SELECT lo_unlink({lo})", "INVALID_INPUT", "lo_unlink()"),
    # server configuration and other sessions
    ("set_config", "SELECT set_config('work_mem', '1234kB', false)", "INVALID_INPUT", "set_config()"),
    ("set_config_qualified", "SELECT pg_catalog.set_config('work_mem', '1234kB', false)", "INVALID_INPUT",
     "pg_catalog.set_config()"),
    ("set_config_in_order_by", "SELECT 1 ORDER BY set_config('work_mem', '1234kB', false)", "INVALID_INPUT",
     "set_config()"),
    ("pg_terminate_backend", "SELECT pg_terminate_backend({pid})", "INVALID_INPUT", "pg_terminate_backend()"),
    ("pg_cancel_backend", "SELECT pg_cancel_backend({pid})", "INVALID_INPUT", "pg_cancel_backend()"),
    ("pg_reload_conf", "SELECT pg_reload_conf()", "INVALID_INPUT", "pg_reload_conf()"),
    ("pg_stat_reset", "SELECT pg_stat_reset()", "INVALID_INPUT", "pg_stat_reset()"),
    ("pg_logical_emit_message", "SELECT pg_logical_emit_message(false, 'pgcode', 'x')", "INVALID_INPUT",
     "pg_logical_emit_message()"),
    ("pg_notify", "SELECT pg_notify('pgcode', 'x')", "INVALID_INPUT", "pg_notify()"),
    ("dblink", "SELECT * FROM dblink('dbname=postgres', 'DELETE FROM {s}.canary') AS t(x text)",
     "INVALID_INPUT", "dblink()"),
    ("dblink_exec", "SELECT dblink_exec('dbname=postgres', 'DROP TABLE {s}.canary')", "INVALID_INPUT",
     "dblink_exec()"),
    ("query_to_xml", "SELECT query_to_xml('DELETE FROM {s}.canary RETURNING *', true, false, '')",
     "INVALID_INPUT", "query_to_xml()"),
    # sequences
    ("nextval", "SELECT nextval('{s}.canary_seq')", "INVALID_INPUT", "nextval()"),
    ("setval", "SELECT setval('{s}.canary_seq', 1000)", "INVALID_INPUT", "setval()"),
    # denied functions hidden in subqueries, CASE, LATERAL, WHERE
    ("hidden_scalar_subquery", "SELECT (SELECT pg_read_file('postgresql.conf'))", "INVALID_INPUT",
     "pg_read_file()"),
    ("hidden_in_where_subquery", "SELECT id FROM {s}.canary WHERE v IN (SELECT * FROM pg_ls_dir('.'))",
     "INVALID_INPUT", "pg_ls_dir()"),
    ("hidden_in_case", "SELECT CASE WHEN id > 0 THEN set_config('work_mem', '1234kB', false) END FROM {s}.canary",
     "INVALID_INPUT", "set_config()"),
    ("hidden_in_lateral_function", "SELECT * FROM {s}.canary c, LATERAL pg_ls_dir('.') f", "INVALID_INPUT",
     "pg_ls_dir()"),
    ("hidden_in_lateral_subquery", "SELECT * FROM {s}.canary c CROSS JOIN LATERAL "
                                   "(SELECT pg_terminate_backend({pid}) AS t) x", "INVALID_INPUT",
     "pg_terminate_backend()"),
    ("hidden_in_union", "SELECT 1 UNION ALL SELECT pg_advisory_lock(4242)::text::int", "INVALID_INPUT",
     "pg_advisory_lock()"),
    # row locks, SELECT INTO
    ("for_update", "SELECT * FROM {s}.canary FOR UPDATE", "INVALID_INPUT", "FOR UPDATE/SHARE"),
    ("for_share", "SELECT * FROM {s}.canary FOR SHARE", "INVALID_INPUT", "FOR UPDATE/SHARE"),
    ("for_no_key_update_nested", "SELECT * FROM (SELECT * FROM {s}.canary FOR NO KEY UPDATE) q",
     "INVALID_INPUT", "FOR UPDATE/SHARE"),
    ("select_into", "SELECT * INTO {s}.stolen FROM {s}.canary", "INVALID_INPUT", "SELECT INTO"),
    ("create_table_as", "CREATE TABLE {s}.stolen AS SELECT * FROM {s}.canary", "INVALID_INPUT",
     "is not a read"),
    # transaction control, SET/RESET, session state
    ("begin", "BEGIN", "INVALID_INPUT", "transaction control"),
    ("start_transaction_rw", "START TRANSACTION READ WRITE", "INVALID_INPUT", "transaction control"),
    ("commit", "COMMIT", "INVALID_INPUT", "transaction control"),
    ("rollback", "ROLLBACK", "INVALID_INPUT", "transaction control"),
    ("savepoint", "SAVEPOINT sp", "INVALID_INPUT", "transaction control"),
    ("set", "SET work_mem = '1234kB'", "INVALID_INPUT", "SET/RESET"),
    ("set_transaction_rw", "SET TRANSACTION READ WRITE", "INVALID_INPUT", "SET/RESET"),
    ("set_role", "SET ROLE postgres", "INVALID_INPUT", "SET/RESET"),
    ("reset_all", "RESET ALL", "INVALID_INPUT", "SET/RESET"),
    ("listen", "LISTEN pgcode", "INVALID_INPUT", "LISTEN"),
    ("notify", "NOTIFY pgcode", "INVALID_INPUT", "NOTIFY is not a read"),
    ("prepare", "PREPARE p AS DELETE FROM {s}.canary", "INVALID_INPUT", "prepared statements"),
    ("declare_with_hold", "DECLARE c CURSOR WITH HOLD FOR SELECT 1", "INVALID_INPUT", "cursors"),
    ("discard", "DISCARD ALL", "INVALID_INPUT", "DISCARD"),
    ("load", "LOAD 'plpgsql'", "INVALID_INPUT", "LOAD"),
    ("checkpoint", "CHECKPOINT", "INVALID_INPUT", "CHECKPOINT"),
    # EXPLAIN that would run the statement
    ("explain_analyze_delete", "EXPLAIN ANALYZE DELETE FROM {s}.canary", "INVALID_INPUT", "DELETE is not a read"),
    ("explain_analyze_options_update", "EXPLAIN (ANALYZE, BUFFERS) UPDATE {s}.canary SET v = 'x'",
     "INVALID_INPUT", "UPDATE is not a read"),
    ("explain_analyze_true_insert", "EXPLAIN (ANALYZE true) INSERT INTO {s}.canary VALUES (99, 'x')",
     "INVALID_INPUT", "INSERT is not a read"),
    ("explain_analyze_1_delete", "EXPLAIN (ANALYZE 1) DELETE FROM {s}.canary", "INVALID_INPUT",
     "DELETE is not a read"),
    ("explain_analyze_cte_delete", "EXPLAIN ANALYZE WITH d AS (DELETE FROM {s}.canary RETURNING id) "
                                   "SELECT * FROM d", "INVALID_INPUT", "data-modifying DELETE"),
    ("explain_cte_delete", "EXPLAIN WITH d AS (DELETE FROM {s}.canary RETURNING id) SELECT * FROM d",
     "INVALID_INPUT", "data-modifying DELETE"),
    ("explain_analyze_select_into", "EXPLAIN ANALYZE SELECT * INTO {s}.stolen FROM {s}.canary",
     "INVALID_INPUT", "SELECT INTO"),
    ("explain_analyze_create_table_as", "EXPLAIN ANALYZE CREATE TABLE {s}.stolen AS SELECT 1",
     "INVALID_INPUT", "is not a read"),
    ("explain_denied_function", "EXPLAIN SELECT pg_terminate_backend({pid})", "INVALID_INPUT",
     "pg_terminate_backend()"),
    ("explain_delete_denied_function", "EXPLAIN DELETE FROM {s}.canary WHERE pg_reload_conf()",
     "INVALID_INPUT", "pg_reload_conf()"),
    ("explain_execute", "EXPLAIN EXECUTE p", "INVALID_INPUT", "prepared statements"),
    # DDL, privileges, server
    ("create_table", "CREATE TABLE {s}.evil (a int)", "INVALID_INPUT", "is not a read"),
    ("create_temp_table", "CREATE TEMP TABLE evil (a int)", "INVALID_INPUT", "is not a read"),
    ("create_function", "CREATE FUNCTION {s}.evil() RETURNS int LANGUAGE sql AS 'SELECT 1'", "INVALID_INPUT",
     "is not a read"),
    ("drop_table", "DROP TABLE {s}.canary", "INVALID_INPUT", "DROP is not a read"),
    ("truncate", "TRUNCATE {s}.canary", "INVALID_INPUT", "TRUNCATE is not a read"),
    ("alter_table", "ALTER TABLE {s}.canary ADD COLUMN evil int", "INVALID_INPUT", "is not a read"),
    ("grant", "GRANT ALL ON {s}.canary TO PUBLIC", "INVALID_INPUT", "GRANT is not a read"),
    ("create_role", "CREATE ROLE pgcode_policy_evil SUPERUSER LOGIN", "INVALID_INPUT", "is not a read"),
    ("alter_role", "ALTER ROLE postgres NOSUPERUSER", "INVALID_INPUT", "is not a read"),
    ("alter_system", "ALTER SYSTEM SET work_mem = '1234kB'", "INVALID_INPUT", "ALTER SYSTEM is not a read"),
    ("vacuum", "VACUUM {s}.canary", "INVALID_INPUT", "VACUUM is not a read"),
    ("create_database", "CREATE DATABASE pgcode_policy_evil", "INVALID_INPUT", "is not a read"),
    # advisory locks that outlive the call
    ("pg_advisory_lock", "SELECT pg_advisory_lock(4242)", "INVALID_INPUT", "pg_advisory_lock()"),
    ("pg_try_advisory_lock", "SELECT pg_try_advisory_lock(4242)", "INVALID_INPUT", "pg_try_advisory_lock()"),
    ("pg_advisory_lock_shared", "SELECT pg_advisory_lock_shared(4242)", "INVALID_INPUT",
     "pg_advisory_lock_shared()"),
    ("pg_advisory_lock_in_from", "SELECT * FROM {s}.canary WHERE pg_try_advisory_lock(id + 424200)", "INVALID_INPUT",
     "pg_try_advisory_lock()"),
    # writes the parser cannot see (inside functions): the READ ONLY transaction or the read role refuses them
    ("function_that_deletes", "SELECT {s}.sneaky_delete()", "READ_ONLY", "read-only transaction"),
    ("function_that_calls_nextval", "SELECT {s}.sneaky_nextval()", "FORBIDDEN", "permission denied"),
    ("function_that_creates_a_table", "SELECT {s}.sneaky_create()", "READ_ONLY", "read-only transaction"),
]
assert len({case[0] for case in REFUSED}) == len(REFUSED)


@pytest.mark.parametrize(("text", "code", "fragment"), [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
async def test_read_query_refuses_and_nothing_changes(call: Call, conn: psycopg.Connection[Any], canary: Canary,
                                                       text: str, code: str, fragment: str) -> None:
    before = snapshot(conn, canary)
    assert_untouched(before, before, canary)
    with pytest.raises(ToolError) as exc:
        await call("pg_read_query", {"sql": canary.fill(text)})
    err = assert_tool_error(exc, code, fragment)
    if code == "READ_ONLY":
        assert err.details["sqlstate"] == "25006"
    elif code == "FORBIDDEN":  # the read role lacks the privilege: PostgreSQL itself refused
        assert err.details["sqlstate"] == "42501"
    else:
        assert "sqlstate" not in err.details, "refused by the policy, before reaching the database"
    assert_untouched(before, snapshot(conn, canary), canary)
    # pgcode's own sessions are unchanged too
    out = await call("pg_read_query", {"sql": "SELECT current_setting('work_mem') AS work_mem, "
                                              "current_setting('transaction_read_only') AS ro"})
    server_work_mem = conn.execute("SHOW work_mem").fetchone()
    assert server_work_mem is not None
    assert out["rows"] == [{"work_mem": server_work_mem[0], "ro": "on"}]


async def test_nul_byte_does_not_smuggle_a_second_statement(call: Call, conn: psycopg.Connection[Any],
                                                            canary: Canary) -> None:
    """The parser and libpq both stop at NUL: at most the first statement runs."""
    before = snapshot(conn, canary)
    try:
        out = await call("pg_read_query", {"sql": canary.fill("SELECT 1 AS one\x00; DROP TABLE {s}.canary")})
    except ToolError as err:
        assert err.code.value == "INVALID_INPUT"
    else:
        assert out["rows"] == [{"one": 1}]
    assert_untouched(before, snapshot(conn, canary), canary)


# Reads that must work (sanity: the policy is not just refusing everything).


async def test_select_and_read_only_cte(call: Call, canary: Canary) -> None:
    out = await call("pg_read_query", {"sql": canary.fill("SELECT id, v FROM {s}.canary WHERE id <= $1 ORDER BY id"),
                                       "params": [2]})
    assert out["rows"] == [{"id": 1, "v": "one"}, {"id": 2, "v": "two"}]
    assert out["rowCount"] == 2 and out["truncated"] is False
    assert out["fields"] == [{"name": "id", "type": "int4"}, {"name": "v", "type": "text"}]
    out = await call("pg_read_query", {"sql": canary.fill(
        "WITH big AS (SELECT id FROM {s}.canary WHERE id > 3), n AS (SELECT count(*) AS n FROM big) "
        "SELECT n FROM n")})
    assert out["rows"] == [{"n": 2}]


async def test_values_and_table(call: Call, canary: Canary) -> None:
    out = await call("pg_read_query", {"sql": "VALUES (1, 'a'), (2, 'b')"})
    assert out["rows"] == [{"column1": 1, "column2": "a"}, {"column1": 2, "column2": "b"}]
    out = await call("pg_read_query", {"sql": canary.fill("TABLE {s}.canary"), "limit": 3})
    assert [r["id"] for r in out["rows"]] == [1, 2, 3] and out["truncated"] is True


async def test_show(call: Call, conn: psycopg.Connection[Any]) -> None:
    expected = conn.execute("SHOW work_mem").fetchone()
    assert expected is not None
    out = await call("pg_read_query", {"sql": "SHOW work_mem"})
    assert out["rows"] == [{"work_mem": expected[0]}]


@pytest.mark.parametrize(("text", "expected"), [
    ("SELECT ';' AS s", [{"s": ";"}]),
    ("SELECT 'x; DROP TABLE y' AS s", [{"s": "x; DROP TABLE y"}]),
    ("SELECT $q$;$q$ AS s", [{"s": ";"}]),
    ("SELECT 1 AS s /* ; DROP TABLE {s}.canary */", [{"s": 1}]),
    ("SELECT 1 AS s -- ; DROP TABLE {s}.canary", [{"s": 1}]),
    ("SELECT 1 AS s;", [{"s": 1}]),
    ("SELECT 1 AS s; -- trailing comment", [{"s": 1}]),
], ids=["string", "string_with_statement", "dollar_quote", "block_comment", "line_comment", "trailing_semicolon",
        "trailing_comment"])
async def test_semicolons_inside_literals_and_comments_are_allowed(
        call: Call, conn: psycopg.Connection[Any], canary: Canary, text: str, expected: list[dict[str, Any]]) -> None:
    before = snapshot(conn, canary)
    out = await call("pg_read_query", {"sql": canary.fill(text)})
    assert out["rows"] == expected
    assert_untouched(before, snapshot(conn, canary), canary)


async def test_explain_select_and_explain_analyze_select(call: Call, canary: Canary) -> None:
    out = await call("pg_read_query", {"sql": canary.fill("EXPLAIN SELECT * FROM {s}.canary WHERE id = 1")})
    plan = "\n".join(r["QUERY PLAN"] for r in out["rows"])
    assert "canary" in plan and "actual time" not in plan
    out = await call("pg_read_query", {"sql": canary.fill("EXPLAIN ANALYZE SELECT * FROM {s}.canary")})
    plan = "\n".join(r["QUERY PLAN"] for r in out["rows"])
    assert "actual time" in plan and "Execution Time" in plan


@pytest.mark.parametrize("text", [
    "EXPLAIN DELETE FROM {s}.canary WHERE id = 1",
    "EXPLAIN (ANALYZE false) DELETE FROM {s}.canary",
    "EXPLAIN (ANALYZE off, FORMAT JSON) UPDATE {s}.canary SET v = 'x'",
    "EXPLAIN INSERT INTO {s}.canary VALUES (99, 'x')",
], ids=["delete", "analyze_false", "analyze_off_json", "insert"])
async def test_explain_without_analyze_plans_a_write_without_running_it(
        call: Call, conn: psycopg.Connection[Any], canary: Canary, text: str) -> None:
    before = snapshot(conn, canary)
    out = await call("pg_read_query", {"sql": canary.fill(text)})
    plan = str(out["rows"])
    assert "canary" in plan and ("Delete" in plan or "Update" in plan or "Insert" in plan)
    assert "actual" not in plan.lower()
    assert_untouched(before, snapshot(conn, canary), canary)


# where conditions of pg_count and pg_exists

WHERE_REFUSED: list[tuple[str, str, str]] = [
    ("break_out_of_parentheses", "1=1) OR (1=1", "does not parse"),
    ("stacked_delete", "1=1; DELETE FROM {s}.canary", "not statements"),
    ("comment_closer", "id > 2 */ OR true /*", "does not parse"),
    ("unterminated_comment", "1=1 /*", "does not parse"),
    ("union", "1=1 UNION SELECT 1", "single boolean expression"),
    ("union_out_of_parentheses", "1=1) UNION SELECT count(*) FROM pg_authid WHERE (true", "does not parse"),
    ("order_by", "true ORDER BY 1", "single boolean expression"),
    ("limit", "true LIMIT 1", "single boolean expression"),
    ("group_by", "true GROUP BY 1", "single boolean expression"),
    ("for_update", "true FOR UPDATE", "single boolean expression"),
    ("cte_delete_in_subquery", "id IN (WITH d AS (DELETE FROM {s}.canary RETURNING id) SELECT id FROM d)",
     "data-modifying DELETE"),
    ("locking_subquery", "EXISTS (SELECT 1 FROM {s}.canary FOR UPDATE)", "FOR UPDATE/SHARE"),
    ("pg_read_file", "pg_read_file('postgresql.conf') IS NOT NULL", "pg_read_file()"),
    ("set_config", "set_config('work_mem', '1234kB', false) IS NOT NULL", "set_config()"),
    ("advisory_lock", "pg_advisory_lock(id + 424200) IS NOT NULL", "pg_advisory_lock()"),
    ("nextval", "id = nextval('{s}.canary_seq')", "nextval()"),
    ("terminate_in_subquery", "EXISTS (SELECT pg_terminate_backend({pid}))", "pg_terminate_backend()"),
    ("empty", "", "does not parse"),
    ("blank", "   ", "does not parse"),
    ("only_comment", "-- nothing", "does not parse"),
]


@pytest.mark.parametrize("tool", ["pg_count", "pg_exists"])
@pytest.mark.parametrize(("where", "fragment"), [c[1:] for c in WHERE_REFUSED], ids=[c[0] for c in WHERE_REFUSED])
async def test_where_condition_refused(call: Call, conn: psycopg.Connection[Any], canary: Canary, tool: str,
                                       where: str, fragment: str) -> None:
    before = snapshot(conn, canary)
    with pytest.raises(ToolError) as exc:
        await call(tool, {"table": "canary", "schema": canary.schema, "where": canary.fill(where)})
    err = assert_tool_error(exc, "INVALID_INPUT", fragment)
    assert "sqlstate" not in err.details
    assert_untouched(before, snapshot(conn, canary), canary)


@pytest.mark.parametrize(("where", "count"), [
    ("id > 2", 3),
    ("id > 5", 0),
    ("v = 'two' OR id = 5", 2),
    ("id IN (SELECT id FROM {s}.canary WHERE v LIKE 't%')", 2),
    # Comments are dropped when the condition is rebuilt from its parse tree, so they cannot swallow the
    # closing parenthesis pgcode adds or hide anything: these count exactly what the condition says.
    ("id > 2 -- ) OR (1=1", 3),
    ("true -- ", 5),
    ("id > 2 /* ; DELETE FROM {s}.canary */", 3),
], ids=["gt", "none", "or", "subquery", "comment_swallows_rest", "true_comment", "block_comment"])
async def test_where_condition_accepted(call: Call, conn: psycopg.Connection[Any], canary: Canary, where: str,
                                        count: int) -> None:
    before = snapshot(conn, canary)
    out = await call("pg_count", {"table": "canary", "schema": canary.schema, "where": canary.fill(where)})
    assert out == {"count": count, "table": "canary", "schema": canary.schema}
    out = await call("pg_exists", {"table": f"{canary.schema}.canary", "where": canary.fill(where)})
    assert out == {"exists": count > 0, "table": "canary", "schema": canary.schema}
    assert_untouched(before, snapshot(conn, canary), canary)


async def test_no_where_counts_everything(call: Call, canary: Canary) -> None:
    out = await call("pg_count", {"table": "canary", "schema": canary.schema})
    assert out["count"] == len(CANARY_ROWS)
    out = await call("pg_exists", {"table": "canary", "schema": canary.schema})
    assert out["exists"] is True


def test_where_fragment_is_rebuilt_from_the_tree() -> None:
    assert sqlpolicy.where_fragment("id>2").as_string(None) == "(id > 2)"
    assert sqlpolicy.where_fragment("true -- ) OR (1=1").as_string(None) == "(TRUE)"
    assert sqlpolicy.where_fragment("a = 1 /* ; DROP TABLE t */ AND b = 'x;y'").as_string(None) == \
        "(a = 1 AND b = 'x;y')"


# Unit level: pgcode.db.sqlpolicy on its own.


@pytest.mark.parametrize("text", [
    "SELECT 1", "select * from t where a = $1", "WITH x AS (SELECT 1) SELECT * FROM x", "VALUES (1)", "TABLE t",
    "SHOW work_mem", "SHOW ALL", "EXPLAIN SELECT 1", "EXPLAIN ANALYZE SELECT 1", "EXPLAIN DELETE FROM t",
    "SELECT 1 UNION SELECT 2", "SELECT pg_sleep(0)", "SELECT pg_advisory_xact_lock(1)",
    "SELECT current_setting('work_mem')",
])
def test_check_read_accepts(text: str) -> None:
    assert sqlpolicy.check_read(text) is None


@pytest.mark.parametrize(("text", "fragment"), [
    ("", "empty"),
    ("   \n", "empty"),
    ("SELEC 1", "syntax error"),
    ("SELECT 1 FROM", "syntax error"),
    ("SELECT 1; SELECT 2", "exactly one SQL statement is allowed, found 2"),
    ("DELETE FROM t", "DELETE is not a read"),
    ("WITH d AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM d", "data-modifying INSERT"),
    ("SELECT * FROM t FOR KEY SHARE", "FOR UPDATE/SHARE"),
    ("SELECT 1 INTO t2", "SELECT INTO"),
    ("SELECT lo_creat(-1)", "lo_creat()"),
    ("DO 'BEGIN END'", "DO blocks"),
])
def test_check_read_refuses(text: str, fragment: str) -> None:
    with pytest.raises(ToolError) as exc:
        sqlpolicy.check_read(text)
    err = assert_tool_error(exc, "INVALID_INPUT", fragment)
    if text == "SELEC 1":  # 1-based, like the database's own positions
        assert err.details == {"position": 1}
    elif text == "SELECT 1 FROM":  # at end of input there is no position
        assert err.details == {"position": None}


@pytest.mark.parametrize(("text", "kind"), [
    ("INSERT INTO t VALUES (1)", "INSERT"),
    ("UPDATE t SET a = 1 WHERE b = $1", "UPDATE"),
    ("DELETE FROM t WHERE a = 1 RETURNING *", "DELETE"),
    ("MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN UPDATE SET a = s.a", "MERGE"),
    ("WITH d AS (DELETE FROM t RETURNING *) INSERT INTO t2 SELECT * FROM d", "INSERT"),
    ("SELECT 1", "SELECT"),
])
def test_analyze_write_dml_needs_write(text: str, kind: str) -> None:
    stmt = sqlpolicy.analyze_write(text)
    assert (stmt.kind, stmt.scope, stmt.autocommit) == (kind, Scope.WRITE, False)


@pytest.mark.parametrize(("text", "kind"), [
    ("CREATE TABLE t (a int)", "CREATE"),
    ("ALTER TABLE t ADD COLUMN b int", "ALTER TABLE"),
    ("DROP TABLE t", "DROP"),
    ("GRANT SELECT ON t TO PUBLIC", "GRANT"),
    ("TRUNCATE t", "TRUNCATE"),
    ("CREATE INDEX i ON t (a)", "INDEX"),
    ("SELECT pg_terminate_backend(1)", "SELECT"),
    ("SELECT pg_catalog.set_config('work_mem', '1234kB', false)", "SELECT"),
    ("INSERT INTO t SELECT * FROM pg_ls_dir('.')", "INSERT"),
    ("SELECT * INTO t2 FROM t", "SELECT"),
    ("CREATE ROLE r", "CREATE ROLE"),
])
def test_analyze_write_ddl_and_denied_functions_need_admin(text: str, kind: str) -> None:
    stmt = sqlpolicy.analyze_write(text)
    assert (stmt.kind, stmt.scope, stmt.autocommit) == (kind, Scope.ADMIN, False)


@pytest.mark.parametrize(("text", "autocommit"), [
    ("VACUUM t", True),
    ("VACUUM (ANALYZE) t", True),
    ("CREATE INDEX CONCURRENTLY i ON t (a)", True),
    ("DROP INDEX CONCURRENTLY i", True),
    ("REINDEX TABLE CONCURRENTLY t", True),
    ("REINDEX (CONCURRENTLY) INDEX i", True),
    ("REINDEX SCHEMA s", True),
    ("REINDEX DATABASE", True),
    ("ALTER TABLE t DETACH PARTITION p CONCURRENTLY", True),
    ("CLUSTER", True),
    ("CREATE DATABASE d", True),
    ("ALTER SYSTEM SET work_mem = '1234kB'", True),
    ("CREATE INDEX i ON t (a)", False),
    ("REINDEX TABLE t", False),
    ("REINDEX (CONCURRENTLY false) TABLE t", False),
    ("ALTER TABLE t DETACH PARTITION p", False),
    ("CLUSTER t USING i", False),
    ("DROP INDEX i", False),
])
def test_analyze_write_autocommit(text: str, autocommit: bool) -> None:
    stmt = sqlpolicy.analyze_write(text)
    assert stmt.autocommit is autocommit
    assert stmt.scope is Scope.ADMIN


@pytest.mark.parametrize(("text", "fragment"), [
    ("DO $$ BEGIN END $$", "DO blocks run arbitrary procedural code"),
    ("COPY t FROM STDIN", "COPY needs a data stream"),
    ("COPY t TO '/tmp/x'", "COPY to or from a server file is refused"),
    ("COPY t TO PROGRAM 'cat'", "COPY ... PROGRAM runs a program on the database server"),
    ("SET work_mem = '1234kB'", "SET/RESET would change the session"),
    ("RESET work_mem", "SET/RESET would change the session"),
    ("BEGIN", "transaction control is not allowed here"),
    ("COMMIT", "transaction control is not allowed here"),
    ("LISTEN x", "LISTEN keeps state on a pooled connection"),
    ("PREPARE p AS SELECT 1", "prepared statements keep state"),
    ("DELETE FROM t; DELETE FROM t2", "exactly one SQL statement"),
])
def test_analyze_write_refuses_with_reason(text: str, fragment: str) -> None:
    with pytest.raises(ToolError) as exc:
        sqlpolicy.analyze_write(text)
    assert_tool_error(exc, "INVALID_INPUT", fragment)


def test_statements_scope_is_the_highest() -> None:
    assert sqlpolicy.statements_scope(["INSERT INTO t VALUES (1)", "UPDATE t SET a = 2"]) is Scope.WRITE
    assert sqlpolicy.statements_scope(["INSERT INTO t VALUES (1)", "DROP TABLE t"]) is Scope.ADMIN
    assert sqlpolicy.statements_scope([]) is Scope.WRITE


def test_denied_function_finds_calls_anywhere() -> None:
    from pglast import parse_sql

    def first(text: str) -> str | None:
        return sqlpolicy.denied_function(parse_sql(text)[0].stmt)

    assert first("SELECT 1") is None
    assert first("SELECT now(), lower('X')") is None
    assert first("SELECT * FROM t WHERE a IN (SELECT b FROM u WHERE pg_catalog.PG_LS_DIR('.') IS NULL)") == \
        "pg_catalog.pg_ls_dir"
    assert first("SELECT CASE WHEN true THEN dblink_exec('x', 'y') END") == "dblink_exec"
    assert first("SELECT * FROM t, LATERAL (SELECT lo_export(1, '/tmp/x')) q") == "lo_export"


# The autocommit classification end to end: REINDEX CONCURRENTLY runs outside a transaction block.


async def test_reindex_concurrently_runs_in_autocommit(call: Call, conn: psycopg.Connection[Any],
                                                       canary: Canary) -> None:
    before = snapshot(conn, canary)
    out = await call("pg_write_query", {"sql": canary.fill("REINDEX TABLE CONCURRENTLY {s}.canary")})
    assert out == {"command": "REINDEX", "rowCount": -1}
    valid = conn.execute("SELECT bool_and(i.indisvalid) FROM pg_index i WHERE i.indrelid = %s::regclass",
                         (f"{canary.schema}.canary",)).fetchone()
    assert valid == (True,)
    after = snapshot(conn, canary)
    assert after["canary"] == CANARY_ROWS
    assert {r[:2] for r in after["relations"]} == {r[:2] for r in before["relations"]}


async def test_autocommit_statement_refused_in_held_transaction(call: Call, canary: Canary) -> None:
    tx = await call("pg_transaction_begin", {})
    try:
        with pytest.raises(ToolError) as exc:
            await call("pg_write_query", {"sql": canary.fill("VACUUM {s}.canary"),
                                          "transactionId": tx["transactionId"]})
        assert_tool_error(exc, "INVALID_INPUT", "cannot run inside a transaction block")
    finally:
        await call("pg_transaction_rollback", {"transactionId": tx["transactionId"]})



@pytest.mark.parametrize("text", ["SELECT id FROM x WHERE id IN (1,,2)", "SELECT 1 FROM t WHERE a = = 1",
                                  "SELECT 'é', , 1"])
async def test_syntax_error_position_matches_the_database(call: Call, conn: psycopg.Connection[Any],
                                                          text: str) -> None:
    with pytest.raises(psycopg.errors.SyntaxError) as db_exc:
        conn.execute(text)
    with pytest.raises(ToolError) as exc:
        await call("pg_read_query", {"sql": text})
    err = assert_tool_error(exc, "INVALID_INPUT", "SQL syntax error", "syntax error at or near")
    assert err.details == {"position": int(db_exc.value.diag.statement_position or 0)}


@pytest.mark.parametrize("where", ["id = $1", "pg_replication_origin_session_setup('x') IS NULL"])
def test_where_fragment_refuses_parameters_and_replication_origins(where: str) -> None:
    from pgcode.db.sqlpolicy import where_fragment
    from pgcode.errors import ToolError

    with pytest.raises(ToolError) as exc:
        where_fragment(where)
    assert exc.value.code.value == "INVALID_INPUT"
