"""Bearer-token verification: JWTs against the issuer's keys (JWKS) or static tokens from a file."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import jwt
from jwt import PyJWK, PyJWKSet

from pgcode.settings import Settings
from pgcode.types import Principal, Scope

log = logging.getLogger("pgcode.guard.auth")

# Asymmetric algorithms only: an HS256 token "signed" with a public key (algorithm confusion) or
# alg "none" has nothing to verify against here.
ALLOWED_ALGORITHMS = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384",
                                "ES512", "EdDSA"})
JWKS_TTL_S = 300.0
JWKS_REFETCH_MIN_S = 5.0  # unknown kids refetch the key set at most this often (no refetch storm)


_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")  # NUL and unpaired surrogates: PostgreSQL text cannot hold them
STATIC_PREFIX = "static:"
JWT_PREFIX = "jwt:"
"""Principals are named by how they authenticated, so a token of one kind can never act as another's subject:
`static:<subject>` for a static token, `jwt:<issuer>#<sub>` for a JWT (the local CLI and stdio are `local`)."""


def scopes_from_claims(claims: dict[str, Any]) -> frozenset[Scope]:
    """`scope` (a space-separated string) or `scp` (a string or a list of strings), expanded: admin ⊃ write ⊃ read.

    Any other type (a number, an object, a list holding a non-string) is an AuthError: a claim of a shape
    this server does not understand must not grant anything.
    """
    if "scope" in claims:
        name, raw = "scope", claims["scope"]
    elif "scp" in claims:
        name, raw = "scp", claims["scp"]
    else:
        return frozenset()
    if isinstance(raw, str):
        return expand_scopes(raw.split())
    if isinstance(raw, list) and all(isinstance(s, str) for s in raw):
        return expand_scopes([n for s in raw for n in s.split()])
    raise AuthError(f"the token's {name} claim must be a string or a list of strings")


def jwt_principal_name(claims: dict[str, Any]) -> str:
    """`jwt:<iss>#<sub>` from claims whose types are checked: `sub` a non-empty string, `iss` (if any) a string
    without `#` (so that the name splits back into issuer and subject one way only)."""
    sub, iss = claims.get("sub"), claims.get("iss", "")
    if not isinstance(sub, str) or not sub or _UNSTORABLE.search(sub):
        raise AuthError("the token's sub claim must be a non-empty string")
    if not isinstance(iss, str) or "#" in iss or _UNSTORABLE.search(iss):
        raise AuthError("the token's iss claim must be a string without '#'")
    return f"{JWT_PREFIX}{iss}#{sub}"


def expand_scopes(names: list[str]) -> frozenset[Scope]:
    held = [Scope(n) for n in names if n in Scope._value2member_map_]
    if not held:
        return frozenset()
    return max(held, key=lambda s: s.rank).implied()


class AuthError(Exception):
    """The token was refused; the message is safe to show (it never contains the token)."""


class _JwksCache:
    def __init__(self, settings: Settings) -> None:
        self._url = settings.auth_jwks_url
        self._file = settings.auth_jwks_file
        self._keys: dict[str, PyJWK] = {}
        self._fetched = 0.0
        self._last_forced = -JWKS_REFETCH_MIN_S
        self._lock = asyncio.Lock()

    async def key(self, kid: str | None) -> PyJWK:
        if not self._keys or time.monotonic() - self._fetched > JWKS_TTL_S:
            await self._refresh()
        found = self._lookup(kid)
        if found is None and time.monotonic() - self._last_forced >= JWKS_REFETCH_MIN_S:
            self._last_forced = time.monotonic()
            await self._refresh(force=True)  # the issuer may have rotated its keys: fetch once more
            found = self._lookup(kid)
        if found is None:
            raise AuthError("the token was signed with an unknown key")
        return found

    def _lookup(self, kid: str | None) -> PyJWK | None:
        if kid is None:
            return next(iter(self._keys.values())) if len(self._keys) == 1 else None
        return self._keys.get(kid)

    async def _refresh(self, force: bool = False) -> None:
        async with self._lock:
            if not force and self._keys and time.monotonic() - self._fetched <= JWKS_TTL_S:
                return
            data = await self._load()
            keys = {}
            for entry in PyJWKSet.from_dict(data).keys:
                if entry.key_id is not None:
                    keys[entry.key_id] = entry
                elif not keys:
                    keys[""] = entry
            self._keys = keys
            self._fetched = time.monotonic()

    async def _load(self) -> dict[str, Any]:
        try:
            if self._file is not None:
                loaded: dict[str, Any] = json.loads(self._file.read_text())
                return loaded
            assert self._url is not None
            async with httpx2.AsyncClient(timeout=10) as client:
                resp = await client.get(self._url)
                resp.raise_for_status()
                fetched: dict[str, Any] = resp.json()
                return fetched
        except (OSError, ValueError, httpx2.HTTPError) as exc:
            log.warning("cannot load the issuer's signing keys: %s", type(exc).__name__)
            raise AuthError("the issuer's signing keys are unavailable") from None


@dataclass(frozen=True)
class _StaticToken:
    subject: str
    digest: bytes
    scopes: frozenset[Scope]


class _StaticTokens:
    """The token file, reloaded when its modification time or size changes (checked at most once a second)."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._stamp: tuple[float, int] | None = None
        self._checked = 0.0
        self._tokens: list[_StaticToken] = []

    def _reload_if_changed(self) -> None:
        now = time.monotonic()
        if now - self._checked < 1.0 and self._stamp is not None:
            return
        self._checked = now
        try:
            st = self._path.stat()
        except OSError:
            log.warning("the static token file is missing; no static token is accepted")
            self._tokens, self._stamp = [], None
            return
        stamp = (st.st_mtime, st.st_size)
        if stamp == self._stamp:
            return
        try:
            self._tokens = [_static_token(e) for e in json.loads(self._path.read_text())]
        except (OSError, ValueError, KeyError, TypeError):
            log.warning("the static token file is not valid: a list of {subject, sha256, scopes}")
            self._tokens = []
        self._stamp = stamp

    def verify(self, token: str) -> Principal | None:
        self._reload_if_changed()
        digest = hashlib.sha256(token.encode()).digest()
        match = None
        for entry in self._tokens:  # compare against every entry: time does not depend on which matched
            if hmac.compare_digest(entry.digest, digest):
                match = entry
        return Principal(STATIC_PREFIX + match.subject, match.scopes) if match else None


