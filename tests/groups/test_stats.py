"""stats group: every tool against an independent computation (statistics, numpy) on generated data."""

from __future__ import annotations

import math
import random
import statistics
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

import numpy as np
import psycopg
import pytest
from psycopg import sql

from pgcode.core.runtime import Runtime
from pgcode.errors import ToolError
from pgcode.groups.stats import _tdist
from pgcode.types import Principal
from tests.fix_db import Call, assert_tool_error

pytestmark = pytest.mark.anyio

NOBODY = Principal("nobody", frozenset())
BASE = datetime(2024, 3, 1)
LABELS = ["low", "mid", "high", "lime"]


def _generate() -> list[dict[str, Any]]:
    rng = random.Random(6)
    rows = []
    for i in range(1, 241):
        x = None if i % 13 == 0 else round(rng.gauss(50, 10), 3)
        y = None if x is None or i % 17 == 0 else Decimal(str(round(2 * x + rng.gauss(0, 5), 4)))
        ts = BASE + timedelta(days=rng.choice([0, 1, 2, 3, 5, 6, 7, 8, 9]), minutes=rng.randint(0, 1439))
        rows.append({"id": i, "grp": "abc"[i % 3], "x": x, "y": y, "n": rng.randint(0, 9),
                     "label": None if i % 11 == 0 else rng.choice(LABELS), "ts": ts})
    return rows


ROWS = _generate()  # nothing on day 4: a gap in the time series
XS = [r["x"] for r in ROWS if r["x"] is not None]
NS = [r["n"] for r in ROWS]
PAIRS = [(r["x"], float(r["y"])) for r in ROWS if r["x"] is not None and r["y"] is not None]
SCORES = [(1, "a", 10), (2, "a", 20), (3, "a", 20), (4, "a", None), (5, "b", 5), (6, "b", 5), (7, "b", 7),
          (8, "b", 1), (9, "c", 3)]
OUTL = [*range(1, 21), 100, -50]


@pytest.fixture(scope="module")
def data(dsn: str, schema: str) -> str:
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(f"""
            CREATE DOMAIN {schema}.posint AS int CHECK (VALUE > 0);
            CREATE TABLE {schema}.measures (id int PRIMARY KEY, grp text, x float8, y numeric(12, 4), n int,
                                            label text, ts timestamp, d date, pos {schema}.posint);
            CREATE TABLE {schema}.empty (x float8, y float8, n int, ts timestamp, label text);
            CREATE TABLE {schema}.single (id int, x int, ts timestamp);
            INSERT INTO {schema}.single VALUES (1, 42, '2024-01-01 10:00');
            CREATE TABLE {schema}.same (x numeric);
            INSERT INTO {schema}.same VALUES (0.1), (0.1), (0.1);
            CREATE TABLE {schema}.scores (id int, grp text, score int);
            CREATE TABLE {schema}.outl (id int, v int);
            CREATE TABLE {schema}.docs (j json);
            INSERT INTO {schema}.docs VALUES ('{{"a": 1}}'), ('{{"a":1}}'), ('[1]'), (NULL);
            CREATE TABLE {schema}.events (at timestamptz);
            INSERT INTO {schema}.events VALUES ('2024-03-01 12:00+00'), ('2024-03-01 12:30+00'),
                                               ('2024-03-03 12:00+00');
            CREATE TABLE {schema}.victim (v text);
            INSERT INTO {schema}.victim VALUES ('still here');
        """)
        with c.cursor() as cur:
            cur.executemany(f"INSERT INTO {schema}.measures VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)",
                            [(r["id"], r["grp"], r["x"], r["y"], r["n"], r["label"], r["ts"], r["ts"].date(),
                              r["n"] + 1) for r in ROWS])
            cur.executemany(f"INSERT INTO {schema}.scores VALUES (%s, %s, %s)", SCORES)
            cur.executemany(f"INSERT INTO {schema}.outl VALUES (%s, %s)", list(enumerate(OUTL, 1)))
        c.execute(f"CREATE VIEW {schema}.measures_view AS SELECT * FROM {schema}.measures; ANALYZE {schema}.measures")
    return schema


def q(conn: psycopg.Connection[Any], query: Any, *params: Any) -> list[tuple[Any, ...]]:
    return conn.execute(query, params or None).fetchall()


