"""Database fixtures: a real PostgreSQL (the PG 15 test cluster or the embedded PG 18), never a mock.

TEST_DATABASE_URL names the server (scripts/test-postgres.sh env prints it); PGCODE_TEST_SERVER=embedded
runs the suite against the embedded PostgreSQL 18 instead. With neither, the run fails at startup.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql

from pgcode.core.runtime import Runtime
from pgcode.errors import ToolError
from pgcode.settings import Settings
from pgcode.types import LOCAL_PRINCIPAL, Principal

_EMBEDDED: dict[str, Any] = {}


def _test_dsn() -> str:
    if os.environ.get("PGCODE_TEST_SERVER") == "embedded":
        if "url" not in _EMBEDDED:
            from pgcode.db import embedded

            data_dir = Path(os.environ.get("PGCODE_TEST_EMBEDDED_DIR") or tempfile.mkdtemp(prefix="pgcode-emb-"))
            srv, demo_url = embedded.start(data_dir)
            _EMBEDDED.update(server=srv, url=demo_url)
        return str(_EMBEDDED["url"])
    dsn = os.environ.get("TEST_DATABASE_URL")
    if not dsn:
        raise pytest.UsageError(
            'no test database: run `eval "$(scripts/test-postgres.sh env)"` after `scripts/test-postgres.sh up`, '
            "or set PGCODE_TEST_SERVER=embedded")
    return dsn


@pytest.fixture(scope="session")
def dsn() -> str:
    return _test_dsn()


def pytest_report_header(config: pytest.Config) -> list[str]:
    try:
        with psycopg.connect(_test_dsn(), connect_timeout=5) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            exts = conn.execute("SELECT string_agg(extname || ' ' || extversion, ', ' ORDER BY extname) "
                                "FROM pg_extension").fetchone()
    except psycopg.Error as exc:
        raise pytest.UsageError(f"the test database is not reachable: {exc}") from None
    return [f"postgresql: {version[0] if version else '?'}", f"extensions: {exts[0] if exts else ''}"]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "pg(spec): run only where the server version matches, e.g. pg('>= 16')")


def _server_version(dsn: str) -> int:
    with psycopg.connect(dsn) as conn:
        row = conn.execute("SELECT current_setting('server_version_num')::int").fetchone()
        assert row is not None
        return int(row[0])


@pytest.fixture(autouse=True)
def _pg_version_marker(request: pytest.FixtureRequest) -> None:
    marker = request.node.get_closest_marker("pg")
    if marker is None:
        return
    m = re.fullmatch(r"\s*(>=|<=|<|>|==)\s*(\d+)\s*", marker.args[0])
    assert m, f"bad pg marker {marker.args[0]!r}"
    op, major = m.group(1), int(m.group(2)) * 10000
    version = _server_version(request.getfixturevalue("dsn"))
    ok = {">=": version >= major, "<=": version < major + 10000, "<": version < major,
          ">": version >= major + 10000, "==": major <= version < major + 10000}[op]
    if not ok:
        pytest.skip(f"needs PostgreSQL {marker.args[0]}; this server is {version}")


@pytest.fixture(scope="session")
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture(scope="session")
def settings(dsn: str) -> Settings:
    # The suite makes thousands of calls as one principal: rate limits are tested on runtimes of their own.
    unlimited = "1000000/minute"
    return Settings(database_url=dsn, pool_max_size=8, tx_idle_timeout_s=60, rate_limit_read=unlimited,
                    rate_limit_write=unlimited, rate_limit_admin=unlimited, rate_limit_code=unlimited)


@pytest.fixture(scope="session")
async def rt(settings: Settings) -> AsyncIterator[Runtime]:
    async with Runtime(settings) as runtime:
        yield runtime


@pytest.fixture
def conn(dsn: str) -> Iterator[psycopg.Connection[Any]]:
    """A plain autocommit connection for setting up and checking state behind the tools' backs."""
    with psycopg.connect(dsn, autocommit=True) as c:
        yield c


@pytest.fixture(scope="module")
def schema(dsn: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A schema of the test module's own, dropped afterwards."""
    name = "t_" + request.module.__name__.rsplit(".", 1)[-1].removeprefix("test_")
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(sql.SQL("DROP SCHEMA IF EXISTS {0} CASCADE; CREATE SCHEMA {0}").format(sql.Identifier(name)))
    yield name
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(name)))


Call = Callable[..., Awaitable[Any]]


@pytest.fixture
def call(rt: Runtime) -> Call:
    """`await call("pg_x", {...})` runs a tool through invoke() as the local (admin) principal."""

    async def _call(name: str, args: dict[str, Any] | None = None, principal: Principal = LOCAL_PRINCIPAL,
                    **kw: Any) -> Any:
        return await rt.invoke(name, args or {}, principal, **kw)

    return _call


def assert_tool_error(exc: BaseException | pytest.ExceptionInfo[Any], code: str, *fragments: str) -> ToolError:
    """Check the one error shape: a ToolError with `code`, a message containing each fragment."""
    err = exc.value if isinstance(exc, pytest.ExceptionInfo) else exc
    assert isinstance(err, ToolError), f"expected ToolError, got {err!r}"
    assert err.code.value == code, f"expected {code}, got {err.code.value}: {err.message}"
    for fragment in fragments:
        assert fragment.lower() in err.message.lower(), f"{fragment!r} not in {err.message!r}"
    body = err.to_dict()
    assert set(body) <= {"code", "message", "hint", "details"} and body["message"]
    return err


def table_rows(conn: psycopg.Connection[Any], query: str, *params: Any) -> list[tuple[Any, ...]]:
    return conn.execute(query, params or None).fetchall()
