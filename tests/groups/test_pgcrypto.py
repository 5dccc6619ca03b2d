"""pgcrypto group: known digests, HMACs checked against Python, PGP round trips, crypt(), secrets kept out of logs."""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import SecretStr

from pgcode.codemode.engine import engine
from pgcode.core.runtime import Runtime
from pgcode.errors import ToolError
from pgcode.settings import Settings
from pgcode.types import LOCAL_PRINCIPAL, Principal, Scope
from tests.fix_db import Call, assert_tool_error

pytestmark = pytest.mark.anyio

READER = Principal.with_scope("reader", Scope.READ)
WRITER = Principal.with_scope("writer", Scope.WRITE)
NOBODY = Principal("nobody", frozenset())
NEEDS_EXTENSION = {"pg_pgcrypto_hash": {"data": "x"}, "pg_pgcrypto_hmac": {"data": "x", "key": "k"},
                   "pg_pgcrypto_encrypt": {"data": "x", "password": "p"},
                   "pg_pgcrypto_decrypt": {"data": "AAAA", "password": "p"}, "pg_pgcrypto_gen_random_bytes": {},
                   "pg_pgcrypto_gen_salt": {}, "pg_pgcrypto_crypt": {"password": "p"}}


def installed(dsn: str) -> bool:
    with psycopg.connect(dsn) as c:
        return c.execute("SELECT 1 FROM pg_extension WHERE extname = 'pgcrypto'").fetchone() is not None


@pytest.fixture(scope="module")
def crypto(dsn: str) -> None:
    if not installed(dsn):
        pytest.skip("the pgcrypto tools need pgcrypto, which this server lacks (test_without_the_extension covers it)")


async def test_without_the_extension(call: Call, dsn: str, rt: Runtime) -> None:
    """Where pgcrypto is missing every tool answers EXTENSION_MISSING, except gen_random_uuid (core since PG 13)."""
    if installed(dsn):
        out = await call("pg_pgcrypto_create_extension", {})
        assert out["created"] is False and out["extension"] == "pgcrypto" and out["version"]
        return
    for name, args in NEEDS_EXTENSION.items():
        with pytest.raises(ToolError) as exc:
            await call(name, args)
        err = assert_tool_error(exc, "EXTENSION_MISSING", "pgcrypto")
        assert err.details["extension"] == "pgcrypto"
    out = await call("pg_pgcrypto_gen_random_uuid", {})
    assert uuid.UUID(out["uuid"]).version == 4
    with pytest.raises(ToolError) as exc:
        await call("pg_pgcrypto_create_extension", {})
    assert_tool_error(exc, "EXTENSION_MISSING", "does not ship pgcrypto")


async def test_create_extension_needs_admin(call: Call) -> None:
    with pytest.raises(ToolError) as exc:
        await call("pg_pgcrypto_create_extension", {}, WRITER)
    assert_tool_error(exc, "FORBIDDEN")


async def test_hash_known_digests(call: Call, crypto: None) -> None:
    out = await call("pg_pgcrypto_hash", {"data": "abc"}, READER)
    assert out == {"hash": "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
                   "algorithm": "sha256", "encoding": "hex"}
    assert (await call("pg_pgcrypto_hash", {"data": "abc", "algorithm": "MD5"}))["hash"] == \
        "900150983cd24fb0d6963f7d28e17f72"
    for name in ("sha1", "sha224", "SHA-384", "sha_512"):
        algo = name.lower().replace("-", "").replace("_", "")
        out = await call("pg_pgcrypto_hash", {"data": "héllo", "algorithm": name, "encoding": "base64"})
        assert base64.b64decode(out["hash"]) == hashlib.new(algo, "héllo".encode()).digest()


