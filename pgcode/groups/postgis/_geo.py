"""PostGIS helpers: caller geometries parsed and checked with shapely, SRIDs, geometry columns, select lists."""

from __future__ import annotations

import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import shapely
import shapely.geometry
import shapely.wkt
from psycopg import sql
from pydantic import Field, StringConstraints
from shapely.validation import explain_validity

from pgcode.core import arguments
from pgcode.core.context import ToolContext
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import IDENT_MAX, require_table

POSTGIS = ("postgis",)
WGS84 = 4326
MAX_COORDINATES = 100_000
# A geometry as WKT (`POINT(2.35 48.86)`, EWKT `SRID=3857;POINT(...)` too), GeoJSON (an object or its text),
# or a point as {"lat": .., "lon": ..}.
GeoValue = Annotated[str, StringConstraints(min_length=1, max_length=2_000_000)] | dict[str, Any]
GEO_HELP = "WKT, EWKT, GeoJSON or {lat, lon}"
SridField = Field(None, ge=1, le=998_999)
ColumnField = Field(None, min_length=1, max_length=IDENT_MAX)
ColumnsField = Field(None, max_length=100)
WhereField = Field(None, max_length=10_000, description=arguments.WHERE)
UseGeographyField = Field(None)
_EWKT = re.compile(r"^\s*SRID=(\d+)\s*;\s*(.*)$", re.IGNORECASE | re.DOTALL)


def _invalid(message: str, hint: str | None = None, **details: Any) -> ToolError:
    return ToolError(ErrorCode.INVALID_INPUT, message, hint=hint, details=details or None)


@dataclass(frozen=True)
class Geo:
    """A checked caller geometry: what shapely read, its SRID, and its WKB to bind."""

    geom: Any
    srid: int

    @property
    def wkb(self) -> bytes:
        data: bytes = shapely.to_wkb(self.geom)
        return data

    @property
    def kind(self) -> str:
        return str(self.geom.geom_type)


def _lat_lon(value: dict[str, Any], what: str) -> Any:
    coords = []
    for key, bound in (("lat", 90), ("lon", 180)):
        v = value.get(key)
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v):
            raise _invalid(f"{what}.{key} must be a number")
        if not -bound <= v <= bound:
            raise _invalid(f"{what}.{key} is {v}: {'latitude' if key == 'lat' else 'longitude'} must be between "
                           f"-{bound} and {bound}", field=f"{what}.{key}")
        coords.append(float(v))
    return shapely.geometry.Point(coords[1], coords[0])


def _geojson(value: dict[str, Any], what: str) -> Any:
    if value.get("type") == "Feature":
        value = value.get("geometry") or {}
    try:
        return shapely.geometry.shape(value)
    except (shapely.errors.ShapelyError, ValueError, TypeError, KeyError, AttributeError, IndexError) as exc:
        raise _invalid(f"{what} is not GeoJSON a geometry can be read from: {exc}") from None


def parse_geometry(value: str | dict[str, Any], srid: int | None, what: str = "geometry") -> Geo:
    """Read a caller's geometry with shapely and refuse what is not a valid, non-empty geometry."""
    implied: int | None = None
    if isinstance(value, dict):
        if set(value) == {"lat", "lon"}:
            geom, implied = _lat_lon(value, what), WGS84
        elif "type" in value:
            geom = _geojson(value, what)
        else:
            raise _invalid(f"{what} must be GeoJSON (with a type), WKT, or {{lat, lon}}; got keys {sorted(value)}")
    else:
        text = value.strip()
        if text.startswith("{"):
            try:
                obj = json.loads(text)
            except ValueError as exc:
                raise _invalid(f"{what} looks like GeoJSON but is not JSON: {exc}") from None
            if not isinstance(obj, dict):
                raise _invalid(f"{what} must be a GeoJSON object")
            return parse_geometry(obj, srid, what)
        ewkt = _EWKT.match(text)
        if ewkt:
            implied, text = int(ewkt.group(1)), ewkt.group(2)
        try:
            geom = shapely.wkt.loads(text)
        except (shapely.errors.ShapelyError, ValueError, TypeError) as exc:
            raise _invalid(f"{what} is not valid WKT: {exc}") from None
    if srid is not None and implied is not None and srid != implied:
        raise _invalid(f"{what} is in SRID {implied} but srid says {srid}")
    if geom.is_empty:
        raise _invalid(f"{what} is empty")
    if shapely.get_num_coordinates(geom) > MAX_COORDINATES:
        raise _invalid(f"{what} has more than {MAX_COORDINATES} coordinates")
    if not all(math.isfinite(b) for b in geom.bounds):
        raise _invalid(f"{what} has coordinates that are not finite numbers")
    if not geom.is_valid:
        reason = explain_validity(geom)
        raise _invalid(f"{what} is not a valid geometry: {reason}", reason=reason)
    return Geo(geom, srid or implied or WGS84)