def state(conn: psycopg.Connection[Any], schema: str) -> dict[str, Any]:
    rels = q(conn, "SELECT c.relname, c.relkind FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                   "WHERE n.nspname = %s ORDER BY 1", schema)
    out: dict[str, Any] = {"relations": rels}
    for name, kind in rels:
        if kind == "r":
            out[name] = q(conn, sql.SQL("SELECT t::text FROM {} t ORDER BY 1").format(sql.Identifier(schema, name)))
    return out


def approx(value: float | None, rel: float = 1e-9) -> Any:
    return None if value is None else pytest.approx(value, rel=rel, abs=1e-9)


# ---------------------------------------------------------------- pg_stats_descriptive


async def test_descriptive_matches_statistics(call: Call, data: str) -> None:
    out = await call("pg_stats_descriptive", {"table": f"{data}.measures", "column": "x"})
    assert out == {"column": "x", "rows": 240, "count": len(XS), "nulls": 240 - len(XS), "sum": approx(sum(XS)),
                   "min": min(XS), "max": max(XS), "range": approx(max(XS) - min(XS)), "mean": approx(
                       statistics.mean(XS)), "median": approx(statistics.median(XS)),
                   "stddev": approx(statistics.stdev(XS)), "variance": approx(statistics.variance(XS)),
                   "stddevPop": approx(statistics.pstdev(XS)), "variancePop": approx(statistics.pvariance(XS))}


async def test_descriptive_numeric_domain_and_where_with_percent(call: Call, data: str) -> None:
    ys = [float(r["y"]) for r in ROWS if r["y"] is not None and r["label"] and r["label"].startswith("l")]
    out = await call("pg_stats_descriptive", {"table": "measures", "schema": data, "column": "y",
                                              "where": "label LIKE 'l%'"})
    assert out["count"] == len(ys) and out["mean"] == approx(statistics.mean(ys))
    assert out["sum"] == approx(sum(ys)) and out["median"] == approx(statistics.median(ys))
    pos = await call("pg_stats_descriptive", {"table": f"{data}.measures", "column": "pos"})
    assert pos["sum"] == sum(NS) + 240 and pos["max"] == max(NS) + 1


async def test_descriptive_empty_and_single(call: Call, data: str) -> None:
    empty = await call("pg_stats_descriptive", {"table": f"{data}.empty", "column": "x"})
    assert empty["rows"] == 0 and empty["count"] == 0
    assert all(empty[k] is None for k in ("sum", "min", "max", "mean", "median", "stddev", "variance", "range"))
    single = await call("pg_stats_descriptive", {"table": f"{data}.single", "column": "x"})
    assert (single["count"], single["mean"], single["median"], single["stddev"], single["stddevPop"]) == (
        1, 42, 42, None, 0)


async def test_descriptive_refuses_non_numeric_columns(call: Call, conn: psycopg.Connection[Any], data: str) -> None:
    before = state(conn, data)
    for column, type_name in [("label", "text"), ("ts", "timestamp without time zone")]:
        with pytest.raises(ToolError) as exc:
            await call("pg_stats_descriptive", {"table": f"{data}.measures", "column": column})
        err = assert_tool_error(exc, "INVALID_INPUT", f'"{column}"', type_name, "not a numeric type")
        assert err.details == {"column": column, "type": type_name}
    for args, code in [({"table": f"{data}.measures", "column": "nope"}, "NOT_FOUND"),
                       ({"table": f"{data}.nope", "column": "x"}, "NOT_FOUND"),
                       ({"table": f"{data}.measures", "column": "x", "where": "1=1; DROP TABLE victim"},
                        "INVALID_INPUT"),
                       ({"table": f"{data}.measures", "column": "x",
                         "where": "id IN (WITH d AS (DELETE FROM victim RETURNING 1) SELECT 1 FROM d)"},
                        "INVALID_INPUT")]:
        with pytest.raises(ToolError) as exc:
            await call("pg_stats_descriptive", args)
        assert_tool_error(exc, code)
    assert state(conn, data) == before


# ---------------------------------------------------------------- pg_stats_percentiles


async def test_percentiles_continuous_and_discrete(call: Call, data: str) -> None:
    ps = [0, 0.1, 0.25, 0.5, 0.9, 0.99, 1]
    cont = await call("pg_stats_percentiles", {"table": f"{data}.measures", "column": "x", "percentiles": ps})
    assert cont["method"] == "continuous" and cont["count"] == len(XS)
    assert [p["value"] for p in cont["percentiles"]] == [approx(float(v)) for v in np.percentile(XS, [
        100 * p for p in ps], method="linear")]
    disc = await call("pg_stats_percentiles", {"table": f"{data}.measures", "column": "n", "percentiles": ps,
                                               "method": "discrete"})
    assert [p["value"] for p in disc["percentiles"]] == [int(v) for v in np.percentile(
        NS, [100 * p for p in ps], method="inverted_cdf")]
    quartiles = await call("pg_stats_percentiles", {"table": f"{data}.measures", "column": "y"})
    ys = [float(r["y"]) for r in ROWS if r["y"] is not None]
    assert [p["percentile"] for p in quartiles["percentiles"]] == [0.25, 0.5, 0.75]
    assert quartiles["percentiles"][1]["value"] == approx(statistics.median(ys))


async def test_percentiles_edges_and_refusals(call: Call, data: str) -> None:
    empty = await call("pg_stats_percentiles", {"table": f"{data}.empty", "column": "x", "percentiles": [0.5]})
    assert empty["count"] == 0 and empty["percentiles"] == [{"percentile": 0.5, "value": None}]
    single = await call("pg_stats_percentiles", {"table": f"{data}.single", "column": "x", "method": "discrete"})
    assert [p["value"] for p in single["percentiles"]] == [42, 42, 42]
    cases: list[dict[str, Any]] = [{"percentiles": [1.5]}, {"percentiles": []}, {"method": "nearest"},
                                   {"column": "label"}]
    for args in cases:
        with pytest.raises(ToolError) as exc:
            await call("pg_stats_percentiles", {"table": f"{data}.measures", "column": "x", **args})
        assert_tool_error(exc, "INVALID_INPUT")


# ---------------------------------------------------------------- pg_stats_correlation, pg_stats_regression


async def test_correlation_matches_statistics(call: Call, data: str) -> None:
    xs, ys = zip(*PAIRS, strict=True)
    out = await call("pg_stats_correlation", {"table": f"{data}.measures", "column1": "x", "column2": "y"})
    r = statistics.correlation(xs, ys)
    assert out["n"] == len(PAIRS) and out["correlation"] == approx(r) and out["rSquared"] == approx(r * r)
    assert out["covariance"] == approx(statistics.covariance(xs, ys))
    assert out["strength"] == "strong" and out["direction"] == "positive"
    weak = await call("pg_stats_correlation", {"table": f"{data}.measures", "column1": "x", "column2": "n"})
    r2 = statistics.correlation([r["x"] for r in ROWS if r["x"] is not None],
                                [r["n"] for r in ROWS if r["x"] is not None])
    assert weak["correlation"] == approx(r2) and weak["strength"] in ("none", "weak")


async def test_regression_matches_statistics(call: Call, data: str) -> None:
    xs, ys = zip(*PAIRS, strict=True)
    fit = statistics.linear_regression(xs, ys)
    out = await call("pg_stats_regression", {"table": f"{data}.measures", "xColumn": "x", "yColumn": "y"})
    assert out["slope"] == approx(fit.slope) and out["intercept"] == approx(fit.intercept)
    assert out["rSquared"] == approx(statistics.correlation(xs, ys) ** 2) and out["n"] == len(PAIRS)
    assert out["equation"] == f"y = {fit.slope:.6g}x {'+' if fit.intercept >= 0 else '-'} {abs(fit.intercept):.6g}"
    assert 1.9 < out["slope"] < 2.1  # y was generated as 2x + noise


async def test_correlation_and_regression_edges(call: Call, data: str) -> None:
    corr = await call("pg_stats_correlation", {"table": f"{data}.empty", "column1": "x", "column2": "y"})
    assert (corr["n"], corr["correlation"], corr["strength"], corr["direction"]) == (0, None, None, None)
    reg = await call("pg_stats_regression", {"table": f"{data}.single", "xColumn": "x", "yColumn": "id"})
    assert (reg["n"], reg["slope"], reg["equation"]) == (1, None, None)
    with pytest.raises(ToolError) as exc:
        await call("pg_stats_regression", {"table": f"{data}.measures", "xColumn": "x", "yColumn": "label"})
    assert_tool_error(exc, "INVALID_INPUT", "label", "text")


# ---------------------------------------------------------------- pg_stats_time_series


def _buckets(key: Callable[[datetime], datetime]) -> dict[datetime, list[dict[str, Any]]]:
    out: dict[datetime, list[dict[str, Any]]] = {}
    for r in ROWS:
        out.setdefault(key(r["ts"]), []).append(r)
    return dict(sorted(out.items()))


async def test_time_series_days_with_and_without_gaps(call: Call, data: str) -> None:
    days = _buckets(lambda ts: ts.replace(hour=0, minute=0))
    args = {"table": f"{data}.measures", "timeColumn": "ts", "valueColumn": "x"}
    out = await call("pg_stats_time_series", args)
    assert out["bucketing"] == "date_trunc('day')" and out["aggregation"] == "avg" and not out["gapsFilled"]
    expected = [{"bucket": b.isoformat(), "count": len(rs), "value": approx(statistics.mean(
        [r["x"] for r in rs if r["x"] is not None]))} for b, rs in days.items()]
    assert out["rows"] == expected and len(expected) == 9
    filled = await call("pg_stats_time_series", {**args, "fillGaps": True, "aggregation": "max"})
    assert len(filled["rows"]) == 10
    assert filled["rows"][4] == {"bucket": (BASE + timedelta(days=4)).isoformat(), "count": 0, "value": None}
    assert filled["rows"][0]["value"] == max(r["x"] for r in days[BASE] if r["x"] is not None)
    cut = await call("pg_stats_time_series", {**args, "fillGaps": True, "limit": 3})
    assert [r["bucket"][:10] for r in cut["rows"]] == ["2024-03-01", "2024-03-02", "2024-03-03"]
    assert cut["truncated"] is True


async def test_time_series_fixed_intervals_and_dates(call: Call, data: str) -> None:
    origin = datetime(2000, 1, 1)
    six = _buckets(lambda ts: origin + (ts - origin) // timedelta(hours=6) * timedelta(hours=6))
    out = await call("pg_stats_time_series", {"table": f"{data}.measures", "timeColumn": "ts",
                                              "interval": "6 hours"})
    assert out["bucketing"] == "date_bin('6 hours')" and out["aggregation"] is None
    assert [(r["bucket"], r["count"]) for r in out["rows"]] == [(b.isoformat(), len(rs)) for b, rs in six.items()]
    shifted = await call("pg_stats_time_series", {"table": f"{data}.measures", "timeColumn": "ts",
                                                  "interval": "1 day", "origin": "2024-03-01 12:00"})
    assert shifted["rows"][0]["bucket"] == "2024-02-29T12:00:00"
    months = await call("pg_stats_time_series", {"table": f"{data}.measures", "timeColumn": "d", "unit": "month",
                                                 "valueColumn": "n", "aggregation": "sum"})
    assert months["rows"] == [{"bucket": "2024-03-01T00:00:00", "count": 240, "value": sum(NS)}]
    counted = await call("pg_stats_time_series", {"table": f"{data}.measures", "timeColumn": "d", "unit": "year",
                                                  "valueColumn": "label", "aggregation": "count"})
    assert counted["rows"][0]["value"] == sum(1 for r in ROWS if r["label"] is not None)
    zoned = await call("pg_stats_time_series", {"table": f"{data}.events", "timeColumn": "at", "fillGaps": True})
    # Buckets follow the session time zone; UTC noon falls on the same date anywhere within 11 hours of UTC.
    assert [(r["bucket"][:10], r["count"]) for r in zoned["rows"]] == [
        ("2024-03-01", 2), ("2024-03-02", 0), ("2024-03-03", 1)]
    assert (await call("pg_stats_time_series", {"table": f"{data}.empty", "timeColumn": "ts",
                                                "fillGaps": True}))["rows"] == []


async def test_time_series_refusals(call: Call, data: str) -> None:
    base = {"table": f"{data}.measures", "timeColumn": "ts"}
    for args, fragment in [({"interval": "1 month"}, "shorter than a month"), ({"interval": "-1 hour"}, "positive"),
                           ({"interval": "banana"}, "interval"), ({"unit": "day", "interval": "1 hour"}, "not both"),
                           ({"origin": "2024-01-01"}, "origin"), ({"timeColumn": "x"}, "not a date"),
                           ({"valueColumn": "label"}, "not a numeric"), ({"unit": "fortnight"}, "unit")]:
        with pytest.raises(ToolError) as exc:
            await call("pg_stats_time_series", {**base, **args})
        assert_tool_error(exc, "INVALID_INPUT", fragment)


# ---------------------------------------------------------------- pg_stats_distribution


async def test_distribution_histogram_and_moments(call: Call, data: str) -> None:
    out = await call("pg_stats_distribution", {"table": f"{data}.measures", "column": "n", "buckets": 3})
    counts, edges = np.histogram(NS, bins=3, range=(min(NS), max(NS)))
    assert [(b["lower"], b["upper"], b["count"]) for b in out["buckets"]] == [
        (approx(float(edges[i])), approx(float(edges[i + 1])), int(counts[i])) for i in range(3)]
    arr = np.array(XS)
    dev = arr - arr.mean()
    m2, m3, m4 = (dev**2).mean(), (dev**3).mean(), (dev**4).mean()
    out = await call("pg_stats_distribution", {"table": f"{data}.measures", "column": "x", "buckets": 7})
    assert out["count"] == len(XS) and sum(b["count"] for b in out["buckets"]) == len(XS)
    assert [b["bucket"] for b in out["buckets"]] == list(range(1, 8))
    assert out["skewness"] == approx(float(m3 / m2**1.5), 1e-7) and out["kurtosis"] == approx(
        float(m4 / m2**2 - 3), 1e-7)
    assert out["mean"] == approx(statistics.mean(XS)) and out["stddev"] == approx(statistics.stdev(XS))
    assert out["buckets"][-1]["upper"] == max(XS) and out["buckets"][0]["lower"] == min(XS)


async def test_distribution_edges(call: Call, data: str) -> None:
    empty = await call("pg_stats_distribution", {"table": f"{data}.empty", "column": "x"})
    assert empty["count"] == 0 and empty["buckets"] == [] and empty["skewness"] is None
    same = await call("pg_stats_distribution", {"table": f"{data}.same", "column": "x"})
    assert same["buckets"] == [{"bucket": 1, "lower": 0.1, "upper": 0.1, "count": 3}]
    assert same["skewness"] is None and same["kurtosis"] is None
    empty_buckets = await call("pg_stats_distribution", {"table": f"{data}.outl", "column": "v", "buckets": 15})
    assert sum(b["count"] == 0 for b in empty_buckets["buckets"]) > 0  # empty buckets are listed too
    with pytest.raises(ToolError) as exc:
        await call("pg_stats_distribution", {"table": f"{data}.measures", "column": "x", "buckets": 0})
    assert_tool_error(exc, "INVALID_INPUT", "buckets")


# ---------------------------------------------------------------- pg_stats_hypothesis


def t_two_sided_by_integration(t: float, df: int) -> float:
    """1 - 2·∫0^|t| of Student's t density, by the trapezoid rule: independent of the incomplete beta."""
    grid = np.linspace(0.0, abs(t), 400_001)
    log_c = math.lgamma((df + 1) / 2) - math.lgamma(df / 2) - 0.5 * math.log(df * math.pi)
    density = np.exp(log_c - (df + 1) / 2 * np.log1p(grid**2 / df))
    return float(1 - 2 * np.trapezoid(density, grid))


def test_t_and_z_tails_match_tables() -> None:
    assert 2 * _tdist.t_sf(2.262157, 9) == pytest.approx(0.05, abs=1e-6)  # t(0.975, 9)
    assert 2 * _tdist.t_sf(4.604095, 4) == pytest.approx(0.01, abs=1e-6)  # t(0.995, 4)
    assert _tdist.t_sf(1.644854, 10_000) == pytest.approx(0.05, abs=1e-4)  # t tends to the normal
    assert _tdist.t_sf(-1.0, 3) == pytest.approx(1 - _tdist.t_sf(1.0, 3))
    for z in (-2.5, 0.0, 1.959964, 3.2):
        assert _tdist.z_sf(z) == pytest.approx(1 - statistics.NormalDist().cdf(z), abs=1e-12)


async def test_hypothesis_t_test(call: Call, data: str) -> None:
    n, mean, sd = len(XS), statistics.mean(XS), statistics.stdev(XS)
    t = (mean - 49) / (sd / math.sqrt(n))
    out = await call("pg_stats_hypothesis", {"table": f"{data}.measures", "column": "x", "hypothesizedMean": 49})
    assert (out["test"], out["n"], out["degreesOfFreedom"]) == ("t", n, n - 1)
    assert out["statistic"] == approx(t) and out["standardError"] == approx(sd / math.sqrt(n))
    assert out["pValue"] == pytest.approx(t_two_sided_by_integration(t, n - 1), abs=1e-8)
    assert out["significant"] is (out["pValue"] < 0.05)
    greater = await call("pg_stats_hypothesis", {"table": f"{data}.measures", "column": "x", "hypothesizedMean": 49,
                                                 "alternative": "greater"})
    less = await call("pg_stats_hypothesis", {"table": f"{data}.measures", "column": "x", "hypothesizedMean": 49,
                                              "alternative": "less"})
    two = out["pValue"]
    assert greater["pValue"] + less["pValue"] == pytest.approx(1.0)
    assert min(greater["pValue"], less["pValue"]) == pytest.approx(two / 2)
    far = await call("pg_stats_hypothesis", {"table": f"{data}.measures", "column": "x", "hypothesizedMean": 60,
                                             "alpha": 0.01})
    assert far["significant"] is True and far["conclusion"].startswith("reject the null hypothesis (mean = 60)")


async def test_hypothesis_z_test(call: Call, data: str) -> None:
    n, mean = len(XS), statistics.mean(XS)
    z = (mean - 51) / (10 / math.sqrt(n))
    out = await call("pg_stats_hypothesis", {"table": f"{data}.measures", "column": "x", "hypothesizedMean": 51,
                                             "test": "z", "populationStddev": 10})
    assert out["statistic"] == approx(z) and out["degreesOfFreedom"] is None
    assert out["pValue"] == pytest.approx(2 * (1 - statistics.NormalDist().cdf(abs(z))), abs=1e-12)
    single = await call("pg_stats_hypothesis", {"table": f"{data}.single", "column": "x", "hypothesizedMean": 40,
                                                "test": "z", "populationStddev": 1})
    assert single["statistic"] == approx(2.0) and single["n"] == 1


async def test_hypothesis_refusals(call: Call, data: str) -> None:
    cases: list[tuple[dict[str, Any], str]] = [
        ({"table": f"{data}.single"}, "at least 2"), ({"table": f"{data}.empty"}, "found 0"),
                           ({"table": f"{data}.same"}, "standard deviation is 0"),
                           ({"populationStddev": 2}, "z test"), ({"alpha": 1.5}, "alpha"),
                           ({"test": "chi2"}, "test"), ({"column": "label"}, "not a numeric")]
    for args, fragment in cases:
        with pytest.raises(ToolError) as exc:
            await call("pg_stats_hypothesis", {"table": f"{data}.measures", "column": "x", "hypothesizedMean": 0,
                                               **args})
        assert_tool_error(exc, "INVALID_INPUT", fragment)


# ---------------------------------------------------------------- pg_stats_sampling


async def test_sampling_random_is_repeatable_with_a_seed(call: Call, data: str) -> None:
    args = {"table": f"{data}.measures", "size": 10, "seed": 7, "returnColumns": ["id"]}
    first = await call("pg_stats_sampling", args)
    assert first["method"] == "ORDER BY random() LIMIT 10" and first["rowCount"] == 10 and first["truncated"]
    assert first["rows"] == (await call("pg_stats_sampling", args))["rows"]
    other = await call("pg_stats_sampling", {**args, "seed": 8})
    assert other["rows"] != first["rows"]
    assert len({r["id"] for r in first["rows"]}) == 10
    grp = await call("pg_stats_sampling", {**args, "returnColumns": ["grp"], "where": "grp = 'a'"})
    assert {r["grp"] for r in grp["rows"]} == {"a"}
    view = await call("pg_stats_sampling", {**args, "table": f"{data}.measures_view"})
    assert view["rowCount"] == 10


async def test_sampling_tablesample(call: Call, data: str) -> None:
    base = {"table": f"{data}.measures", "size": 10_000, "returnColumns": ["id"]}
    everything = await call("pg_stats_sampling", {**base, "method": "bernoulli", "percent": 100})
    assert sorted(r["id"] for r in everything["rows"]) == list(range(1, 241)) and not everything["truncated"]
    assert everything["method"] == "TABLESAMPLE BERNOULLI (100)"
    half = {**base, "method": "bernoulli", "percent": 50, "seed": 3}
    a, b = await call("pg_stats_sampling", half), await call("pg_stats_sampling", half)
    assert a["method"] == "TABLESAMPLE BERNOULLI (50) REPEATABLE (3)"
    assert sorted(r["id"] for r in a["rows"]) == sorted(r["id"] for r in b["rows"])
    assert 60 < a["rowCount"] < 180
    capped = await call("pg_stats_sampling", {**half, "size": 5})
    assert capped["rowCount"] == 5 and capped["truncated"] is True
    system = await call("pg_stats_sampling", {**base, "method": "system", "percent": 100})
    assert system["rowCount"] == 240 and system["method"] == "TABLESAMPLE SYSTEM (100)"
    assert (await call("pg_stats_sampling", {"table": f"{data}.empty", "method": "system"}))["rows"] == []
    with pytest.raises(ToolError) as exc:
        await call("pg_stats_sampling", {**base, "table": f"{data}.measures_view", "method": "system"})
    assert_tool_error(exc, "INVALID_INPUT", "view")
    with pytest.raises(ToolError) as exc:
        await call("pg_stats_sampling", {**base, "percent": 0})
    assert_tool_error(exc, "INVALID_INPUT", "percent")


# ---------------------------------------------------------------- window tools


def _partitions(order: Callable[[tuple[Any, ...]], Any]) -> dict[str, list[tuple[Any, ...]]]:
    out: dict[str, list[tuple[Any, ...]]] = {}
    for row in sorted(SCORES, key=order):
        out.setdefault(row[1], []).append(row)
    return dict(sorted(out.items()))


def _asc_nulls_last(row: tuple[Any, ...]) -> tuple[Any, ...]:
    return (row[2] is None, row[2] or 0, row[0])


def by_id(out: dict[str, Any], key: str) -> dict[int, Any]:
    return {r["id"]: r[key] for r in out["rows"]}


async def test_row_number_in_partitions(call: Call, data: str) -> None:
    out = await call("pg_stats_row_number", {"table": f"{data}.scores", "orderBy": ["score", "id"],
                                             "partitionBy": ["grp"]})
    expected = [(row[0], i) for rows in _partitions(_asc_nulls_last).values() for i, row in enumerate(rows, 1)]
    assert [(r["id"], r["row_number"]) for r in out["rows"]] == expected
    assert set(out["rows"][0]) == {"id", "grp", "score", "row_number"}
    flat = await call("pg_stats_row_number", {"table": f"{data}.scores", "returnColumns": ["id"], "limit": 4,
                                              "orderBy": [{"column": "score", "direction": "desc", "nulls": "last"},
                                                          {"column": "id", "direction": "desc"}]})
    assert flat["rows"] == [{"id": 3, "row_number": 1}, {"id": 2, "row_number": 2}, {"id": 1, "row_number": 3},
                            {"id": 7, "row_number": 4}]
    assert flat["truncated"] is True


@pytest.mark.parametrize("method", ["rank", "dense_rank", "percent_rank"])
async def test_rank_methods_with_ties(call: Call, data: str, method: str) -> None:
    out = await call("pg_stats_rank", {"table": f"{data}.scores", "partitionBy": ["grp"], "method": method,
                                       "orderBy": [{"column": "score", "direction": "desc"}]})
    expected: dict[int, float] = {}
    for rows in _partitions(lambda r: (r[2] is not None, -(r[2] or 0))).values():  # DESC: NULLs first
        keys = [row[2] for row in rows]
        for row in rows:
            rank = 1 + sum(1 for k in keys if (k is None and row[2] is not None) or
                           (k is not None and row[2] is not None and k > row[2]))
            dense = 1 + len({k for k in keys if (k is None and row[2] is not None) or
                             (k is not None and row[2] is not None and k > row[2])})
            value = {"rank": rank, "dense_rank": dense,
                     "percent_rank": (rank - 1) / (len(rows) - 1) if len(rows) > 1 else 0.0}[method]
            expected[row[0]] = value
    assert by_id(out, "rank") == expected and out["method"] == method
    if method == "rank":
        assert expected == {4: 1, 2: 2, 3: 2, 1: 4, 7: 1, 5: 2, 6: 2, 8: 4, 9: 1}


async def test_lag_lead_offsets_and_defaults(call: Call, data: str) -> None:
    args = {"table": f"{data}.scores", "column": "score", "orderBy": ["id"], "partitionBy": ["grp"]}
    lag = await call("pg_stats_lag_lead", {**args, "default": -1})
    expected = {row[0]: (rows[i - 1][2] if i else -1) for rows in _partitions(lambda r: r[0]).values()
                for i, row in enumerate(rows)}
    assert by_id(lag, "lag") == expected and lag["mode"] == "lag"
    lead = await call("pg_stats_lag_lead", {**args, "mode": "lead", "offset": 2, "partitionBy": None})
    ordered = [row[2] for row in sorted(SCORES)]
    assert [r["lead"] for r in lead["rows"]] == [*ordered[2:], None, None]
    with pytest.raises(ToolError) as exc:
        await call("pg_stats_lag_lead", {**args, "default": "not a number"})
    assert_tool_error(exc, "INVALID_INPUT", "integer")


async def test_running_total_and_moving_average(call: Call, data: str) -> None:
    total = await call("pg_stats_running_total", {"table": f"{data}.scores", "column": "score", "orderBy": ["id"],
                                                  "partitionBy": ["grp"]})
    expected: dict[int, int | None] = {}
    for rows in _partitions(lambda r: r[0]).values():
        acc: int | None = None
        for row in rows:
            acc = acc if row[2] is None else (acc or 0) + row[2]
            expected[row[0]] = acc
    assert by_id(total, "running_total") == expected
    moving = await call("pg_stats_moving_avg", {"table": f"{data}.scores", "column": "score", "orderBy": ["id"],
                                                "windowSize": 3})
    scores = [row[2] for row in sorted(SCORES)]
    for i, row in enumerate(moving["rows"]):
        window = [s for s in scores[max(0, i - 2):i + 1] if s is not None]
        assert row["moving_avg"] == approx(statistics.mean(window)) and row["window_count"] == len(window)
    assert moving["windowSize"] == 3
    with pytest.raises(ToolError) as exc:
        await call("pg_stats_moving_avg", {"table": f"{data}.scores", "column": "grp", "orderBy": ["id"]})
    assert_tool_error(exc, "INVALID_INPUT", "grp", "text")


async def test_ntile_bucket_sizes(call: Call, data: str) -> None:
    out = await call("pg_stats_ntile", {"table": f"{data}.scores", "orderBy": ["id"], "buckets": 4})
    assert [r["ntile"] for r in out["rows"]] == [1, 1, 1, 2, 2, 3, 3, 4, 4]  # 9 rows: 3, 2, 2, 2
    parted = await call("pg_stats_ntile", {"table": f"{data}.scores", "orderBy": ["id"], "buckets": 2,
                                           "partitionBy": ["grp"]})
    assert by_id(parted, "ntile") == {1: 1, 2: 1, 3: 2, 4: 2, 5: 1, 6: 1, 7: 2, 8: 2, 9: 1}


async def test_window_tools_on_empty_tables_and_without_order(call: Call, data: str) -> None:
    for tool, extra in [("pg_stats_row_number", {}), ("pg_stats_rank", {}), ("pg_stats_ntile", {}),
                        ("pg_stats_lag_lead", {"column": "x"}), ("pg_stats_running_total", {"column": "x"}),
                        ("pg_stats_moving_avg", {"column": "x"})]:
        out = await call(tool, {"table": f"{data}.empty", "orderBy": ["x"], **extra})
        assert out["rows"] == [] and out["truncated"] is False
        with pytest.raises(ToolError) as exc:
            await call(tool, {"table": f"{data}.empty", "orderBy": [], **extra})
        assert_tool_error(exc, "INVALID_INPUT", "orderBy")


# ---------------------------------------------------------------- pg_stats_outliers


async def test_outliers_iqr(call: Call, data: str) -> None:
    q1, q3 = (float(v) for v in np.percentile(OUTL, [25, 75], method="linear"))
    lo, hi = q1 - 1.5 * (q3 - q1), q3 + 1.5 * (q3 - q1)
    out = await call("pg_stats_outliers", {"table": f"{data}.outl", "column": "v"})
    assert (out["q1"], out["q3"], out["lowerBound"], out["upperBound"]) == (approx(q1), approx(q3), approx(lo),
                                                                           approx(hi))
    assert [(r["value"], r["side"]) for r in out["rows"]] == [(100, "high"), (-50, "low")]  # most extreme first
    assert (out["outliers"], out["low"], out["high"]) == (2, 1, 1)
    assert out["rows"][0]["beyond"] == approx(100 - hi)


async def test_outliers_zscore(call: Call, data: str) -> None:
    mean, sd = statistics.mean(OUTL), statistics.stdev(OUTL)
    out = await call("pg_stats_outliers", {"table": f"{data}.outl", "column": "v", "method": "zscore",
                                           "threshold": 2, "returnColumns": ["id"]})
    flagged = sorted((v for v in OUTL if abs(v - mean) / sd > 2), key=lambda v: -abs(v - mean))
    assert [r["value"] for r in out["rows"]] == flagged and out["mean"] == approx(mean)
    assert out["rows"][0] == {"id": 21, "value": 100, "side": "high", "zscore": approx((100 - mean) / sd)}
    one = await call("pg_stats_outliers", {"table": f"{data}.outl", "column": "v", "threshold": 0.1, "limit": 1})
    assert one["rowCount"] == 1 and one["truncated"] is True and one["outliers"] > 1
    for table in ("empty", "same"):
        out = await call("pg_stats_outliers", {"table": f"{data}.{table}", "column": "x", "method": "zscore"})
        assert out["rows"] == [] and out["outliers"] == 0


# ---------------------------------------------------------------- pg_stats_top_n


async def test_top_n_overall_per_group_and_with_ties(call: Call, data: str) -> None:
    top = await call("pg_stats_top_n", {"table": f"{data}.measures", "column": "x", "n": 5,
                                        "returnColumns": ["id", "x"]})
    assert [r["x"] for r in top["rows"]] == sorted(XS, reverse=True)[:5] and [r["rank"] for r in top["rows"]] == [
        1, 2, 3, 4, 5]
    bottom = await call("pg_stats_top_n", {"table": f"{data}.measures", "column": "x", "n": 2, "direction": "asc",
                                           "returnColumns": ["x"]})
    assert [r["x"] for r in bottom["rows"]] == sorted(XS)[:2]
    per = await call("pg_stats_top_n", {"table": f"{data}.measures", "column": "x", "n": 2, "partitionBy": ["grp"],
                                        "returnColumns": ["grp", "x"]})
    expected = [(g, x) for g in "abc" for x in sorted((r["x"] for r in ROWS if r["grp"] == g and r["x"] is not None),
                                                      reverse=True)[:2]]
    assert [(r["grp"], r["x"]) for r in per["rows"]] == expected
    ties = await call("pg_stats_top_n", {"table": f"{data}.measures", "column": "n", "n": 1, "withTies": True,
                                         "returnColumns": ["id"]})
    assert sorted(r["id"] for r in ties["rows"]) == [r["id"] for r in ROWS if r["n"] == max(NS)]
    capped = await call("pg_stats_top_n", {"table": f"{data}.measures", "column": "n", "n": 1, "withTies": True,
                                           "limit": 2})
    assert capped["rowCount"] == 2 and capped["truncated"] is True


# ---------------------------------------------------------------- pg_stats_distinct, pg_stats_frequency


async def test_distinct_values_and_counts(call: Call, data: str) -> None:
    counts = Counter(r["label"] for r in ROWS)
    out = await call("pg_stats_distinct", {"table": f"{data}.measures", "column": "label"})
    assert out["values"] == [{"value": v, "count": counts[v]} for v in [*sorted(LABELS), None]]
    assert (out["distinctCount"], out["hasNull"], out["truncated"]) == (4, True, False)
    by_count = await call("pg_stats_distinct", {"table": f"{data}.measures", "column": "n", "sort": "count",
                                                "direction": "desc", "limit": 3})
    ncounts = Counter(NS)
    assert [v["count"] for v in by_count["values"]] == sorted(ncounts.values(), reverse=True)[:3]
    assert by_count["truncated"] is True and by_count["distinctCount"] == len(ncounts) and not by_count["hasNull"]
    docs = await call("pg_stats_distinct", {"table": f"{data}.docs", "column": "j", "sort": "count",
                                            "direction": "desc"})
    assert docs["values"] == [{"value": {"a": 1}, "count": 2}, {"value": [1], "count": 1},
                              {"value": None, "count": 1}]  # json compared as jsonb: spacing does not matter
    freq = await call("pg_stats_frequency", {"table": f"{data}.docs", "column": "j"})
    assert [r["count"] for r in freq["rows"]] == [2, 1, 1]
    empty = await call("pg_stats_distinct", {"table": f"{data}.empty", "column": "label"})
    assert (empty["values"], empty["distinctCount"], empty["hasNull"]) == ([], 0, False)


async def test_frequency_percentages(call: Call, data: str) -> None:
    counts = Counter(r["label"] for r in ROWS)
    out = await call("pg_stats_frequency", {"table": f"{data}.measures", "column": "label"})
    ordered = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0] is None, kv[0] or ""))
    running = 0
    for row, (value, count) in zip(out["rows"], ordered, strict=True):
        running += count
        assert row == {"value": value, "count": count, "percent": approx(round(100 * count / 240, 4)),
                       "cumulativePercent": approx(round(100 * running / 240, 4))}
    assert out["rows"][-1]["cumulativePercent"] == 100
    assert (out["distinctValues"], out["totalRows"]) == (5, 240)
    single = await call("pg_stats_frequency", {"table": f"{data}.single", "column": "x"})
    assert single["rows"] == [{"value": 42, "count": 1, "percent": 100, "cumulativePercent": 100}]


