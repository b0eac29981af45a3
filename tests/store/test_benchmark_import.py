"""Smoke test: the import benchmark runs end to end on a small file (the 1M run is manual)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.databases import DIALECTS, PG_ADMIN_URL

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("dialect", DIALECTS)
def test_import_benchmark_runs(dialect: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if dialect == "postgresql":
        request.getfixturevalue("pg_databases")  # skips (or fails in CI) without a server
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "import.py"),
            "--rows",
            "2000",
            "--db",
            dialect,
            "--pg-url",
            PG_ADMIN_URL,
            "--data-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert f"{dialect:10} import     2,000 rows" in done.stdout
    assert "added 1,980, skipped 20" in done.stdout and "ratio" in done.stdout
