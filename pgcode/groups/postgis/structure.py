"""postgis: create the extension, add geometry columns, build spatial indexes."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

import psycopg
from psycopg import sql
from pydantic import Field

from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import IDENT_MAX, TableRef, require_table
from pgcode.groups._extensions import create_extension
from pgcode.groups.postgis._geo import POSTGIS, WGS84, ColumnField, srid_info, table_geo
from pgcode.types import Effect


class CreateExtensionIn(ToolInput):
    schema_: str | None = Field(None, alias="schema", min_length=1, max_length=IDENT_MAX)


@tool(group="postgis", effect=Effect.ADMIN)
async def postgis_create_extension(ctx: ToolContext, args: CreateExtensionIn) -> dict[str, Any]:
    """Create the PostGIS extension (geometry, geography and spatial functions).

    Says whether it was already there. schema: where to create it (default: the first of the search_path). Runs in
    autocommit so that the extension is usable by the next call.
    """
    ctx.use_autocommit()
    out = await create_extension(ctx, "postgis", package="the server package (e.g. postgresql-15-postgis-3)",
                                 schema=args.schema_)
    return {**out, "fullVersion": await ctx.fetchval("SELECT postgis_full_version()")}


class GeometryType(StrEnum):
    GEOMETRY = "GEOMETRY"
    POINT = "POINT"
    LINESTRING = "LINESTRING"
    POLYGON = "POLYGON"
    MULTIPOINT = "MULTIPOINT"
    MULTILINESTRING = "MULTILINESTRING"
    MULTIPOLYGON = "MULTIPOLYGON"
    GEOMETRYCOLLECTION = "GEOMETRYCOLLECTION"


class ColumnKind(StrEnum):
    GEOMETRY = "geometry"
    GEOGRAPHY = "geography"


class GeometryColumnIn(TableRef):
    column: str = Field(min_length=1, max_length=IDENT_MAX, description="New column")
    geometry_type: GeometryType = GeometryType.GEOMETRY
    srid: int = Field(WGS84, ge=1, le=998_999)
    kind: ColumnKind = ColumnKind.GEOMETRY
    z: bool = False
    if_not_exists: bool = False


@tool(group="postgis", effect=Effect.ADMIN, extensions=POSTGIS)
async def geometry_column(ctx: ToolContext, args: GeometryColumnIn) -> dict[str, Any]:
    """Add a geometry or geography column of a given type and SRID to a table.

    ALTER TABLE ... ADD COLUMN. srid 4326 is WGS 84 lon/lat. kind: geometry (planar, SRID units) or geography
    (spheroid, metres; lon/lat SRIDs only). z stores a Z coordinate too (e.g. POINTZ); ifNotExists does nothing
    when the column exists.
    """
    schema, table = args.schema_name, args.table_name
    await require_table(ctx, schema, table)
    info = await srid_info(ctx, args.srid)
    if args.kind is ColumnKind.GEOGRAPHY and not info.geographic:
        raise ToolError(ErrorCode.INVALID_INPUT, f"a geography column needs a lon/lat SRID; {args.srid} is in "
                        f"{info.unit}", hint="use srid 4326, or kind geometry for a projected SRID")
    existing = await ctx.fetchval(
        "SELECT format_type(a.atttypid, a.atttypmod) FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relname = %s "
        "AND a.attname = %s AND a.attnum > 0 AND NOT a.attisdropped", (schema, table, args.column))
    if existing is not None:
        if not args.if_not_exists:
            raise ToolError(ErrorCode.ALREADY_EXISTS, f'"{schema}"."{table}" already has a column {args.column!r} '
                            f"({existing})", details={"type": existing})
        return {"schema": schema, "table": table, "column": args.column, "type": existing, "created": False}
    typmod = sql.SQL("{kind}({type}{z}, {srid})").format(
        kind=sql.SQL(args.kind.value), type=sql.SQL(args.geometry_type.value),
        z=sql.SQL("Z") if args.z else sql.SQL(""), srid=sql.Literal(args.srid))
    await ctx.execute(sql.SQL("ALTER TABLE {} ADD COLUMN {} {}").format(
        sql.Identifier(schema, table), sql.Identifier(args.column), typmod))
    tg = await table_geo(ctx, schema, table, args.column)
    return {"schema": schema, "table": table, "column": args.column, "type": tg.geo.type, "kind": tg.geo.kind,
            "srid": tg.geo.srid, "unit": "metre" if tg.geo.kind == "geography" else info.unit, "created": True}


class SpatialIndexIn(TableRef):
    column: str | None = ColumnField
    name: str | None = Field(None, min_length=1, max_length=IDENT_MAX)
    concurrently: bool = False
    if_not_exists: bool = False


@tool(group="postgis", effect=Effect.ADMIN, extensions=POSTGIS)
async def spatial_index(ctx: ToolContext, args: SpatialIndexIn) -> dict[str, Any]:
    """Create a GiST index on a geometry or geography column; returns its definition.

    column defaults to the table's only geometry or geography column; name to <table>_<column>_gist.
    concurrently builds without blocking writes, outside a transaction; ifNotExists does nothing when an index of
    that name exists.
    """
    if args.concurrently:
        ctx.use_autocommit()
    tg = await table_geo(ctx, args.schema_name, args.table_name, args.column)
    name = args.name or f"{tg.table}_{tg.geo.name}_gist"[:IDENT_MAX]
    before = await _index(ctx, tg.schema, name)
    if before is not None and not before["is_valid"]:
        raise ToolError(ErrorCode.CONFLICT, f'an INVALID index "{tg.schema}"."{name}" exists (left by a failed '
                        "CREATE INDEX CONCURRENTLY)", hint="drop it with pg_drop_index, then create it again")
    if before is not None and not args.if_not_exists:
        raise ToolError(ErrorCode.ALREADY_EXISTS, f'index "{tg.schema}"."{name}" already exists',
                        details={"definition": before["definition"]})
    stmt = sql.SQL("CREATE INDEX {conc}IF NOT EXISTS {name} ON {table} USING gist ({col})").format(
        conc=sql.SQL("CONCURRENTLY ") if args.concurrently else sql.SQL(""), name=sql.Identifier(name),
        table=tg.ident, col=sql.Identifier(tg.geo.name))
    try:
        await ctx.execute(stmt)
    except psycopg.Error:
        left = await _index(ctx, tg.schema, name) if args.concurrently and before is None else None
        if left is not None and not left["is_valid"]:
            await ctx.execute(sql.SQL("DROP INDEX CONCURRENTLY IF EXISTS {}").format(sql.Identifier(tg.schema, name)))
        raise
    after = await _index(ctx, tg.schema, name)
    return {"name": name, "schema": tg.schema, "table": tg.table, "column": tg.geo.name, "created": before is None,
            "definition": after["definition"] if after else None, "isValid": bool(after and after["is_valid"]),
            "concurrently": args.concurrently}


async def _index(ctx: ToolContext, schema: str, name: str) -> dict[str, Any] | None:
    return await ctx.fetchone(
        "SELECT pg_get_indexdef(c.oid) AS definition, x.indisvalid AS is_valid FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_index x ON x.indexrelid = c.oid "
        "WHERE n.nspname = %s AND c.relname = %s", (schema, name))
