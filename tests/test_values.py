"""Database values come back as plain JSON: ISO dates, numbers, big numbers as strings, base64, arrays."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.fix_db import Call

pytestmark = pytest.mark.anyio


async def test_values_are_plain_json(call: Call) -> None:
    out = await call("pg_read_query", {"sql": (
        "SELECT '[1,2,3]'::vector AS v, interval '2 hours' AS i, 12345678901234567890::numeric AS big, "
        "1.25::numeric AS n, 7::numeric AS whole, '\\x0102'::bytea AS b, "
        "'00000000-0000-0000-0000-000000000001'::uuid AS u, timestamptz '2025-01-02 03:04:05+00' AS ts, "
        "date '2025-01-02' AS d, 9007199254740993::bigint AS huge, '{\"a\": [1, null]}'::jsonb AS j, "
        "ARRAY[1, 2] AS arr, 'NaN'::float8 AS nan, int4range(1, 5) AS r, '10.0.0.1'::inet AS ip")})
    row: dict[str, Any] = out["rows"][0]
    assert row == {
        "v": [1.0, 2.0, 3.0], "i": 7200.0, "big": "12345678901234567890", "n": 1.25, "whole": 7, "b": "AQI=",
        "u": "00000000-0000-0000-0000-000000000001", "ts": "2025-01-02T03:04:05+00:00", "d": "2025-01-02",
        "huge": "9007199254740993", "j": {"a": [1, None]}, "arr": [1, 2], "nan": "nan",
        "r": {"lower": 1, "upper": 5, "bounds": "[)", "empty": False}, "ip": "10.0.0.1"}
    json.dumps(out, allow_nan=False)  # strictly valid JSON: no NaN/Infinity literals
