"""Command lines for the PostgreSQL client tools, aimed at this connection without its password."""

from __future__ import annotations

import shlex
from dataclasses import dataclass

from pgcode.core.context import ToolContext


@dataclass(frozen=True, slots=True)
class Target:
    """Where the connection goes: host (or socket directory), port, user, database; never the password."""

    host: str
    port: str
    user: str
    dbname: str
    server_version_num: int

    @property
    def major(self) -> int:
        return self.server_version_num // 10000

    def args(self, *, dbname: str | None = None, database: bool = True) -> list[str]:
        """-h -p -U (and -d unless `database` is False: pg_basebackup connects for replication)."""
        out = ["-h", self.host, "-p", self.port, "-U", self.user]
        return [*out, "-d", dbname or self.dbname] if database else out

    def as_dict(self) -> dict[str, str | int]:
        return {"host": self.host, "port": self.port, "user": self.user, "database": self.dbname,
                "server_major": self.major}


async def target(ctx: ToolContext) -> Target:
    info = (await ctx.conn()).info
    return Target(info.host, str(info.port), info.user, info.dbname, ctx.server_version)


def command(*parts: str) -> str:
    """A shell command line with every argument quoted."""
    return shlex.join(parts)
