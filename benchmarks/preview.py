"""Live preview benchmark: time from saving the issue file to the page's update event arriving.

Runs the real command, ``newsletter preview ISSUE --watch``, in a child process on a copy of the
largest sample issue, connects to its event stream as the page does, then ``--runs`` times writes
a changed file (as an editor's save does) and measures until the ``render`` event carrying that
change arrives. In the same run it times the rebuild alone (load, render, fill the slots, check)
in-process: the baseline, what the watch and the event stream add is the difference.

Target: median save-to-event under 150 ms, printed with the figures (PASS/MISS).

    .venv/bin/python benchmarks/preview.py [--runs 30] [--issue PATH] [--strict]
"""

from __future__ import annotations

import argparse
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx

from newsletter.config import Settings
from newsletter.demo import SAMPLE_ISSUES_DIR
from newsletter.live import LivePreview

TARGET_MS = 150.0
WARMUPS = 3
#: How long one save may take to show up before the run counts it as lost.
EVENT_TIMEOUT_S = 10.0
#: Each save changes the subject, which every render event carries.
SUBJECT_LINE = re.compile(r"^subject: .*$", re.M)


def largest_issue() -> Path:
    """The biggest packaged sample: the worst case a real week produces (as in ``render.py``)."""
    return max(SAMPLE_ISSUES_DIR.glob("*.yaml"), key=lambda path: path.stat().st_size)


def rebuild_ms(live: LivePreview, runs: int) -> float:
    """Median time of one rebuild in ms, after a warm-up (templates compiled, caches filled)."""
    live.build()
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        live.build()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def render_events(lines: Iterator[str]) -> Iterator[str]:
    """The data line of each ``render`` event (the state as JSON, unparsed: parsing is the page's)."""
    name = ""
    for line in lines:
        if line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:") and name == "render":
            yield line[5:]
        elif line == "":
            name = ""


def start_preview(issue: Path) -> tuple[subprocess.Popen[str], str]:
    command = [sys.executable, "-m", "newsletter", "preview", str(issue), "--watch", "--port", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=issue.parent)
    assert process.stdout is not None
    line = process.stdout.readline()
    found = re.search(r"http://127\.0\.0\.1:\d+/", line)
    if found is None:
        process.kill()
        raise SystemExit(f"the preview did not start: {line!r}")
    return process, found.group(0)


def wait_until_up(url: str) -> None:
    deadline = time.monotonic() + 30
    while True:
        try:
            httpx.get(url + "state", timeout=2).raise_for_status()
            return
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise SystemExit("the preview server did not answer within 30 s") from None
            time.sleep(0.05)


def save_to_event_ms(issue: Path, original: str, runs: int) -> list[float]:
    """Save ``runs`` changed versions of the file; the time from each write to its event."""
    process, url = start_preview(issue)
    try:
        wait_until_up(url)
        samples: list[float] = []
        with httpx.stream("GET", url + "events", timeout=EVENT_TIMEOUT_S) as response:
            events = render_events(response.iter_lines())
            next(events)  # the state on connecting
            time.sleep(0.5)  # the watch starts with the server; give it a moment before the first save
            for run in range(WARMUPS + runs):
                marker = f"Save {run} of the benchmark"
                text = SUBJECT_LINE.sub(f'subject: "{marker}"', original, count=1)
                start = time.perf_counter()
                issue.write_text(text, encoding="utf-8")
                for data in events:
                    if marker in data:
                        break
                else:
                    raise SystemExit("the event stream ended")
                if run >= WARMUPS:
                    samples.append((time.perf_counter() - start) * 1000)
                time.sleep(0.05)  # saves a human could make, not one burst
        return samples
    finally:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=30, help="timed saves (default 30)")
    parser.add_argument("--issue", type=Path, help="issue file (default: the largest packaged sample)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    source: Path = args.issue or largest_issue()
    original = source.read_text(encoding="utf-8")
    if not SUBJECT_LINE.search(original):
        parser.error(f"{source} has no top-level subject: line to change")
    with tempfile.TemporaryDirectory(prefix="preview-bench-") as folder:
        issue = Path(folder) / source.name
        shutil.copy(source, issue)
        live = LivePreview(issue, Settings().newsletter)
        rebuild = rebuild_ms(live, args.runs)
        samples = save_to_event_ms(issue, original, args.runs)

    median = statistics.median(samples)
    worst = max(samples)
    p95 = sorted(samples)[max(0, round(0.95 * len(samples)) - 1)]
    print(f"issue: {source} ({len(original.encode('utf-8'))} bytes YAML)")
    print(f"runs: {args.runs} saves (after {WARMUPS} warm-ups)")
    print(f"baseline rebuild (load, render, fill, check) median: {rebuild:.1f} ms")
    print(f"save -> render event median: {median:.1f} ms  p95: {p95:.1f} ms  max: {worst:.1f} ms")
    print(f"watch + event overhead (median - baseline): {median - rebuild:.1f} ms")
    print(f"target: median under {TARGET_MS:.0f} ms: {'PASS' if median < TARGET_MS else 'MISS'}")
    return 1 if args.strict and median >= TARGET_MS else 0


if __name__ == "__main__":
    raise SystemExit(main())
