"""pgcode's own schema: apply pgcode/sql/migrations/*.sql in name order, each once, recorded in pgcode.migrations."""

from __future__ import annotations

import enum
import logging
from importlib import resources

import psycopg
from psycopg import sql

from pgcode.db.pool import Conn, Database

log = logging.getLogger("pgcode.db.migrate")

class AuditTable(enum.Enum):
    ABSENT = "absent"
    LEGACY = "legacy"
    """Made before migration 043: no entry ids, so a batch sent again is stored again."""
    CURRENT = "current"


_LOCK_KEY = 0x70676364  # "pgcd": one migrating server at a time (transaction-scoped advisory lock)


def migration_files() -> list[tuple[str, str]]:
    """(name, SQL text) of every migration, in the order they apply."""
    folder = resources.files("pgcode.db").joinpath("sql", "migrations")
    files = sorted((f.name, f) for f in folder.iterdir() if f.name.endswith(".sql"))
    return [(name, f.read_text("utf-8")) for name, f in files]


async def _make_private(conn: Conn) -> None:
    """Row-level security, with no policy, on every table of pgcode's schema: the scope roles (whose
    pg_read_all_data / pg_write_all_data do not bypass it) see no row of it and can write none. The
    connecting role owns the tables, so pgcode's own statements are not affected."""
    cur = await conn.execute("SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                             "WHERE n.nspname = 'pgcode' AND c.relkind IN ('r', 'p') AND NOT c.relrowsecurity")
    for (table,) in await cur.fetchall():
        await conn.execute(sql.SQL("ALTER TABLE {} ENABLE ROW LEVEL SECURITY").format(sql.Identifier("pgcode", table)))


async def migrate(db: Database) -> list[str] | None:
    """Bring the pgcode schema up to date; return what was applied, or None if it cannot be written.

    A read-only server, a standby or a role without CREATE still serves every tool: the features that
    keep their state in the pgcode schema say so when used. The reason is logged once, here.
    """
    if db.settings.read_only:
        return None
    try:
        async with db.pool.connection() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_KEY,))
            await conn.execute("CREATE SCHEMA IF NOT EXISTS pgcode")
            await conn.execute("CREATE TABLE IF NOT EXISTS pgcode.migrations "
                               "(name text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())")
            cur = await conn.execute("SELECT name FROM pgcode.migrations")
            done = {row[0] for row in await cur.fetchall()}
            applied = []
            for name, text in migration_files():
                if name in done:
                    continue
                await conn.execute(sql.SQL(text))
                await conn.execute("INSERT INTO pgcode.migrations (name) VALUES (%s)", (name,))
                applied.append(name)
            await _make_private(conn)
    except psycopg.Error as exc:
        log.warning("pgcode's schema cannot be written (%s: %s); features that keep state there are off",
                    type(exc).__name__, (exc.diag.message_primary or "").strip())
        return None
    if applied:
        log.info("applied migrations: %s", ", ".join(applied))
    return applied


async def audit_table(db: Database) -> AuditTable:
    """Whether pgcode.audit_log exists, and whether it has entry ids (migration 043): a read-only server writes its
    audit rows there without migrating, so it may face a table an older pgcode made."""
    try:
        async with db.pool.connection() as conn:
            cur = await conn.execute(
                "SELECT to_regclass('pgcode.audit_log') IS NOT NULL, EXISTS (SELECT FROM pg_attribute "
                "WHERE attrelid = to_regclass('pgcode.audit_log') AND attname = 'entry_id' AND NOT attisdropped)")
            row = await cur.fetchone()
    except psycopg.Error:
        return AuditTable.ABSENT
    if not row or not row[0]:
        return AuditTable.ABSENT
    return AuditTable.CURRENT if row[1] else AuditTable.LEGACY
