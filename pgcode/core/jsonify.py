"""Turn database values into plain JSON: ISO dates, numbers (big ones as strings), base64 bytea."""

from __future__ import annotations

import base64
import datetime as dt
import enum
import ipaddress
import math
import uuid
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from psycopg.types.range import Range

MAX_SAFE_INT = 2**53 - 1  # JavaScript numbers lose precision beyond this


def to_json(value: Any) -> Any:
    """Return `value` as something json.dumps accepts without losing meaning."""
    kind = type(value)  # the exact built-in types of most rows first: a tool's result passes here whole
    if kind is str or kind is bool or value is None:
        return value
    if kind is dict:
        return {k if type(k) is str else str(k): to_json(v) for k, v in value.items()}
    if kind is list:
        return [to_json(v) for v in value]
    if kind is int:
        return value if -MAX_SAFE_INT <= value <= MAX_SAFE_INT else str(value)
    if isinstance(value, bool | str):
        return value
    if isinstance(value, int):
        return value if -MAX_SAFE_INT <= value <= MAX_SAFE_INT else str(value)
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, Mapping):
        return {str(k): to_json(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [to_json(v) for v in value]
    if isinstance(value, Decimal):
        return _decimal(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, uuid.UUID | ipaddress.IPv4Address | ipaddress.IPv6Address
                  | ipaddress.IPv4Network | ipaddress.IPv6Network
                  | ipaddress.IPv4Interface | ipaddress.IPv6Interface):
        return str(value)
    if isinstance(value, enum.Enum):
        return to_json(value.value)
    if isinstance(value, Range):
        return {"lower": to_json(value.lower), "upper": to_json(value.upper), "bounds": value.bounds,
                "empty": value.isempty}
    to_list = getattr(value, "to_list", None)  # pgvector Vector/HalfVector
    if callable(to_list):
        return to_json(to_list())
    geo = getattr(value, "__geo_interface__", None)  # shapely geometries
    if geo is not None:
        return to_json(geo)
    return str(value)


def _decimal(value: Decimal) -> int | float | str:
    if not value.is_finite():
        return str(value)
    if value == value.to_integral_value():
        as_int = int(value)
        return as_int if -MAX_SAFE_INT <= as_int <= MAX_SAFE_INT else str(as_int)
    as_float = float(value)
    # Keep the exact text when a float would change the digits the database returned.
    return as_float if Decimal(repr(as_float)) == value else str(value)
