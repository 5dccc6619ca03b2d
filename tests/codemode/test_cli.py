"""`pgcode run`: real subprocesses, result JSON on stdout, logs on stderr, exit codes for cron."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

_DB_VARS = ("PGCODE_DATABASE_URL", "DATABASE_URL", "PGHOST", "PGHOSTADDR", "PGPORT", "PGDATABASE", "PGUSER",
            "PGSERVICE")


def _pgcode(*args: str, dsn: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in _DB_VARS} | {"PGCODE_DATABASE_URL": dsn}
    return subprocess.run([sys.executable, "-m", "pgcode", "run", *args], env=env, input=stdin, capture_output=True,
                          text=True, timeout=120, check=False)


@pytest.fixture
def script(tmp_path: Path) -> Path:
    path = tmp_path / "report.js"
    path.write_text("console.log('checking', input && input.label);\n"
                    "const r = await pg.core.readQuery({sql: 'SELECT 6 * 7 AS n'});\n"
                    "console.warn('done');\nreturn {n: r.rows[0].n, label: input && input.label};\n")
    return path


def test_run_prints_the_result_and_logs_to_stderr(script: Path, tmp_path: Path, dsn: str) -> None:
    data = tmp_path / "input.json"
    data.write_text('{"label": "nightly"}')
    out = _pgcode(str(script), "--input", str(data), dsn=dsn)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {"n": 42, "label": "nightly"}
    assert "[log] checking nightly" in out.stderr and "[warn] done" in out.stderr


def test_run_reads_standard_input(dsn: str) -> None:
    out = _pgcode("-", dsn=dsn, stdin="return [1, 2, 3].map(x => x * x)")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == [1, 4, 9]


def test_run_typescript_file(tmp_path: Path, dsn: str) -> None:
    path = tmp_path / "typed.ts"
    path.write_text("interface R { n: number }\nconst r: R = { n: 5 };\nreturn r.n as number;\n")
    out = _pgcode(str(path), dsn=dsn)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == 5


def test_run_failure_exits_non_zero_with_the_error(tmp_path: Path, dsn: str) -> None:
    path = tmp_path / "fails.js"
    path.write_text("const a = 1;\nawait pg.core.readQuery({sql: 'SELECT * FROM cli_nope_table'});\n")
    out = _pgcode(str(path), dsn=dsn)
    assert out.returncode == 1
    error = json.loads(out.stdout)["error"]
    assert error["code"] == "NOT_FOUND" and error["line"] == 2
    assert "NOT_FOUND at line 2" in out.stderr


def test_run_readonly_and_timeout(tmp_path: Path, dsn: str, schema: str) -> None:
    path = tmp_path / "writes.js"
    path.write_text(f"await pg.core.writeQuery({{sql: 'CREATE TABLE \"{schema}\".cli_made (id int)'}}); return 1\n")
    out = _pgcode(str(path), "--readonly", dsn=dsn)
    assert out.returncode == 1 and json.loads(out.stdout)["error"]["code"] == "READ_ONLY"
    loop = tmp_path / "loop.js"
    loop.write_text("while (true) {}\n")
    out = _pgcode(str(loop), "--timeout", "300", dsn=dsn)
    assert out.returncode == 1 and json.loads(out.stdout)["error"]["code"] == "TIMEOUT"


def test_run_usage_errors_exit_two(tmp_path: Path, dsn: str) -> None:
    missing = _pgcode(str(tmp_path / "nope.js"), dsn=dsn)
    assert missing.returncode == 2 and "nope.js" in missing.stderr
    bad_input = tmp_path / "bad.json"
    bad_input.write_text("{not json")
    script = tmp_path / "ok.js"
    script.write_text("return 1")
    out = _pgcode(str(script), "--input", str(bad_input), dsn=dsn)
    assert out.returncode == 2 and "not valid JSON" in out.stderr
    empty = tmp_path / "empty.js"
    empty.write_text("\n")
    out = _pgcode(str(empty), dsn=dsn)
    assert out.returncode == 2 and json.loads(out.stdout)["error"]["code"] == "MISSING_CODE"


def test_run_memory_limit_and_tools(tmp_path: Path, dsn: str) -> None:
    big = tmp_path / "big.js"
    big.write_text("const a = [];\nfor (let i = 0; i < 200000; i++) a.push({i, s: 'row ' + i});\nreturn a.length\n")
    out = _pgcode(str(big), "--memory-limit", "16", dsn=dsn)
    assert out.returncode == 1 and "MEMORY_LIMIT" in out.stderr
    body = json.loads(out.stdout)
    assert body["error"]["code"] == "MEMORY_LIMIT" and body["metrics"]["memoryLimitMB"] == 16
    assert json.loads(_pgcode(str(big), dsn=dsn).stdout) == 200000  # the default limit holds it
    narrow = _pgcode("-", "--tools", "core, pg_table_stats", dsn=dsn, stdin="return Object.keys(pg)")
    assert narrow.returncode == 0, narrow.stderr
    assert json.loads(narrow.stdout) == ["core", "performance", "call", "help"]
    outside = _pgcode("-", "--tools", "core", dsn=dsn, stdin="return await pg.call('pg_cache_hit_ratio', {})")
    assert outside.returncode == 1 and json.loads(outside.stdout)["error"]["code"] == "FORBIDDEN"
    typo = _pgcode("-", "--tools", "cor", dsn=dsn, stdin="return 1")
    assert typo.returncode == 2 and "did you mean core" in typo.stderr
