"""Code-mode fixtures: `run` (pg_execute_code through invoke()), the pool of the session runtime, a demo database."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from pydantic import SecretStr

from pgcode.core.runtime import Runtime
from pgcode.settings import Settings
from pgcode.types import LOCAL_PRINCIPAL, Principal

Run = Callable[..., Awaitable[dict[str, Any]]]


@pytest.fixture
def run(rt: Runtime) -> Run:
    """`await run(code, readonly=..., timeout=..., input=...)`: the output object of pg_execute_code."""

    async def _run(code: str, principal: Principal = LOCAL_PRINCIPAL, **args: Any) -> dict[str, Any]:
        out: dict[str, Any] = await rt.invoke("pg_execute_code", {"code": code, **args}, principal)
        return out

    return _run


DEMO_DB = "pgcode_codemode_demo"


@pytest.fixture(scope="module")
def demo_dsn(dsn: str) -> Iterator[str]:
    """A database of its own on the test server, with the demo data set loaded (dropped afterwards)."""
    from pgcode.db.embedded import load_demo

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DEMO_DB)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DEMO_DB)))
    params = conninfo_to_dict(dsn)
    params["dbname"] = DEMO_DB
    url = make_conninfo("", **params)
    load_demo(url)
    yield url
    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(DEMO_DB)))


@pytest.fixture(scope="module")
async def demo_rt(demo_dsn: str, settings: Settings) -> AsyncIterator[Runtime]:
    async with Runtime(settings.model_copy(update={"database_url": SecretStr(demo_dsn)})) as runtime:
        yield runtime