@dataclass(frozen=True)
class Srid:
    srid: int
    name: str
    unit: str
    geographic: bool


async def postgis_schema(ctx: ToolContext) -> str:
    schema: str | None = await ctx.fetchval(
        "SELECT n.nspname FROM pg_extension e JOIN pg_namespace n ON n.oid = e.extnamespace "
        "WHERE e.extname = 'postgis'")
    if schema is None:
        raise ToolError(ErrorCode.EXTENSION_MISSING, "this tool needs the postgis extension, which is not installed",
                        hint="create it with pg_postgis_create_extension", details={"extension": "postgis"})
    return schema


async def srid_info(ctx: ToolContext, srid: int, what: str = "srid") -> Srid:
    """An SRID known to spatial_ref_sys, with the name of its unit; INVALID_INPUT for any other."""
    row = await ctx.fetchone(sql.SQL(
        "SELECT srid, coalesce(auth_name || ':' || auth_srid, srid::text) AS name, srtext, proj4text "
        "FROM {} WHERE srid = %s").format(sql.Identifier(await postgis_schema(ctx), "spatial_ref_sys")), (srid,))
    if row is None:
        raise _invalid(f"{what} {srid} is not a spatial reference system this server knows (spatial_ref_sys)",
                       hint="common ones: 4326 (WGS 84 lon/lat), 3857 (Web Mercator)")
    srtext, proj4 = row["srtext"] or "", row["proj4text"] or ""
    geographic = "+proj=longlat" in proj4 or srtext.startswith(("GEOGCS", "GEOGCRS"))
    unit = re.search(r'.*UNIT\["([^"]+)"', srtext)
    return Srid(srid, row["name"], unit.group(1) if unit else ("degree" if geographic else "unknown"), geographic)


async def geometry_param(ctx: ToolContext, value: str | dict[str, Any], srid: int | None,
                         what: str = "geometry") -> tuple[Geo, Srid]:
    """parse_geometry, then its SRID checked against spatial_ref_sys and lon/lat ranges checked."""
    geo = parse_geometry(value, srid, what)
    info = await srid_info(ctx, geo.srid, f"the SRID of {what}")
    if info.geographic:
        xmin, ymin, xmax, ymax = geo.geom.bounds
        if not (xmin >= -180 and xmax <= 180 and ymin >= -90 and ymax <= 90):
            raise _invalid(f"{what} is in lon/lat (SRID {geo.srid}) but has coordinates outside longitude "
                           f"-180..180 / latitude -90..90 (bounds {list(geo.geom.bounds)}); coordinates are "
                           "(lon lat), longitude first", bounds=list(geo.geom.bounds))
    return geo, info


async def transform_srids(ctx: ToolContext, source: int, target: int) -> tuple[Srid, Srid]:
    return await srid_info(ctx, source, "fromSrid"), await srid_info(ctx, target, "toSrid")


@dataclass(frozen=True)
class GeoColumn:
    name: str
    kind: str  # geometry or geography
    srid: int
    type: str


@dataclass(frozen=True)
class TableGeo:
    """A table's columns and the geometry or geography column a tool works on."""

    schema: str
    table: str
    columns: dict[str, str]  # name -> geometry | geography | other type name
    geo: GeoColumn

    @property
    def ident(self) -> sql.Identifier:
        return sql.Identifier(self.schema, self.table)


async def table_geo(ctx: ToolContext, schema: str, table: str, column: str | None) -> TableGeo:
    """The table and its geometry column (the only one when `column` is None); NOT_FOUND / INVALID_INPUT."""
    await require_table(ctx, schema, table)
    rows = await ctx.fetch(
        "SELECT a.attname AS name, t.typname, format_type(a.atttypid, a.atttypmod) AS type, "
        "CASE WHEN t.typname IN ('geometry', 'geography') THEN postgis_typmod_srid(a.atttypmod) END AS srid "
        "FROM pg_attribute a JOIN pg_type t ON t.oid = a.atttypid "
        "WHERE a.attrelid = (SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND c.relname = %s) AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
        (schema, table))
    columns = {r["name"]: r["typname"] for r in rows}
    geos = [r for r in rows if r["typname"] in ("geometry", "geography")]
    if column is None:
        if len(geos) != 1:
            raise _invalid(f'"{schema}"."{table}" has {len(geos)} geometry/geography columns: name one with column',
                           geometryColumns=[r["name"] for r in geos])
        row = geos[0]
    else:
        found = next((r for r in rows if r["name"] == column), None)
        if found is None:
            raise ToolError(ErrorCode.NOT_FOUND, f'"{schema}"."{table}" has no column {column!r}',
                            details={"columns": list(columns)})
        if found["typname"] not in ("geometry", "geography"):
            raise _invalid(f"column {column!r} is {found['type']}, not geometry or geography",
                           geometryColumns=[r["name"] for r in geos])
        row = found
    srid = int(row["srid"] or 0)
    if row["typname"] == "geography" and srid == 0:
        srid = WGS84  # geography without a typmod is WGS 84
    if srid == 0:  # an unconstrained geometry column: take the SRID its rows use
        srid = int(await ctx.fetchval(sql.SQL("SELECT ST_SRID({c}) FROM {t} WHERE {c} IS NOT NULL LIMIT 1").format(
            c=sql.Identifier(row["name"]), t=sql.Identifier(schema, table))) or 0)
    return TableGeo(schema, table, columns, GeoColumn(row["name"], row["typname"], srid, row["type"]))


