"""vector group: nearest neighbours checked against distances computed here, indexes, recall, loads, analysis."""

from __future__ import annotations

import math
import random
from collections.abc import AsyncIterator, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import SecretStr

from pgcode.core.runtime import Runtime
from pgcode.errors import ToolError
from pgcode.settings import Settings
from pgcode.types import LOCAL_PRINCIPAL, Principal, Scope
from tests.fix_db import Call, assert_tool_error

pytestmark = pytest.mark.anyio

READER = Principal.with_scope("reader", Scope.READ)
WRITER = Principal.with_scope("writer", Scope.WRITE)

# id, category, body, embedding: four directions plus near-duplicates, so every metric orders them differently.
ITEMS = [
    (1, "a", "red apple pie", [1.0, 0.0, 0.0]),
    (2, "a", "green apple", [0.9, 0.2, 0.1]),
    (3, "b", "blue sky at noon", [0.0, 1.0, 0.0]),
    (4, "b", "dark night sky", [0.0, 0.1, 1.0]),
    (5, "c", "long red scarf", [2.0, 0.5, 0.2]),
    (6, "c", "tiny green frog", [-0.5, 0.3, 0.8]),
    (7, "a", "apple and sky", [0.5, 0.5, 0.5]),
    (8, "b", "grey sky", [-1.0, -0.2, 0.3]),
]


def one(conn: psycopg.Connection[Any], query: Any, *params: Any) -> Any:
    row = conn.execute(query, params or None).fetchone()
    assert row is not None
    return row[0]


@pytest.fixture(scope="module")
def vec(dsn: str, schema: str) -> Iterator[str]:
    """The module's schema with `items` (3 dims) and `grid` (200 seeded random 8-dim vectors)."""
    with psycopg.connect(dsn, autocommit=True) as c:
        if not one(c, "SELECT count(*) FROM pg_extension WHERE extname = 'vector'"):
            if not one(c, "SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'"):
                pytest.skip("the vector tools need pgvector, which this server does not ship")
            c.execute("CREATE EXTENSION vector")
        s = sql.Identifier(schema)
        c.execute(sql.SQL("CREATE TABLE {}.items (id int PRIMARY KEY, category text, body text, "
                          "embedding vector(3))").format(s))
        with c.cursor() as cur:
            cur.executemany(sql.SQL("INSERT INTO {}.items VALUES (%s, %s, %s, %s::vector)").format(s),
                            [(i, cat, body, str(v)) for i, cat, body, v in ITEMS])
        rng = random.Random(7)
        c.execute(sql.SQL("CREATE TABLE {}.grid (id int PRIMARY KEY, embedding vector(8))").format(s))
        with c.cursor() as cur:
            cur.executemany(sql.SQL("INSERT INTO {}.grid VALUES (%s, %s::vector)").format(s),
                            [(i, str([rng.uniform(-1, 1) for _ in range(8)])) for i in range(200)])
        c.execute(sql.SQL("ANALYZE {}.items; ANALYZE {}.grid").format(s, s))
        yield schema


@pytest.fixture(autouse=True)
async def _caps(rt: Runtime) -> None:
    """The session runtime may have opened before the fixture created the extension."""
    if not rt.db.caps.has_extension("vector"):
        await rt.db.refresh_capabilities()


def exact(query: list[float], metric: str) -> list[tuple[int, float]]:
    """(id, distance) of every item, nearest first, as pgvector defines each metric."""
    def dist(v: list[float]) -> float:
        dot = sum(a * b for a, b in zip(query, v, strict=True))
        if metric == "l2":
            return math.dist(query, v)
        if metric == "l1":
            return sum(abs(a - b) for a, b in zip(query, v, strict=True))
        if metric == "inner_product":
            return -dot
        return 1 - dot / (math.hypot(*query) * math.hypot(*v))
    return sorted(((i, dist(v)) for i, _, _, v in ITEMS), key=lambda p: p[1])


# ---------------------------------------------------------------- search


