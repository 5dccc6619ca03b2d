"""backup group: pg_dump output replayed for real, COPY round trips and file safety, planners, snapshots restored."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import SecretStr

from pgcode.core.runtime import Runtime
from pgcode.errors import ToolError
from pgcode.groups._pgdump import libpq_env
from pgcode.groups.backup._measure import basebackup_compress, dump_compress
from pgcode.settings import Settings
from pgcode.types import LOCAL_PRINCIPAL, Principal, Scope
from tests.fix_db import Call, assert_tool_error

pytestmark = pytest.mark.anyio

READER = Principal.with_scope("reader", Scope.READ)
WRITER = Principal.with_scope("writer", Scope.WRITE)
REPLAY_DB = "pgcode_backup_replay"
SECRET = "Sekr1t-backup-pw-7731"
ROLE = "pgcode_backup_pw_role"


def one(conn: psycopg.Connection[Any], query: Any, *params: Any) -> Any:
    row = conn.execute(query, params or None).fetchone()
    assert row is not None
    return row[0]


def shape(conn: psycopg.Connection[Any], schema: str, table: str) -> dict[str, Any]:
    """Columns, constraints, indexes and rows of a table: what a restore must bring back."""
    oid = one(conn, "SELECT to_regclass(%s)::oid", f'"{schema}"."{table}"')
    assert oid is not None, f"{schema}.{table} does not exist"
    return {
        "columns": conn.execute(
            "SELECT attname, format_type(atttypid, atttypmod), attnotnull, pg_get_expr(d.adbin, d.adrelid) "
            "FROM pg_attribute a LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum "
            "WHERE attrelid = %s AND attnum > 0 AND NOT attisdropped ORDER BY attnum", (oid,)).fetchall(),
        "constraints": conn.execute("SELECT conname, pg_get_constraintdef(oid) FROM pg_constraint "
                                    "WHERE conrelid = %s ORDER BY conname", (oid,)).fetchall(),
        "indexes": conn.execute("SELECT indexrelid::regclass::text, pg_get_indexdef(indexrelid) FROM pg_index "
                                "WHERE indrelid = %s ORDER BY 1", (oid,)).fetchall(),
        "rows": conn.execute(sql.SQL("SELECT * FROM {} ORDER BY 1").format(sql.Identifier(schema, table))).fetchall(),
    }


@pytest.fixture
def items(conn: psycopg.Connection[Any], schema: str) -> Iterator[str]:
    """A table with a serial key, checks (one with %), a unique index, a foreign key, and awkward values."""
    conn.execute(sql.SQL(
        "DROP TABLE IF EXISTS {s}.items, {s}.kinds; CREATE TABLE {s}.kinds (id int PRIMARY KEY); "
        "INSERT INTO {s}.kinds VALUES (1), (2); "
        "CREATE TABLE {s}.items (id serial PRIMARY KEY, code text NOT NULL CHECK (code LIKE 'c%%'), "
        "note text, qty numeric(10,2) DEFAULT 0, kind int REFERENCES {s}.kinds, tags text[], doc jsonb); "
        "CREATE UNIQUE INDEX items_code_idx ON {s}.items (code); "
        "INSERT INTO {s}.items (code, note, qty, kind, tags, doc) VALUES "
        "('c1', 'plain', 1.5, 1, '{{a,b}}', '{{\"k\": \"v\\\\\\\\x\"}}'), "
        "('c2', e'two\\nlines, \"quoted\"\\ttab', NULL, 2, NULL, '[1, 2]'), "
        "('c3', 'back\\slash', 3, NULL, '{{}}', NULL)").format(s=sql.Identifier(schema)))
    yield "items"
    conn.execute(sql.SQL("DROP TABLE IF EXISTS {s}.items, {s}.kinds CASCADE").format(s=sql.Identifier(schema)))


def _drop_database(conn: psycopg.Connection[Any], name: str) -> bool:
    """DROP DATABASE, giving up after 3 s: it waits for every backend of the server to absorb a signal barrier,
    and on a shared server one stuck session holds that up. A database left behind is dropped by a later run."""
    try:
        conn.execute("SET statement_timeout = '3s'")
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        return True
    except psycopg.errors.QueryCanceled:
        return False
    finally:
        conn.execute("RESET statement_timeout")


@pytest.fixture
def replay_db(dsn: str, conn: psycopg.Connection[Any]) -> Iterator[str]:
    """A fresh database of this module's own (pgcode_backup_replay...), dropped afterwards."""
    for (left,) in conn.execute("SELECT datname FROM pg_database WHERE datname LIKE %s",
                                (REPLAY_DB + "%",)).fetchall():
        if not _drop_database(conn, left):
            break
    name = f"{REPLAY_DB}_{os.getpid()}"
    conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    params = conninfo_to_dict(dsn)
    params["dbname"] = name
    yield make_conninfo("", **params)
    _drop_database(conn, name)


