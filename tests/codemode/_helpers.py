"""Assertions on the output object of pg_execute_code."""

from __future__ import annotations

from typing import Any


def ok(out: dict[str, Any]) -> Any:
    """The result of a successful execution (the assertion message shows the error otherwise)."""
    assert out["success"] is True, out["error"]
    assert out["error"] is None
    return out["result"]


def failed(out: dict[str, Any], code: str, *fragments: str) -> dict[str, Any]:
    """The error of a failed execution, checked for its code and message fragments."""
    assert out["success"] is False, out
    assert out["result"] is None
    err: dict[str, Any] = out["error"]
    assert err["code"] == code, err
    assert set(err) >= {"code", "message", "line"}
    for fragment in fragments:
        assert fragment.lower() in err["message"].lower(), err
    return err
