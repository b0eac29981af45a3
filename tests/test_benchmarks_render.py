"""Smoke test: the render benchmark runs end to end (Python side only, so no node or npm needed)."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT, clean_environment


def test_render_benchmark_prints_median_and_exits_zero() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "render.py"), "--runs", "3", "--skip-node"],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
        env=clean_environment(),
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "pipeline render_issue median:" in done.stdout
    assert "official mjml: skipped" in done.stdout
