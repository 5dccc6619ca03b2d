"""postgis: computations on geometries given in the call (points from coordinates, buffer, intersection, transform)."""

from __future__ import annotations

from typing import Any

from psycopg import sql
from pydantic import Field

from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups.postgis._geo import (
    GEO_HELP,
    POSTGIS,
    WGS84,
    Geo,
    GeoValue,
    SridField,
    geometry_param,
    srid_info,
)
from pgcode.types import Effect

NO_LOOKUP = "pg_geocode does not look addresses up: it builds a point from the coordinates given"


def _wkb(geo: Geo, name: str, params: dict[str, Any]) -> sql.Composed:
    params[f"{name}_wkb"], params[f"{name}_srid"] = geo.wkb, geo.srid
    return sql.SQL("ST_GeomFromWKB({}::bytea, {}::int)").format(sql.Placeholder(f"{name}_wkb"),
                                                                 sql.Placeholder(f"{name}_srid"))


class GeocodeIn(ToolInput):
    lat: float = Field(ge=-90, le=90, description="Latitude in degrees")
    lon: float = Field(ge=-180, le=180, description="Longitude in degrees")
    srid: int = Field(WGS84, ge=1, le=998_999)


@tool(group="postgis", effect=Effect.READ, extensions=POSTGIS)
async def geocode(ctx: ToolContext, args: GeocodeIn) -> dict[str, Any]:
    """A point from latitude/longitude as GeoJSON, WKT and EWKT (no address lookup).

    It does not look addresses up. srid: the SRID of the point returned (4326: lon/lat as given). No geocoding
    service is called: it only turns coordinates into a point, optionally in another SRID.
    """
    target = await srid_info(ctx, args.srid)
    row = await ctx.fetchone(
        "SELECT ST_AsGeoJSON(p)::json AS geometry, ST_AsText(p) AS wkt, ST_AsEWKT(p) AS ewkt, "
        "CASE WHEN %(srid)s = 4326 THEN ST_GeoHash(p) END AS geohash FROM (SELECT ST_Transform("
        "ST_SetSRID(ST_MakePoint(%(lon)s::float8, %(lat)s::float8), 4326), %(srid)s::int) AS p) s",
        {"lat": args.lat, "lon": args.lon, "srid": args.srid})
    assert row is not None
    return {"lat": args.lat, "lon": args.lon, "srid": args.srid, "unit": target.unit, **row,
            "addressLookup": False, "note": NO_LOOKUP}


class MeasureKind(ToolInput):
    use_geography: bool = False


class GeometryBufferIn(MeasureKind):
    geometry: GeoValue = Field(description=GEO_HELP)
    srid: int | None = SridField
    distance: float = Field(ge=-1e8, le=1e8, description="Metres with useGeography, else SRID units")
    segments: int = Field(8, ge=1, le=100)


@tool(group="postgis", effect=Effect.READ, extensions=POSTGIS)
async def geometry_buffer(ctx: ToolContext, args: GeometryBufferIn) -> dict[str, Any]:
    """A buffer around a geometry, as GeoJSON in its SRID, with its area and unit.

    distance: negative shrinks polygons; segments: per quarter circle. useGeography: measure on the WGS 84
    spheroid in metres (true) or planar in the geometry's SRID units (false, the default).

    Geometries are WKT (e.g. 'POINT(2.3522 48.8566)', EWKT 'SRID=3857;POINT(..)'), GeoJSON (object or text), or
    a point {lat, lon}; srid is the input's SRID (default: the EWKT SRID=n; prefix, else 4326, which GeoJSON and
    {lat, lon} always are).
    """
    if args.distance == 0:
        raise ToolError(ErrorCode.INVALID_INPUT, "distance must not be 0")
    geo, info = await geometry_param(ctx, args.geometry, args.srid)
    params: dict[str, Any] = {"d": args.distance, "segs": args.segments}
    g = _wkb(geo, "g", params)
    if args.use_geography:
        # Buffered on the spheroid in metres, then returned in the caller's SRID.
        buf = sql.SQL("ST_Transform(ST_Buffer(ST_Transform({}, 4326)::geography, %(d)s::float8, %(segs)s::int)"
                      "::geometry, %(g_srid)s::int)").format(g)
        area = sql.SQL("ST_Area(ST_Transform(b, 4326)::geography)")
    else:
        buf, area = sql.SQL("ST_Buffer({}, %(d)s::float8, %(segs)s::int)").format(g), sql.SQL("ST_Area(b)")
    row = await ctx.fetchone(sql.SQL("SELECT ST_AsGeoJSON(b)::json AS geometry, {area} AS area, "
                                     "ST_IsEmpty(b) AS empty FROM (SELECT {buf} AS b) s").format(area=area, buf=buf),
                             params)
    assert row is not None
    unit = "metre" if args.use_geography else info.unit
    return {"geometry": row["geometry"], "area": row["area"], "empty": row["empty"], "distance": args.distance,
            "unit": unit, "areaUnit": f"square {unit}", "srid": geo.srid,
            "measure": "geography: on the WGS 84 spheroid, in metres" if args.use_geography
            else f"geometry: planar, in the units of SRID {geo.srid}"}