@pytest.mark.parametrize("metric", ["l2", "cosine", "inner_product", "l1"])
async def test_search_matches_exact_distances(call: Call, vec: str, metric: str) -> None:
    q = [0.8, 0.3, 0.1]
    rows = await call("pg_vector_search", {"table": f"{vec}.items", "column": "embedding", "vector": q, "limit": 4,
                                           "metric": metric})
    want = exact(q, metric)[:4]
    assert [r["id"] for r in rows] == [i for i, _ in want]
    for row, (_, d) in zip(rows, want, strict=True):
        assert row["distance"] == pytest.approx(d, abs=1e-5)
        assert set(row) >= {"id", "category", "body"} and "embedding" not in row
    if metric == "inner_product":
        assert rows[0]["similarity"] == pytest.approx(-want[0][1], abs=1e-5) and rows[0]["similarity"] > 0
    if metric == "cosine":
        assert rows[0]["similarity"] == pytest.approx(1 - want[0][1], abs=1e-5)


async def test_search_where_filter_and_vector_on_request(call: Call, vec: str) -> None:
    rows = await call("pg_vector_search", {
        "table": "items", "schema": vec, "column": "embedding", "vector": [1, 0, 0], "limit": 10,
        "where": "category = 'b'", "returnColumns": ["id"], "includeVector": True})
    want = [i for i, _ in exact([1, 0, 0], "l2") if ITEMS[i - 1][1] == "b"]
    assert [r["id"] for r in rows] == want
    assert rows[0]["embedding"] == pytest.approx(ITEMS[want[0] - 1][3], abs=1e-6)
    assert set(rows[0]) == {"id", "embedding", "distance"}


async def test_search_settings_stay_in_the_call(settings: Settings, vec: str) -> None:
    """efSearch is SET LOCAL: seen inside the call, gone from the (single) pooled connection afterwards."""
    async with Runtime(settings.model_copy(update={"pool_max_size": 1, "pool_min_size": 1})) as one_rt:
        args = {"table": f"{vec}.items", "column": "embedding", "vector": [1, 0, 0], "limit": 1}
        inside = await one_rt.invoke("pg_vector_search", {
            **args, "efSearch": 77, "where": "current_setting('hnsw.ef_search') = '77'"}, LOCAL_PRINCIPAL)
        assert len(inside) == 1
        iterative = await one_rt.invoke("pg_vector_search", {
            **args, "iterativeScan": "relaxed_order", "probes": 3,
            "where": "current_setting('hnsw.iterative_scan') = 'relaxed_order' "
                     "AND current_setting('ivfflat.probes') = '3'"}, LOCAL_PRINCIPAL)
        assert len(iterative) == 1
        after = await one_rt.invoke("pg_vector_search", {
            **args, "where": "current_setting('hnsw.ef_search') = '40'"}, LOCAL_PRINCIPAL)
        assert len(after) == 1
        out = await one_rt.invoke("pg_read_query", {"sql": "SELECT current_setting('hnsw.ef_search', true) AS v"},
                                  LOCAL_PRINCIPAL)
        assert out["rows"][0]["v"] in (None, "40")
        out = await one_rt.invoke("pg_read_query", {"sql": "SELECT current_setting('ivfflat.probes', true) AS v"},
                                  LOCAL_PRINCIPAL)
        assert out["rows"][0]["v"] in (None, "1")


async def test_search_bad_input(call: Call, vec: str) -> None:
    base = {"table": f"{vec}.items", "column": "embedding", "vector": [1, 0, 0]}
    with pytest.raises(ToolError) as exc:
        await call("pg_vector_search", {**base, "vector": [1, 0]})
    err = assert_tool_error(exc, "INVALID_INPUT", "2 dimensions", "has 3")
    assert err.details == {"expected": 3, "given": 2}
    with pytest.raises(ToolError) as exc:
        await call("pg_vector_search", {**base, "column": "nope"})
    assert_tool_error(exc, "NOT_FOUND", "nope")
    with pytest.raises(ToolError) as exc:
        await call("pg_vector_search", {**base, "column": "body"})
    assert_tool_error(exc, "INVALID_INPUT", "not a vector")
    with pytest.raises(ToolError) as exc:
        await call("pg_vector_search", {**base, "table": f"{vec}.missing"})
    assert_tool_error(exc, "NOT_FOUND", "missing")
    with pytest.raises(ToolError) as exc:
        await call("pg_vector_search", {**base, "where": "1; DROP TABLE items"})
    assert_tool_error(exc, "INVALID_INPUT")