async def test_hash_refuses_unknown_algorithms(call: Call, crypto: None) -> None:
    for bad in ("sha3", "whirlpool", "md4"):
        with pytest.raises(ToolError) as exc:
            await call("pg_pgcrypto_hash", {"data": "abc", "algorithm": bad})
        err = assert_tool_error(exc, "INVALID_INPUT", "unknown hash algorithm", "sha256, sha384")
        assert err.details["allowed"] == ["md5", "sha1", "sha224", "sha256", "sha384", "sha512"]
    with pytest.raises(ToolError) as exc:
        await call("pg_pgcrypto_hmac", {"data": "abc", "key": "k", "algorithm": "crc32"})
    assert_tool_error(exc, "INVALID_INPUT", "allowed: md5")
    with pytest.raises(ToolError) as exc:
        await call("pg_pgcrypto_hash", {"data": "abc"}, NOBODY)
    assert_tool_error(exc, "FORBIDDEN")


async def test_hmac_matches_python(call: Call, crypto: None) -> None:
    for algo in ("sha256", "sha1", "md5", "sha512"):
        out = await call("pg_pgcrypto_hmac", {"data": "message ü", "key": "s3cret", "algorithm": algo}, READER)
        assert out["hmac"] == hmac.new(b"s3cret", "message ü".encode(), algo).hexdigest()
    with pytest.raises(ToolError) as exc:
        await call("pg_pgcrypto_hmac", {"data": "x", "key": ""})
    assert_tool_error(exc, "INVALID_INPUT", "key")


async def test_encrypt_decrypt_round_trip(call: Call, crypto: None) -> None:
    text = "attack at dawn ✓ " * 20
    out = await call("pg_pgcrypto_encrypt", {"data": text, "password": "correct horse"}, READER)
    assert out["cipher"] == "aes256" and out["encrypted"] != text
    again = await call("pg_pgcrypto_encrypt", {"data": text, "password": "correct horse"})
    assert again["encrypted"] != out["encrypted"]  # a fresh session key each time
    back = await call("pg_pgcrypto_decrypt", {"data": out["encrypted"], "password": "correct horse"}, READER)
    assert back == {"decrypted": text}
    des = await call("pg_pgcrypto_encrypt", {"data": "x", "password": "p", "cipher": "3des"})
    assert (await call("pg_pgcrypto_decrypt", {"data": des["encrypted"], "password": "p"}))["decrypted"] == "x"


async def test_decrypt_bad_input(call: Call, crypto: None) -> None:
    out = await call("pg_pgcrypto_encrypt", {"data": "secret", "password": "right"})
    with pytest.raises(ToolError) as exc:
        await call("pg_pgcrypto_decrypt", {"data": out["encrypted"], "password": "wrong"})
    err = assert_tool_error(exc, "INVALID_INPUT", "could not decrypt", "wrong key")
    assert err.http_status == 400 and "right" not in str(err.to_dict()) and "secret" not in str(err.to_dict())
    with pytest.raises(ToolError) as exc:
        await call("pg_pgcrypto_decrypt", {"data": "not base64!", "password": "right"})
    assert_tool_error(exc, "INVALID_INPUT", "not base64")
    with pytest.raises(ToolError) as exc:
        await call("pg_pgcrypto_decrypt", {"data": "aGVsbG8gd29ybGQ=", "password": "right"})
    assert_tool_error(exc, "INVALID_INPUT", "could not decrypt")
    with pytest.raises(ToolError) as exc:
        await call("pg_pgcrypto_encrypt", {"data": "x", "password": "p", "cipher": "rot13"})
    assert_tool_error(exc, "INVALID_INPUT", "cipher")


async def test_gen_random_uuid_and_bytes(call: Call, crypto: None) -> None:
    out = await call("pg_pgcrypto_gen_random_uuid", {}, READER)
    assert uuid.UUID(out["uuid"]).version == 4 and out["uuids"] == [out["uuid"]]
    many = await call("pg_pgcrypto_gen_random_uuid", {"count": 50})
    assert many["count"] == 50 and len(set(many["uuids"])) == 50
    out = await call("pg_pgcrypto_gen_random_bytes", {"length": 32}, READER)
    assert out["length"] == 32 and len(bytes.fromhex(out["bytes"])) == 32
    assert (await call("pg_pgcrypto_gen_random_bytes", {"length": 1024, "encoding": "base64"}))["length"] == 1024
    for bad in (0, 1025):
        with pytest.raises(ToolError) as exc:
            await call("pg_pgcrypto_gen_random_bytes", {"length": bad})
        assert_tool_error(exc, "INVALID_INPUT", "length")
    with pytest.raises(ToolError) as exc:
        await call("pg_pgcrypto_gen_random_uuid", {"count": 1001})
    assert_tool_error(exc, "INVALID_INPUT", "count")


