"""Smoke test: the link check benchmark runs against its loopback site and prints its figures."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import ROOT, clean_environment


def test_links_benchmark_prints_the_wall_time_the_baseline_and_the_targets() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "links.py"), "--delay", "0.05"],
        capture_output=True, text=True, timeout=120, cwd=ROOT, env=clean_environment(), check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert re.search(r"^baseline slowest single request: \d+ ms", done.stdout, re.M), done.stdout
    assert re.search(r"^whole issue, fresh: \d+ ms = [\d.]+x the slowest single request", done.stdout, re.M)
    assert re.search(r"^whole issue, cached rerun: [\d.]+ ms, \d+ results, no request$", done.stdout, re.M)
    assert re.search(r"^target: cached rerun under 100 ms: (PASS|MISS)$", done.stdout, re.M)