@pytest.fixture(scope="module")
def backup_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("pgcode-backups")


@pytest.fixture(scope="module")
async def brt(settings: Settings, backup_dir: Path) -> AsyncIterator[Runtime]:
    """A runtime whose PGCODE_BACKUP_DIR is set."""
    async with Runtime(settings.model_copy(update={"backup_dir": backup_dir})) as runtime:
        yield runtime


# ---------------------------------------------------------------- pg_dump


async def test_dump_table_replays_into_a_fresh_database(call: Call, conn: psycopg.Connection[Any], schema: str,
                                                      items: str, replay_db: str) -> None:
    out = await call("pg_dump_table", {"table": items, "schema": schema, "data": True})
    assert out["kind"] == "table" and out["data_included"] and not out["truncated"]
    assert f"CREATE TABLE {schema}.items" in out["sql"] and "\\restrict" not in out["sql"]
    with psycopg.connect(replay_db, autocommit=True) as rc:
        # The referenced table is not part of a one-table dump: the replay target has it, as a real one would.
        rc.execute(sql.SQL("CREATE SCHEMA {s}; CREATE TABLE {s}.kinds (id int PRIMARY KEY); "
                           "INSERT INTO {s}.kinds VALUES (1), (2)").format(s=sql.Identifier(schema)))
        rc.execute(out["sql"])
        assert shape(rc, schema, items) == shape(conn, schema, items)
        assert one(rc, sql.SQL("SELECT nextval({})").format(sql.Literal(f"{schema}.items_id_seq"))) == 4


async def test_dump_table_schema_only_and_sequence(call: Call, schema: str, items: str) -> None:
    out = await call("pg_dump_table", {"table": f"{schema}.items"})
    assert "INSERT INTO" not in out["sql"] and "items_code_idx" in out["sql"] and "CHECK" in out["sql"]
    seq = await call("pg_dump_table", {"table": "items_id_seq", "schema": schema, "data": True})
    assert seq["kind"] == "sequence" and "CREATE SEQUENCE" in seq["sql"] and "setval" in seq["sql"]
    with pytest.raises(ToolError) as exc:
        await call("pg_dump_table", {"table": "nope", "schema": schema})
    assert_tool_error(exc, "NOT_FOUND", "nope")


async def test_dump_schema_and_its_command(call: Call, schema: str, items: str) -> None:
    out = await call("pg_dump_schema", {"schema": schema})
    assert f"CREATE TABLE {schema}.kinds" in out["sql"] and f"CREATE TABLE {schema}.items" in out["sql"]
    assert out["command"].startswith("pg_dump -h ") and "--format=custom" in out["command"]
    assert f'"{schema}"' in out["command"] and "pg_restore" in out["restore_command"]
    cut = await call("pg_dump_schema", {"schema": schema, "data": True, "maxBytes": 1024})
    assert cut["truncated"] is True and len(cut["sql"].encode()) <= 1024
    with pytest.raises(ToolError) as exc:
        await call("pg_dump_schema", {"schema": "no_such_schema_x"})
    assert_tool_error(exc, "NOT_FOUND", "no_such_schema_x")