# ---------------------------------------------------------------- pg_stats_summary


async def test_summary_of_several_columns(call: Call, data: str) -> None:
    out = await call("pg_stats_summary", {"table": f"{data}.measures", "columns": ["x", "n"]})
    assert out["rows"] == 240
    x, n = out["columns"]
    assert x == {"column": "x", "type": "double precision", "count": len(XS), "nulls": 240 - len(XS),
                 "mean": approx(statistics.mean(XS)), "min": min(XS), "max": max(XS),
                 "stddev": approx(statistics.stdev(XS)), "sum": approx(sum(XS))}
    assert (n["mean"], n["sum"], n["type"]) == (approx(statistics.mean(NS)), sum(NS), "integer")
    every = await call("pg_stats_summary", {"table": f"{data}.measures", "where": "grp = 'a'"})
    assert [c["column"] for c in every["columns"]] == ["id", "x", "y", "n", "pos"]
    assert every["rows"] == sum(1 for r in ROWS if r["grp"] == "a")
    assert (await call("pg_stats_summary", {"table": f"{data}.empty", "columns": ["x"]}))["columns"][0]["count"] == 0
    with pytest.raises(ToolError) as exc:
        await call("pg_stats_summary", {"table": f"{data}.measures", "columns": ["x", "label"]})
    assert_tool_error(exc, "INVALID_INPUT", "label", "text")


