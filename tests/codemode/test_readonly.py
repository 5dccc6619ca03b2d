"""readonly executions: every write route fails with READ_ONLY (or is refused by the database) and nothing changes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from pgcode.core.runtime import Runtime
from pgcode.types import Effect
from tests.codemode._helpers import failed, ok
from tests.codemode.conftest import Run

pytestmark = pytest.mark.anyio


@pytest.fixture
def table(schema: str, conn: psycopg.Connection[Any]) -> Iterator[str]:
    name = f'"{schema}".ro_items'
    conn.execute(f"DROP TABLE IF EXISTS {name}; CREATE TABLE {name} (id int PRIMARY KEY, v text);"
                 f"INSERT INTO {name} VALUES (1, 'a'), (2, 'b');"
                 f"DROP SEQUENCE IF EXISTS \"{schema}\".ro_seq; CREATE SEQUENCE \"{schema}\".ro_seq")
    yield name


def _state(conn: psycopg.Connection[Any], schema: str, table: str) -> Any:
    return (conn.execute(f"SELECT id, v FROM {table} ORDER BY id").fetchall(),
            conn.execute(f'SELECT last_value, is_called FROM "{schema}".ro_seq').fetchone(),
            conn.execute("SELECT count(*) FROM pg_class WHERE relnamespace = %s::regnamespace", (schema,)).fetchone())


async def test_readonly_allows_read_tools(run: Run, table: str) -> None:
    out = await run(f"return (await pg.core.readQuery({{sql: 'SELECT count(*)::int AS n FROM {table}'}})).rows[0].n",
                    readonly=True)
    assert ok(out) == 2


@pytest.mark.parametrize("call", [
    "pg.core.writeQuery({sql: 'UPDATE TABLE SET v = $$x$$'})",
    "pg.call('pg_write_query', {sql: 'DELETE FROM TABLE'})",
    "pg.core.writeQuery({sql: 'DROP TABLE TABLE'})",
    "pg.transactions.transactionBegin({readOnly: true})",
    "pg.transactions.transactionExecute({statements: [{sql: 'DELETE FROM TABLE'}]})",
    "pg.call('pg_transaction_execute', {statements: [{sql: 'INSERT INTO TABLE VALUES (3, $$c$$)'}]})",
])
async def test_readonly_refuses_write_tools_by_name(run: Run, conn: psycopg.Connection[Any], schema: str,
                                                    table: str, call: str) -> None:
    before = _state(conn, schema, table)
    err = failed(await run(f"await {call.replace('TABLE', table)}; return 'changed'", readonly=True), "READ_ONLY")
    assert err["tool"] and err["tool"] in err["message"] and err["line"] == 1
    assert _state(conn, schema, table) == before


@pytest.mark.parametrize("sql", [
    "WITH d AS (DELETE FROM TABLE RETURNING *) SELECT * FROM d",
    "WITH u AS (UPDATE TABLE SET v = 'x' RETURNING *) SELECT count(*) FROM u",
    "SELECT nextval('SCHEMA.ro_seq')",
    "SELECT * FROM TABLE FOR UPDATE",
    "SELECT set_config('default_transaction_read_only', 'off', false)",
])
async def test_readonly_read_query_cannot_write(run: Run, conn: psycopg.Connection[Any], schema: str, table: str,
                                               sql: str) -> None:
    """Data-modifying SQL through the read tool is refused by the parser or by the READ ONLY transaction."""
    before = _state(conn, schema, table)
    statement = sql.replace("TABLE", table).replace("SCHEMA", f'"{schema}"').replace("'", "\\'")
    out = await run(f"return await pg.core.readQuery({{sql: '{statement}'}})", readonly=True)
    assert out["success"] is False, out
    assert out["error"]["code"] in ("INVALID_INPUT", "READ_ONLY"), out["error"]
    assert _state(conn, schema, table) == before


async def test_readonly_refuses_every_non_read_tool(run: Run, rt: Runtime, conn: psycopg.Connection[Any],
                                                   schema: str, table: str) -> None:
    """Whatever the arguments, a non-read tool throws READ_ONLY naming it (checked before validation)."""
    before = _state(conn, schema, table)
    names = sorted(s.name for s in rt.registry if s.effect is not Effect.READ and s.group != "codemode")
    assert names
    out = await run("""
const refused = {};
for (const name of input) {
  try { await pg.call(name, {table: 'x'}); refused[name] = 'RAN'; }
  catch (e) { refused[name] = e.code + ' ' + (e.message.includes(name) ? 'named' : 'unnamed'); }
}
return refused;""", readonly=True, input=names, timeout=60_000)
    assert ok(out) == {name: "READ_ONLY named" for name in names}
    assert _state(conn, schema, table) == before


async def test_readonly_write_attempt_is_catchable_and_later_reads_work(run: Run, table: str) -> None:
    out = await run(f"""
let code;
try {{ await pg.core.writeQuery({{sql: 'DELETE FROM {table}'}}); }} catch (e) {{ code = e.code; }}
const r = await pg.core.readQuery({{sql: 'SELECT count(*)::int AS n FROM {table}'}});
return [code, r.rows[0].n];""", readonly=True)
    assert ok(out) == ["READ_ONLY", 2]


async def test_without_readonly_the_same_write_goes_through(run: Run, conn: psycopg.Connection[Any],
                                                           table: str) -> None:
    ok(await run(f"return await pg.core.writeQuery({{sql: 'UPDATE {table} SET v = $$z$$ WHERE id = 1'}})"))
    assert conn.execute(f"SELECT v FROM {table} WHERE id = 1").fetchone() == ("z",)


async def test_refused_calls_are_in_the_audit_log(run: Run, rt: Runtime, conn: psycopg.Connection[Any]) -> None:
    from pgcode.types import Principal, Scope

    me = Principal.with_scope("ro-auditor", Scope.ADMIN)
    out = await rt.invoke("pg_execute_code", {"code": "await pg.core.writeQuery({sql: 'select 1'})",
                                              "readonly": True}, me)
    failed(out, "READ_ONLY")
    await rt.audit.flush()
    rows = conn.execute("SELECT tool, outcome, error_code FROM pgcode.audit_log WHERE principal = %s "
                        "ORDER BY id", (me.subject,)).fetchall()
    assert ("pg_write_query", "error", "READ_ONLY") in rows and ("pg_execute_code", "ok", None) in rows