async def test_no_password_reaches_results_errors_or_argv(dsn: str, settings: Settings, conn: psycopg.Connection[Any],
                                                          schema: str, items: str) -> None:
    conn.execute(sql.SQL("DROP ROLE IF EXISTS {r}; CREATE ROLE {r} LOGIN PASSWORD {p}; "
                         "GRANT USAGE ON SCHEMA {s} TO {r}; GRANT SELECT ON {s}.kinds TO {r}").format(
        r=sql.Identifier(ROLE), p=sql.Literal(SECRET), s=sql.Identifier(schema)))
    try:
        params = conninfo_to_dict(dsn)
        params.update(user=ROLE, password=SECRET)
        url = make_conninfo("", **params)
        pw_settings = settings.model_copy(update={"database_url": SecretStr(url)})
        assert libpq_env(pw_settings)["PGPASSWORD"] == SECRET  # the environment carries it, nothing else
        async with Runtime(pw_settings) as prt:
            ok = await prt.invoke("pg_dump_table", {"table": "kinds", "schema": schema, "data": True},
                                  LOCAL_PRINCIPAL)
            assert "CREATE TABLE" in ok["sql"] and SECRET not in repr(ok)
            # items is not readable by the role: the dump fails, and the error does not carry the secret
            with pytest.raises(ToolError) as exc:
                await prt.invoke("pg_dump_schema", {"schema": schema}, LOCAL_PRINCIPAL)
            err = assert_tool_error(exc, "SQL_ERROR", "pg_dump failed")
            assert SECRET not in repr(err.to_dict()) and "permission denied" in err.message
            plan = await prt.invoke("pg_create_backup_plan", {"sampleSeconds": 0}, LOCAL_PRINCIPAL)
            assert SECRET not in repr(plan) and ROLE in plan["schedule"][0]["command"]
    finally:
        conn.execute(sql.SQL("DROP OWNED BY {r}; DROP ROLE IF EXISTS {r}").format(r=sql.Identifier(ROLE)))


# ---------------------------------------------------------------- COPY


async def test_copy_export_formats(call: Call, schema: str, items: str) -> None:
    csv = await call("pg_copy_export", {"table": items, "schema": schema, "columns": ["id", "code", "note"]})
    assert csv["rows"] == 3 and not csv["truncated"]
    assert csv["data"].startswith("id,code,note\n1,c1,plain\n") and '"two\nlines, ""quoted""\ttab"' in csv["data"]
    tsv = await call("pg_copy_export", {"table": f"{schema}.items", "format": "tsv", "header": False,
                                        "where": "qty > 1", "columns": ["code", "note"]})
    assert tsv["data"] == "c1\tplain\nc3\tback\\\\slash\n"
    jl = await call("pg_copy_export", {"sql": f"SELECT id, doc, tags FROM {schema}.items ORDER BY id",
                                       "format": "jsonl"})
    import json

    assert [json.loads(line) for line in jl["data"].splitlines()] == [
        {"id": 1, "doc": {"k": "v\\\\x"}, "tags": ["a", "b"]}, {"id": 2, "doc": [1, 2], "tags": None},
        {"id": 3, "doc": None, "tags": []}]
    cut = await call("pg_copy_export", {"query": f"SELECT code, note FROM {schema}.items ORDER BY id", "limit": 2})
    assert cut["truncated"] is True and cut["rows"] == 2 and cut["data"].count("c") >= 2 and "c3" not in cut["data"]