async def test_hybrid_search_fuses_both_rankings(call: Call, vec: str) -> None:
    args = {"table": f"{vec}.items", "column": "embedding", "vector": [1, 0, 0], "textColumn": "body",
            "query": "apple", "limit": 3}
    rows = await call("pg_hybrid_search", args)
    # id 1 is nearest and mentions apple: first by either fusion
    assert rows[0]["id"] == 1 and rows[0]["vectorRank"] == 1 and rows[0]["textRank"] is not None
    assert rows == sorted(rows, key=lambda r: -r["score"])
    weighted = await call("pg_hybrid_search", {**args, "method": "weighted", "vectorWeight": 0.0})
    assert all(r["textRank"] is not None for r in weighted if r["score"] > 0)
    assert {r["id"] for r in weighted} <= {1, 2, 7, 5}


# ---------------------------------------------------------------- distance, normalize, embed, aggregate


async def test_distance_matches_python(call: Call, vec: str) -> None:
    a, b = [1.0, 2.0, 3.0], [3.0, 2.0, -1.0]
    out = await call("pg_vector_distance", {"a": a, "b": b})
    assert out["l2"] == pytest.approx(math.dist(a, b))
    assert out["inner_product"] == pytest.approx(4.0)
    assert out["cosine"] == pytest.approx(1 - 4 / (math.hypot(*a) * math.hypot(*b)))
    assert out["l1"] == pytest.approx(6.0)
    with pytest.raises(ToolError) as exc:
        await call("pg_vector_distance", {"a": a, "b": [1.0, 2.0]})
    assert_tool_error(exc, "INVALID_INPUT", "3 dimensions", "2")


async def test_normalize_and_embed_need_no_database(call: Call) -> None:
    out = await call("pg_vector_normalize", {"vector": [3, 4]})
    assert out["vector"] == pytest.approx([0.6, 0.8]) and out["norm"] == 5.0
    with pytest.raises(ToolError) as exc:
        await call("pg_vector_normalize", {"vector": [0, 0]})
    assert_tool_error(exc, "INVALID_INPUT", "zero vector")
    e = await call("pg_vector_embed", {"texts": ["red apple pie", "red apple tart", "quantum chromodynamics"]})
    assert e["semantic"] is False and "not a semantic model" in e["method"]
    v1, v2, v3 = e["vectors"]
    assert len(v1) == 384 and math.hypot(*v1) == pytest.approx(1.0)
    cos = lambda a, b: sum(x * y for x, y in zip(a, b, strict=True))  # noqa: E731
    assert cos(v1, v2) > cos(v1, v3)
    again = await call("pg_vector_embed", {"text": "red apple pie", "dimensions": 384})
    assert again["vector"] == v1


async def test_embed_description_says_what_it_is(rt: Runtime) -> None:
    spec = rt.registry.get("pg_vector_embed")
    assert spec is not None and "NOT a semantic model" in spec.title


async def test_aggregate_average(call: Call, vec: str) -> None:
    out = await call("pg_vector_aggregate", {"table": f"{vec}.items", "column": "embedding"})
    mean = [sum(v[d] for *_, v in ITEMS) / len(ITEMS) for d in range(3)]
    assert out["count"] == len(ITEMS) and out["average"] == pytest.approx(mean, abs=1e-5)
    grouped = await call("pg_vector_aggregate", {"table": f"{vec}.items", "column": "embedding",
                                                 "groupBy": "category", "limit": 2})
    assert [g["group"] for g in grouped["groups"]] == ["a", "b"] and grouped["truncated"] is True
    assert grouped["groups"][0]["count"] == 3