# ---------------------------------------------------------------- every tool: identifiers, scope


_CYRILLIC = str.maketrans("aceopxyi", "\u0430\u0441\u0435\u043e\u0440\u0445\u0443\u0456")


def _lookalike(name: str) -> str:
    """The name with Latin letters swapped for Cyrillic or full-width twins: a different identifier."""
    twin = name.translate(_CYRILLIC)
    return twin if twin != name else name.translate({ord(c): ord(c) + 0xFEE0 for c in "bdghlmnrstw"})


def _evil(name: str) -> list[str]:
    return [f'{name}"; DROP TABLE victim; --', f"{name}); DROP TABLE victim; --", f"{name} /* c */",
            f"{name} -- c", f'"{name}"', f"{name}'", _lookalike(name), f"{name};", f"{name}\x00",
            f"{name} DESC"]


def _tools(schema: str) -> list[tuple[str, dict[str, Any], list[str]]]:
    m = {"table": "measures", "schema": schema}
    w = {**m, "orderBy": [{"column": "id"}], "partitionBy": ["grp"], "returnColumns": ["id"], "limit": 2}
    wpaths = ["orderBy.0.column", "partitionBy.0", "returnColumns.0"]
    return [
        ("pg_stats_descriptive", {**m, "column": "x"}, ["column"]),
        ("pg_stats_percentiles", {**m, "column": "x"}, ["column"]),
        ("pg_stats_correlation", {**m, "column1": "x", "column2": "y"}, ["column1", "column2"]),
        ("pg_stats_regression", {**m, "xColumn": "x", "yColumn": "y"}, ["xColumn", "yColumn"]),
        ("pg_stats_time_series", {**m, "timeColumn": "ts", "valueColumn": "x"}, ["timeColumn", "valueColumn"]),
        ("pg_stats_distribution", {**m, "column": "x"}, ["column"]),
        ("pg_stats_hypothesis", {**m, "column": "x", "hypothesizedMean": 50}, ["column"]),
        ("pg_stats_sampling", {**m, "size": 2, "returnColumns": ["id"]}, ["returnColumns.0"]),
        ("pg_stats_row_number", w, wpaths),
        ("pg_stats_rank", w, wpaths),
        ("pg_stats_lag_lead", {**w, "column": "x"}, ["column", *wpaths]),
        ("pg_stats_running_total", {**w, "column": "x"}, ["column", *wpaths]),
        ("pg_stats_moving_avg", {**w, "column": "x"}, ["column", *wpaths]),
        ("pg_stats_ntile", w, wpaths),
        ("pg_stats_outliers", {**m, "column": "x", "returnColumns": ["id"], "limit": 2}, ["column", "returnColumns.0"]),
        ("pg_stats_top_n", {**m, "column": "x", "partitionBy": ["grp"], "returnColumns": ["id"]},
         ["column", "partitionBy.0", "returnColumns.0"]),
        ("pg_stats_distinct", {**m, "column": "label"}, ["column"]),
        ("pg_stats_frequency", {**m, "column": "label"}, ["column"]),
        ("pg_stats_summary", {**m, "columns": ["x", "n"]}, ["columns.1"]),
    ]


