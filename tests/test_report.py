"""The health report: built through invoke() from the checks and the monitoring tools, in JSON, Markdown and
one self-contained HTML page; `pgcode report` as a subprocess and GET /v1/report, scopes included."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections.abc import AsyncIterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import httpx2
import psycopg
import pytest

from pgcode.core.runtime import Runtime
from pgcode.errors import ToolError
from pgcode.report import collect, render
from pgcode.server.app import create_app
from pgcode.settings import Settings
from pgcode.types import LOCAL_PRINCIPAL, Principal
from tests._health_conditions import SESSION_THRESHOLDS, make_conditions
from tests.fix_db import assert_tool_error
from tests.groups._sessions import eventually, sleeper

pytestmark = pytest.mark.anyio

EVIL = "<img src=x onerror=alert(1)>"
APP = "t_report_sleeper"
# Objects of the conditions each report must name.
NAMES = ("unused_code_idx", "dup_a_copy", "inv_k_uidx", "dead_t", "seq_small", "seq_ident", "fk_child",
         "fk_child_id_positive", "definer_fn")


@pytest.fixture(scope="module")
def cond(dsn: str, schema: str) -> str:
    make_conditions(dsn, schema)
    with psycopg.connect(dsn, autocommit=True) as c:  # a name written to break out of HTML
        c.execute(f'CREATE INDEX "{EVIL}" ON {schema}.dup_t (a)')
    return schema


@pytest.fixture(scope="module")
async def report(rt: Runtime, dsn: str, cond: str) -> dict[str, Any]:
    with sleeper(dsn, APP, 30):
        async def found() -> dict[str, Any] | None:  # once the sleeper counts as long-running (0.5 s)
            data = await collect(rt, LOCAL_PRINCIPAL, thresholds=SESSION_THRESHOLDS)
            long = [f for f in data["findings"] if f["check"] == "long_running_queries"]
            return data if long and APP in json.dumps(long) else None

        data: dict[str, Any] = await eventually(found, what="the report to list the long query")
    return data


def _finding(report: dict[str, Any], check: str) -> dict[str, Any]:
    return next(f for f in report["findings"] if f["check"] == check)


async def test_json_report_finds_every_condition(report: dict[str, Any], cond: str) -> None:
    for check, key, name in (("unused_indexes", "name", "unused_code_idx"), ("invalid_indexes", "index", "inv_k_uidx"),
                             ("dead_tuples", "table", "dead_t"), ("sequence_overflow", "table", "seq_small"),
                             ("fk_without_index", "table", "fk_child"), ("long_running_queries", "application_name",
                                                                         APP)):
        f = _finding(report, check)
        assert f["status"] in ("warning", "critical"), check
        assert name in {r.get(key) for r in f["details"]["items"]}, (check, name)
    dup = _finding(report, "duplicate_indexes")
    assert {"dup_a_copy", EVIL} & {r["index"] for r in dup["details"]["items"] if r["schema"] == cond}
    rank = {"critical": 3, "warning": 2, "unknown": 1}
    assert [rank[f["status"]] for f in report["findings"]] == sorted((rank[f["status"]] for f in report["findings"]),
                                                                     reverse=True)
    assert report["status"] == report["findings"][0]["status"]
    assert [a["area"] for a in report["areas"]][:3] == ["wraparound", "indexes", "tables"]


async def test_json_report_has_the_monitoring_sections(report: dict[str, Any], rt: Runtime) -> None:
    assert report["database"] == rt.db.caps.database and report["database_size"]["size_bytes"] > 0
    assert report["server"]["server_version_num"] == rt.db.caps.server_version_num
    assert report["tables"] and report["tables"][0]["size_bytes"] >= report["tables"][-1]["size_bytes"]
    assert {"state", "total"} <= set(report["connections"][0])
    assert "active" in {c["state"] for c in report["connections"]}
    assert 0 <= report["cache"]["database_hit_ratio"] <= 1
    assert report["top_queries"] and report["top_queries"][0]["total_exec_time_ms"] > 0  # pg_stat_statements
    assert report["duration_ms"] < 10_000 and report["unavailable"] == {}
    json.dumps(report)  # plain JSON all the way down


async def test_html_report_is_one_safe_self_contained_page(report: dict[str, Any]) -> None:
    html = render(report, "html")
    assert html.startswith("<!doctype html>") and html.rstrip().endswith("</html>")
    for name in (*NAMES, APP):
        assert name in html, name
    assert EVIL not in html and "&lt;img src=x onerror=alert(1)&gt;" in html
    tags = _tags(html)
    assert not {t for t, _ in tags} & {"script", "link", "img", "iframe", "object", "embed"}
    links = {v for _, attrs in tags for k, v in attrs if k in ("src", "href", "srcset", "action")}
    assert all(v.startswith("#") for v in links)  # in-page anchors only
    assert not any(k.startswith("on") for _, attrs in tags for k, _ in attrs)
    assert set(re.findall(r"https?://[^\"'\s)]+", html)) <= {"http://www.w3.org/2000/svg"}
    assert html.count("<svg") >= 4 and "@media print" in html
    for title in ("Database size by table", "Connections by state", "Cache hit ratios", "Top queries by total time"):
        assert title in html


def _tags(html: str) -> list[tuple[str, list[tuple[str, str]]]]:
    found: list[tuple[str, list[tuple[str, str]]]] = []

    class Tags(HTMLParser):
        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            found.append((tag, [(k, v or "") for k, v in attrs]))

    Tags().feed(html)
    return found


async def test_markdown_report_names_the_objects(report: dict[str, Any]) -> None:
    md = render(report, "md")
    assert md.startswith("# PostgreSQL health report")
    for name in (*NAMES, APP):
        assert name in md, name
    assert EVIL not in md and "&lt;img src=x onerror=alert(1)&gt;" in md
    assert "## Findings, worst first" in md and "## Top queries by total time" in md


async def test_report_needs_the_read_scope(rt: Runtime, cond: str) -> None:
    with pytest.raises(ToolError) as exc:
        await collect(rt, Principal("nobody", frozenset()))
    assert_tool_error(exc, "FORBIDDEN")
    with pytest.raises(ToolError) as bad:
        await collect(rt, LOCAL_PRINCIPAL, thresholds={"noSuchThreshold": 1})
    assert_tool_error(bad, "INVALID_INPUT", "noSuchThreshold")


def _pgcode(*args: str, dsn: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PG", "DATABASE_URL"))}
    env["PGCODE_DATABASE_URL"] = dsn
    return subprocess.run([sys.executable, "-m", "pgcode", "report", *args], env=env, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.mark.parametrize("fmt", ["json", "html", "md"])
def test_cli_writes_the_report(fmt: str, dsn: str, cond: str, tmp_path: Path) -> None:
    out = tmp_path / f"report.{fmt}"
    done = _pgcode("--format", fmt, "--output", str(out), "--thresholds", '{"maxItems": 5000}', dsn=dsn)
    assert done.returncode == 0, done.stderr
    text = out.read_text()
    if fmt == "json":
        data = json.loads(text)
        assert data["status"] in ("warning", "critical") and data["summary"]["critical"] >= 1
        text = json.dumps(data)
    for name in NAMES:
        assert name in text, name
    assert EVIL not in text if fmt != "json" else EVIL in text


def test_cli_format_from_suffix_and_bad_thresholds(dsn: str, cond: str, tmp_path: Path) -> None:
    out = tmp_path / "health.html"
    done = _pgcode("--output", str(out), dsn=dsn)
    assert done.returncode == 0, done.stderr
    assert out.read_text().startswith("<!doctype html>")
    bad = _pgcode("--thresholds", "[1]", dsn=dsn)
    assert bad.returncode == 2 and "JSON object" in bad.stderr
    wrong = _pgcode("--format", "json", "--thresholds", '{"maxItems": -1}', dsn=dsn)
    assert wrong.returncode == 1 and json.loads(wrong.stdout)["error"]["code"] == "INVALID_INPUT"


async def test_http_report_in_every_format(http: httpx2.AsyncClient, cond: str) -> None:
    params = {"thresholds": json.dumps({"maxItems": 5000})}
    resp = await http.get("/v1/report", params={**params, "format": "json"})
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/json"
    assert "unused_code_idx" in resp.text and resp.json()["findings"]
    page = await http.get("/v1/report", params=params)  # html by default
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "inv_k_uidx" in page.text and EVIL not in page.text
    md = await http.get("/v1/report", params={**params, "format": "md"})
    assert md.headers["content-type"].startswith("text/markdown") and "dup_a_copy" in md.text
    for query, fragment in (({"format": "pdf"}, "format"), ({"thresholds": "{nope"}, "thresholds"),
                            ({"thresholds": '{"maxItems": 0}'}, "maxItems")):
        bad = await http.get("/v1/report", params=query)
        assert bad.status_code == 400 and fragment in bad.json()["error"]["message"]


TOKENS = {"none": "tok-report-none-4a1f", "read": "tok-report-read-9c2e"}


@pytest.fixture(scope="module")
async def secure_http(dsn: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[httpx2.AsyncClient]:
    path = tmp_path_factory.mktemp("auth") / "tokens.json"
    path.write_text(json.dumps([{"subject": f"report-{level}", "sha256": hashlib.sha256(tok.encode()).hexdigest(),
                                 "scopes": [] if level == "none" else [level]} for level, tok in TOKENS.items()]))
    settings = Settings(database_url=dsn, auth_tokens=path, auth_issuer="https://issuer.example")
    async with Runtime(settings) as secure:
        app = create_app(secure)
        async with app.router.lifespan_context(app):
            transport = httpx2.ASGITransport(app=app)
            async with httpx2.AsyncClient(transport=transport, base_url="http://127.0.0.1") as client:
                yield client


async def test_http_report_holds_the_scopes(secure_http: httpx2.AsyncClient, cond: str) -> None:
    anonymous = await secure_http.get("/v1/report")
    assert anonymous.status_code == 401
    denied = await secure_http.get("/v1/report", headers={"Authorization": f"Bearer {TOKENS['none']}"})
    assert denied.status_code == 403 and 'scope="read"' in denied.headers["www-authenticate"]
    assert denied.json()["error"]["code"] == "FORBIDDEN"
    ok = await secure_http.get("/v1/report", params={"format": "json"},
                               headers={"Authorization": f"Bearer {TOKENS['read']}"})
    assert ok.status_code == 200 and ok.json()["summary"]["critical"] >= 1
