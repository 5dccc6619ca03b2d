"""postgis: questions asked of a table's geometries (point in polygon, distance, buffer, intersection, box)."""

from __future__ import annotations

from typing import Any

import shapely.geometry
from psycopg import sql
from pydantic import Field

from pgcode.core import arguments
from pgcode.core.context import ToolContext
from pgcode.core.registry import tool
from pgcode.db.sqlpolicy import where_fragment
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import TableRef
from pgcode.groups.postgis._geo import (
    GEO_HELP,
    POSTGIS,
    ColumnField,
    ColumnsField,
    GeoValue,
    SridField,
    UseGeographyField,
    WhereField,
    fetch_limited,
    geometry_param,
    measure,
    select_list,
    table_geo,
    transform_srids,
)
from pgcode.types import Effect


class TableQueryIn(TableRef):
    column: str | None = ColumnField
    columns: list[str] | None = ColumnsField
    where: str | None = WhereField
    limit: int = Field(100, ge=1, le=10_000, description=arguments.LIMIT)


def _where(args: TableQueryIn, condition: sql.Composable) -> sql.Composable:
    if args.where is None:
        return condition
    return sql.SQL("{} AND {}").format(condition, where_fragment(args.where))


class PointInPolygonIn(TableQueryIn):
    point: GeoValue = Field(description=GEO_HELP)
    srid: int | None = SridField
    include_geometry: bool = False


@tool(group="postgis", effect=Effect.READ, extensions=POSTGIS)
async def point_in_polygon(ctx: ToolContext, args: PointInPolygonIn) -> dict[str, Any]:
    """Whether a point lies in any polygon of a table, with the rows that contain it.

    includeGeometry returns each containing polygon as GeoJSON too.

    Geometries are WKT (e.g. 'POINT(2.3522 48.8566)', EWKT 'SRID=3857;POINT(..)'), GeoJSON (object or text), or
    a point {lat, lon}; srid is the input's SRID (default: the EWKT SRID=n; prefix, else 4326, which GeoJSON and
    {lat, lon} always are).

    column: the geometry or geography column (default: the table's only one); columns: the columns returned with each
    row (default: every column that is not a geometry or geography). A point on a polygon's boundary counts as inside
    (ST_Covers).
    """
    geo, _ = await geometry_param(ctx, args.point, args.srid, "point")
    if geo.kind != "Point":
        raise ToolError(ErrorCode.INVALID_INPUT, f"point must be a Point, not a {geo.kind}")
    tg = await table_geo(ctx, args.schema_name, args.table_name, args.column)
    m = await measure(ctx, tg.geo, None)
    params: dict[str, Any] = {}
    pt = m.param(geo, "p", params)
    extra = [sql.SQL("ST_AsGeoJSON({})::json AS geometry").format(m.column)] if args.include_geometry else []
    query = sql.SQL("SELECT {cols} FROM {table} AS t WHERE {cond}").format(
        cols=select_list(tg, args.columns, extra), table=tg.ident,
        cond=_where(args, sql.SQL("ST_Covers({}, {})").format(m.column, pt)))
    rows, truncated = await fetch_limited(ctx, query, params, args.limit)
    return {"point": geo.geom.__geo_interface__, "srid": geo.srid, "inside": bool(rows), "count": len(rows),
            "truncated": truncated, "rows": rows}


class DistanceIn(TableQueryIn):
    point: GeoValue = Field(description=GEO_HELP)
    srid: int | None = SridField
    max_distance: float | None = Field(None, gt=0)
    use_geography: bool | None = UseGeographyField
    include_geometry: bool = True