def select_list(tg: TableGeo, wanted: list[str] | None, extra: Sequence[sql.Composable]) -> sql.Composed:
    """`t.a, t.b, ...` for the wanted columns (geometries as GeoJSON objects), then the computed ones."""
    if wanted is None:
        names = [n for n, t in tg.columns.items() if t not in ("geometry", "geography")]
    else:
        missing = [n for n in wanted if n not in tg.columns]
        if missing:
            raise ToolError(ErrorCode.NOT_FOUND, f'"{tg.schema}"."{tg.table}" has no column '
                            f"{', '.join(map(repr, missing))}", details={"columns": list(tg.columns)})
        names = wanted
    parts: list[sql.Composable] = []
    for n in names:
        col = sql.Identifier("t", n)
        if tg.columns[n] in ("geometry", "geography"):
            parts.append(sql.SQL("ST_AsGeoJSON({})::json AS {}").format(col, sql.Identifier(n)))
        else:
            parts.append(col)
    return sql.SQL(", ").join([*parts, *extra])


@dataclass(frozen=True)
class Measure:
    """How a tool measures on a column: geography (metres on the spheroid) or geometry (the SRID's units)."""

    column: sql.Composable  # the column, cast or transformed as needed
    geography: bool
    srid: int  # the SRID caller geometries are transformed to
    unit: str

    def describe(self) -> str:
        return ("geography: on the WGS 84 spheroid, in metres" if self.geography
                else f"geometry: planar, in the units of SRID {self.srid}")

    def param(self, geo: Geo, name: str, params: dict[str, Any]) -> sql.Composed:
        """A caller geometry as SQL in this measure's SRID (and as geography when measuring in metres)."""
        params[f"{name}_wkb"], params[f"{name}_srid"], params[f"{name}_to"] = geo.wkb, geo.srid, self.srid
        wkb = sql.SQL("ST_GeomFromWKB({}::bytea, {}::int)").format(
            sql.Placeholder(f"{name}_wkb"), sql.Placeholder(f"{name}_srid"))
        if self.srid == 0:  # coordinates of a column without an SRID are taken as they are
            expr = sql.SQL("ST_SetSRID({}, 0)").format(wkb)
        else:
            expr = sql.SQL("ST_Transform({}, {}::int)").format(wkb, sql.Placeholder(f"{name}_to"))
        return sql.SQL("{}::geography").format(expr) if self.geography else expr


async def measure(ctx: ToolContext, geo: GeoColumn, use_geography: bool | None) -> Measure:
    col = sql.Identifier("t", geo.name)
    geography = geo.kind == "geography" if use_geography is None else use_geography
    if geo.kind == "geography":
        if geography:
            return Measure(col, True, geo.srid, "metre")
        info = await srid_info(ctx, geo.srid)
        return Measure(sql.SQL("{}::geometry").format(col), False, geo.srid, info.unit)
    if not geography:
        unit = (await srid_info(ctx, geo.srid)).unit if geo.srid else "unknown (the column has no SRID)"
        return Measure(col, False, geo.srid, unit)
    if geo.srid == 0:
        raise _invalid(f"column {geo.name!r} has no SRID, so it cannot be measured in metres (useGeography)")
    info = await srid_info(ctx, geo.srid)
    if info.geographic:
        return Measure(sql.SQL("{}::geography").format(col), True, geo.srid, "metre")
    return Measure(sql.SQL("ST_Transform({}, 4326)::geography").format(col), True, WGS84, "metre")


async def fetch_limited(ctx: ToolContext, query: sql.Composable, params: dict[str, Any],
                        limit: int) -> tuple[list[dict[str, Any]], bool]:
    rows = await ctx.fetch(sql.SQL("{} LIMIT {}").format(query, sql.Literal(limit + 1)), params)
    return rows[:limit], len(rows) > limit
