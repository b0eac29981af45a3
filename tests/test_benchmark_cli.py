"""Smoke test: the CLI benchmark runs end to end and prints each command with its target.

Only the shape of the report is checked; the times are the benchmark's business, never a test's.
"""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import ROOT, clean_environment


def test_cli_benchmark_prints_baseline_targets_and_ratios() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "cli.py"), "--runs", "1"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=clean_environment(),
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    out = done.stdout
    assert out.startswith("Bytecode cached (as on a user's machine)")
    assert "No bytecode cache (PYTHONDONTWRITEBYTECODE=1" in out
    assert len(re.findall(r"^  python -c pass +[\d.]+ s$", out, re.M)) == 2
    timed = r" +[\d.]+ s +[\d.]+x baseline"
    assert re.search(rf"^  newsletter --help{timed}  target < 0\.25 s  (PASS|MISS)$", out, re.M), out
    assert re.search(rf"^  newsletter check \S+\.yaml{timed}  target < 0\.50 s  (PASS|MISS)$", out, re.M)
    assert len(re.findall(rf"^  newsletter (--help|check .*){timed}$", out, re.M)) == 2  # uncached: no target
