"""postgis group: distances, containment, buffers, transforms and clusters on real PostGIS, and life without it."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgcode.core.runtime import Runtime
from pgcode.errors import ToolError
from pgcode.types import Principal, Scope
from tests.fix_db import Call, assert_tool_error

pytestmark = pytest.mark.anyio

WRITER = Principal.with_scope("writer", Scope.WRITE)
NOBODY = Principal("nobody", frozenset())
PARIS = {"lat": 48.8566, "lon": 2.3522}
LONDON = {"lat": 51.5074, "lon": -0.1278}
SQUARE_A = "POLYGON((0 0, 10 0, 10 10, 0 10, 0 0))"
BOWTIE = "POLYGON((0 0, 10 10, 10 0, 0 10, 0 0))"
# Minimal valid arguments per tool: without PostGIS each must answer EXTENSION_MISSING, not a validation error.
ARGS: dict[str, dict[str, Any]] = {
    "pg_geometry_column": {"table": "t", "column": "g"},
    "pg_point_in_polygon": {"table": "t", "point": PARIS},
    "pg_distance": {"table": "t", "point": PARIS},
    "pg_buffer": {"table": "t", "distance": 10},
    "pg_intersection": {"table": "t", "geometry": SQUARE_A},
    "pg_bounding_box": {"table": "t", "xmin": 0, "ymin": 0, "xmax": 1, "ymax": 1},
    "pg_spatial_index": {"table": "t"},
    "pg_geocode": PARIS,
    "pg_geo_transform": {"table": "t", "toSrid": 3857},
    "pg_geo_index_optimize": {},
    "pg_geo_cluster": {"table": "t", "eps": 1},
    "pg_geometry_buffer": {"geometry": SQUARE_A, "distance": 1},
    "pg_geometry_intersection": {"geometry1": SQUARE_A, "geometry2": SQUARE_A},
    "pg_geometry_transform": {"geometry": "POINT(0 0)", "toSrid": 3857},
}
ADMIN_TOOLS = ["pg_postgis_create_extension", "pg_geometry_column", "pg_spatial_index"]
READ_TOOLS = [n for n in ARGS if n not in ADMIN_TOOLS]


def one(conn: psycopg.Connection[Any], query: Any, *params: Any) -> Any:
    row = conn.execute(query, params or None).fetchone()
    assert row is not None
    return row[0]


def has_postgis(conn: psycopg.Connection[Any]) -> bool:
    return bool(one(conn, "SELECT count(*) FROM pg_extension WHERE extname = 'postgis'"))


def state(conn: psycopg.Connection[Any], schema: str) -> list[tuple[Any, ...]]:
    """Columns, indexes and rows of the schema: what a refused call must leave as it was."""
    out = conn.execute("SELECT table_name, column_name, udt_name FROM information_schema.columns "
                       "WHERE table_schema = %s ORDER BY 1, 2", (schema,)).fetchall()
    out += conn.execute("SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = %s ORDER BY 1",
                        (schema,)).fetchall()
    for (table,) in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = %s ORDER BY 1",
                                 (schema,)).fetchall():
        out += conn.execute(sql.SQL("SELECT t::text FROM {} t ORDER BY 1").format(
            sql.Identifier(schema, table))).fetchall()
    return out


@pytest.fixture(scope="module")
def gis(dsn: str, schema: str) -> Iterator[str]:
    """Cities (geography and geometry), two squares, metric points and two clusters of points, in `schema`."""
    with psycopg.connect(dsn, autocommit=True) as c:
        if not has_postgis(c):
            pytest.skip("these tests need PostGIS, which this server lacks (the embedded PostgreSQL 18 has none); "
                        "test_create_extension_or_missing covers that server")
        c.execute(sql.SQL("""
            CREATE TABLE {s}.cities (id int PRIMARY KEY, name text, geog geography(Point, 4326));
            INSERT INTO {s}.cities SELECT id, name, ST_SetSRID(ST_MakePoint(lon, lat), 4326)::geography FROM (VALUES
              (1, 'Paris', 48.8566, 2.3522), (2, 'London', 51.5074, -0.1278), (3, 'Berlin', 52.52, 13.405),
              (4, 'Madrid', 40.4168, -3.7038), (5, 'Rome', 41.9028, 12.4964)) v(id, name, lat, lon);
            CREATE TABLE {s}.places (id int PRIMARY KEY, name text, geom geometry(Point, 4326));
            INSERT INTO {s}.places SELECT id, name, geog::geometry FROM {s}.cities;
            CREATE TABLE {s}.zones (id int PRIMARY KEY, name text, geom geometry(Polygon, 4326));
            INSERT INTO {s}.zones VALUES (1, 'a', 'SRID=4326;POLYGON((0 0, 10 0, 10 10, 0 10, 0 0))'),
                                         (2, 'b', 'SRID=4326;POLYGON((20 20, 30 20, 30 30, 20 30, 20 20))');
            CREATE TABLE {s}.metric (id int PRIMARY KEY, geom geometry(Point, 3857));
            INSERT INTO {s}.metric VALUES (1, 'SRID=3857;POINT(1000 2000)');
            CREATE TABLE {s}.pts (id int PRIMARY KEY, geom geometry(Point, 3857), label text);
            INSERT INTO {s}.pts VALUES
              (1, 'SRID=3857;POINT(0 0)', 'west'), (2, 'SRID=3857;POINT(5 0)', 'west'),
              (3, 'SRID=3857;POINT(0 5)', 'west'), (4, 'SRID=3857;POINT(5 5)', 'west'),
              (5, 'SRID=3857;POINT(2 8)', 'west'), (6, 'SRID=3857;POINT(1000 1000)', 'east'),
              (7, 'SRID=3857;POINT(1005 1000)', 'east'), (8, 'SRID=3857;POINT(1000 1006)', 'east'),
              (9, 'SRID=3857;POINT(1004 1004)', 'east'), (10, 'SRID=3857;POINT(5000 5000)', 'alone');
            CREATE TABLE {s}.plain (id int PRIMARY KEY, name text);
            ANALYZE {s}.cities, {s}.places, {s}.zones, {s}.metric, {s}.pts;
        """).format(s=sql.Identifier(schema)))
    yield schema


# ---------------------------------------------------------------- without the extension / create


async def test_create_extension_or_missing(call: Call, conn: psycopg.Connection[Any], rt: Runtime) -> None:
    """Where PostGIS is installed, creating it again is a no-op; elsewhere every postgis tool says it is missing."""
    if has_postgis(conn):
        out = await call("pg_postgis_create_extension", {})
        assert out["created"] is False and out["extension"] == "postgis"
        assert out["version"] == one(conn, "SELECT extversion FROM pg_extension WHERE extname = 'postgis'")
        assert out["fullVersion"].startswith("POSTGIS=") and rt.db.caps.has_extension("postgis")
        return
    with pytest.raises(ToolError) as exc:
        await call("pg_postgis_create_extension", {})
    assert_tool_error(exc, "EXTENSION_MISSING", "does not ship postgis")
    for name, args in ARGS.items():
        with pytest.raises(ToolError) as exc:
            await call(name, args)
        err = assert_tool_error(exc, "EXTENSION_MISSING", "postgis")
        assert err.details == {"extension": "postgis", "available": False} and "install" in (err.hint or "")
    assert not has_postgis(conn)


# ---------------------------------------------------------------- distance


async def test_distance_paris_london_in_metres(call: Call, conn: psycopg.Connection[Any], gis: str) -> None:
    out = await call("pg_distance", {"table": f"{gis}.cities", "column": "geog", "point": PARIS})
    assert out["unit"] == "metre" and out["measure"].startswith("geography") and out["count"] == 5
    names = [r["name"] for r in out["rows"]]
    assert names[:2] == ["Paris", "London"]
    london = out["rows"][1]
    assert london["distance"] == pytest.approx(343_923, abs=1000)  # WGS 84 spheroid; 343.5 km on a sphere
    assert london["distance"] == pytest.approx(one(
        conn, sql.SQL("SELECT ST_Distance(geog, 'SRID=4326;POINT(2.3522 48.8566)'::geography) FROM {} "
                      "WHERE name = 'London'").format(sql.Identifier(gis, "cities"))))
    assert out["rows"][0]["distance"] == 0 and out["rows"][0]["geometry"]["type"] == "Point"
    assert london["geometry"]["coordinates"] == pytest.approx([-0.1278, 51.5074])
    dists = [r["distance"] for r in out["rows"]]
    assert dists == sorted(dists)
    near = await call("pg_distance", {"table": f"{gis}.cities", "point": "POINT(2.3522 48.8566)",
                                      "maxDistance": 400_000, "includeGeometry": False})
    assert [r["name"] for r in near["rows"]] == ["Paris", "London"] and "geometry" not in near["rows"][0]
    two = await call("pg_distance", {"table": f"{gis}.cities", "point": PARIS, "limit": 2})
    assert two["count"] == 2 and two["truncated"] is True


async def test_distance_on_a_geometry_column_names_its_unit(call: Call, gis: str) -> None:
    degrees = await call("pg_distance", {"table": "places", "schema": gis, "point": PARIS, "columns": ["name"]})
    assert degrees["unit"] == "degree" and degrees["measure"].startswith("geometry") and degrees["srid"] == 4326
    london = next(r for r in degrees["rows"] if r["name"] == "London")
    assert london["distance"] == pytest.approx(math.hypot(2.3522 + 0.1278, 51.5074 - 48.8566))
    assert set(london) == {"name", "geometry", "distance"}
    metres = await call("pg_distance", {"table": "places", "schema": gis, "point": PARIS, "useGeography": True})
    assert metres["unit"] == "metre"
    assert next(r for r in metres["rows"] if r["name"] == "London")["distance"] == pytest.approx(343_923, abs=1000)
    mercator = await call("pg_distance", {"table": f"{gis}.metric", "point": "SRID=3857;POINT(1000 2100)"})
    assert mercator["unit"] == "metre" and mercator["rows"][0]["distance"] == pytest.approx(100)


# ---------------------------------------------------------------- point in polygon, intersection, bounding box


async def test_point_in_polygon(call: Call, gis: str) -> None:
    inside = await call("pg_point_in_polygon", {"table": f"{gis}.zones", "point": {"lat": 5, "lon": 5}})
    assert inside["inside"] is True and [r["name"] for r in inside["rows"]] == ["a"]
    assert "geometry" not in inside["rows"][0] and inside["point"] == {"type": "Point", "coordinates": [5.0, 5.0]}
    edge = await call("pg_point_in_polygon", {"table": f"{gis}.zones", "point": "POINT(10 5)",
                                              "includeGeometry": True})
    assert edge["inside"] is True and edge["rows"][0]["geometry"]["type"] == "Polygon"
    outside = await call("pg_point_in_polygon", {"table": f"{gis}.zones",
                                                 "point": {"type": "Point", "coordinates": [15, 15]}})
    assert outside == {**outside, "inside": False, "count": 0, "rows": []}
    with pytest.raises(ToolError) as exc:
        await call("pg_point_in_polygon", {"table": f"{gis}.zones", "point": SQUARE_A})
    assert_tool_error(exc, "INVALID_INPUT", "must be a Point")


async def test_intersection_finds_overlapping_rows(call: Call, gis: str) -> None:
    line = {"type": "LineString", "coordinates": [[-5, 5], [15, 5]]}
    out = await call("pg_intersection", {"table": f"{gis}.zones", "geometry": line, "includeIntersection": True})
    assert [r["name"] for r in out["rows"]] == ["a"]
    assert out["rows"][0]["intersection"] == {"type": "LineString", "coordinates": [[0, 5], [10, 5]]}
    both = await call("pg_intersection", {"table": f"{gis}.zones", "geometry": "LINESTRING(5 5, 25 25)",
                                          "where": "name <> 'c'"})
    assert sorted(r["name"] for r in both["rows"]) == ["a", "b"]
    pair = await call("pg_geometry_intersection", {"geometry1": SQUARE_A,
                                                   "geometry2": "POLYGON((5 5, 15 5, 15 15, 5 15, 5 5))"})
    assert pair["intersects"] is True and pair["area"] == pytest.approx(25) and pair["type"] == "ST_Polygon"
    assert pair["unit"] == "degree" and pair["areaUnit"] == "square degree"
    apart = await call("pg_geometry_intersection", {"geometry1": SQUARE_A, "geometry2": "POINT(50 50)"})
    assert apart["intersects"] is False and apart["empty"] is True and apart["area"] == 0


async def test_bounding_box(call: Call, gis: str) -> None:
    west = await call("pg_bounding_box", {"table": f"{gis}.cities", "xmin": -5, "ymin": 40, "xmax": 3, "ymax": 52})
    assert sorted(r["name"] for r in west["rows"]) == ["London", "Madrid", "Paris"]
    assert west["mode"] == "intersects" and west["rows"][0]["geometry"]["type"] == "Point"
    touching = await call("pg_bounding_box", {"table": f"{gis}.zones", "xmin": 5, "ymin": 5, "xmax": 25,
                                              "ymax": 25})
    contained = await call("pg_bounding_box", {"table": f"{gis}.zones", "xmin": -1, "ymin": -1, "xmax": 25,
                                               "ymax": 25, "contained": True})
    assert [r["name"] for r in touching["rows"]] == ["a", "b"] and [r["name"] for r in contained["rows"]] == ["a"]
    for bad in ({"xmin": 3, "xmax": -5, "ymin": 40, "ymax": 52}, {"xmin": -5, "xmax": 3, "ymin": 40, "ymax": 95}):
        with pytest.raises(ToolError) as exc:
            await call("pg_bounding_box", {"table": f"{gis}.cities", **bad})
        assert_tool_error(exc, "INVALID_INPUT")


# ---------------------------------------------------------------- buffers


async def test_buffer_areas(call: Call, gis: str) -> None:
    metric = await call("pg_buffer", {"table": f"{gis}.metric", "distance": 10})
    polygon_area = 16 * 10 ** 2 * math.sin(math.pi / 16)  # 32-gon of radius 10: 8 segments per quarter circle
    row = metric["rows"][0]
    assert row["area"] == pytest.approx(polygon_area) and row["buffer"]["type"] == "Polygon"
    assert metric["unit"] == "metre" and metric["areaUnit"] == "square metre" and metric["srid"] == 3857
    finer = await call("pg_buffer", {"table": f"{gis}.metric", "distance": 10, "segments": 64})
    assert finer["rows"][0]["area"] == pytest.approx(math.pi * 100, rel=1e-3)
    km = await call("pg_buffer", {"table": f"{gis}.cities", "distance": 1000, "where": "name = 'Paris'"})
    assert km["unit"] == "metre" and km["measure"].startswith("geography") and km["count"] == 1
    assert km["rows"][0]["area"] == pytest.approx(math.pi * 1000 ** 2, rel=0.02)
    one_geom = await call("pg_geometry_buffer", {"geometry": "SRID=3857;POINT(0 0)", "distance": 10})
    assert one_geom["area"] == pytest.approx(polygon_area) and one_geom["srid"] == 3857
    metres = await call("pg_geometry_buffer", {"geometry": PARIS, "distance": 1000, "useGeography": True})
    assert metres["unit"] == "metre" and metres["area"] == pytest.approx(math.pi * 1000 ** 2, rel=0.02)
    assert metres["geometry"]["type"] == "Polygon" and abs(metres["geometry"]["coordinates"][0][0][1] - 48.86) < 0.1
    degrees = await call("pg_geometry_buffer", {"geometry": SQUARE_A, "distance": 1, "segments": 64})
    assert degrees["unit"] == "degree" and degrees["area"] == pytest.approx(100 + 40 + math.pi, rel=1e-3)


# ---------------------------------------------------------------- transform, geocode


async def test_transform_to_web_mercator(call: Call, gis: str) -> None:
    r = 6378137.0
    x = r * math.radians(2.3522)
    y = r * math.log(math.tan(math.pi / 4 + math.radians(48.8566) / 2))
    out = await call("pg_geometry_transform", {"geometry": "POINT(2.3522 48.8566)", "toSrid": 3857})
    assert out["geometry"]["coordinates"] == pytest.approx([x, y], abs=0.01)
    assert (x, y) == pytest.approx((261845.706, 6250564.350), abs=0.01)
    assert out["fromSrid"] == 4326 and out["toUnit"] == "metre" and out["ewkt"].startswith("SRID=3857;POINT(")
    back = await call("pg_geometry_transform", {"geometry": out["ewkt"], "toSrid": 4326})
    assert back["geometry"]["coordinates"] == pytest.approx([2.3522, 48.8566], abs=1e-9)
    table = await call("pg_geo_transform", {"table": f"{gis}.cities", "toSrid": 3857, "where": "name = 'Paris'"})
    assert table["rows"][0]["geometry"]["coordinates"] == pytest.approx([x, y], abs=0.01)
    assert table["fromUnit"] == "degree" and table["toUnit"] == "metre"
    for name, args in (("pg_geometry_transform", {"geometry": "POINT(0 0)", "toSrid": 99999}),
                       ("pg_geometry_transform", {"geometry": "POINT(0 0)", "fromSrid": 123456, "toSrid": 4326}),
                       ("pg_geo_transform", {"table": f"{gis}.cities", "toSrid": 99999})):
        with pytest.raises(ToolError) as exc:
            await call(name, args)
        assert_tool_error(exc, "INVALID_INPUT", "not a spatial reference system")


async def test_geocode_builds_a_point_and_says_it_looks_nothing_up(call: Call, rt: Runtime, gis: str) -> None:
    spec = rt.registry.get("pg_geocode")
    assert spec is not None and "does not look addresses up" in spec.description
    out = await call("pg_geocode", PARIS)
    assert out["geometry"] == {"type": "Point", "coordinates": [2.3522, 48.8566]}
    assert out["wkt"] == "POINT(2.3522 48.8566)" and out["ewkt"] == "SRID=4326;POINT(2.3522 48.8566)"
    assert out["addressLookup"] is False and "does not look addresses up" in out["note"]
    assert out["geohash"].startswith("u09t")
    merc = await call("pg_geocode", {**PARIS, "srid": 3857})
    assert merc["unit"] == "metre" and merc["geometry"]["coordinates"][0] == pytest.approx(261845.706, abs=0.01)
    for bad in ({"lat": 91, "lon": 0}, {"lat": 0, "lon": -181}, {"lat": 0}):
        with pytest.raises(ToolError) as exc:
            await call("pg_geocode", bad)
        assert_tool_error(exc, "INVALID_INPUT")


# ---------------------------------------------------------------- clustering


async def test_dbscan_and_kmeans_clusters(call: Call, gis: str) -> None:
    out = await call("pg_geo_cluster", {"table": f"{gis}.pts", "method": "dbscan", "eps": 50, "minPoints": 2})
    assert out["unit"] == "metre" and out["clusterCount"] == 2 and out["noise"] == 1 and out["geometries"] == 10
    by_label: dict[str, set[Any]] = {}
    for r in out["rows"]:
        by_label.setdefault(r["label"], set()).add(r["cluster"])
    assert by_label["alone"] == {None} and len(by_label["west"]) == len(by_label["east"]) == 1
    assert by_label["west"] != by_label["east"]
    sizes = {c["cluster"]: c["size"] for c in out["clusters"]}
    assert sizes[next(iter(by_label["west"]))] == 5 and sizes[next(iter(by_label["east"]))] == 4
    west = next(c for c in out["clusters"] if c["cluster"] in by_label["west"])
    assert west["centroid"]["coordinates"] == pytest.approx([2.4, 3.6])
    km = await call("pg_geo_cluster", {"table": f"{gis}.pts", "method": "kmeans", "k": 2, "where": "label <> 'alone'",
                                       "includeGeometry": False, "limit": 3})
    assert km["clusterCount"] == 2 and km["noise"] == 0 and km["truncated"] is True and len(km["rows"]) == 3
    assert sorted(c["size"] for c in km["clusters"]) == [4, 5] and "geometry" not in km["rows"][0]
    for args, fragment in (({"method": "dbscan"}, "needs eps"), ({"method": "kmeans"}, "needs k"),
                           ({"method": "kmeans", "k": 11}, "only 10"), ({"eps": 1, "maxRows": 3}, "more than 3")):
        with pytest.raises(ToolError) as exc:
            await call("pg_geo_cluster", {"table": f"{gis}.pts", **args})
        assert_tool_error(exc, "INVALID_INPUT", fragment)


# ---------------------------------------------------------------- structure: columns and indexes


async def test_geometry_column_and_spatial_index(call: Call, conn: psycopg.Connection[Any], gis: str) -> None:
    conn.execute(sql.SQL("CREATE TABLE {} (id int PRIMARY KEY)").format(sql.Identifier(gis, "shops")))
    out = await call("pg_geometry_column", {"table": f"{gis}.shops", "column": "loc", "geometryType": "POINT"})
    assert out == {"schema": gis, "table": "shops", "column": "loc", "type": "geometry(Point,4326)",
                   "kind": "geometry", "srid": 4326, "unit": "degree", "created": True}
    assert one(conn, "SELECT type || ' ' || srid FROM geometry_columns WHERE f_table_schema = %s "
                     "AND f_table_name = 'shops'", gis) == "POINT 4326"
    geog = await call("pg_geometry_column", {"table": f"{gis}.shops", "column": "area", "kind": "geography",
                                             "geometryType": "POLYGON"})
    assert geog["type"] == "geography(Polygon,4326)" and geog["unit"] == "metre"
    again = await call("pg_geometry_column", {"table": f"{gis}.shops", "column": "loc", "ifNotExists": True})
    assert again["created"] is False
    before = state(conn, gis)
    for args, code in (({"column": "loc"}, "ALREADY_EXISTS"), ({"column": "x", "kind": "geography", "srid": 3857},
                                                                 "INVALID_INPUT"),
                       ({"column": "x", "srid": 99999}, "INVALID_INPUT"), ({"column": "x", "geometryType": "CIRCLE"},
                                                                          "INVALID_INPUT")):
        with pytest.raises(ToolError) as exc:
            await call("pg_geometry_column", {"table": f"{gis}.shops", **args})
        assert_tool_error(exc, code)
    with pytest.raises(ToolError) as exc:
        await call("pg_spatial_index", {"table": f"{gis}.shops"})
    assert_tool_error(exc, "INVALID_INPUT", "2 geometry/geography columns")
    with pytest.raises(ToolError) as exc:
        await call("pg_spatial_index", {"table": f"{gis}.plain", "column": "name"})
    assert_tool_error(exc, "INVALID_INPUT", "not geometry or geography")
    assert state(conn, gis) == before
    idx = await call("pg_spatial_index", {"table": f"{gis}.shops", "column": "loc"})
    assert idx["name"] == "shops_loc_gist" and idx["created"] is True and "USING gist (loc)" in idx["definition"]
    conc = await call("pg_spatial_index", {"table": f"{gis}.shops", "column": "area", "concurrently": True,
                                           "name": "shops_area_idx"})
    assert conc["isValid"] is True and conc["concurrently"] is True
    assert one(conn, "SELECT count(*) FROM pg_indexes WHERE schemaname = %s AND tablename = 'shops' "
                     "AND indexdef LIKE '%%USING gist%%'", gis) == 2
    with pytest.raises(ToolError) as exc:
        await call("pg_spatial_index", {"table": f"{gis}.shops", "column": "loc"})
    assert_tool_error(exc, "ALREADY_EXISTS")
    same = await call("pg_spatial_index", {"table": f"{gis}.shops", "column": "loc", "ifNotExists": True})
    assert same["created"] is False


async def test_geo_index_optimize(call: Call, conn: psycopg.Connection[Any], gis: str) -> None:
    conn.execute(sql.SQL("CREATE INDEX zones_geom_gist ON {} USING gist (geom)").format(sql.Identifier(gis, "zones")))
    conn.execute(sql.SQL("CREATE INDEX zones_geom_again ON {} USING gist (geom)").format(sql.Identifier(gis, "zones")))
    conn.execute(sql.SQL("CREATE INDEX places_geom_btree ON {} (geom)").format(sql.Identifier(gis, "places")))
    out = await call("pg_geo_index_optimize", {"schema": gis, "minRows": 2})
    ix = {i["index"]: i for i in out["indexes"]}
    assert {"zones_geom_gist", "zones_geom_again", "places_geom_btree"} <= set(ix)
    assert ix["zones_geom_gist"]["method"] == "gist" and ix["zones_geom_gist"]["index_bytes"] > 0
    assert ix["zones_geom_gist"]["idx_scan"] == 0
    cols = {(c["table"], c["column"]): c for c in out["columns"]}
    assert cols[("zones", "geom")]["spatial_indexes"] == ["zones_geom_again", "zones_geom_gist"]
    assert cols[("cities", "geog")]["kind"] == "geography" and cols[("cities", "geog")]["rows"] == 5
    advice = {(a["kind"], a["table"]): a for a in out["recommendations"]}
    assert ("missing_index", "cities") in advice and ("missing_index", "pts") in advice
    places = advice[("missing_index", "places")]
    assert "places_geom_btree" in places["reason"] and places["tool"] == "pg_spatial_index"
    assert places["sql"] == f'CREATE INDEX CONCURRENTLY ON "{gis}"."places" USING gist ("geom")'
    assert advice[("duplicate_index", "zones")]["index"] == "zones_geom_gist"
    assert ("unused_index", "zones") in advice
    assert ("missing_index", "zones") not in advice
    big_only = await call("pg_geo_index_optimize", {"schema": gis, "minRows": 1_000_000})
    assert not [a for a in big_only["recommendations"] if a["kind"] in ("missing_index", "unused_index")]


# ---------------------------------------------------------------- bad input changes nothing


async def test_bad_geometries_are_refused_with_the_reason(call: Call, conn: psycopg.Connection[Any], gis: str) -> None:
    before = state(conn, gis)
    cases = [
        ("pg_geometry_buffer", {"geometry": "POLYGON((0 0, 1 1", "distance": 1}, "not valid WKT"),
        ("pg_geometry_buffer", {"geometry": BOWTIE, "distance": 1}, "Self-intersection"),
        ("pg_intersection", {"table": f"{gis}.zones", "geometry": BOWTIE}, "Self-intersection[5 5]"),
        ("pg_distance", {"table": f"{gis}.cities", "point": {"lat": 91, "lon": 0}}, "latitude must be between"),
        ("pg_distance", {"table": f"{gis}.cities", "point": "POINT(0 91)"}, "outside longitude"),
        ("pg_distance", {"table": f"{gis}.cities", "point": {"lat": "x", "lon": 0}}, "must be a number"),
        ("pg_distance", {"table": f"{gis}.cities", "point": {"x": 1}}, "GeoJSON"),
        ("pg_geometry_transform", {"geometry": {"type": "Point", "coordinates": "nope"}, "toSrid": 3857}, "GeoJSON"),
        ("pg_geometry_transform", {"geometry": '{"type": "Point"', "toSrid": 3857}, "not JSON"),
        ("pg_geometry_transform", {"geometry": "POINT EMPTY", "toSrid": 3857}, "empty"),
        ("pg_geometry_transform", {"geometry": "SRID=3857;POINT(0 0)", "fromSrid": 4326, "toSrid": 3857},
         "but srid says"),
        ("pg_distance", {"table": f"{gis}.cities", "point": PARIS, "where": "1=1; DROP TABLE x"}, ""),
        ("pg_buffer", {"table": f"{gis}.cities", "distance": 0}, "must not be 0"),
    ]
    for name, args, fragment in cases:
        with pytest.raises(ToolError) as exc:
            await call(name, args)
        assert_tool_error(exc, "INVALID_INPUT", fragment)
    with pytest.raises(ToolError) as exc:
        await call("pg_geometry_buffer", {"geometry": BOWTIE, "distance": 1})
    assert exc.value.details["reason"] == "Self-intersection[5 5]"
    for name, args, code in (("pg_distance", {"table": f"{gis}.nowhere", "point": PARIS}, "NOT_FOUND"),
                             ("pg_distance", {"table": f"{gis}.cities", "column": "nope", "point": PARIS},
                              "NOT_FOUND"),
                             ("pg_distance", {"table": f"{gis}.plain", "point": PARIS}, "INVALID_INPUT"),
                             ("pg_distance", {"table": f"{gis}.cities", "columns": ["nope"], "point": PARIS},
                              "NOT_FOUND")):
        with pytest.raises(ToolError) as exc:
            await call(name, args)
        assert_tool_error(exc, code)
    assert state(conn, gis) == before


# ---------------------------------------------------------------- scopes and code mode


@pytest.mark.parametrize("name", ADMIN_TOOLS)
async def test_admin_tools_need_admin_scope(call: Call, name: str) -> None:
    with pytest.raises(ToolError) as exc:
        await call(name, ARGS.get(name, {}), principal=WRITER)
    assert_tool_error(exc, "FORBIDDEN")


@pytest.mark.parametrize("name", READ_TOOLS)
async def test_read_tools_need_read_scope(call: Call, name: str) -> None:
    with pytest.raises(ToolError) as exc:
        await call(name, ARGS[name], principal=NOBODY)
    assert_tool_error(exc, "FORBIDDEN")


async def test_code_mode_seed_names(call: Call, rt: Runtime, gis: str) -> None:
    assert rt.registry.by_method("postgis", "stDistance").name == "pg_distance"  # type: ignore[union-attr]
    assert rt.registry.by_method("postgis", "stBuffer").name == "pg_buffer"  # type: ignore[union-attr]
    code = f"""
        const near = await pg.postgis.stDistance({{table: "{gis}.cities", column: "geog",
                                                  point: {{lat: 48.8566, lon: 2.3522}}}});
        const buf = await pg.postgis.stBuffer({{table: "{gis}.metric", column: "geom", distance: 10}});
        return {{unit: near.unit, london: near.rows[1], bufUnit: buf.unit, area: buf.rows[0].area}};
    """
    out = await call("pg_execute_code", {"code": code, "readonly": True})
    assert out["success"] is True, out
    res = out["result"]
    assert res["unit"] == "metre" and res["london"]["name"] == "London"
    assert res["london"]["distance"] == pytest.approx(343_923, abs=1000)
    assert res["bufUnit"] == "metre" and res["area"] == pytest.approx(16 * 100 * math.sin(math.pi / 16))
