"""Health checks on memory: the memory settings, and the table and index cache hit ratios they lead to."""

from __future__ import annotations

from typing import Any

from pgcode.core.context import ToolContext
from pgcode.health._base import MB, CheckResult, Coverage, Status, Thresholds, check, grade, limits, result, size
from pgcode.health.probes import hit_ratio

AREA = "memory"

_MEMORY = """
SELECT pg_size_bytes(current_setting('shared_buffers')) AS shared_buffers,
       pg_size_bytes(current_setting('work_mem')) AS work_mem,
       pg_size_bytes(current_setting('maintenance_work_mem')) AS maintenance_work_mem,
       pg_size_bytes(current_setting('effective_cache_size')) AS effective_cache_size,
       CASE WHEN current_setting('autovacuum_work_mem') = '-1' THEN NULL
            ELSE pg_size_bytes(current_setting('autovacuum_work_mem')) END AS autovacuum_work_mem,
       current_setting('max_connections')::int AS max_connections,
       current_setting('autovacuum_max_workers')::int AS autovacuum_max_workers,
       current_setting('huge_pages') AS huge_pages
"""


@check("memory_settings", AREA, "settings", "catalog")
async def memory_settings(ctx: ToolContext, t: Thresholds, cov: Coverage) -> CheckResult:
    """A review of shared_buffers, work_mem, maintenance_work_mem and effective_cache_size for common mistakes.

    The machine's RAM is not visible from SQL, so the review compares the settings with each other and with
    PostgreSQL's defaults; effective_cache_size stands in for what the server expects the OS to cache.
    """
    s = await ctx.fetchone(_MEMORY)
    assert s is not None
    findings: list[dict[str, Any]] = []

    def add(setting: str, message: str, advice: str) -> None:
        findings.append({"setting": setting, "finding": message, "advice": advice})

    if s["shared_buffers"] <= 128 * MB:  # what initdb writes into postgresql.conf
        add("shared_buffers", f"shared_buffers is {size(s['shared_buffers'])}, initdb's default or less",
            "set it to about 25% of the server's RAM (a restart)")
    if s["effective_cache_size"] < s["shared_buffers"]:
        add("effective_cache_size", f"effective_cache_size ({size(s['effective_cache_size'])}) is below "
                                    f"shared_buffers ({size(s['shared_buffers'])})",
            "set it to shared_buffers plus the OS page cache, often 50-75% of RAM")
    all_sorting = s["work_mem"] * s["max_connections"]
    if all_sorting > 2 * s["effective_cache_size"]:
        add("work_mem", f"work_mem x max_connections is {size(all_sorting)}, over twice effective_cache_size",
            "a burst of sorting sessions can exhaust memory: lower work_mem (raise it per role or query instead) "
            "or use fewer connections through a pooler")
    if s["work_mem"] <= 4 * MB and s["effective_cache_size"] >= 8 * 1024 * MB:
        add("work_mem", "work_mem is the 4 MB default on a server with a large cache",
            "sorts and hashes may spill to disk (temp_bytes): raise work_mem moderately, e.g. 16-64 MB")
    vacuum_mem = s["autovacuum_work_mem"] or s["maintenance_work_mem"]
    if vacuum_mem * s["autovacuum_max_workers"] > s["shared_buffers"] * 2 and vacuum_mem > 256 * MB:
        add("maintenance_work_mem", f"autovacuum workers may take {size(vacuum_mem * s['autovacuum_max_workers'])} "
                                    "together", "set autovacuum_work_mem to bound each worker")
    if s["maintenance_work_mem"] <= 64 * MB and s["shared_buffers"] >= 1024 * MB:
        add("maintenance_work_mem", "maintenance_work_mem is the 64 MB default on a server with large "
                                    "shared_buffers", "raise it (e.g. 512 MB-1 GB) for faster VACUUM and CREATE INDEX")
    status: Status = "warning" if findings else "ok"
    return result("memory_settings", AREA, status, f"{len(findings)} memory settings worth a look"
                  + (f": {', '.join(sorted({f['setting'] for f in findings}))}" if findings else ""),
                  len(findings), None, "; ".join(f["advice"] for f in findings) or "none",
                  {"findings": findings, "settings": s,
                   "note": "RAM is not visible from SQL: the settings are compared with each other and the defaults"})


_STATIO = """
SELECT sum(heap_blks_hit) AS heap_hit, sum(heap_blks_read) AS heap_read, sum(idx_blks_hit) AS idx_hit,
       sum(idx_blks_read) AS idx_read FROM pg_statio_user_tables
"""


async def _hit(ctx: ToolContext, t: Thresholds, name: str, hit_key: str, read_key: str, what: str) -> CheckResult:
    row = await ctx.fetchone(_STATIO)
    assert row is not None
    hits, reads = int(row[hit_key] or 0), int(row[read_key] or 0)
    value = hit_ratio(hits, reads)
    judged = hits + reads >= t.cache_min_blocks
    status: Status = grade(value, t.cache_hit_warning, t.cache_hit_critical, higher_is_worse=False) if judged \
        else "ok"
    summary = (f"{what} cache hit ratio {value:.2%}" if value is not None else f"no {what} blocks read yet") + (
        "" if judged else f" (under {t.cache_min_blocks:,} block requests: not judged)")
    return result(name, AREA, status, summary, value, limits(t.cache_hit_warning, t.cache_hit_critical, "ratio"),
                  "raise shared_buffers if RAM allows, and cut what queries read (indexes, narrower scans); a ratio "
                  "right after a restart or stats reset is not representative",
                  {"hits": hits, "reads": reads, "judged": judged})


@check("table_cache_hit", AREA, "tables", "counters")
async def table_cache_hit(ctx: ToolContext, t: Thresholds, cov: Coverage) -> CheckResult:
    """Share of table (heap) block requests served from shared buffers, over all user tables."""
    return await _hit(ctx, t, "table_cache_hit", "heap_hit", "heap_read", "table")


@check("index_cache_hit", AREA, "indexes", "counters")
async def index_cache_hit(ctx: ToolContext, t: Thresholds, cov: Coverage) -> CheckResult:
    """Share of index block requests served from shared buffers, over all user tables' indexes."""
    return await _hit(ctx, t, "index_cache_hit", "idx_hit", "idx_read", "index")
