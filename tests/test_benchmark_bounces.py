"""Smoke test: the bounce-mailbox benchmark runs end to end against Dovecot and prints its figures
beside the bare fetch. Only the report's shape is checked; the times are the benchmark's business."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from tests.conftest import ROOT, clean_environment
from tests.imap_server import DOVECOT


@pytest.mark.imap
def test_bounces_benchmark_prints_classify_and_fetch_rates() -> None:
    if not DOVECOT.exists():
        pytest.skip("Dovecot is not installed (scripts/install-dovecot.sh installs it)")
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "bounces.py"), "--messages", "45", "--page-size", "10"],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=ROOT,
        env=clean_environment(),
        check=False,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    out = done.stdout
    assert "Mailbox of 45 mixed messages" in out
    assert re.search(r"bare fetch \(baseline\) +[\d.]+ s +[\d,]+ messages/s", out)
    assert re.search(r"classify only +[\d.]+ s +[\d,]+ messages/s +\([\d.]+x the fetch\)", out)
    assert "bounce 15" in out and "complaint 9" in out  # 45 messages, 15 fixtures: three of each
