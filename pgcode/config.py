"""Settings from PGCODE_* environment variables, validated by pydantic."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, SecretStr

_LIBPQ_VARS = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER", "PGSERVICE")


def _default_data_home() -> Path:
    return Path(os.environ.get("XDG_DATA_HOME") or Path.home() / ".local" / "share") / "pgcode"


class Settings(BaseModel):
    """Everything pgcode reads from its environment; secrets stay SecretStr."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    database_url: SecretStr | None = Field(
        None, description="libpq connection string or URL; None means use the embedded demo server"
    )
    read_only: bool = Field(False, description="expose and run only tools whose effect is read")
    statement_timeout_ms: int = Field(30_000, ge=100, le=3_600_000)
    pool_min_size: int = Field(1, ge=0, le=100)
    pool_max_size: int = Field(10, ge=1, le=200)
    pool_timeout_s: float = Field(10.0, gt=0)
    tx_idle_timeout_s: float = Field(60.0, gt=0, description="held transactions idle longer are rolled back")
    tx_max_per_principal: int = Field(3, ge=1, le=50)
    max_rows: int = Field(1000, ge=1, le=100_000, description="default row cap of query tools")
    embedded_dir: Path = Field(default_factory=lambda: _default_data_home() / "embedded")

    @property
    def uses_embedded(self) -> bool:
        return self.database_url is None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        url = env.get("PGCODE_DATABASE_URL") or env.get("DATABASE_URL")
        if url is None and any(env.get(v) for v in _LIBPQ_VARS):
            url = ""  # libpq reads PGHOST, PGPORT, ... itself
        values: dict[str, object] = {"database_url": url}
        for field in ("read_only", "statement_timeout_ms", "pool_min_size", "pool_max_size", "pool_timeout_s",
                      "tx_idle_timeout_s", "tx_max_per_principal", "max_rows", "embedded_dir"):
            raw = env.get(f"PGCODE_{field.upper()}")
            if raw not in (None, ""):
                values[field] = raw
        return cls.model_validate(values)
