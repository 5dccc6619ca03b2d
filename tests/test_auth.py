"""Token verification with keys and tokens made here (no network): JWTs against a JWKS, static tokens."""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import anyio
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from pgcode.guard.auth import Authenticator, AuthError, scopes_from_claims
from pgcode.settings import Settings
from pgcode.types import Scope

pytestmark = pytest.mark.anyio
ISSUER = "https://issuer.test"
AUDIENCE = "pgcode-test"


class KeyPair:
    def __init__(self, kid: str) -> None:
        self.kid = kid
        self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwk(self) -> dict[str, Any]:
        jwk: dict[str, Any] = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.private.public_key()))
        return {**jwk, "kid": self.kid, "alg": "RS256", "use": "sig"}

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)

    def token(self, **overrides: Any) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "aud": AUDIENCE, "sub": "alice", "iat": now, "exp": now + 300,
                  "scope": "read write"}
        claims.update(overrides)
        claims = {k: v for k, v in claims.items() if v is not None}
        return jwt.encode(claims, self.private, algorithm="RS256", headers={"kid": self.kid})


@pytest.fixture
def keys() -> KeyPair:
    return KeyPair("k1")


@pytest.fixture
def jwks_file(tmp_path: Path, keys: KeyPair) -> Path:
    path = tmp_path / "jwks.json"
    path.write_text(json.dumps({"keys": [keys.jwk()]}))
    return path


def _auth(jwks_file: Path | None = None, tokens: Path | None = None, url: str | None = None) -> Authenticator:
    return Authenticator(Settings(database_url="", auth_issuer=ISSUER, auth_audience=AUDIENCE,
                                  auth_jwks_file=jwks_file, auth_tokens=tokens, auth_jwks_url=url))


async def test_valid_jwt_gives_subject_and_expanded_scopes(keys: KeyPair, jwks_file: Path) -> None:
    principal = await _auth(jwks_file).authenticate(keys.token(scope="write"))
    assert principal.subject == f"jwt:{ISSUER}#alice"
    assert principal.scopes == {Scope.READ, Scope.WRITE}


async def test_scp_claim_list_is_read_too(keys: KeyPair, jwks_file: Path) -> None:
    principal = await _auth(jwks_file).authenticate(keys.token(scope=None, scp=["admin"]))
    assert principal.scopes == {Scope.READ, Scope.WRITE, Scope.ADMIN}


def test_scope_claims_expand_and_ignore_unknown_scopes() -> None:
    assert scopes_from_claims({"scope": "read openid"}) == {Scope.READ}
    assert scopes_from_claims({"scp": "write"}) == {Scope.READ, Scope.WRITE}
    assert scopes_from_claims({}) == frozenset()


async def test_missing_scope_claim_gives_no_scopes(keys: KeyPair, jwks_file: Path) -> None:
    principal = await _auth(jwks_file).authenticate(keys.token(scope=None))
    assert principal.scopes == frozenset()


@pytest.mark.parametrize(("overrides", "reason"), [
    ({"exp": int(time.time()) - 3600}, "expired"),
    ({"nbf": int(time.time()) + 3600}, "not valid yet"),
    ({"iss": "https://evil.test"}, "another issuer"),
    ({"aud": "someone-else"}, "another audience"),
    ({"sub": None}, "not valid"),
])
async def test_bad_claims_are_refused(keys: KeyPair, jwks_file: Path, overrides: dict[str, Any], reason: str) -> None:
    with pytest.raises(AuthError, match=reason):
        await _auth(jwks_file).authenticate(keys.token(**overrides))


async def test_bad_signature_is_refused(jwks_file: Path) -> None:
    impostor = KeyPair("k1")  # same kid, different key
    with pytest.raises(AuthError, match="not valid"):
        await _auth(jwks_file).authenticate(impostor.token())


async def test_alg_none_is_refused(jwks_file: Path) -> None:
    token = jwt.encode({"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "exp": int(time.time()) + 60,
                        "scope": "admin"}, key=None, algorithm="none", headers={"kid": "k1"})
    with pytest.raises(AuthError, match="not accepted"):
        await _auth(jwks_file).authenticate(token)


async def test_hs256_signed_with_the_public_key_is_refused(keys: KeyPair, jwks_file: Path) -> None:
    """Algorithm confusion: the public key used as an HMAC secret must not verify."""
    import base64
    import hashlib as _h
    import hmac as _hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "k1"}).encode())
    payload = b64(json.dumps({"iss": ISSUER, "aud": AUDIENCE, "sub": "mallory", "exp": int(time.time()) + 60,
                              "scope": "admin"}).encode())
    signature = b64(_hmac.new(keys.public_pem(), f"{header}.{payload}".encode(), _h.sha256).digest())
    with pytest.raises(AuthError, match="not accepted"):
        await _auth(jwks_file).authenticate(f"{header}.{payload}.{signature}")


async def test_unknown_kid_refetches_the_key_set_once(keys: KeyPair, jwks_file: Path) -> None:
    auth = _auth(jwks_file)
    assert (await auth.authenticate(keys.token())).subject == f"jwt:{ISSUER}#alice"
    rotated = KeyPair("k2")
    await anyio.Path(jwks_file).write_text(json.dumps({"keys": [keys.jwk(), rotated.jwk()]}))  # the issuer rotates
    assert (await auth.authenticate(rotated.token(sub="bob"))).subject == f"jwt:{ISSUER}#bob"
    stranger = KeyPair("k3")  # never published: refused, and no refetch storm
    with pytest.raises(AuthError, match="unknown key"):
        await auth.authenticate(stranger.token())


