"""pgcrypto group: hashes, HMACs, PGP symmetric encryption, random values and crypt() password hashes.

Every secret (data, keys, passwords, salts) goes to the server as a bound parameter, is redacted from the audit
log, and is kept out of the server log: a call refuses to run where the server would log parameter values and
pgcode cannot switch that off for the call.
"""

from __future__ import annotations

import base64
import binascii
import re
from enum import StrEnum
from typing import Any

import psycopg
from psycopg import errors as pg_errors
from psycopg import sql
from pydantic import Field

from pgcode.core.context import ToolContext, savepoint
from pgcode.core.registry import ToolInput, tool
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._extensions import create_extension, extension_schema
from pgcode.types import Effect

PGCRYPTO = ("pgcrypto",)
DATA_MAX = 1_000_000  # characters of data hashed or encrypted in one call
ALGORITHMS = ("md5", "sha1", "sha224", "sha256", "sha384", "sha512")
BF_COST = (4, 14)  # measured: cost 12 takes 0.5 s and each step doubles it; pgcrypto itself allows up to 31
XDES_ROUNDS = (1, 16_777_215)  # pgcrypto's own range; the maximum takes about 3 s


class CreateExtensionIn(ToolInput):
    pass


@tool(group="pgcrypto", effect=Effect.ADMIN)
async def pgcrypto_create_extension(ctx: ToolContext, args: CreateExtensionIn) -> dict[str, Any]:
    """Create the pgcrypto extension (hashes, HMAC, PGP encryption, crypt).

    Says whether it was already there. Runs in autocommit so that the extension is usable by the next call.
    """
    ctx.use_autocommit()
    return await create_extension(ctx, "pgcrypto", package="the PostgreSQL contrib package")


# ---------------------------------------------------------------- shared steps

_LOGGING = sql.SQL(
    "SELECT coalesce(max(setting) FILTER (WHERE name = 'log_parameter_max_length'), '0')::int AS on_ok, "
    "coalesce(max(setting) FILTER (WHERE name = 'log_parameter_max_length_on_error'), '0')::int AS on_error, "
    "coalesce(bool_or(CASE name WHEN 'log_statement' THEN setting = 'all' "
    "WHEN 'log_min_duration_statement' THEN setting::int >= 0 WHEN 'log_min_duration_sample' THEN setting::int >= 0 "
    "WHEN 'log_transaction_sample_rate' THEN setting::float8 > 0 END), false) AS logged "
    "FROM pg_settings WHERE name IN ('log_parameter_max_length', 'log_parameter_max_length_on_error', "
    "'log_statement', 'log_min_duration_statement', 'log_min_duration_sample', 'log_transaction_sample_rate')")


async def _functions(ctx: ToolContext) -> sql.Identifier:
    """The pgcrypto schema, after making sure this call's parameter values cannot reach the server log."""
    row = await ctx.fetchone(_LOGGING)
    assert row is not None
    if (row["on_ok"] != 0 and row["logged"]) or row["on_error"] != 0:
        try:
            async with savepoint(ctx, "pgcrypto_quiet"):
                await ctx.execute("SELECT set_config('log_parameter_max_length', '0', true), "
                                  "set_config('log_parameter_max_length_on_error', '0', true)")
        except pg_errors.InsufficientPrivilege:
            raise ToolError(ErrorCode.CONFLICT, "this server logs statement parameters, which would write the "
                            "secret into its log, and pgcode's role may not turn that off for the call; nothing "
                            "was run", hint="set log_parameter_max_length and log_parameter_max_length_on_error to "
                            "0, or GRANT SET ON PARAMETER for both to pgcode's role (PostgreSQL 15+)",
                            details={"log_parameter_max_length": row["on_ok"],
                                     "log_parameter_max_length_on_error": row["on_error"]}) from None
    return sql.Identifier(await extension_schema(ctx, "pgcrypto"))


def _fn(schema: sql.Identifier, name: str) -> sql.Composable:
    return sql.SQL("{}.{}").format(schema, sql.Identifier(name))