async def test_copy_export_refuses_bad_input(call: Call, schema: str, items: str) -> None:
    for args, code in [({"table": items, "schema": schema, "query": "SELECT 1"}, "INVALID_INPUT"),
                       ({"query": f"DELETE FROM {schema}.items"}, "INVALID_INPUT"),
                       ({"query": "SELECT 1; SELECT 2"}, "INVALID_INPUT"),
                       ({"table": items, "schema": schema, "where": "true; DROP TABLE x"}, "INVALID_INPUT"),
                       ({"table": items, "schema": schema, "columns": ["nope"]}, "NOT_FOUND"),
                       ({"table": items, "schema": schema, "file": "x.csv"}, "INVALID_INPUT")]:
        with pytest.raises(ToolError) as exc:
            await call("pg_copy_export", args)
        err = assert_tool_error(exc, code)
        if "file" in args:
            assert "PGCODE_BACKUP_DIR" in err.message and err.hint


async def test_copy_round_trip_through_the_result(call: Call, conn: psycopg.Connection[Any], schema: str,
                                                  items: str) -> None:
    conn.execute(sql.SQL("CREATE TABLE {s}.items_copy (LIKE {s}.items)").format(s=sql.Identifier(schema)))
    try:
        for fmt in ("csv", "tsv", "jsonl"):
            conn.execute(sql.SQL("TRUNCATE {s}.items_copy").format(s=sql.Identifier(schema)))
            out = await call("pg_copy_export", {"table": items, "schema": schema, "format": fmt})
            done = await call("pg_copy_import", {"table": "items_copy", "schema": schema, "format": fmt,
                                                 "data": out["data"]}, WRITER)
            assert done["rows"] == 3
            assert table_rows(conn, schema, "items_copy") == table_rows(conn, schema, items), fmt
    finally:
        conn.execute(sql.SQL("DROP TABLE {s}.items_copy").format(s=sql.Identifier(schema)))


def table_rows(conn: psycopg.Connection[Any], schema: str, table: str) -> list[tuple[Any, ...]]:
    return conn.execute(sql.SQL("SELECT * FROM {} ORDER BY id").format(sql.Identifier(schema, table))).fetchall()


async def test_copy_import_command_scope_and_errors(call: Call, conn: psycopg.Connection[Any], schema: str,
                                                    items: str) -> None:
    cmd = await call("pg_copy_import", {"table": items, "schema": schema, "columns": ["code", "note"]}, READER)
    assert cmd["command"] == f'COPY "{schema}"."items" ("code", "note") FROM STDIN (FORMAT csv, HEADER true)'
    assert cmd["psql"].startswith(f'\\copy "{schema}"."items"')
    with pytest.raises(ToolError) as exc:
        await call("pg_copy_import", {"table": items, "schema": schema, "data": "id\n9\n"}, READER)
    assert_tool_error(exc, "FORBIDDEN")
    with pytest.raises(ToolError) as exc:  # a bad row: nothing is imported
        await call("pg_copy_import", {"table": items, "schema": schema, "columns": ["code"],
                                      "data": "code\nc8\nbad\n"}, WRITER)
    assert_tool_error(exc, "INVALID_INPUT", "check constraint")
    with pytest.raises(ToolError) as exc:
        await call("pg_copy_import", {"table": items, "schema": schema, "format": "jsonl",
                                      "data": '{"code": "c9", "nope": 1}\n'}, WRITER)
    assert_tool_error(exc, "NOT_FOUND", "nope")
    with pytest.raises(ToolError) as exc:
        await call("pg_copy_import", {"table": items, "schema": schema, "data": "code\nc7\n", "columns": ["code"]},
                   LOCAL_PRINCIPAL, read_only=True)
    assert_tool_error(exc, "READ_ONLY")
    assert one(conn, sql.SQL("SELECT count(*) FROM {s}.items").format(s=sql.Identifier(schema))) == 3