@pytest.fixture
def jwks_server(keys: KeyPair) -> Iterator[tuple[str, list[int]]]:
    hits: list[int] = []
    body = json.dumps({"keys": [keys.jwk()]}).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            hits.append(1)
            self.send_response(200)
            self.send_header("content-type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", hits
    finally:
        server.shutdown()
        server.server_close()


async def test_jwks_url_is_fetched_once_and_cached(keys: KeyPair, jwks_server: tuple[str, list[int]]) -> None:
    url, hits = jwks_server
    auth = _auth(url=url)
    for _ in range(5):
        assert (await auth.authenticate(keys.token())).subject == f"jwt:{ISSUER}#alice"
    assert len(hits) == 1


def _token_file(path: Path, entries: list[tuple[str, str, list[str]]]) -> None:
    path.write_text(json.dumps([{"subject": s, "sha256": hashlib.sha256(t.encode()).hexdigest(), "scopes": sc}
                                for s, t, sc in entries]))


async def test_static_tokens_right_wrong_and_revoked_by_editing_the_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    _token_file(path, [("ci-bot", "tok-read-123", ["read"]), ("ops", "tok-admin-456", ["admin"])])
    auth = _auth(tokens=path)
    bot = await auth.authenticate("tok-read-123")
    assert bot.subject == "static:ci-bot" and bot.scopes == {Scope.READ}
    assert (await auth.authenticate("tok-admin-456")).scopes == {Scope.READ, Scope.WRITE, Scope.ADMIN}
    with pytest.raises(AuthError):
        await auth.authenticate("tok-read-124")
    assert "tok-read-123" not in path.read_text()  # the file holds digests only
    _token_file(path, [("ops", "tok-admin-456", ["admin"])])  # revoke ci-bot by editing the file
    await anyio.sleep(1.1)  # the file is checked for changes at most once a second
    with pytest.raises(AuthError):
        await auth.authenticate("tok-read-123")
    assert (await auth.authenticate("tok-admin-456")).subject == "static:ops"


@pytest.mark.parametrize(("claims", "fragment"), [
    ({"scope": 7}, "scope claim"),
    ({"scope": {"admin": False}}, "scope claim"),
    ({"scope": None, "scp": {"admin": True}}, "scp claim"),
    ({"scope": ["read", 1]}, "scope claim"),
    ({"scope": True}, "scope claim"),
    ({"sub": 42}, "not valid"),  # PyJWT checks sub's type itself
    ({"sub": ["admin"]}, "not valid"),
    ({"sub": ""}, "sub claim"),
    ({"sub": "x\ud800"}, "sub claim"),
])
async def test_claims_of_the_wrong_type_are_refused(keys: KeyPair, jwks_file: Path, claims: dict[str, Any],
                                                    fragment: str) -> None:
    with pytest.raises(AuthError, match=fragment):
        await _auth(jwks_file).authenticate(keys.token(**claims))


async def test_scope_as_a_list_of_strings_is_accepted(keys: KeyPair, jwks_file: Path) -> None:
    principal = await _auth(jwks_file).authenticate(keys.token(scope=["read", "write"]))
    assert principal.scopes == {Scope.READ, Scope.WRITE}


async def test_issuer_with_a_hash_is_refused_when_any_issuer_is_accepted(keys: KeyPair, jwks_file: Path) -> None:
    auth = Authenticator(Settings(database_url="", auth_audience=AUDIENCE, auth_jwks_file=jwks_file))
    with pytest.raises(AuthError, match="iss claim"):
        await auth.authenticate(keys.token(iss="https://a.test#b"))
    assert (await auth.authenticate(keys.token(iss="https://a.test"))).subject == "jwt:https://a.test#alice"
    assert (await auth.authenticate(keys.token(iss=None))).subject == "jwt:#alice"


async def test_a_static_subject_and_a_jwt_sub_are_different_principals(keys: KeyPair, jwks_file: Path,
                                                                        tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    _token_file(path, [("alice", "tok-static-alice", ["read"])])
    auth = _auth(jwks_file, tokens=path)
    static = await auth.authenticate("tok-static-alice")
    jwt_alice = await auth.authenticate(keys.token(sub="alice", scope="read"))
    assert static.subject == "static:alice" and jwt_alice.subject == f"jwt:{ISSUER}#alice"


async def test_token_file_entries_of_the_wrong_type_accept_nothing(tmp_path: Path) -> None:
    path = tmp_path / "tokens.json"
    digest = hashlib.sha256(b"tok-1").hexdigest()
    path.write_text(json.dumps([{"subject": "ops", "sha256": digest, "scopes": "admin"}]))
    with pytest.raises(AuthError):
        await _auth(tokens=path).authenticate("tok-1")
    path.write_text(json.dumps([{"subject": "ops", "sha256": digest, "scopes": ["admin"]}]))
    assert (await _auth(tokens=path).authenticate("tok-1")).subject == "static:ops"