def _static_token(entry: Any) -> _StaticToken:
    """One entry of the token file, its types checked (TypeError/ValueError when it is not as documented)."""
    subject, digest, scopes = entry["subject"], entry["sha256"], entry.get("scopes", [])
    if not isinstance(subject, str) or not subject or _UNSTORABLE.search(subject) or not isinstance(digest, str):
        raise TypeError("subject and sha256 must be strings")
    if not isinstance(scopes, list) or not all(isinstance(s, str) for s in scopes):
        raise TypeError("scopes must be a list of strings")
    return _StaticToken(subject, bytes.fromhex(digest), expand_scopes(scopes))


class Authenticator:
    """Turns a bearer token into a Principal, or raises AuthError saying why (never echoing the token)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._static = _StaticTokens(settings.auth_tokens) if settings.auth_tokens else None
        self._jwks = _JwksCache(settings) if (settings.auth_jwks_url or settings.auth_jwks_file) else None

    async def authenticate(self, token: str) -> Principal:
        if self._static is not None:
            principal = self._static.verify(token)
            if principal is not None:
                return principal
        if self._jwks is not None and token.count(".") == 2:
            return await self._verify_jwt(token)
        raise AuthError("the token is not valid")

    async def _verify_jwt(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError:
            raise AuthError("the token is malformed") from None
        alg, kid = header.get("alg"), header.get("kid")
        if not isinstance(alg, str) or alg not in ALLOWED_ALGORITHMS:
            raise AuthError("tokens signed with this algorithm are not accepted (asymmetric algorithms only)")
        if kid is not None and not isinstance(kid, str):
            raise AuthError("the token's kid header must be a string")
        key = await self._jwks.key(kid) if self._jwks else None
        if key is None:
            raise AuthError("the token is not valid")
        if key.algorithm_name != alg and not (key.algorithm_name is None and alg.startswith(("RS", "PS"))):
            raise AuthError("the token's algorithm does not match its key")
        s = self.settings
        try:
            claims: dict[str, Any] = jwt.decode(
                token, key.key, algorithms=[alg], audience=s.auth_audience, issuer=s.auth_issuer, leeway=30,
                options={"require": ["exp", "sub"] + (["iss"] if s.auth_issuer else [])
                         + (["aud"] if s.auth_audience else [])})
        except jwt.ExpiredSignatureError:
            raise AuthError("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("the token is not valid yet") from None
        except jwt.InvalidAudienceError:
            raise AuthError("the token is for another audience") from None
        except jwt.InvalidIssuerError:
            raise AuthError("the token is from another issuer") from None
        except jwt.PyJWTError:
            raise AuthError("the token is not valid") from None
        except (TypeError, ValueError):  # a claim of a type PyJWT does not check
            raise AuthError("the token's claims are not valid") from None
        if not isinstance(claims, dict):
            raise AuthError("the token's claims are not valid")
        return Principal(jwt_principal_name(claims), scopes_from_claims(claims))