class GeometryIntersectionIn(MeasureKind):
    geometry1: GeoValue = Field(description=GEO_HELP)
    geometry2: GeoValue = Field(description=GEO_HELP)
    srid1: int | None = Field(None, ge=1, le=998_999)
    srid2: int | None = Field(None, ge=1, le=998_999)


@tool(group="postgis", effect=Effect.READ, extensions=POSTGIS)
async def geometry_intersection(ctx: ToolContext, args: GeometryIntersectionIn) -> dict[str, Any]:
    """The shared part of two geometries, as GeoJSON, with its area and length.

    In the first one's SRID: geometry2 is transformed to it. srid1 and srid2 are the SRIDs of the inputs
    (default: an EWKT SRID=n; prefix, else 4326). useGeography: measure on the WGS 84 spheroid in metres (true)
    or planar in the SRID's units (false, the default). Geometries are WKT (e.g. 'POINT(2.3522 48.8566)', EWKT
    'SRID=3857;POINT(..)'), GeoJSON (object or text), or a point {lat, lon}.
    """
    a, info = await geometry_param(ctx, args.geometry1, args.srid1, "geometry1")
    b, _ = await geometry_param(ctx, args.geometry2, args.srid2, "geometry2")
    params: dict[str, Any] = {}
    ga, gb = _wkb(a, "a", params), _wkb(b, "b", params)
    measured = (sql.SQL("ST_Area(ST_Transform(i, 4326)::geography) AS area, "
                        "ST_Length(ST_Transform(i, 4326)::geography) AS length") if args.use_geography
                else sql.SQL("ST_Area(i) AS area, ST_Length(i) AS length"))
    row = await ctx.fetchone(sql.SQL(
        "SELECT ST_Intersects(a, b) AS intersects, ST_AsGeoJSON(i)::json AS geometry, ST_GeometryType(i) AS type, "
        "ST_IsEmpty(i) AS empty, {measured} FROM (SELECT a, b, ST_Intersection(a, b) AS i FROM (SELECT {ga} AS a, "
        "ST_Transform({gb}, %(a_srid)s::int) AS b) s) s").format(measured=measured, ga=ga, gb=gb), params)
    assert row is not None
    unit = "metre" if args.use_geography else info.unit
    return {**row, "srid": a.srid, "unit": unit, "areaUnit": f"square {unit}",
            "measure": "geography: on the WGS 84 spheroid, in metres" if args.use_geography
            else f"geometry: planar, in the units of SRID {a.srid}"}


class GeometryTransformIn(ToolInput):
    geometry: GeoValue = Field(description=GEO_HELP)
    from_srid: int | None = Field(None, ge=1, le=998_999)
    to_srid: int = Field(ge=1, le=998_999, description="Target SRID, e.g. 3857")


@tool(group="postgis", effect=Effect.READ, extensions=POSTGIS)
async def geometry_transform(ctx: ToolContext, args: GeometryTransformIn) -> dict[str, Any]:
    """A geometry transformed from one SRID to another, as GeoJSON, WKT and EWKT.

    fromSrid: the SRID the geometry is in (default: an EWKT SRID=n; prefix, else 4326). Geometries are WKT (e.g.
    'POINT(2.3522 48.8566)', EWKT 'SRID=3857;POINT(..)'), GeoJSON (object or text), or a point {lat, lon}.
    """
    geo, src = await geometry_param(ctx, args.geometry, args.from_srid)
    dst = await srid_info(ctx, args.to_srid, "toSrid")
    params: dict[str, Any] = {"to": args.to_srid}
    row = await ctx.fetchone(sql.SQL(
        "SELECT ST_AsGeoJSON(g)::json AS geometry, ST_AsText(g) AS wkt, ST_AsEWKT(g) AS ewkt "
        "FROM (SELECT ST_Transform({}, %(to)s::int) AS g) s").format(_wkb(geo, "g", params)), params)
    assert row is not None
    return {**row, "fromSrid": geo.srid, "toSrid": args.to_srid, "fromUnit": src.unit, "toUnit": dst.unit,
            "toName": dst.name}