def _algorithm(name: str) -> str:
    """sha256 for sha256, SHA-256, SHA_256; refuses names pgcrypto's digest() does not know."""
    norm = name.lower().replace("-", "").replace("_", "")
    if norm not in ALGORITHMS:
        raise ToolError(ErrorCode.INVALID_INPUT, f"unknown hash algorithm {name[:40]!r}; allowed: "
                        f"{', '.join(ALGORITHMS)}", details={"allowed": list(ALGORITHMS)})
    return norm


class Encoding(StrEnum):
    HEX = "hex"
    BASE64 = "base64"


def _encode(value: bytes, encoding: Encoding) -> str:
    return value.hex() if encoding is Encoding.HEX else base64.b64encode(value).decode()


ALGORITHM_HELP = f"{', '.join(ALGORITHMS[:-1])} or {ALGORITHMS[-1]}"


class HashIn(ToolInput):
    data: str = Field(max_length=DATA_MAX, description="Text to hash (as UTF-8)")
    algorithm: str = Field("sha256", max_length=20, description=ALGORITHM_HELP)
    encoding: Encoding = Encoding.HEX


@tool(group="pgcrypto", effect=Effect.READ, extensions=PGCRYPTO)
async def pgcrypto_hash(ctx: ToolContext, args: HashIn) -> dict[str, Any]:
    """The digest of a text (pgcrypto digest()), in hex or base64.

    algorithm also accepts SHA-256 style names (SHA-256, SHA_256).
    """
    algorithm = _algorithm(args.algorithm)
    fns = await _functions(ctx)
    digest: bytes = await ctx.fetchval(sql.SQL("SELECT {}(%s::bytea, %s)").format(_fn(fns, "digest")),
                                       (args.data.encode(), algorithm))
    return {"hash": _encode(digest, args.encoding), "algorithm": algorithm, "encoding": args.encoding.value}


class HmacIn(ToolInput):
    data: str = Field(max_length=DATA_MAX, description="Text to authenticate (as UTF-8)")
    key: str = Field(min_length=1, max_length=10_000, description="Secret key (as UTF-8)")
    algorithm: str = Field("sha256", max_length=20, description=ALGORITHM_HELP)
    encoding: Encoding = Encoding.HEX


@tool(group="pgcrypto", effect=Effect.READ, extensions=PGCRYPTO)
async def pgcrypto_hmac(ctx: ToolContext, args: HmacIn) -> dict[str, Any]:
    """The HMAC of a text under a secret key (pgcrypto hmac()), in hex or base64.

    algorithm also accepts SHA-256 style names (SHA-256, SHA_256).
    """
    algorithm = _algorithm(args.algorithm)
    fns = await _functions(ctx)
    mac: bytes = await ctx.fetchval(sql.SQL("SELECT {}(%s::bytea, %s::bytea, %s)").format(_fn(fns, "hmac")),
                                    (args.data.encode(), args.key.encode(), algorithm))
    return {"hmac": _encode(mac, args.encoding), "algorithm": algorithm, "encoding": args.encoding.value}


# PGP ciphers every pgcrypto build offers: OpenSSL 3 leaves bf and cast5 out unless its legacy provider is loaded.
class Cipher(StrEnum):
    AES128 = "aes128"
    AES192 = "aes192"
    AES256 = "aes256"
    DES3 = "3des"


class EncryptIn(ToolInput):
    data: str = Field(max_length=DATA_MAX, description="Text to encrypt")
    password: str = Field(min_length=1, max_length=10_000, description="Password to encrypt with")
    cipher: Cipher = Cipher.AES256


@tool(group="pgcrypto", effect=Effect.READ, extensions=PGCRYPTO)
async def pgcrypto_encrypt(ctx: ToolContext, args: EncryptIn) -> dict[str, Any]:
    """Encrypt a text with a password (PGP symmetric); returns base64.

    pgp_sym_encrypt. The result is `encrypted`; cipher is the PGP cipher-algo. pg_pgcrypto_decrypt with the same
    password gives the text back. Each call gives a different result (a random session key and salt).
    """
    fns = await _functions(ctx)
    value: bytes = await ctx.fetchval(sql.SQL("SELECT {}(%s::text, %s::text, %s::text)").format(
        _fn(fns, "pgp_sym_encrypt")), (args.data, args.password, f"cipher-algo={args.cipher.value}"))
    return {"encrypted": base64.b64encode(value).decode(), "cipher": args.cipher.value, "encoding": "base64"}