async def test_gen_salt_and_crypt(call: Call, crypto: None) -> None:
    prefixes = {"bf": "$2a$06$", "md5": "$1$", "xdes": "_", "des": ""}
    for kind, prefix in prefixes.items():
        salt = (await call("pg_pgcrypto_gen_salt", {"type": kind}, READER))["salt"]
        assert salt.startswith(prefix)
        hashed = (await call("pg_pgcrypto_crypt", {"password": "hunter2", "salt": salt}, READER))["hash"]
        check = await call("pg_pgcrypto_crypt", {"password": "hunter2", "salt": hashed})
        assert check == {"hash": hashed, "matches": True}
        wrong = await call("pg_pgcrypto_crypt", {"password": "hunter3", "salt": hashed})
        assert wrong["matches"] is False
    assert (await call("pg_pgcrypto_gen_salt", {"type": "bf", "iterations": 8}))["salt"].startswith("$2a$08$")
    assert (await call("pg_pgcrypto_gen_salt", {"type": "xdes", "iterations": 1001}))["salt"].startswith("_")
    fresh = (await call("pg_pgcrypto_crypt", {"password": "pw"}))["hash"]
    assert fresh.startswith("$2a$06$") and (await call("pg_pgcrypto_crypt", {"password": "pw", "salt": fresh}))[
        "matches"] is True


async def test_gen_salt_and_crypt_bounds(call: Call, crypto: None) -> None:
    for args, fragment in (({"type": "bf", "iterations": 15}, "bf cost"), ({"type": "bf", "iterations": 3}, "bf cost"),
                           ({"type": "md5", "iterations": 5}, "no iteration"), ({"type": "xdes", "iterations": 100},
                                                                                 "odd"),
                           ({"type": "xdes", "iterations": 16_777_216}, "iterations"), ({"type": "sha"}, "type")):
        with pytest.raises(ToolError) as exc:
            await call("pg_pgcrypto_gen_salt", args)
        assert_tool_error(exc, "INVALID_INPUT", fragment)
    with pytest.raises(ToolError) as exc:
        await call("pg_pgcrypto_crypt", {"password": "p", "salt": "$2a$31$abcdefghijklmnopqrstuv"})
    assert_tool_error(exc, "INVALID_INPUT", "bf cost 31")
    with pytest.raises(ToolError) as exc:
        await call("pg_pgcrypto_crypt", {"password": "p", "salt": "$2a$06$short"})
    assert_tool_error(exc, "INVALID_INPUT", "refused the salt")


# ---------------------------------------------------------------- secrets stay out of the logs


SECRET_CALLS = [
    ("pg_pgcrypto_hash", {"data": "{m}-plain"}),
    ("pg_pgcrypto_hmac", {"data": "{m}-plain", "key": "{m}-key"}),
    ("pg_pgcrypto_encrypt", {"data": "{m}-plain", "password": "{m}-pass"}),
    ("pg_pgcrypto_crypt", {"password": "{m}-pass"}),
]


def _fill(args: dict[str, Any], marker: str) -> dict[str, Any]:
    return {k: v.format(m=marker) for k, v in args.items()}