async def test_validate_dimensions(call: Call, vec: str) -> None:
    out = await call("pg_vector_validate", {"table": f"{vec}.items", "column": "embedding",
                                            "vectors": [[1, 2, 3], [1, 2]]})
    assert out["dimensions"] == 3 and out["valid"] is False
    assert [v["valid"] for v in out["vectors"]] == [True, False] and "has 3" in out["vectors"][1]["problem"]
    assert out["storedDimensions"] == [{"dimensions": 3, "rows": len(ITEMS)}] and out["nullRows"] == 0


# ---------------------------------------------------------------- writing vectors


async def test_insert_and_update(call: Call, vec: str, conn: psycopg.Connection[Any]) -> None:
    conn.execute(sql.SQL("CREATE TABLE {}.notes (id int PRIMARY KEY, title text, embedding vector(3))").format(
        sql.Identifier(vec)))
    t = f"{vec}.notes"
    out = await call("pg_vector_insert", {"table": t, "column": "embedding", "vector": [1, 2, 3],
                                          "data": {"id": 1, "title": "one"}, "returning": ["id"]})
    assert out["rows"] == [{"id": 1}] and out["operation"] == "insert"
    out = await call("pg_vector_insert", {"table": t, "column": "embedding", "vector": [4, 5, 6],
                                          "match": {"id": 1}, "returning": ["embedding"]})
    assert out["rows"] == [{"embedding": [4.0, 5.0, 6.0]}] and out["operation"] == "update"
    assert conn.execute(sql.SQL("SELECT title, embedding::text FROM {}.notes").format(
        sql.Identifier(vec))).fetchall() == [("one", "[4,5,6]")]
    with pytest.raises(ToolError) as exc:
        await call("pg_vector_insert", {"table": t, "column": "embedding", "vector": [1, 1, 1], "match": {"id": 9}})
    assert_tool_error(exc, "NOT_FOUND")
    with pytest.raises(ToolError) as exc:
        await call("pg_vector_insert", {"table": t, "column": "embedding", "vector": [1, 1], "data": {"id": 2}})
    assert_tool_error(exc, "INVALID_INPUT", "2 dimensions", "has 3")
    with pytest.raises(ToolError) as exc:
        await call("pg_vector_insert", {"table": t, "column": "embedding", "vector": [1, 1, 1],
                                        "data": {"nope": 2}})
    assert_tool_error(exc, "NOT_FOUND", "nope")
    assert one(conn, sql.SQL("SELECT count(*) FROM {}.notes").format(sql.Identifier(vec))) == 1
    with pytest.raises(ToolError) as exc:
        await call("pg_vector_insert", {"table": t, "column": "embedding", "vector": [1, 1, 1]}, READER)
    assert_tool_error(exc, "FORBIDDEN")


async def test_batch_insert_binary_copy(call: Call, vec: str, conn: psycopg.Connection[Any]) -> None:
    conn.execute(sql.SQL("CREATE TABLE {}.bulk (id int, tag text, embedding vector(4))").format(sql.Identifier(vec)))
    rng = random.Random(3)
    vectors = [[rng.uniform(-1, 1) for _ in range(4)] for _ in range(500)]
    out = await call("pg_vector_batch_insert", {
        "table": f"{vec}.bulk", "column": "embedding", "vectors": vectors,
        "data": [{"id": i, "tag": f"t{i}"} for i in range(500)]})
    assert out["inserted"] == 500 and out["format"] == "binary"
    stored = conn.execute(sql.SQL("SELECT tag, embedding FROM {}.bulk WHERE id = 123").format(
        sql.Identifier(vec))).fetchone()
    assert stored is not None and stored[0] == "t123"
    assert [float(x) for x in stored[1].strip("[]").split(",")] == pytest.approx(vectors[123], abs=1e-6)
    bad = [*vectors[:3], [1.0, 2.0]]
    with pytest.raises(ToolError) as exc:
        await call("pg_vector_batch_insert", {"table": f"{vec}.bulk", "column": "embedding", "vectors": bad})
    assert_tool_error(exc, "INVALID_INPUT", "vector 3 has 2 dimensions", "4")
    with pytest.raises(ToolError) as exc:
        await call("pg_vector_batch_insert", {"table": f"{vec}.bulk", "column": "embedding", "vectors": vectors[:2],
                                              "data": [{"id": 1}]})
    assert_tool_error(exc, "INVALID_INPUT", "data has 1 rows")
    assert one(conn, sql.SQL("SELECT count(*) FROM {}.bulk").format(sql.Identifier(vec))) == 500


