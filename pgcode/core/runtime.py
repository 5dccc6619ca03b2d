"""Runtime: the settings, the database, the registry and the held transactions of one server."""

from __future__ import annotations

from collections.abc import Callable
from types import TracebackType
from typing import Any, Protocol, TypeVar, cast

from pgcode.core.invoke import invoke
from pgcode.core.registry import Registry, load_registry
from pgcode.db.migrate import AuditTable, audit_table, migrate
from pgcode.db.pool import Database
from pgcode.db.txstore import TransactionStore
from pgcode.guard.audit import AuditLog
from pgcode.guard.fairshare import FairShare
from pgcode.guard.ratelimit import RateLimiter
from pgcode.guard.roles import RoleSeparation, prepare_roles
from pgcode.settings import Settings
from pgcode.types import Principal


class Component(Protocol):
    """A service a layer above core keeps per runtime (code mode's worker pool): closed with the runtime."""

    async def close(self) -> None: ...


C = TypeVar("C", bound=Component)


class Runtime:
    """Everything a call needs; opened once per process by the server, the CLI or the tests."""

    def __init__(self, settings: Settings, registry: Registry | None = None) -> None:
        self.settings = settings
        self.registry = registry or load_registry()
        self.db = Database(settings)
        self.txstore = TransactionStore(self.db, settings)
        self.schema_ready = False  # pgcode's own schema (migrations) is writable and up to date
        self._components: dict[Callable[[Runtime], Component], Component] = {}
        self.limiter = RateLimiter(settings)
        self.audit = AuditLog(self.db, settings)
        self.fairshare = FairShare.for_pool(settings)
        self.roles = RoleSeparation(False, settings.read_role, settings.write_role, "not checked yet")

    async def open(self) -> None:
        await self.db.open()
        # A read-only server creates nothing: neither roles nor pgcode's schema. Its audit rows still go to
        # pgcode.audit_log when that exists (written as the connecting role), or to PGCODE_AUDIT_FILE.
        self.roles = await prepare_roles(self.db, self.settings, create=not self.settings.read_only)
        self.schema_ready = await migrate(self.db) is not None
        self.audit.start(AuditTable.CURRENT if self.schema_ready else await audit_table(self.db))
        self.txstore.start()

    def component(self, factory: Callable[[Runtime], C]) -> C:
        """The runtime's one instance made by `factory`, created on first use and closed with the runtime.

        Layers above core (code mode) keep their per-runtime state here, so core never imports them.
        """
        found = self._components.get(factory)
        if found is None:
            found = self._components[factory] = factory(self)
        return cast(C, found)

    async def close(self) -> None:
        components, self._components = list(self._components.values()), {}
        for component in reversed(components):
            await component.close()
        await self.txstore.close()
        await self.audit.close()
        await self.db.close()

    async def __aenter__(self) -> Runtime:
        await self.open()
        return self

    async def __aexit__(self, et: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.close()

    async def invoke(self, name: str, args: Any, principal: Principal, *, read_only: bool = False) -> Any:
        return await invoke(self, name, args, principal, read_only=read_only)
