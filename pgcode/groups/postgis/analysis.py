"""postgis: spatial index advice and clustering (DBSCAN, K-means)."""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from psycopg import sql
from pydantic import Field

from pgcode.core import arguments
from pgcode.core.context import ToolContext
from pgcode.core.registry import ToolInput, tool
from pgcode.db.queries import SYSTEM_SCHEMAS, load_query
from pgcode.db.sqlpolicy import where_fragment
from pgcode.errors import ErrorCode, ToolError
from pgcode.groups._common import IDENT_MAX, TableRef
from pgcode.groups.postgis._geo import (
    POSTGIS,
    ColumnField,
    ColumnsField,
    WhereField,
    select_list,
    srid_info,
    table_geo,
)
from pgcode.types import Effect


class GeoIndexOptimizeIn(ToolInput):
    schema_: str | None = Field(None, alias="schema", min_length=1, max_length=IDENT_MAX,
                                description=arguments.SCHEMA_FILTER)
    min_rows: int = Field(10_000, ge=0)
    limit: int = Field(500, ge=1, le=10_000)


@tool(group="postgis", effect=Effect.READ, extensions=POSTGIS)
async def geo_index_optimize(ctx: ToolContext, args: GeoIndexOptimizeIn) -> dict[str, Any]:
    """Spatial indexes with size and use, and which are missing, unused, invalid or duplicate.

    Every non-system schema unless schema is given; limit: most columns and most indexes to list. Use is
    idx_scan. Missing means a geometry or geography column of a table with at least minRows rows and no spatial index.
    Scan counts are since the statistics were last reset; a table's rows are the larger of the planner's
    estimate and the live-row count.
    """
    params = {"schema": args.schema_, "system": SYSTEM_SCHEMAS, "limit": args.limit + 1}
    indexes = await ctx.fetch(load_query("postgis_spatial_indexes"), params)
    columns = await ctx.fetch(load_query("postgis_geo_columns"), params)
    truncated = len(indexes) > args.limit or len(columns) > args.limit
    indexes, columns = indexes[:args.limit], columns[:args.limit]
    conn = await ctx.conn()
    advice: list[dict[str, Any]] = []
    for col in columns:
        col["rows"] = max(col.pop("estimated_rows"), col.pop("live_rows"))
        if col["spatial_indexes"] or col["rows"] < args.min_rows:
            continue
        stmt = sql.SQL("CREATE INDEX CONCURRENTLY ON {} USING gist ({})").format(
            sql.Identifier(col["schema"], col["table"]), sql.Identifier(col["column"])).as_string(conn)
        why = f"{col['rows']} rows and no spatial index on {col['column']}; spatial filters scan the whole table"
        if col["other_indexes"]:
            why += f" (its {', '.join(col['other_indexes'])} index cannot serve spatial operators)"
        advice.append({"kind": "missing_index", "severity": "high" if col["seq_scans"] else "medium",
                       "schema": col["schema"], "table": col["table"], "column": col["column"], "reason": why,
                       "sql": stmt, "tool": "pg_spatial_index"})
    seen: dict[tuple[str, str, str, str], str] = {}
    for ix in indexes:
        ref = {"schema": ix["schema"], "table": ix["table"], "column": ix["column"], "index": ix["index"]}
        name = sql.Identifier(ix["schema"], ix["index"]).as_string(conn)
        if not ix["is_valid"]:
            advice.append({"kind": "invalid_index", "severity": "high", **ref, "sql": f"REINDEX INDEX CONCURRENTLY "
                           f"{name}", "reason": "the index is INVALID (a failed concurrent build) and is not used"})
            continue
        key = (ix["schema"], ix["table"], ix["column"], ix["method"])
        if key in seen and not ix["is_partial"]:
            advice.append({"kind": "duplicate_index", "severity": "medium", **ref, "sql": f"DROP INDEX CONCURRENTLY "
                           f"{name}", "reason": f"{ix['method']} index on the same column as {seen[key]}"})
        elif not ix["is_partial"]:
            seen[key] = ix["index"]
        if ix["idx_scan"] == 0 and ix["estimated_rows"] >= args.min_rows:
            advice.append({"kind": "unused_index", "severity": "low", **ref, "indexBytes": ix["index_bytes"],
                           "reason": "not used since the statistics were reset; check the queries before dropping"})
    return {"indexes": indexes, "columns": columns, "recommendations": advice, "minRows": args.min_rows,
            "truncated": truncated}


class ClusterMethod(StrEnum):
    DBSCAN = "dbscan"
    KMEANS = "kmeans"


