"""The one way the schema tools drop an object: dependents listed first, CASCADE only when asked for."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from psycopg import errors as pg_errors
from psycopg import sql

from pgcode.core.context import ToolContext
from pgcode.db.queries import load_query
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._snapshots import snapshot_before

MAX_LISTED = 200  # dependents named in a result or error; dependent_count always has them all


@dataclass(frozen=True, slots=True)
class DropTarget:
    """An existing object about to be dropped."""

    keyword: str  # SQL object type: SCHEMA, VIEW, MATERIALIZED VIEW, SEQUENCE
    ident: sql.Identifier
    catalog: str  # the system catalog that holds it: pg_namespace or pg_class
    oid: int
    label: str  # how messages name it: 'view "s"."v"'


async def dependents(ctx: ToolContext, catalog: str, oid: int) -> list[dict[str, Any]]:
    """Objects that depend on the object (kind, schema, name, identity, depth): what CASCADE would drop."""
    return await ctx.fetch(load_query("schema_dependents"), {"catalog": catalog, "oid": oid})


async def drop(ctx: ToolContext, target: DropTarget, *, cascade: bool) -> dict[str, Any]:
    """Drop `target`; without `cascade`, refuse (CONFLICT, nothing changed) when anything depends on it."""
    found = await dependents(ctx, target.catalog, target.oid)
    listed = found[:MAX_LISTED]
    if found and not cascade:
        raise ToolError(
            ErrorCode.CONFLICT,
            f"{target.label} has {len(found)} dependent object{'s' if len(found) != 1 else ''} "
            f"({_summary(found)}); nothing was dropped",
            hint="drop the dependents first, or pass cascade: true to drop them together with it",
            details={"dependents": listed, "dependent_count": len(found)})
    snapshot = None
    if target.catalog == "pg_class":  # views and sequences; a schema's objects are not snapshotted one by one
        rel = await ctx.fetchone("SELECT n.nspname, c.relname FROM pg_class c JOIN pg_namespace n "
                                 "ON n.oid = c.relnamespace WHERE c.oid = %s", (target.oid,))
        if rel is not None:
            snapshot = await snapshot_before(ctx, f"pg_drop_{target.keyword.split()[-1].lower()}",
                                             target.keyword.lower(), rel["nspname"], rel["relname"])
    statement = sql.SQL("DROP {} {} {}").format(
        sql.SQL(target.keyword), target.ident, sql.SQL("CASCADE" if cascade else "RESTRICT"))
    try:
        await ctx.execute(statement)
    except pg_errors.DependentObjectsStillExist as exc:
        raise ToolError(ErrorCode.CONFLICT, f"{target.label} cannot be dropped: {exc.diag.message_primary}; "
                        "nothing was dropped", hint=exc.diag.message_hint,
                        details={"detail": exc.diag.message_detail}) from None
    return {"dropped": True, "snapshot_id": snapshot, "cascade": cascade,
            "dropped_dependents": listed if cascade else [], "dependent_count": len(found)}


def _summary(found: list[dict[str, Any]]) -> str:
    names = [f"{d['kind']} {d['identity']}" for d in found[:3]]
    more = f" and {len(found) - 3} more" if len(found) > 3 else ""
    return ", ".join(names) + more
