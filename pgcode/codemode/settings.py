"""Code-mode limits and pool size, from PGCODE_CODEMODE_* environment variables."""

from __future__ import annotations

import os
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field

ABSOLUTE_MAX_TIMEOUT_MS = 300_000
ABSOLUTE_MAX_MEMORY_MB = 16_384


def _default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 32))


class CodeModeSettings(BaseModel):
    """Sizes and limits of code mode; the defaults are the ones DESIGN.md and the issue name."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    workers: int = Field(default_factory=_default_workers, ge=1, le=64, description="sandbox worker processes")
    default_timeout_ms: int = Field(30_000, ge=1, le=ABSOLUTE_MAX_TIMEOUT_MS)
    max_timeout_ms: int = Field(ABSOLUTE_MAX_TIMEOUT_MS, ge=1, le=ABSOLUTE_MAX_TIMEOUT_MS,
                                description="larger requested timeouts are lowered to this")
    hard_grace_ms: int = Field(25, ge=1, le=5_000,
                               description="after the deadline, how long the worker's own timer gets before a kill")
    default_memory_mb: int = Field(128, ge=1, le=ABSOLUTE_MAX_MEMORY_MB,
                                   description="JS heap limit of a run that does not ask for one (memoryLimit)")
    max_memory_mb: int = Field(512, ge=16, le=ABSOLUTE_MAX_MEMORY_MB,
                               description="larger requested memory limits are lowered to this")
    max_concurrency: int = Field(4, ge=1, le=64, description="tool calls of one execution running at once")
    max_host_calls: int = Field(10_000, ge=1, le=1_000_000)
    max_code_bytes: int = Field(50 * 1024, ge=1, le=1024 * 1024)
    max_input_bytes: int = Field(4 * 1024 * 1024, ge=2, le=16 * 1024 * 1024)
    max_result_bytes: int = Field(10_000_000, ge=1, le=20_000_000)
    max_call_result_bytes: int = Field(16_000_000, ge=1, le=20_000_000,
                                       description="largest single tool result handed into the sandbox")
    max_logs: int = Field(1_000, ge=0, le=100_000)
    max_log_chars: int = Field(1_000_000, ge=0, le=4_000_000)
    max_log_entry_chars: int = Field(8_192, ge=16, le=1_000_000)
    recycle_after: int = Field(1_000, ge=1, description="executions after which a worker is replaced")
    history_days: int = Field(30, ge=1, le=3650, description="execution history retention")
    max_per_principal: int | None = Field(None, ge=1, le=64, description="executions one principal may run at "
                                                                         "once (default: workers - 1, at least 1)")

    @property
    def per_principal(self) -> int:
        return self.max_per_principal or max(1, self.workers - 1)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> CodeModeSettings:
        env = os.environ if env is None else env
        values = {}
        for name in cls.model_fields:
            raw = env.get(f"PGCODE_CODEMODE_{name.upper()}")
            if raw not in (None, ""):
                values[name] = raw
        return cls.model_validate(values)

    def memory_limits(self) -> dict[str, int]:
        """The heap limits every worker knows: a run's own limit travels with it, capped by the maximum."""
        return {"defaultBytes": min(self.default_memory_mb, self.max_memory_mb) << 20,
                "maxBytes": self.max_memory_mb << 20}

    def js_limits(self) -> dict[str, int]:
        """The limits the prelude enforces inside the sandbox (the server checks them again)."""
        return {"maxLogs": self.max_logs, "maxLogChars": self.max_log_chars,
                "maxLogEntryChars": self.max_log_entry_chars, "maxResultChars": self.max_result_bytes,
                "maxResultBytes": self.max_result_bytes, "maxArgsChars": 8_000_000}