class DecryptIn(ToolInput):
    data: str = Field(min_length=1, max_length=4 * DATA_MAX, description="Encrypted value, base64")
    password: str = Field(min_length=1, max_length=10_000, description="Password it was encrypted with")


@tool(group="pgcrypto", effect=Effect.READ, extensions=PGCRYPTO)
async def pgcrypto_decrypt(ctx: ToolContext, args: DecryptIn) -> dict[str, Any]:
    """Decrypt a pg_pgcrypto_encrypt value with its password.

    data is the base64 pg_pgcrypto_encrypt returned; the result is `decrypted`. A wrong password or damaged data is an
    INVALID_INPUT error.
    """
    try:
        data = base64.b64decode(args.data, validate=True)
    except (binascii.Error, ValueError):
        raise ToolError(ErrorCode.INVALID_INPUT, "data is not base64",
                        hint="pass the encrypted value as pg_pgcrypto_encrypt returned it") from None
    fns = await _functions(ctx)
    try:
        async with savepoint(ctx, "pgcrypto_decrypt"):
            text: str = await ctx.fetchval(sql.SQL("SELECT {}(%s::bytea, %s::text)").format(
                _fn(fns, "pgp_sym_decrypt")), (data, args.password))
    except psycopg.Error as exc:
        # pgcrypto reports a wrong key, damaged or non-PGP data, and binary data as SQLSTATE 39000.
        if not (exc.sqlstate or "").startswith(("39", "22")):
            raise
        raise ToolError(ErrorCode.INVALID_INPUT, f"could not decrypt: {exc.diag.message_primary}",
                        hint="check the password, and that data is the base64 pg_pgcrypto_encrypt returned",
                        details={"sqlstate": exc.sqlstate}) from None
    return {"decrypted": text}


class GenRandomUuidIn(ToolInput):
    count: int = Field(1, ge=1, le=1000)


@tool(group="pgcrypto", effect=Effect.READ)
async def pgcrypto_gen_random_uuid(ctx: ToolContext, args: GenRandomUuidIn) -> dict[str, Any]:
    """Random version 4 UUIDs (gen_random_uuid()).

    From the server's secure random source. count UUIDs: uuid is the first, uuids all of them. gen_random_uuid() is
    built into PostgreSQL 13 and later, so this tool does not need pgcrypto there.
    """
    if ctx.server_version < 130000:
        ctx.caps.require_extension("pgcrypto", create_tool="pg_pgcrypto_create_extension")
    rows = await ctx.fetch("SELECT gen_random_uuid()::text AS uuid FROM generate_series(1, %s)", (args.count,))
    uuids = [r["uuid"] for r in rows]
    return {"uuid": uuids[0], "uuids": uuids, "count": len(uuids)}


class GenRandomBytesIn(ToolInput):
    length: int = Field(16, ge=1, le=1024)
    encoding: Encoding = Encoding.HEX


@tool(group="pgcrypto", effect=Effect.READ, extensions=PGCRYPTO)
async def pgcrypto_gen_random_bytes(ctx: ToolContext, args: GenRandomBytesIn) -> dict[str, Any]:
    """Secure random bytes (gen_random_bytes), in hex or base64."""
    fns = await _functions(ctx)
    value: bytes = await ctx.fetchval(sql.SQL("SELECT {}(%s)").format(_fn(fns, "gen_random_bytes")), (args.length,))
    return {"bytes": _encode(value, args.encoding), "length": len(value), "encoding": args.encoding.value}


class SaltType(StrEnum):
    BF = "bf"
    MD5 = "md5"
    XDES = "xdes"
    DES = "des"


class GenSaltIn(ToolInput):
    type: SaltType = SaltType.BF
    iterations: int | None = Field(None, ge=1, le=XDES_ROUNDS[1], description=(
        f"bf: {BF_COST[0]}-{BF_COST[1]} (default 6); xdes: odd (default 725)"))


