"""Smoke test: the live preview benchmark runs the real command end to end and prints its figures."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import ROOT, clean_environment


def test_preview_benchmark_prints_the_latency_the_baseline_and_the_target() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "preview.py"), "--runs", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=clean_environment(),
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert re.search(r"^baseline rebuild .* median: [\d.]+ ms$", done.stdout, re.M), done.stdout
    assert re.search(r"^save -> render event median: [\d.]+ ms  p95: [\d.]+ ms", done.stdout, re.M)
    assert re.search(r"^target: median under 150 ms: (PASS|MISS)$", done.stdout, re.M)