async def test_copy_files_round_trip(brt: Runtime, backup_dir: Path, conn: psycopg.Connection[Any], schema: str,
                                     items: str) -> None:
    out = await brt.invoke("pg_copy_export", {"table": items, "schema": schema, "file": "exports/items.csv"}, WRITER)
    assert out["file"] == "exports/items.csv" and out["rows"] == 3
    assert (backup_dir / "exports" / "items.csv").read_text().startswith("id,code,note,qty,kind,tags,doc\n")
    with pytest.raises(ToolError) as exc:
        await brt.invoke("pg_copy_export", {"table": items, "schema": schema, "file": "exports/items.csv"}, WRITER)
    assert_tool_error(exc, "ALREADY_EXISTS")
    with pytest.raises(ToolError) as exc:
        await brt.invoke("pg_copy_export", {"table": items, "schema": schema, "file": "r.csv"}, READER)
    assert_tool_error(exc, "FORBIDDEN")
    conn.execute(sql.SQL("CREATE TABLE {s}.items_file (LIKE {s}.items)").format(s=sql.Identifier(schema)))
    try:
        done = await brt.invoke("pg_copy_import", {"table": "items_file", "schema": schema,
                                                   "file": "./exports//items.csv"}, WRITER)
        assert done["rows"] == 3 and table_rows(conn, schema, "items_file") == table_rows(conn, schema, items)
    finally:
        conn.execute(sql.SQL("DROP TABLE {s}.items_file").format(s=sql.Identifier(schema)))


