"""Never blocked by a lock: a short lock_timeout, and the relations other sessions lock, so checks work around them.

Reading pg_class and pg_stat_* takes no relation lock, but pg_relation_size, pg_total_relation_size,
pg_indexes_size, pg_get_indexdef, pg_get_expr(expr, relid) and pg_get_constraintdef take ACCESS SHARE on the
table, which waits behind an ACCESS EXCLUSIVE lock held (or queued) by another session (measured on
PostgreSQL 15). Checks leave locked relations out of those calls and name them as skipped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from pgcode.core.context import ToolContext

# Relations another session of this database holds, or waits for, in a mode that conflicts with ACCESS SHARE
# (only ACCESS EXCLUSIVE), plus sequences in a mode that conflicts with the ROW EXCLUSIVE lock reading a
# sequence's last_value takes. A waiting request counts too: new lock requests queue behind it.
_LOCKED = """
SELECT DISTINCT ON (l.relation) l.relation::bigint AS oid, n.nspname AS schema, c.relname AS name,
       c.relkind::text AS kind, l.pid, l.mode, l.granted,
       round(extract(epoch FROM now() - coalesce(a.xact_start, a.backend_start)))::int AS seconds
FROM pg_locks l
JOIN pg_class c ON c.oid = l.relation
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'relation' AND l.pid <> pg_backend_pid()
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND (l.mode = 'AccessExclusiveLock'
       OR (c.relkind = 'S' AND l.mode IN ('ShareLock', 'ShareRowExclusiveLock', 'ExclusiveLock')))
ORDER BY l.relation, l.granted DESC, seconds DESC
"""


def mode_name(mode: str) -> str:
    """AccessExclusiveLock -> ACCESS EXCLUSIVE, as the LOCK TABLE command spells it."""
    return " ".join(re.findall(r"[A-Z][a-z]+", mode.removesuffix("Lock"))).upper()


@dataclass(frozen=True, slots=True)
class LockedRelation:
    oid: int
    object: str
    kind: str
    pid: int
    mode: str
    granted: bool
    seconds: int

    @property
    def reason(self) -> str:
        if self.granted:
            return f"locked by pid {self.pid} ({mode_name(self.mode)}, {self.seconds} s)"
        return (f"{mode_name(self.mode)} lock requested by pid {self.pid} ({self.seconds} s); new readers queue "
                "behind it")


class Locks:
    """The relations other sessions lock right now, by oid."""

    def __init__(self, relations: list[LockedRelation] | None = None) -> None:
        self.by_oid = {r.oid: r for r in relations or []}

    @property
    def oids(self) -> list[int]:
        """The locked oids, as the `locked` parameter of a guarded query (oid[])."""
        return sorted(self.by_oid)

    def user_relations(self, kinds: str) -> list[LockedRelation]:
        """Locked relations of these relkinds outside the system schemas, by name."""
        return sorted((r for r in self.by_oid.values() if r.kind in kinds and not _system(r.object)),
                      key=lambda r: r.object)

    def __bool__(self) -> bool:
        return bool(self.by_oid)


def _system(name: str) -> bool:
    schema = name.split(".", 1)[0]
    return schema in ("pg_catalog", "information_schema", "pgcode") or schema.startswith(("pg_toast", "pg_temp"))


async def set_lock_timeout(ctx: ToolContext) -> None:
    """Bound every lock wait of this transaction by the monitor_lock_timeout_ms setting."""
    await ctx.fetch("SELECT set_config('lock_timeout', %s, true)", (f"{ctx.settings.monitor_lock_timeout_ms}ms",))


async def locked_relations(ctx: ToolContext) -> Locks:
    """What other sessions lock now (catalog and pg_locks only: this takes no lock itself)."""
    rows = await ctx.fetch(_LOCKED)
    return Locks([LockedRelation(r["oid"], f"{r['schema']}.{r['name']}", r["kind"], r["pid"], r["mode"],
                                 r["granted"], r["seconds"] or 0) for r in rows])


def skipped(relations: list[LockedRelation], what: str | None = None) -> list[dict[str, Any]]:
    """The `skipped` entries naming each relation and why; `what` says which part was left out."""
    return [{"object": r.object, "reason": r.reason, **({"skipped": what} if what else {})} for r in relations]