@tool(group="postgis", effect=Effect.READ, extensions=POSTGIS, aliases=("stDistance",))
async def distance(ctx: ToolContext, args: DistanceIn) -> dict[str, Any]:
    """Rows nearest to a point, closest first, each with its distance and its unit.

    point: the point (or any geometry) to measure from. maxDistance: only rows within this distance (in the unit the
    result names: metres when measuring geography). includeGeometry returns each row's geometry as GeoJSON.
    useGeography: measure on the spheroid in metres (true) or in the SRID's units (false); default: the column's own
    type (geography: metres).

    Geometries are WKT (e.g. 'POINT(2.3522 48.8566)', EWKT 'SRID=3857;POINT(..)'), GeoJSON (object or text), or
    a point {lat, lon}; srid is the input's SRID (default: the EWKT SRID=n; prefix, else 4326, which GeoJSON and
    {lat, lon} always are).

    column: the geometry or geography column (default: the table's only one); columns: the columns returned with each
    row (default: every column that is not a geometry or geography). Geography columns (or useGeography: true) measure
    in metres on the WGS 84 spheroid; geometry columns in the units of their SRID (degrees for 4326). `unit` and
    `measure` in the result say which.
    """
    geo, _ = await geometry_param(ctx, args.point, args.srid, "point")
    tg = await table_geo(ctx, args.schema_name, args.table_name, args.column)
    m = await measure(ctx, tg.geo, args.use_geography)
    params: dict[str, Any] = {}
    pt = m.param(geo, "p", params)
    dist = sql.SQL("ST_Distance({}, {}) AS distance").format(m.column, pt)
    extra = [sql.SQL("ST_AsGeoJSON({})::json AS geometry").format(sql.Identifier("t", tg.geo.name))
             ] if args.include_geometry else []
    cond = sql.SQL("{} IS NOT NULL").format(m.column)
    if args.max_distance is not None:
        params["max"] = args.max_distance
        cond = sql.SQL("ST_DWithin({}, {}, %(max)s::float8)").format(m.column, pt)
    # <-> walks a GiST index nearest-first; on geography it is the sphere distance, so re-sort on the spheroid one.
    inner = sql.SQL("SELECT {cols} FROM {table} AS t WHERE {cond} ORDER BY {col} <-> {pt} LIMIT {n}").format(
        cols=select_list(tg, args.columns, [*extra, dist]), table=tg.ident, cond=_where(args, cond),
        col=m.column, pt=pt, n=sql.Literal(args.limit + 1))
    rows, truncated = await fetch_limited(ctx, sql.SQL("SELECT * FROM ({}) d ORDER BY distance").format(inner),
                                          params, args.limit)
    return {"unit": m.unit, "measure": m.describe(), "srid": m.srid, "point": geo.geom.__geo_interface__,
            "count": len(rows), "truncated": truncated, "rows": rows}


class BufferIn(TableQueryIn):
    distance: float = Field(ge=-1e8, le=1e8, description="Metres for geography, else SRID units")
    use_geography: bool | None = UseGeographyField
    segments: int = Field(8, ge=1, le=100)
    include_geometry: bool = False


@tool(group="postgis", effect=Effect.READ, extensions=POSTGIS, aliases=("stBuffer",))
async def buffer(ctx: ToolContext, args: BufferIn) -> dict[str, Any]:
    """Each row's geometry grown (or shrunk) by a distance, as GeoJSON, with its area.

    distance: negative shrinks polygons; segments: per quarter circle; includeGeometry returns each row's original
    geometry as GeoJSON too. useGeography: measure on the spheroid in metres (true) or in the SRID's units (false);
    default: the column's own type (geography: metres).

    column: the geometry or geography column (default: the table's only one); columns: the columns returned with each
    row (default: every column that is not a geometry or geography). Geography columns (or useGeography: true) buffer in
    metres and give areas in square metres; geometry columns use their SRID's units. `unit` and `measure` in the result
    say which.
    """
    if args.distance == 0:
        raise ToolError(ErrorCode.INVALID_INPUT, "distance must not be 0")
    tg = await table_geo(ctx, args.schema_name, args.table_name, args.column)
    m = await measure(ctx, tg.geo, args.use_geography)
    params: dict[str, Any] = {"d": args.distance, "segs": args.segments}
    buf = sql.SQL("ST_Buffer({}, %(d)s::float8, %(segs)s::int)").format(m.column)
    extra: list[sql.Composable] = [sql.SQL("ST_AsGeoJSON({})::json AS geometry").format(
        sql.Identifier("t", tg.geo.name))] if args.include_geometry else []
    extra += [sql.SQL("ST_AsGeoJSON(b.buffer)::json AS buffer"), sql.SQL("ST_Area(b.buffer) AS area")]
    query = sql.SQL("SELECT {cols} FROM {table} AS t CROSS JOIN LATERAL (SELECT {buf} AS buffer) b "
                    "WHERE {cond}").format(cols=select_list(tg, args.columns, extra), table=tg.ident, buf=buf,
                                           cond=_where(args, sql.SQL("{} IS NOT NULL").format(m.column)))
    rows, truncated = await fetch_limited(ctx, query, params, args.limit)
    return {"distance": args.distance, "unit": m.unit, "areaUnit": f"square {m.unit}", "measure": m.describe(),
            "srid": m.srid if not m.geography else 4326, "count": len(rows), "truncated": truncated, "rows": rows}