async def test_add_column(call: Call, vec: str, conn: psycopg.Connection[Any]) -> None:
    conn.execute(sql.SQL("CREATE TABLE {}.docs (id int)").format(sql.Identifier(vec)))
    out = await call("pg_vector_add_column", {"table": f"{vec}.docs", "column": "e", "dimensions": 4,
                                              "type": "halfvec"})
    assert out["type"] == "halfvec(4)" and out["created"] is True
    assert one(conn, "SELECT format_type(atttypid, atttypmod) FROM pg_attribute WHERE attrelid = %s::regclass "
               "AND attname = 'e'", f"{vec}.docs") == "halfvec(4)"
    with pytest.raises(ToolError) as exc:
        await call("pg_vector_add_column", {"table": f"{vec}.docs", "column": "e", "dimensions": 4})
    assert_tool_error(exc, "ALREADY_EXISTS")
    with pytest.raises(ToolError) as exc:
        await call("pg_vector_add_column", {"table": f"{vec}.docs", "column": "f", "dimensions": 4}, WRITER)
    assert_tool_error(exc, "FORBIDDEN")


# ---------------------------------------------------------------- indexes, recall, tuning


async def test_create_index_parameters_in_catalog(call: Call, vec: str, conn: psycopg.Connection[Any]) -> None:
    out = await call("pg_vector_create_index", {"table": f"{vec}.grid", "column": "embedding", "metric": "cosine",
                                                "m": 8, "efConstruction": 32, "name": "grid_cos"})
    assert out["created"] is True and out["opclass"] == "vector_cosine_ops"
    row = conn.execute("SELECT i.indexdef, c.reloptions FROM pg_indexes i JOIN pg_class c ON c.relname = "
                       "i.indexname AND c.relnamespace = %s::regnamespace WHERE i.schemaname = %s AND "
                       "i.indexname = 'grid_cos'", (vec, vec)).fetchone()
    assert row is not None and "USING hnsw" in row[0] and "vector_cosine_ops" in row[0]
    assert sorted(row[1]) == ["ef_construction=32", "m=8"]
    out = await call("pg_vector_create_index", {"table": f"{vec}.grid", "column": "embedding", "method": "ivfflat",
                                                "lists": 4, "concurrently": True, "name": "grid_ivf"})
    assert out["valid"] is True and out["options"] == {"lists": "4"}
    assert one(conn, "SELECT reloptions FROM pg_class WHERE relname = 'grid_ivf' AND relnamespace = "
               "%s::regnamespace", vec) == ["lists=4"]
    conn.execute(sql.SQL("DROP INDEX {}.grid_ivf").format(sql.Identifier(vec)))


async def test_create_index_refuses_bad_parameters(call: Call, vec: str, conn: psycopg.Connection[Any]) -> None:
    before = one(conn, "SELECT count(*) FROM pg_indexes WHERE schemaname = %s", vec)
    base = {"table": f"{vec}.items", "column": "embedding"}
    with pytest.raises(ToolError) as exc:
        await call("pg_vector_create_index", {**base, "m": 16, "efConstruction": 20})
    assert_tool_error(exc, "INVALID_INPUT", "at least 2 x m")
    with pytest.raises(ToolError) as exc:
        await call("pg_vector_create_index", {**base, "method": "ivfflat", "metric": "l1"})
    assert_tool_error(exc, "INVALID_INPUT", "l1")
    with pytest.raises(ToolError) as exc:
        await call("pg_vector_create_index", {**base, "method": "ivfflat", "m": 8})
    assert_tool_error(exc, "INVALID_INPUT", "HNSW parameters")
    with pytest.raises(ToolError) as exc:
        await call("pg_vector_create_index", base, WRITER)
    assert_tool_error(exc, "FORBIDDEN")
    assert one(conn, "SELECT count(*) FROM pg_indexes WHERE schemaname = %s", vec) == before