class GeoClusterIn(TableRef):
    column: str | None = ColumnField
    method: ClusterMethod = ClusterMethod.DBSCAN
    eps: float | None = Field(None, gt=0, le=1e8, description="DBSCAN distance, in the SRID's units")
    min_points: int = Field(2, ge=1, le=10_000)
    k: int | None = Field(None, ge=1, le=1_000)
    max_rows: int = Field(10_000, ge=1, le=100_000)
    columns: list[str] | None = ColumnsField
    where: str | None = WhereField
    include_geometry: bool = True
    limit: int = Field(1_000, ge=1, le=100_000)


@tool(group="postgis", effect=Effect.READ, extensions=POSTGIS)
async def geo_cluster(ctx: ToolContext, args: GeoClusterIn) -> dict[str, Any]:
    """Cluster a table's geometries with DBSCAN or K-means: each row's cluster, clusters' size and centroid.

    method: dbscan (density: eps, the neighbour distance in the units of the column's
    SRID, degrees for 4326 and geography, and minPoints, the neighbours a core point needs, itself included) or
    kmeans (k clusters). includeGeometry returns each row's geometry as GeoJSON; limit: most rows to return
    (the clusters cover every row).

    column: the geometry or geography column (default: the table's only one); columns: the columns returned with each
    row (default: every column that is not a geometry or geography). DBSCAN leaves outliers without a cluster (`cluster:
    null`, counted in `noise`). At most maxRows geometries are clustered; larger inputs are refused, so narrow them with
    `where`.
    """
    if args.method is ClusterMethod.DBSCAN and args.eps is None:
        raise ToolError(ErrorCode.INVALID_INPUT, "dbscan needs eps (the neighbour distance)")
    if args.method is ClusterMethod.KMEANS and args.k is None:
        raise ToolError(ErrorCode.INVALID_INPUT, "kmeans needs k (the number of clusters)")
    tg = await table_geo(ctx, args.schema_name, args.table_name, args.column)
    col = sql.Identifier("t", tg.geo.name)
    geom = sql.SQL("{}::geometry").format(col) if tg.geo.kind == "geography" else col
    cond: sql.Composable = sql.SQL("{} IS NOT NULL").format(col)
    if args.where is not None:
        cond = sql.SQL("{} AND {}").format(cond, where_fragment(args.where))
    found = await ctx.fetchval(sql.SQL("SELECT count(*) FROM (SELECT 1 FROM {} AS t WHERE {} LIMIT {}) s").format(
        tg.ident, cond, sql.Literal(args.max_rows + 1)))
    if found > args.max_rows:
        raise ToolError(ErrorCode.INVALID_INPUT, f"more than {args.max_rows} geometries to cluster",
                        hint="narrow them with where, or raise maxRows (up to 100000)")
    if args.k is not None and args.method is ClusterMethod.KMEANS and args.k > found:
        raise ToolError(ErrorCode.INVALID_INPUT, f"k is {args.k} but there are only {found} geometries")
    if args.method is ClusterMethod.DBSCAN:
        fn = sql.SQL("ST_ClusterDBSCAN(__geom, %(eps)s::float8, %(minpoints)s::int)")
    else:
        fn = sql.SQL("ST_ClusterKMeans(__geom, %(k)s::int)")
    extra = [sql.SQL("{} AS __geom").format(geom)]
    if args.include_geometry:
        extra.append(sql.SQL("ST_AsGeoJSON({})::json AS geometry").format(col))
    row = await ctx.fetchone(load_query("postgis_geo_cluster").format(
        cols=select_list(tg, args.columns, extra), table=tg.ident, cond=cond, fn=fn,
        limit=sql.Literal(args.limit)), {"eps": args.eps, "minpoints": args.min_points, "k": args.k})
    assert row is not None
    clusters = row["clusters"]
    noise = next((c["size"] for c in clusters if c["cluster"] is None), 0)
    unit = (await srid_info(ctx, tg.geo.srid)).unit if tg.geo.srid else "unknown (the column has no SRID)"
    out: dict[str, Any] = {"method": args.method.value, "unit": unit, "srid": tg.geo.srid, "geometries": found,
                           "clusterCount": sum(1 for c in clusters if c["cluster"] is not None), "noise": noise,
                           "clusters": [c for c in clusters if c["cluster"] is not None],
                           "rows": row["rows"], "truncated": found > args.limit}
    if args.method is ClusterMethod.DBSCAN:
        out.update(eps=args.eps, minPoints=args.min_points)
    else:
        out.update(k=args.k)
    return out
