"""The registry and docs/TOOLS.md agree: names, methods, groups, effects and extensions."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pgcode.core.registry import load_registry

CATALOG = Path(__file__).parent.parent / "docs" / "TOOLS.md"
# Groups whose every catalog tool is built; a group joins this set when its last tool lands.
COMPLETE_GROUPS = {"core", "transactions", "jsonb", "text", "performance", "admin", "monitoring", "backup", "schema",
                   "vector", "postgis", "partitioning", "stats", "cron", "partman", "kcache", "citext", "ltree",
                   "pgcrypto"}
# Tools beyond the 235 of the catalog: code mode and the audit log in groups of their own, and tools for seed
# names users' scripts call that no catalog tool answers (pg.citext.citextSearch), in the group they belong to.
EXTRA_TOOLS = {"pg_execute_code", "pg_validate_code", "pg_script_save", "pg_script_list", "pg_script_get",
               "pg_script_update", "pg_script_delete", "pg_script_run", "pg_audit_log", "pg_codemode_docs",
               "pg_execution_list", "pg_execution_get", "pg_execution_stats", "pg_citext_search",
               "pg_jsonb_array_append", "pg_ltree_ancestors", "pg_blocking_chains", "pg_vacuum_advisor",
               "pg_health_snapshot", "pg_health_snapshot_list", "pg_health_snapshot_diff"}
EXTRA_GROUPS = {"codemode", "audit"}


def _catalog() -> dict[str, dict[str, str]]:
    rows: dict[str, dict[str, str]] = {}
    group = None
    for line in CATALOG.read_text().splitlines():
        heading = re.match(r"^## (\w+) \(\d+\)", line)
        if heading:
            group = heading.group(1)
            continue
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if group and len(cells) >= 6 and cells[0].startswith("`pg_"):
            rows[cells[0].strip("`")] = {"group": group, "method": cells[1].strip("`"), "effect": cells[3],
                                         "extension": cells[5]}
    return rows


def test_catalog_lists_235_tools() -> None:
    assert len(_catalog()) == 235


@pytest.mark.parametrize("spec", [s for s in load_registry() if s.name not in EXTRA_TOOLS], ids=lambda s: s.name)
def test_registered_tool_matches_catalog(spec) -> None:  # type: ignore[no-untyped-def]
    row = _catalog().get(spec.name)
    assert row is not None, f"{spec.name} is not in docs/TOOLS.md"
    assert spec.group == row["group"]
    assert spec.method == row["method"]
    assert spec.effect.value == row["effect"]
    declared = set(spec.extensions)
    for ext in declared:
        assert ext in row["extension"], f"{spec.name} needs {ext}, the catalog says {row['extension']!r}"


def test_every_catalog_tool_of_a_complete_group_is_registered() -> None:
    registered = {s.name for s in load_registry()}
    for name, row in _catalog().items():
        if row["group"] in COMPLETE_GROUPS:
            assert name in registered, f"{name} ({row['group']}) is in the catalog but not registered"


def test_tools_beyond_the_catalog_are_the_known_ones() -> None:
    for spec in load_registry():
        if spec.name not in _catalog():
            groups = EXTRA_GROUPS | {row["group"] for row in _catalog().values()}
            assert spec.name in EXTRA_TOOLS and spec.group in groups, spec.name