async def test_performance_measures_recall_against_exact(call: Call, vec: str, conn: psycopg.Connection[Any]) -> None:
    conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS grid_l2 ON {}.grid USING hnsw (embedding vector_l2_ops)").format(
        sql.Identifier(vec)))
    out = await call("pg_vector_performance", {"table": f"{vec}.grid", "column": "embedding", "metric": "l2",
                                               "k": 5, "sampleSize": 5, "efSearch": 200})
    assert out["indexUsed"] == "grid_l2" and out["queries"] == 5 and out["rows"] == 200
    assert out["recall"] == {"mean": 1.0, "min": 1.0}
    assert out["latencyMs"]["index"]["p50"] > 0 and out["latencyMs"]["exact"]["p50"] > 0
    assert out["settings"] == {"hnsw.ef_search": "200"}
    with pytest.raises(ToolError) as exc:
        await call("pg_vector_performance", {"table": f"{vec}.grid", "column": "embedding", "vectors": [[1, 2]]})
    assert_tool_error(exc, "INVALID_INPUT", "2 dimensions", "has 8")


async def test_index_optimize_recommends_from_measurement(call: Call, vec: str,
                                                          conn: psycopg.Connection[Any]) -> None:
    conn.execute(sql.SQL("CREATE INDEX IF NOT EXISTS grid_l2 ON {}.grid USING hnsw (embedding vector_l2_ops)").format(
        sql.Identifier(vec)))
    out = await call("pg_vector_index_optimize", {"table": f"{vec}.grid", "column": "embedding", "metric": "l2",
                                                  "sampleSize": 5, "targetRecall": 0.9})
    assert out["rows"] == 200 and out["dimensions"] == 8
    rec = out["recommendation"]
    assert rec["method"] == "none" and rec["hnsw"]["m"] == 16 and rec["ivfflat"]["lists"] == 1
    assert out["measurements"] and out["measurements"][-1]["recall"] >= 0.9
    assert rec["hnsw"]["efSearch"] == out["measurements"][-1]["ef_search"]


# ---------------------------------------------------------------- clustering, projection


async def test_cluster_finds_separated_groups(call: Call, vec: str, conn: psycopg.Connection[Any]) -> None:
    conn.execute(sql.SQL("CREATE TABLE {}.blobs (id serial, embedding vector(2))").format(sql.Identifier(vec)))
    rng = random.Random(11)
    centres = [(0, 0), (10, 10), (-10, 10)]
    with conn.cursor() as cur:
        cur.executemany(sql.SQL("INSERT INTO {}.blobs (embedding) VALUES (%s::vector)").format(sql.Identifier(vec)),
                        [(str([cx + rng.gauss(0, 0.5), cy + rng.gauss(0, 0.5)]),) for cx, cy in centres
                         for _ in range(30)])
    args = {"table": f"{vec}.blobs", "column": "embedding", "k": 3, "seed": 5}
    out = await call("pg_vector_cluster", args)
    assert sorted(c["size"] for c in out["clusters"]) == [30, 30, 30] and out["sampled"] == 90
    found = sorted((round(c["centroid"][0]), round(c["centroid"][1])) for c in out["clusters"])
    assert found == sorted(centres)
    assert await call("pg_vector_cluster", args) == out
    with pytest.raises(ToolError) as exc:
        await call("pg_vector_cluster", {**args, "where": "id < 2"})
    assert_tool_error(exc, "INVALID_INPUT", "only 1 vectors")


async def test_dimension_reduce(call: Call, vec: str) -> None:
    rng = random.Random(2)
    vectors = [[rng.gauss(0, 1) for _ in range(64)] for _ in range(10)]
    out = await call("pg_vector_dimension_reduce", {"vectors": vectors, "targetDimensions": 32, "seed": 9})
    assert out["fromDimensions"] == 64 and len(out["vectors"]) == 10 and len(out["vectors"][0]) == 32
    assert 0.5 < out["distanceRatio"]["mean"] < 1.5
    assert await call("pg_vector_dimension_reduce", {"vectors": vectors, "targetDimensions": 32, "seed": 9}) == out
    rows = await call("pg_vector_dimension_reduce", {"table": f"{vec}.grid", "column": "embedding",
                                                     "targetDimensions": 3, "limit": 5})
    assert len(rows["rows"]) == 5 and len(rows["rows"][0]["vector"]) == 3 and "id" in rows["rows"][0]
    with pytest.raises(ToolError) as exc:
        await call("pg_vector_dimension_reduce", {"vectors": vectors, "targetDimensions": 64})
    assert_tool_error(exc, "INVALID_INPUT", "below")


