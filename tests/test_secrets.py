"""Secrets inside SQL and code never reach the audit log or the code-mode history in clear."""

from __future__ import annotations

import uuid
from typing import Any

import psycopg
import pytest

from pgcode.core.runtime import Runtime
from pgcode.guard.secrets import redact_text
from tests.fix_db import Call

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(("text", "kept", "gone"), [
    ("SELECT pgp_sym_encrypt('plain', 'k3y', 'cipher-algo=aes256')", ["cipher-algo=aes256"], ["plain", "k3y"]),
    ("SELECT encrypt(data, E'k\\\\ey', 'aes'), hmac('msg', $$k2$$, 'sha256')", ["'aes'", "'sha256'"],
     ["k\\\\ey", "msg", "k2"]),
    ("SELECT crypt('pw', gen_salt('bf')), digest('pw2', 'sha1') FROM t WHERE a = 'x'", ["'sha1'", "'x'"],
     ["'pw'", "pw2"]),
    ("ALTER ROLE r PASSWORD 'hunter2'", [], ["hunter2"]),
    ("await pg.pgcrypto.decrypt({data: e, password: \"pw\"}); await pg.call('pg_pgcrypto_hmac', {data: `m`, "
     "key: 'k'}); return 'fine'", ["'fine'", "pg_pgcrypto_hmac"], ['"pw"', "`m`", "'k'"]),
    ("SELECT pgp_sym_decrypt(col, 'it''s', 'x') FROM t -- unbalanced ( text", ["'x'"], ["it''s"]),
])
def test_redact_text(text: str, kept: list[str], gone: list[str]) -> None:
    out = redact_text(text)
    assert all(k in out for k in kept), out
    assert not any(g in out for g in gone), out
    assert "[redacted]" in out


async def test_secrets_in_sql_and_code_stay_out_of_audit_and_history(rt: Runtime, call: Call,
                                                                     conn: psycopg.Connection[Any]) -> None:
    if not conn.execute("SELECT count(*) FROM pg_extension WHERE extname = 'pgcrypto'").fetchone()[0]:  # type: ignore[index]
        pytest.skip("needs pgcrypto, which this server lacks")
    key, plain = f"key-{uuid.uuid4().hex}", f"plain-{uuid.uuid4().hex}"
    out = await call("pg_read_query", {"sql": f"SELECT pgp_sym_decrypt(pgp_sym_encrypt('{plain}', '{key}'), "
                                              f"'{key}') AS p"})
    assert out["rows"] == [{"p": plain}]  # positive control: the statement ran with its literals
    code = (f"const e = await pg.pgcrypto.encrypt({{data: '{plain}', password: '{key}'}});\n"
            f"return (await pg.pgcrypto.decrypt({{data: e.encrypted, password: '{key}'}})).decrypted")
    run = await call("pg_execute_code", {"code": code})
    assert run["success"] is True and run["result"] == plain
    await rt.audit.flush()
    from pgcode.codemode.engine import engine

    await engine(rt).history.flush()
    for table, column in (("pgcode.audit_log", "arguments::text"), ("pgcode.executions", "code")):
        leaked = conn.execute(f"SELECT count(*) FROM {table} WHERE {column} LIKE %s OR {column} LIKE %s",
                              (f"%{key}%", f"%{plain}%")).fetchone()
        assert leaked == (0,), table
    assert conn.execute("SELECT count(*) FROM pgcode.executions WHERE code LIKE '%pg.pgcrypto.encrypt%'"
                        ).fetchone()[0] >= 1  # type: ignore[index]
