"""Smoke test: the web archive benchmark sends, builds, serves and prints both figures and the target."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import ROOT, clean_environment

SHORT = ("--seconds", "0.2", "--rounds", "1", "--leavers", "300")


def test_web_benchmark_prints_the_archive_rate_beside_the_static_baseline() -> None:
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "web.py"), *SHORT],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
        env=clean_environment(),
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    out = done.stdout
    assert re.search(r"^baseline static file \(StaticFiles, same server\): [\d,]+ req/s$", out, re.M), out
    figure = r"^archive page /issues/\d{4}-\d{2}-\d{2}/: [\d,]+ req/s \([\d.]+x the baseline\)$"
    assert re.search(figure, out, re.M), out
    assert re.search(r"^target: archive page at least 0.5x the static baseline: (PASS|MISS)$", out, re.M)
    clicks = r"^one-click POST /u/TOKEN, one unsubscribe written each: [\d,]+ req/s "
    clicks += r"\([\d.]+x the baseline; [1-9][\d,]* readers left\)$"
    assert re.search(clicks, out, re.M), out