def _check_iterations(kind: SaltType, iterations: int | None) -> None:
    if iterations is None:
        return
    if kind in (SaltType.MD5, SaltType.DES):
        raise ToolError(ErrorCode.INVALID_INPUT, f"{kind.value} salts take no iteration count")
    if kind is SaltType.BF and not BF_COST[0] <= iterations <= BF_COST[1]:
        raise ToolError(ErrorCode.INVALID_INPUT, f"a bf cost must be {BF_COST[0]} to {BF_COST[1]} (each step "
                        "doubles the time; 12 takes about half a second)", details={"iterations": iterations})
    if kind is SaltType.XDES and iterations % 2 == 0:
        raise ToolError(ErrorCode.INVALID_INPUT, "an xdes iteration count must be odd",
                        details={"iterations": iterations})


@tool(group="pgcrypto", effect=Effect.READ, extensions=PGCRYPTO)
async def pgcrypto_gen_salt(ctx: ToolContext, args: GenSaltIn) -> dict[str, Any]:
    """A random salt for pg_pgcrypto_crypt (gen_salt), with an optional work factor.

    type bf (Blowfish) is the one to use; md5, xdes and des are for old hashes. iterations is the work factor:
    bf cost 4-14 (default 6; each step doubles the time), xdes an odd count 1-16777215 (default 725); md5 and
    des take none.
    """
    _check_iterations(args.type, args.iterations)
    fns = await _functions(ctx)
    if args.iterations is None:
        salt = await ctx.fetchval(sql.SQL("SELECT {}(%s)").format(_fn(fns, "gen_salt")), (args.type.value,))
    else:
        salt = await ctx.fetchval(sql.SQL("SELECT {}(%s, %s)").format(_fn(fns, "gen_salt")),
                                  (args.type.value, args.iterations))
    return {"salt": salt, "type": args.type.value, "iterations": args.iterations}


class CryptIn(ToolInput):
    password: str = Field(min_length=1, max_length=1000, description="Password to hash or check")
    salt: str | None = Field(None, min_length=2, max_length=200, description=(
        "Salt, or a stored hash to check against"))


_ITOA64 = "./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
_BF_SALT = re.compile(r"^\$2[abxy]?\$(\d{2})\$")


def _check_salt(salt: str) -> None:
    """Refuse a salt (or stored hash) whose work factor is beyond the bounds gen_salt keeps."""
    bf = _BF_SALT.match(salt)
    if bf and int(bf.group(1)) > BF_COST[1]:
        raise ToolError(ErrorCode.INVALID_INPUT, f"the salt asks for bf cost {int(bf.group(1))}; at most "
                        f"{BF_COST[1]} is allowed")
    if salt.startswith("_") and len(salt) >= 5 and all(c in _ITOA64 for c in salt[1:5]):
        rounds = sum(_ITOA64.index(c) << (6 * i) for i, c in enumerate(salt[1:5]))
        if rounds > XDES_ROUNDS[1]:
            raise ToolError(ErrorCode.INVALID_INPUT, "the xdes salt's iteration count is out of range")


@tool(group="pgcrypto", effect=Effect.READ, extensions=PGCRYPTO)
async def pgcrypto_crypt(ctx: ToolContext, args: CryptIn) -> dict[str, Any]:
    """A crypt() password hash; with a stored hash as salt, says if the password matches.

    salt: one from pg_pgcrypto_gen_salt, or a stored hash (default: a new bf salt); with a stored hash, matches says
    whether the password is the right one. Store the hash; to check a password later call this with salt set to the
    stored hash.
    """
    if args.salt is not None:
        _check_salt(args.salt)
    fns = await _functions(ctx)
    salt = args.salt
    if salt is None:
        salt = await ctx.fetchval(sql.SQL("SELECT {}('bf')").format(_fn(fns, "gen_salt")))
    try:
        async with savepoint(ctx, "pgcrypto_crypt"):
            hashed: str = await ctx.fetchval(sql.SQL("SELECT {}(%s, %s)").format(_fn(fns, "crypt")),
                                             (args.password, salt))
    except psycopg.Error as exc:
        if not (exc.sqlstate or "").startswith(("39", "22")):
            raise
        raise ToolError(ErrorCode.INVALID_INPUT, f"crypt() refused the salt: {exc.diag.message_primary}",
                        hint="pass a salt from pg_pgcrypto_gen_salt, or a hash crypt() made") from None
    out: dict[str, Any] = {"hash": hashed}
    if args.salt is not None:
        out["matches"] = hashed == args.salt
    return out
