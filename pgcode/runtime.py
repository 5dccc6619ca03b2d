"""Runtime: the settings, the database, the registry and the held transactions of one server."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Any

from pgcode.audit import AuditLog
from pgcode.config import Settings
from pgcode.db import Database
from pgcode.migrate import migrate
from pgcode.ratelimit import RateLimiter
from pgcode.registry import Registry, load_registry
from pgcode.txstore import TransactionStore
from pgcode.types import Principal

if TYPE_CHECKING:
    from pgcode.codemode.engine import CodeMode


class Runtime:
    """Everything a call needs; opened once per process by the server, the CLI or the tests."""

    def __init__(self, settings: Settings, registry: Registry | None = None) -> None:
        self.settings = settings
        self.registry = registry or load_registry()
        self.db = Database(settings)
        self.txstore = TransactionStore(self.db, settings)
        self.schema_ready = False  # pgcode's own schema (migrations) is writable and up to date
        self._codemode: CodeMode | None = None
        self.limiter = RateLimiter(settings)
        self.audit = AuditLog(self.db, settings)

    async def open(self) -> None:
        await self.db.open()
        self.schema_ready = await migrate(self.db) is not None
        self.audit.start(self.schema_ready)
        self.txstore.start()

    @property
    def codemode(self) -> CodeMode:
        """The code-mode engine (worker pool, execution history), created on first use."""
        if self._codemode is None:
            from pgcode.codemode.engine import CodeMode

            self._codemode = CodeMode(self)
        return self._codemode

    async def close(self) -> None:
        if self._codemode is not None:
            await self._codemode.close()
            self._codemode = None
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
        from pgcode.invoke import invoke

        return await invoke(self, name, args, principal, read_only=read_only)
