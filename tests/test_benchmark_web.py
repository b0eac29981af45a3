"""Smoke test: the web benchmark sends, builds, serves, and prints every figure beside its baseline."""

from __future__ import annotations

import re
import subprocess
import sys

from tests.conftest import ROOT, clean_environment

SHORT = ("--seconds", "0.2", "--rounds", "1", "--leavers", "300", "--signups", "20", "--batches", "3",
         "--singles", "200", "--hook-readers", "300")


def test_web_benchmark_prints_each_rate_beside_its_baseline() -> None:
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
    per_event = r" events/s \([\d.]+x the bare INSERT; [\d,]+ events\)$"
    expected = [
        r"^sign-up POST /subscribe, ALTCHA verified, confirmation mailed: [\d,]+ req/s "
        r"\([\d.]+x the baseline; [1-9][\d,]* confirmations\)$",
        r"^baseline bare INSERT of the same event rows \(1,000 per transaction\): [\d,]+ events/s$",
        r"^SendGrid webhook, signed batches of 1,000: [\d,]+" + per_event,
        r"^Postmark webhook, one event per request: [\d,]+" + per_event,
        r"^target: webhook ingestion at least 5,000 events/s in batches: (PASS|MISS)$",
    ]
    for line in expected:
        assert re.search(line, out, re.M), (line, out)