class IntersectionIn(TableQueryIn):
    geometry: GeoValue = Field(description=GEO_HELP)
    srid: int | None = SridField
    include_geometry: bool = True
    include_intersection: bool = False


@tool(group="postgis", effect=Effect.READ, extensions=POSTGIS)
async def intersection(ctx: ToolContext, args: IntersectionIn) -> dict[str, Any]:
    """Rows whose geometry intersects a given geometry (touching counts).

    includeGeometry returns each row's geometry as GeoJSON; includeIntersection also the shared part as
    `intersection`.

    Geometries are WKT (e.g. 'POINT(2.3522 48.8566)', EWKT 'SRID=3857;POINT(..)'), GeoJSON (object or text), or
    a point {lat, lon}; srid is the input's SRID (default: the EWKT SRID=n; prefix, else 4326, which GeoJSON and
    {lat, lon} always are).

    column: the geometry or geography column (default: the table's only one); columns: the columns returned with
    each row (default: every column that is not a geometry or geography).
    """
    geo, _ = await geometry_param(ctx, args.geometry, args.srid)
    tg = await table_geo(ctx, args.schema_name, args.table_name, args.column)
    m = await measure(ctx, tg.geo, None)
    params: dict[str, Any] = {}
    g = m.param(geo, "g", params)
    extra: list[sql.Composable] = []
    if args.include_geometry:
        extra.append(sql.SQL("ST_AsGeoJSON({})::json AS geometry").format(m.column))
    if args.include_intersection:
        extra.append(sql.SQL("ST_AsGeoJSON(ST_Intersection({}, {}))::json AS intersection").format(m.column, g))
    query = sql.SQL("SELECT {cols} FROM {table} AS t WHERE {cond}").format(
        cols=select_list(tg, args.columns, extra), table=tg.ident,
        cond=_where(args, sql.SQL("ST_Intersects({}, {})").format(m.column, g)))
    rows, truncated = await fetch_limited(ctx, query, params, args.limit)
    return {"geometry": geo.geom.__geo_interface__, "srid": geo.srid, "count": len(rows), "truncated": truncated,
            "rows": rows}


class BoundingBoxIn(TableQueryIn):
    xmin: float = Field(description="West edge (longitude or x)")
    ymin: float = Field(description="South edge (latitude or y)")
    xmax: float = Field(description="East edge")
    ymax: float = Field(description="North edge")
    srid: int = Field(4326, ge=1, le=998_999)
    contained: bool = False
    include_geometry: bool = True