async def test_secrets_are_not_in_the_audit_log_or_history(call: Call, rt: Runtime, crypto: None,
                                                            conn: psycopg.Connection[Any]) -> None:
    marker = f"mk{uuid.uuid4().hex}"
    me = Principal.with_scope(f"crypto-{marker}", Scope.ADMIN)
    for name, args in SECRET_CALLS:
        await call(name, _fill(args, marker), me)
    enc = await call("pg_pgcrypto_encrypt", _fill({"data": "{m}-plain", "password": "{m}-pass"}, marker), me)
    await call("pg_pgcrypto_decrypt", {"data": enc["encrypted"], "password": f"{marker}-pass"}, me)
    with pytest.raises(ToolError):
        await call("pg_pgcrypto_decrypt", {"data": enc["encrypted"], "password": f"{marker}-wrong"}, me)
    # Code mode: secrets passed in `input` under secret names, as scripts should pass them.
    code = ("const e = await pg.pgcrypto.encrypt({data: input.plaintext, password: input.password});"
            "const d = await pg.pgcrypto.decrypt({data: e.encrypted, password: input.password});"
            "return d.decrypted.length;")
    out = await rt.invoke("pg_execute_code", {"code": code, "input": {"plaintext": f"{marker}-cm-plain",
                                                                       "password": f"{marker}-cm-pass"}}, me)
    assert out["success"] and out["result"] == len(f"{marker}-cm-plain")
    await rt.audit.flush()
    await engine(rt).history.flush()
    rows = conn.execute("SELECT tool, outcome, arguments::text FROM pgcode.audit_log WHERE principal = %s "
                        "ORDER BY id", (me.subject,)).fetchall()
    tools = [r[0] for r in rows]
    assert tools.count("pg_pgcrypto_decrypt") == 3 and "pg_execute_code" in tools and "pg_pgcrypto_hmac" in tools
    assert ("pg_pgcrypto_decrypt", "error") in {(r[0], r[1]) for r in rows}
    assert all(marker not in r[2] for r in rows), [r[2] for r in rows if marker in r[2]]
    assert '"[redacted]"' in rows[0][2]
    history = conn.execute("SELECT coalesce(code, '') || coalesce(error_message, '') FROM pgcode.executions "
                           "WHERE principal = %s", (me.subject,)).fetchall()
    assert len(history) == 1 and marker not in history[0][0]


def _server_log(dsn: str) -> Path | None:
    """The test cluster's log file (scripts/test-postgres.sh starts it with pg_ctl -l <dir>/server.log)."""
    with psycopg.connect(dsn) as c:
        row = c.execute("SELECT current_setting('data_directory')").fetchone()
    path = Path(str(row[0] if row else "")).parent / "server.log"
    try:
        with path.open("rb"):
            return path
    except OSError:
        return None


async def test_secrets_are_not_in_the_server_log(dsn: str, settings: Settings, crypto: None) -> None:
    """With every statement logged and parameters logged in full, the secrets still do not reach the log."""
    log = _server_log(dsn)
    if log is None:
        pytest.skip("the server log file is not readable from here")
    params = conninfo_to_dict(dsn)
    params["options"] = "-c log_statement=all -c log_parameter_max_length=-1 -c log_parameter_max_length_on_error=-1"
    loud = make_conninfo("", **params)
    marker = f"mk{uuid.uuid4().hex}"
    start = log.stat().st_size
    with psycopg.connect(loud) as c:  # positive control: this server does log bound parameters
        c.execute("SELECT %s::text", (f"{marker}-control",))
    async with Runtime(settings.model_copy(update={"database_url": SecretStr(loud)})) as runtime:
        for name, args in SECRET_CALLS:
            await runtime.invoke(name, _fill(args, marker), LOCAL_PRINCIPAL)
        enc = await runtime.invoke("pg_pgcrypto_encrypt", {"data": f"{marker}-plain", "password": f"{marker}-pw"},
                                   LOCAL_PRINCIPAL)
        with pytest.raises(ToolError):
            await runtime.invoke("pg_pgcrypto_decrypt", {"data": enc["encrypted"], "password": f"{marker}-bad"},
                                 LOCAL_PRINCIPAL)
    with log.open("rb") as f:
        f.seek(start)
        written = f.read().decode("utf-8", "replace")
    assert f"{marker}-control" in written and "pgp_sym_encrypt" in written
    leaked = [line for line in written.splitlines() if marker in line and f"{marker}-control" not in line]
    assert leaked == []
