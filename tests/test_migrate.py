"""pgcode's own schema is created and migrated by pgcode, once, and a read-only server skips it."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from pgcode.core.runtime import Runtime
from pgcode.db.migrate import migrate, migration_files
from pgcode.settings import Settings

pytestmark = pytest.mark.anyio


async def test_every_migration_is_recorded_once(rt: Runtime, conn: psycopg.Connection[Any]) -> None:
    assert rt.schema_ready is True
    recorded = [r[0] for r in conn.execute("SELECT name FROM pgcode.migrations ORDER BY name").fetchall()]
    assert [name for name, _ in migration_files()] == [name for name in recorded if name in dict(migration_files())]
    assert len(recorded) == len(set(recorded))
    assert await migrate(rt.db) == []  # a second run applies nothing


async def test_read_only_server_does_not_touch_the_schema(dsn: str) -> None:
    async with Runtime(Settings(database_url=dsn, read_only=True)) as ro:
        assert ro.schema_ready is False