@tool(group="postgis", effect=Effect.READ, extensions=POSTGIS)
async def bounding_box(ctx: ToolContext, args: BoundingBoxIn) -> dict[str, Any]:
    """Rows whose geometry lies in or touches a box given by its edges.

    xmin, ymin, xmax, ymax: the west, south, east and north edges, in srid (4326: lon/lat; x and y in a
    projected SRID). contained: only geometries entirely inside the box (default: any that touch it).
    includeGeometry returns each row's geometry as GeoJSON.

    column: the geometry or geography column (default: the table's only one); columns: the columns returned with
    each row (default: every column that is not a geometry or geography).
    """
    if not (args.xmin < args.xmax and args.ymin < args.ymax):
        raise ToolError(ErrorCode.INVALID_INPUT, "the box needs xmin < xmax and ymin < ymax")
    box = shapely.geometry.mapping(shapely.geometry.box(args.xmin, args.ymin, args.xmax, args.ymax))
    geo, _ = await geometry_param(ctx, box, args.srid, "box")
    tg = await table_geo(ctx, args.schema_name, args.table_name, args.column)
    m = await measure(ctx, tg.geo, False)  # a box's edges are lines of constant x and y: planar
    params: dict[str, Any] = {}
    env = m.param(geo, "b", params)
    test = sql.SQL("ST_CoveredBy({}, {})" if args.contained else "ST_Intersects({}, {})").format(m.column, env)
    extra = [sql.SQL("ST_AsGeoJSON({})::json AS geometry").format(sql.Identifier("t", tg.geo.name))
             ] if args.include_geometry else []
    query = sql.SQL("SELECT {cols} FROM {table} AS t WHERE {cond}").format(
        cols=select_list(tg, args.columns, extra), table=tg.ident, cond=_where(args, test))
    rows, truncated = await fetch_limited(ctx, query, params, args.limit)
    return {"box": [args.xmin, args.ymin, args.xmax, args.ymax], "srid": args.srid,
            "mode": "contained" if args.contained else "intersects", "count": len(rows), "truncated": truncated,
            "rows": rows}


class GeoTransformIn(TableQueryIn):
    to_srid: int = Field(ge=1, le=998_999, description="Target SRID, e.g. 3857")
    from_srid: int | None = Field(None, ge=1, le=998_999)


@tool(group="postgis", effect=Effect.READ, extensions=POSTGIS)
async def geo_transform(ctx: ToolContext, args: GeoTransformIn) -> dict[str, Any]:
    """A table's geometries in another SRID, as GeoJSON (the table is unchanged).

    fromSrid: the SRID the column's coordinates are in (needed only for a column without an SRID).

    column: the geometry or geography column (default: the table's only one); columns: the columns returned with
    each row (default: every column that is not a geometry or geography).
    """
    tg = await table_geo(ctx, args.schema_name, args.table_name, args.column)
    source = tg.geo.srid or args.from_srid
    if source is None:
        raise ToolError(ErrorCode.INVALID_INPUT, f"column {tg.geo.name!r} has no SRID: give fromSrid")
    if tg.geo.srid and args.from_srid and args.from_srid != tg.geo.srid:
        raise ToolError(ErrorCode.INVALID_INPUT, f"column {tg.geo.name!r} is in SRID {tg.geo.srid}, not "
                        f"{args.from_srid}")
    src, dst = await transform_srids(ctx, source, args.to_srid)
    col = sql.Identifier("t", tg.geo.name)
    geom = sql.SQL("{}::geometry").format(col) if tg.geo.kind == "geography" else col
    params: dict[str, Any] = {"src": source, "dst": args.to_srid}
    extra = [sql.SQL("ST_AsGeoJSON(ST_Transform(ST_SetSRID({}, %(src)s::int), %(dst)s::int))::json AS geometry"
                     ).format(geom)]
    query = sql.SQL("SELECT {cols} FROM {table} AS t WHERE {cond}").format(
        cols=select_list(tg, args.columns, extra), table=tg.ident,
        cond=_where(args, sql.SQL("{} IS NOT NULL").format(col)))
    rows, truncated = await fetch_limited(ctx, query, params, args.limit)
    return {"fromSrid": source, "toSrid": args.to_srid, "fromUnit": src.unit, "toUnit": dst.unit,
            "count": len(rows), "truncated": truncated, "rows": rows}
