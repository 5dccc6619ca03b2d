"""Reading EXPLAIN output: summaries of JSON and text plans, plan nodes, buffer counts."""

from __future__ import annotations

import re
from enum import StrEnum
from typing import Any


class Format(StrEnum):
    JSON = "json"
    TEXT = "text"


_COST_RE = re.compile(r"\(cost=([\d.]+)\.\.([\d.]+) rows=(\d+)")
_ACTUAL_RE = re.compile(r"\(actual (?:time=[\d.]+\.\.[\d.]+ )?rows=([\d.]+) loops=(\d+)\)")
_TIME_RE = re.compile(r"^\s*(Planning|Execution) Time: ([\d.]+) ms", re.MULTILINE)


def summarize(rows: list[tuple[Any, ...]], fmt: Format) -> dict[str, Any]:
    """The plan as returned (object or text) with its top-level cost, rows and times pulled out."""
    if fmt is Format.TEXT:
        text = "\n".join(str(r[0]) for r in rows)
        first = text.split("\n", 1)[0]
        cost, actual = _COST_RE.search(first), _ACTUAL_RE.search(first)
        times = {m.group(1).lower(): float(m.group(2)) for m in _TIME_RE.finditer(text)}
        return {"format": "text", "plan": text,
                "startup_cost": float(cost.group(1)) if cost else None,
                "total_cost": float(cost.group(2)) if cost else None,
                "estimated_rows": int(cost.group(3)) if cost else None,
                "actual_rows": float(actual.group(1)) if actual else None,
                "planning_time_ms": times.get("planning"), "execution_time_ms": times.get("execution")}
    doc = rows[0][0]
    plan: dict[str, Any] = doc[0] if isinstance(doc, list) else doc
    top = plan["Plan"]
    nodes = plan_nodes(plan)
    return {"format": "json", "plan": plan, "startup_cost": top.get("Startup Cost"),
            "total_cost": top.get("Total Cost"), "estimated_rows": top.get("Plan Rows"),
            "actual_rows": top.get("Actual Rows"), "planning_time_ms": plan.get("Planning Time"),
            "execution_time_ms": plan.get("Execution Time"),
            "node_types": sorted({n["node_type"] for n in nodes}),
            "seq_scans": sorted({n["relation"] for n in nodes if n["node_type"] == "Seq Scan" and n["relation"]})}


def plan_nodes(plan: dict[str, Any]) -> list[dict[str, Any]]:
    """Every node of a JSON plan, depth first: type, relation, index, estimated and actual rows, cost."""
    out: list[dict[str, Any]] = []
    stack: list[tuple[dict[str, Any], int]] = [(plan["Plan"], 0)]
    while stack:
        node, depth = stack.pop()
        out.append({"node_type": node.get("Node Type"), "relation": node.get("Relation Name"),
                    "index": node.get("Index Name"), "depth": depth, "estimated_rows": node.get("Plan Rows"),
                    "actual_rows": node.get("Actual Rows"), "loops": node.get("Actual Loops"),
                    "total_cost": node.get("Total Cost")})
        stack.extend((child, depth + 1) for child in reversed(node.get("Plans") or []))
    return out


_BUFFER_KEYS = {"Shared Hit Blocks": "shared_hit", "Shared Read Blocks": "shared_read",
                "Shared Dirtied Blocks": "shared_dirtied", "Shared Written Blocks": "shared_written",
                "Local Hit Blocks": "local_hit", "Local Read Blocks": "local_read",
                "Local Dirtied Blocks": "local_dirtied", "Local Written Blocks": "local_written",
                "Temp Read Blocks": "temp_read", "Temp Written Blocks": "temp_written"}


def json_buffers(node: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {name: int(node.get(key) or 0) for key, name in _BUFFER_KEYS.items()}
    return _with_hit_ratio(out)


def text_buffers(text: str) -> dict[str, Any]:
    """The top node's `Buffers: shared hit=1 read=2, temp written=3` line as numbers."""
    out: dict[str, Any] = dict.fromkeys(_BUFFER_KEYS.values(), 0)
    line = next((ln for ln in text.splitlines() if ln.strip().startswith("Buffers:")), "")
    for part in line.split(":", 1)[-1].split(","):
        words = part.split()
        if not words:
            continue
        area = words[0]
        for word in words[1:]:
            key, _, value = word.partition("=")
            if f"{area}_{key}" in out and value.isdigit():
                out[f"{area}_{key}"] = int(value)
    return _with_hit_ratio(out)


def _with_hit_ratio(out: dict[str, Any]) -> dict[str, Any]:
    touched = out["shared_hit"] + out["shared_read"]
    out["hit_ratio"] = round(out["shared_hit"] / touched, 4) if touched else None
    return out
