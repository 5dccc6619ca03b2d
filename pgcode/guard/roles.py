"""Per-scope database roles: read and write calls run as NOLOGIN roles, so PostgreSQL refuses what they may not do.

`pgcode setup` (and `pgcode serve`, when the connecting role may create roles) creates them:
`pgcode_read` is a member of pg_read_all_data and pg_monitor; `pgcode_write` of pgcode_read and
pg_write_all_data; both are granted to the connecting role. A read or write call runs
`SET LOCAL ROLE` to its role inside its transaction; only admin work runs as the connecting role.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import psycopg
from psycopg import sql

from pgcode.db.pool import Conn, Database
from pgcode.settings import Settings
from pgcode.types import Scope

log = logging.getLogger(__name__)

_PREDEFINED_SINCE = 140000  # pg_read_all_data and pg_write_all_data arrived in PostgreSQL 14
_PARAMETER_GRANTS_SINCE = 150000  # GRANT SET ON PARAMETER
_SETUP_LOCK = 0x70676372  # "pgcr": one role setup at a time (transaction-scoped advisory lock)
# Settings a read call may lower for itself: the pgcrypto tools keep secrets out of the server log with them.
_QUIET_PARAMETERS = ("log_parameter_max_length", "log_parameter_max_length_on_error")


@dataclass(frozen=True, slots=True)
class RoleSeparation:
    """Whether read and write calls run as their own roles, and if not, why."""

    enabled: bool
    read_role: str
    write_role: str
    reason: str | None = None

    def role_for(self, scope: Scope) -> str | None:
        """The role a call of `scope` runs as; None means the connecting role (admin work, or no separation)."""
        if not self.enabled or scope is Scope.ADMIN:
            return None
        return self.read_role if scope is Scope.READ else self.write_role

    def describe(self) -> dict[str, object]:
        out: dict[str, object] = {"roleSeparation": self.enabled, "readRole": self.read_role,
                                  "writeRole": self.write_role}
        if self.reason:
            out["reason"] = self.reason
        return out


async def _fetchval(conn: Conn, query: str, params: tuple[object, ...] = ()) -> object:
    cur = await conn.execute(query, params)
    row = await cur.fetchone()
    return row[0] if row else None


async def _may_create_roles(conn: Conn) -> bool:
    return bool(await _fetchval(conn, "SELECT rolsuper OR rolcreaterole FROM pg_roles WHERE rolname = current_user"))


async def setup_roles(conn: Conn, settings: Settings) -> list[str]:
    """Create the scope roles and their grants (idempotent); return what was done, as SQL."""
    read, write = sql.Identifier(settings.read_role), sql.Identifier(settings.write_role)
    done = []
    async with conn.transaction():
        # Two servers starting at once must not both create the roles: one waits for the other.
        await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SETUP_LOCK,))
        statements: list[sql.Composed] = []
        for name, ident in ((settings.read_role, read), (settings.write_role, write)):
            if not await _fetchval(conn, "SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)):
                statements.append(sql.SQL("CREATE ROLE {} NOLOGIN").format(ident))
        statements += [
            sql.SQL("GRANT pg_read_all_data, pg_monitor TO {}").format(read),
            sql.SQL("GRANT {}, pg_write_all_data TO {}").format(read, write),
            sql.SQL("GRANT {}, {} TO CURRENT_USER").format(read, write),
        ]
        if int(str(await _fetchval(conn, "SELECT current_setting('server_version_num')"))) >= _PARAMETER_GRANTS_SINCE:
            statements.append(sql.SQL("GRANT SET ON PARAMETER {} TO {}").format(
                sql.SQL(", ").join(map(sql.Identifier, _QUIET_PARAMETERS)), read))
        for statement in statements:
            await conn.execute(statement)
            done.append(statement.as_string(conn))
    return done


async def _check(conn: Conn, settings: Settings) -> str | None:
    """Why the scope roles cannot be used from this connection, or None when they can."""
    version = int(str(await _fetchval(conn, "SELECT current_setting('server_version_num')")))
    if version < _PREDEFINED_SINCE:
        return "PostgreSQL 14 or later is needed (pg_read_all_data, pg_write_all_data)"
    for name, needs in ((settings.read_role, ("pg_read_all_data",)),
                        (settings.write_role, (settings.read_role, "pg_write_all_data"))):
        if not await _fetchval(conn, "SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)):
            return f"the role {name} does not exist; run `pgcode setup`"
        if not await _fetchval(conn, "SELECT pg_has_role(current_user, %s, 'MEMBER')", (name,)):
            return f"the connecting role is not a member of {name}; run `pgcode setup`"
        for parent in needs:
            if not await _fetchval(conn, "SELECT pg_has_role(%s, %s, 'MEMBER')", (name, parent)):
                return f"{name} is not a member of {parent}; run `pgcode setup`"
    if version >= _PARAMETER_GRANTS_SINCE:
        for parameter in _QUIET_PARAMETERS:
            if not await _fetchval(conn, "SELECT has_parameter_privilege(%s, %s, 'SET')",
                                   (settings.read_role, parameter)):
                return f"{settings.read_role} may not SET {parameter}; run `pgcode setup`"
    return None


async def prepare_roles(db: Database, settings: Settings, *, create: bool) -> RoleSeparation:
    """Find out whether calls can run as the scope roles, creating them first when `create` and permitted."""
    try:
        async with db.pool.connection() as conn:
            problem = await _check(conn, settings)
            if problem and create and await _may_create_roles(conn) and "PostgreSQL 14" not in problem:
                done = await setup_roles(conn, settings)
                log.info("created the scope roles: %s", "; ".join(done))
                problem = await _check(conn, settings)
    except psycopg.Error as exc:
        problem = f"the roles could not be checked or created: {exc.diag.message_primary or type(exc).__name__}"
    if problem:
        log.warning("role separation is off, every call runs as the connecting role: %s", problem)
    return RoleSeparation(problem is None, settings.read_role, settings.write_role, problem)
