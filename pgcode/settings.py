"""Settings from PGCODE_* environment variables, validated by pydantic; a leaf every layer may import."""

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
    codemode: bool = Field(True, description="off: no pg_execute_code, no code-mode tools, no /v1/execute family")
    statement_timeout_ms: int = Field(30_000, ge=100, le=3_600_000)
    monitor_lock_timeout_ms: int = Field(200, ge=1, le=60_000, description="lock_timeout of health checks and "
                                         "monitoring queries: they work around a locked table instead of waiting")
    pool_min_size: int = Field(1, ge=0, le=100)
    pool_max_size: int = Field(10, ge=1, le=200)
    pool_timeout_s: float = Field(10.0, gt=0)
    tx_idle_timeout_s: float = Field(60.0, gt=0, description="held transactions idle longer are rolled back")
    tx_max_per_principal: int = Field(3, ge=1, le=50)
    max_rows: int = Field(1000, ge=1, le=100_000, description="default row cap of query tools")
    embedded_dir: Path = Field(default_factory=lambda: _default_data_home() / "embedded")

    auth_issuer: str | None = Field(None, description="JWT issuer (iss) to accept")
    auth_audience: str | None = Field(None, description="JWT audience (aud) this server is")
    auth_jwks_url: str | None = Field(None, description="where the issuer publishes its signing keys")
    auth_jwks_file: Path | None = Field(None, description="the issuer's signing keys as a JWKS file")
    auth_tokens: Path | None = Field(None, description="JSON file of static tokens: subject, sha256, scopes")
    resource_url: str | None = Field(None, description="public URL of this server, for OAuth metadata")
    allowed_hosts: list[str] = Field(default_factory=list, description="Host headers every route accepts (+ loopback)")
    allowed_origins: list[str] = Field(default_factory=list, description="Origins every route accepts (+ loopback)")
    rate_limit_read: str = Field("600/minute", description="per principal, `limits` notation")
    rate_limit_write: str = Field("120/minute", description="per principal, `limits` notation")
    rate_limit_admin: str = Field("60/minute", description="per principal, `limits` notation")
    rate_limit_code: str = Field("60/minute", description="code executions per principal, `limits` notation")
    redis_url: SecretStr | None = Field(None, description="Redis for rate limits shared by several processes")
    audit_retention_days: int = Field(30, ge=1, le=3650)
    audit_file: Path | None = Field(None, description="JSON-lines file for audit rows when pgcode's schema is absent")
    read_role: str = Field("pgcode_read", min_length=1, max_length=63, description="database role of read calls")
    write_role: str = Field("pgcode_write", min_length=1, max_length=63, description="database role of write calls")
    max_calls_per_principal: int | None = Field(
        None, ge=1, le=200, description="database calls one principal may run at once (default: pool size - 2)")
    backup_dir: Path | None = Field(None, description="directory the backup tools may read and write files in")
    snapshot_max_bytes: int = Field(50 * 1024 * 1024, ge=0, le=10 * 1024**3,
                                    description="largest table data a pre-mutation snapshot keeps (COPY bytes)")
    health_snapshot_retention_days: int = Field(90, ge=1, le=3650, description="health snapshots older than this "
                                                "are deleted when one is saved")
    health_snapshot_max_count: int = Field(1000, ge=1, le=1_000_000, description="the newest this many health "
                                           "snapshots are kept when one is saved")
    tools: list[str] = Field(default_factory=list, description="groups or pg_* tool names the MCP and REST catalogs "
                             "expose, e.g. core,performance or codemode (empty: all); code mode reaches every tool")
    dump_timeout_s: float = Field(300.0, gt=0, le=86_400, description="pg_dump runs longer are stopped")

    @property
    def calls_per_principal(self) -> int:
        return self.max_calls_per_principal or max(1, self.pool_max_size - 2)

    @property
    def auth_enabled(self) -> bool:
        return bool(self.auth_tokens or self.auth_jwks_url or self.auth_jwks_file)

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
        for field in cls.model_fields:
            raw = env.get(f"PGCODE_{field.upper()}")
            if field == "database_url" or raw in (None, ""):
                continue
            if field in ("allowed_hosts", "allowed_origins", "tools"):
                values[field] = [item.strip() for item in raw.split(",") if item.strip()]
            else:
                values[field] = raw
        return cls.model_validate(values)