# ---------------------------------------------------------------- code mode, extension lifecycle


async def test_code_mode_seed_names(call: Call, vec: str, conn: psycopg.Connection[Any]) -> None:
    code = f"""
      const near = await pg.vector.similaritySearch({{table: '{vec}.items', column: 'embedding',
                                                    vector: [1, 0, 0], limit: 2}});
      const idx = await pg.vector.createIndex({{table: '{vec}.items', column: 'embedding', metric: 'l2',
                                               name: 'items_code_idx'}});
      return {{ids: near.map(r => r.id), first: near[0].distance, index: idx.name, method: idx.method}};
    """
    out = await call("pg_execute_code", {"code": code, "readonly": False})
    assert out["success"] is True, out
    assert out["result"] == {"ids": [1, 2], "first": 0, "index": "items_code_idx", "method": "hnsw"}
    assert one(conn, "SELECT count(*) FROM pg_indexes WHERE schemaname = %s AND indexname = 'items_code_idx'",
               vec) == 1


VECTOR_DB = "pgcode_vector_noext"


@pytest.fixture
def bare_dsn(dsn: str) -> Iterator[str]:
    """A database of its own without pgvector (dropped afterwards)."""
    with psycopg.connect(dsn, autocommit=True) as c:
        if not one(c, "SELECT count(*) FROM pg_available_extensions WHERE name = 'vector'"):
            pytest.skip("this server does not ship pgvector")
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(VECTOR_DB)))
        c.execute(sql.SQL("CREATE DATABASE {} TEMPLATE template0").format(sql.Identifier(VECTOR_DB)))
    params = conninfo_to_dict(dsn)
    params["dbname"] = VECTOR_DB
    yield make_conninfo("", **params)
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(VECTOR_DB)))


@pytest.fixture
async def bare_rt(bare_dsn: str, settings: Settings) -> AsyncIterator[Runtime]:
    update = {"database_url": SecretStr(bare_dsn), "pool_max_size": 1, "pool_min_size": 1}
    async with Runtime(settings.model_copy(update=update)) as runtime:
        yield runtime


async def test_extension_created_after_the_pool_opened(bare_rt: Runtime, bare_dsn: str) -> None:
    """Without pgvector the pool works and the tools say so; once created, vectors come back as arrays on the
    connection that was opened before."""
    async def run(name: str, args: dict[str, Any]) -> Any:
        return await bare_rt.invoke(name, args, LOCAL_PRINCIPAL)

    assert (await run("pg_read_query", {"sql": "SELECT 1 AS one"}))["rows"] == [{"one": 1}]
    with psycopg.connect(bare_dsn, autocommit=True) as c:
        c.execute("CREATE TABLE t (id int)")
    with pytest.raises(ToolError) as exc:
        await run("pg_vector_search", {"table": "t", "column": "e", "vector": [1, 2]})
    err = assert_tool_error(exc, "EXTENSION_MISSING", "vector")
    assert err.hint and "pg_vector_create_extension" in err.hint
    out = await run("pg_vector_create_extension", {})
    assert out["created"] is True and out["version"]
    await run("pg_vector_add_column", {"table": "t", "column": "e", "dimensions": 2})
    await run("pg_vector_insert", {"table": "t", "column": "e", "vector": [1, 2], "data": {"id": 1}})
    rows = await run("pg_vector_search", {"table": "t", "column": "e", "vector": [1, 2], "includeVector": True})
    assert rows == [{"id": 1, "e": [1.0, 2.0], "distance": 0.0}]
    read = await run("pg_read_query", {"sql": "SELECT e FROM t"})
    assert read["rows"] == [{"e": [1.0, 2.0]}]
