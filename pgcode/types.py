"""Leaf types shared by every layer: effects, scopes, transaction modes, principals (imports no pgcode module)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

JSON = Any
"""A value that json.dumps accepts."""


class Scope(StrEnum):
    """OAuth scopes; they nest admin ⊃ write ⊃ read."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _SCOPE_RANK[self]

    def implied(self) -> frozenset[Scope]:
        """This scope and every scope it contains."""
        return frozenset(s for s in Scope if s.rank <= self.rank)


_SCOPE_RANK = {Scope.READ: 0, Scope.WRITE: 1, Scope.ADMIN: 2}


class Effect(StrEnum):
    """What a tool does to the database; decides the scope it needs and its MCP annotations."""

    READ = "read"
    WRITE = "write"
    ADMIN = "admin"
    DESTRUCTIVE = "destructive"

    @property
    def scope(self) -> Scope:
        return _EFFECT_SCOPE.get(self, Scope.ADMIN)


_EFFECT_SCOPE = {Effect.READ: Scope.READ, Effect.WRITE: Scope.WRITE}


class TxMode(StrEnum):
    """How invoke() runs a tool's statements."""

    READ_ONLY = "read_only"  # BEGIN READ ONLY with a statement_timeout
    READ_WRITE = "read_write"  # one transaction, rolled back on any error
    AUTOCOMMIT = "autocommit"  # VACUUM, CREATE INDEX CONCURRENTLY, ...
    NONE = "none"  # the tool manages connections itself (held transactions) or needs none


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: a subject and the scopes it holds (already expanded)."""

    subject: str
    scopes: frozenset[Scope]

    def allows(self, scope: Scope) -> bool:
        return scope in self.scopes

    @classmethod
    def with_scope(cls, subject: str, scope: Scope) -> Principal:
        return cls(subject, scope.implied())


LOCAL_PRINCIPAL = Principal.with_scope("local", Scope.ADMIN)
"""The caller when auth is off (stdio, the CLI, a loopback server without auth)."""