def _get(args: dict[str, Any], path: str) -> str:
    value: Any = args
    for part in path.split("."):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return str(value)


def _with(args: dict[str, Any], path: str, value: str) -> dict[str, Any]:
    out = {k: (list(v) if isinstance(v, list) else v) for k, v in args.items()}
    key, *rest = path.split(".")
    if not rest:
        out[key] = value
    elif len(rest) == 1:
        out[key][int(rest[0])] = value
    else:
        out[key][int(rest[0])] = {**out[key][int(rest[0])], rest[1]: value}
    return out


async def test_every_identifier_argument_resists_injection(call: Call, conn: psycopg.Connection[Any],
                                                           data: str) -> None:
    """Each evil name is a name that does not exist (NOT_FOUND) or is refused (INVALID_INPUT); nothing changes."""
    before = state(conn, data)
    tools = _tools(data)
    assert len({t for t, _, _ in tools}) == 19
    for tool, args, paths in tools:
        await call(tool, args)  # the base arguments are valid
        for path in ["table", "schema", *paths]:
            for evil in _evil(_get(args, path)):
                with pytest.raises(ToolError) as exc:
                    await call(tool, _with(args, path, evil))
                assert exc.value.code.value in ("NOT_FOUND", "INVALID_INPUT"), (tool, path, evil, exc.value)
        with pytest.raises(ToolError) as exc:
            await call(tool, {**args, "where": "true; DROP TABLE victim"})
        assert_tool_error(exc, "INVALID_INPUT")
    assert state(conn, data) == before


async def test_the_group_is_complete_read_only_and_scoped(call: Call, rt: Runtime) -> None:
    specs = [s for s in rt.registry if s.group == "stats"]
    assert len(specs) == 19 and all(s.effect.value == "read" for s in specs)
    for spec in specs:
        with pytest.raises(ToolError) as exc:
            await call(spec.name, {}, principal=NOBODY)
        assert_tool_error(exc, "FORBIDDEN", "read")