async def test_copy_files_never_leave_the_backup_dir(brt: Runtime, backup_dir: Path, schema: str, items: str,
                                                     tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.csv").write_text("id\n1\n")
    (backup_dir / "link_dir").symlink_to(outside)
    (backup_dir / "link_file.csv").symlink_to(outside / "secret.csv")
    (backup_dir / "dangling.csv").symlink_to(outside / "new.csv")
    attempts = ["../escape.csv", "a/../../escape.csv", str(outside / "abs.csv"), "/etc/passwd", "link_dir/x.csv",
                "link_file.csv", "dangling.csv", "link_dir/secret.csv", "a\\b.csv", "x\x00.csv"]
    try:
        for path in attempts:
            with pytest.raises(ToolError) as exc:
                await brt.invoke("pg_copy_export", {"table": items, "schema": schema, "file": path,
                                                    "overwrite": True}, WRITER)
            assert_tool_error(exc, "INVALID_INPUT")
            with pytest.raises(ToolError) as exc:
                await brt.invoke("pg_copy_import", {"table": items, "schema": schema, "file": path}, WRITER)
            assert_tool_error(exc, "INVALID_INPUT")
        assert sorted(p.name for p in outside.iterdir()) == ["secret.csv"]
        assert (outside / "secret.csv").read_text() == "id\n1\n"
        assert not (backup_dir.parent / "escape.csv").exists()
    finally:
        for name in ("link_dir", "link_file.csv", "dangling.csv"):
            os.unlink(backup_dir / name)


async def test_code_mode_seed_names(brt: Runtime, backup_dir: Path, schema: str, items: str) -> None:
    if brt.registry.get("pg_execute_code") is None:
        pytest.skip("code mode (pg_execute_code) is not built")
    code = (f"const a = await pg.backup.export({{table: '{schema}.items', format: 'tsv', header: false, "
            "columns: ['code']});"
            f"const b = await pg.backup.copyToFile({{table: '{schema}.items', file: 'code/items.jsonl', "
            "format: 'jsonl'});"
            "return [a.data, b.rows, b.file];")
    out = await brt.invoke("pg_execute_code", {"code": code, "readonly": False}, LOCAL_PRINCIPAL)
    assert out["success"] is True, out
    assert out["result"] == ["c1\nc2\nc3\n", 3, "code/items.jsonl"]
    assert len((backup_dir / "code" / "items.jsonl").read_text().splitlines()) == 3


# ---------------------------------------------------------------- planners


def test_compression_flags_follow_the_version() -> None:
    assert dump_compress(15, 6) == ["-Z", "6"] and dump_compress(16, 6) == ["--compress=gzip:6"]
    assert basebackup_compress(14, 5, tar=True) == ["-Z", "5"] and basebackup_compress(14, 5, tar=False) == []
    assert basebackup_compress(15, 5, tar=True) == ["--compress=client-gzip:5"]
    assert basebackup_compress(18, 5, tar=False) == ["--compress=server-gzip:5"]


async def test_planners_measure_and_fit_the_version(call: Call, conn: psycopg.Connection[Any]) -> None:
    major = one(conn, "SELECT current_setting('server_version_num')::int") // 10000
    size = one(conn, "SELECT pg_database_size(current_database())")
    plan = await call("pg_create_backup_plan", {"sampleSeconds": 0.3, "rpoMinutes": 30}, READER)
    m = plan["measured"]
    assert abs(m["database_bytes"] - size) < size * 0.5 and m["sample"]["seconds"] >= 0.3
    dump = plan["schedule"][0]
    assert dump["cron"].startswith("0 2 * * ") and dump["command"].startswith("pg_dump -h ")
    assert ("--compress=gzip:6" in dump["command"]) == (major >= 16) and "$(date +\\%Y\\%m\\%d)" in dump["command"]
    base = plan["schedule"][1]
    assert base["command"].startswith("pg_basebackup") and "--wal-method=stream" in base["command"]
    assert "--compress=client-gzip:6" in base["command"] and "-d " not in base["command"]
    phys = await call("pg_backup_physical", {"directory": "/backups/b1", "format": "plain", "maxRate": "50M"}, READER)
    assert "--compress=server-gzip:6" in phys["command"] and phys["command"].endswith("-D /backups/b1")
    assert phys["estimated_bytes"] > 0 and isinstance(phys["ready"], bool)
    if major >= 17:
        inc = await call("pg_backup_physical", {"incrementalFrom": "/backups/b1/backup_manifest"}, READER)
        assert "--incremental /backups/b1/backup_manifest" in inc["command"]
    else:
        with pytest.raises(ToolError) as exc:
            await call("pg_backup_physical", {"incrementalFrom": "/backups/b1/backup_manifest"}, READER)
        assert_tool_error(exc, "UNSUPPORTED_VERSION", "17")
    sched = await call("pg_backup_schedule_optimize", {"sampleSeconds": 0.3}, READER)
    assert sched["full_backup_every_days"] in (1, 7) and sched["measured"]["sample"]["wal_bytes_per_s"] >= 0
    assert sched["recommendations"]


async def test_restore_command_and_validate(call: Call) -> None:
    out = await call("pg_restore_command", {"file": "/b/app.dump", "jobs": 4, "clean": True, "database": "app2"},
                     READER)
    assert "pg_restore" in out["command"] and "-d app2" in out["command"] and "--jobs 4" in out["command"]
    assert "--clean --if-exists" in out["command"] and out["command"].endswith("/b/app.dump")
    plain = await call("pg_restore_command", {"file": "dump.sql", "format": "plain"}, READER)
    assert plain["command"].startswith("psql ") and "ON_ERROR_STOP=1" in plain["command"]
    with pytest.raises(ToolError) as exc:
        await call("pg_restore_command", {"file": "x.tar", "format": "tar", "jobs": 2}, READER)
    assert_tool_error(exc, "INVALID_INPUT", "parallel")
    val = await call("pg_restore_validate", {"file": "/b/app.dump"}, READER)
    steps = [s["command"] for s in val["steps"]]
    assert steps[0] == "pg_restore --list /b/app.dump" and steps[-1].startswith("dropdb ")
    assert val["expect"]["tables"] > 0
    phys = await call("pg_restore_validate", {"file": "/b/base", "format": "physical"}, READER)
    assert any(s["command"] == "pg_verifybackup /b/base" for s in phys["steps"])


# ---------------------------------------------------------------- snapshots


async def test_drop_table_is_snapshotted_and_restored_identical(call: Call, conn: psycopg.Connection[Any],
                                                                schema: str, items: str) -> None:
    before = shape(conn, schema, items)
    await call("pg_drop_table", {"table": items, "schema": schema})
    assert one(conn, "SELECT to_regclass(%s)", f"{schema}.items") is None
    listed = await call("pg_audit_list_backups", {"schema": schema, "name": items, "limit": 1}, READER)
    snap = listed["snapshots"][0]
    assert snap["tool"] == "pg_drop_table" and snap["kind"] == "table" and snap["principal"] == "local"
    assert snap["data_included"] is True and snap["data_rows"] == 3 and snap["target"] == f"{schema}.items"
    diff = await call("pg_audit_diff_backup", {"id": snap["id"]}, READER)
    assert diff["exists"] is False and diff["removed"] > 0 and diff["added"] == 0
    out = await call("pg_audit_restore_backup", {"id": snap["id"]})
    assert out["restored"] and out["rows"] == 3 and out["replaced"] is False
    assert shape(conn, schema, items) == before
    assert one(conn, sql.SQL("SELECT nextval({})").format(sql.Literal(f"{schema}.items_id_seq"))) == 4
    same = await call("pg_audit_diff_backup", {"id": snap["id"]}, READER)
    assert same["exists"] is True, same
    with pytest.raises(ToolError) as exc:
        await call("pg_audit_restore_backup", {"id": snap["id"]})
    assert_tool_error(exc, "ALREADY_EXISTS")


async def test_truncate_restore_with_replace_and_drift(call: Call, conn: psycopg.Connection[Any], schema: str,
                                                       items: str) -> None:
    rows = table_rows(conn, schema, items)
    await call("pg_truncate", {"table": items, "schema": schema})
    snap = (await call("pg_audit_list_backups", {"tool": "pg_truncate", "limit": 1}))["snapshots"][0]
    assert snap["name"] == items and snap["data_rows"] == 3
    conn.execute(sql.SQL("ALTER TABLE {} ADD COLUMN extra int").format(sql.Identifier(schema, items)))
    diff = await call("pg_audit_diff_backup", {"id": snap["id"]}, READER)
    assert diff["exists"] and not diff["identical"] and "+    extra integer" in diff["diff"]
    out = await call("pg_audit_restore_backup", {"id": snap["id"], "replace": True})
    assert out["replaced"] is True and out["snapshot_of_replaced"] > snap["id"] and out["rows"] == 3
    assert table_rows(conn, schema, items) == rows
    again = await call("pg_audit_diff_backup", {"id": snap["id"]}, READER)
    assert "extra" not in again["diff"]


async def test_drop_index_snapshot_and_scopes(call: Call, conn: psycopg.Connection[Any], schema: str,
                                              items: str) -> None:
    definition = one(conn, "SELECT pg_get_indexdef(%s::regclass)", f"{schema}.items_code_idx")
    await call("pg_drop_index", {"name": "items_code_idx", "schema": schema})
    snap = (await call("pg_audit_list_backups", {"schema": schema, "name": "items_code_idx"}))["snapshots"][0]
    assert snap["kind"] == "index" and snap["data_included"] is False
    for who in (READER, WRITER):
        with pytest.raises(ToolError) as exc:
            await call("pg_audit_restore_backup", {"id": snap["id"]}, who)
        assert_tool_error(exc, "FORBIDDEN")
    with pytest.raises(ToolError) as exc:
        await call("pg_audit_restore_backup", {"id": 2**62})
    assert_tool_error(exc, "NOT_FOUND")
    await call("pg_audit_restore_backup", {"id": snap["id"]})
    assert one(conn, "SELECT pg_get_indexdef(%s::regclass)", f"{schema}.items_code_idx") == definition
