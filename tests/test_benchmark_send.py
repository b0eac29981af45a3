"""Smoke test: the send benchmark runs end to end on both databases, every shape, small numbers."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT, clean_environment


@pytest.mark.postgres
def test_send_benchmark_prints_each_shape_with_its_baseline() -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "benchmarks" / "send.py"),
            "--recipients",
            "600",
            "--full-recipients",
            "60",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=clean_environment(),
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    for database in ("sqlite", "postgresql"):
        assert f"{database}: seeded 600 subscribers" in done.stdout
    for shape, n in (
        ("templates", 600),
        ("sendgrid", 600),
        ("mailgun", 600),
        ("ses", 600),
        ("batch", 60),
        ("smtp", 60),
        ("outbox", 60),
    ):
        rows = re.findall(
            rf"^  {shape} +{n:,} in .* peak +\d+ MB \| wire +[\d,]+/s \| ratio", done.stdout, re.M
        )
        assert len(rows) == 2, done.stdout
    # Every recipient was accepted and every send finished (the benchmark names any that was not).
    assert "accepted, " not in done.stdout
