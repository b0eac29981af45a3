"""Render benchmark: the whole email pipeline, and mjml-python against the official MJML compiler.

Renders the largest sample issue shipped in the package (Jinja2 -> MJML -> HTML, plus the plain-text
part) ``--runs`` times and prints the median, with the split per stage. In the same run it compiles
the same MJML with the official compiler (npm ``mjml``) in one long-lived node process, so node
start-up and module loading are paid once and only compiles are compared, and prints the ratio.

Targets: pipeline median under 10 ms; mjml-python at least 10x faster than the official compiler.

    .venv/bin/python benchmarks/render.py [--runs 50] [--issue PATH] [--skip-node] [--strict]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from newsletter.config import Settings
from newsletter.content.loader import load_issue
from newsletter.demo import SAMPLE_ISSUES_DIR
from newsletter.render.email import compile_mjml, render_issue, render_mjml
from newsletter.render.text import render_text

HERE = Path(__file__).resolve().parent
SERVER = HERE / "mjml_server.js"
PYTHON_WARMUPS = 3
# V8 needs more calls than CPython before its JIT settles; a fair comparison waits for it.
NODE_WARMUPS = 10
PIPELINE_TARGET_MS = 10.0
RATIO_TARGET = 10.0


class NodeUnavailable(Exception):
    """The official compiler cannot be run here; the message says why."""


@dataclass(frozen=True)
class NodeResult:
    compile_ms: float
    round_trip_ms: float
    html_bytes: int
    errors: int


def median_ms(func: Callable[[], object], runs: int, warmups: int = PYTHON_WARMUPS) -> float:
    """Median wall time of ``func`` in ms; the median ignores the odd GC pause or scheduler hiccup."""
    for _ in range(warmups):
        func()
    samples = []
    for _ in range(runs):
        start = time.perf_counter_ns()
        func()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return statistics.median(samples)


def largest_issue() -> Path:
    """The biggest sample shipped in the package: the most content, so the worst case a real week
    produces. Never an editor's file in issues/, which may be a half-written draft."""
    issues = sorted(SAMPLE_ISSUES_DIR.glob("*.yaml"))
    if not issues:
        raise SystemExit(f"no sample issues in {SAMPLE_ISSUES_DIR}")
    return max(issues, key=lambda path: path.stat().st_size)


def ensure_mjml_installed() -> None:
    """Install the pinned npm ``mjml`` on first use, so the benchmark is one command."""
    if shutil.which("node") is None:
        raise NodeUnavailable("node is not on PATH")
    if (HERE / "node_modules" / "mjml").is_dir():
        return
    npm = shutil.which("npm")
    if npm is None:
        raise NodeUnavailable("npm is not on PATH and benchmarks/node_modules/mjml is missing")
    print("installing npm mjml into benchmarks/node_modules ...", flush=True)
    # The lock file keeps integrity hashes only, no registry addresses.
    flags = ["--no-audit", "--no-fund", "--omit-lockfile-registry-resolved"]
    command = [npm, "install", "--prefix", str(HERE), *flags]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise NodeUnavailable(f"npm install failed ({done.returncode}): {done.stderr.strip()[-500:]}")


class MjmlServer:
    """One node process running mjml_server.js; requests and replies are JSON lines."""

    def __init__(self) -> None:
        self.process = subprocess.Popen(
            ["node", str(SERVER)],
            cwd=HERE,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            encoding="utf-8",
            bufsize=1,
        )

    def compile(self, source: str) -> dict[str, Any]:
        assert self.process.stdin is not None and self.process.stdout is not None
        self.process.stdin.write(json.dumps({"mjml": source}) + "\n")
        self.process.stdin.flush()
        line = self.process.stdout.readline()
        if not line:
            raise NodeUnavailable(f"mjml_server.js exited ({self.process.wait()})")
        reply: dict[str, Any] = json.loads(line)
        if "error" in reply:
            raise NodeUnavailable(f"official compiler failed: {reply['error']}")
        return reply

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def run_official(source: str, runs: int) -> NodeResult:
    """Compile ``source`` with npm mjml: median inside node (pure compile) and round trip from Python."""
    ensure_mjml_installed()
    server = MjmlServer()
    try:
        for _ in range(NODE_WARMUPS):
            reply = server.compile(source)
        inside, round_trip = [], []
        for _ in range(runs):
            start = time.perf_counter_ns()
            reply = server.compile(source)
            round_trip.append((time.perf_counter_ns() - start) / 1e6)
            inside.append(float(reply["ms"]))
    finally:
        server.close()
    return NodeResult(
        compile_ms=statistics.median(inside),
        round_trip_ms=statistics.median(round_trip),
        html_bytes=int(reply["html_bytes"]),
        errors=int(reply.get("errors", 0)),
    )


def verdict(ok: bool) -> str:
    return "PASS" if ok else "MISS"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=50, help="timed runs per measurement (default 50)")
    parser.add_argument("--issue", type=Path, help="issue file (default: the packaged sample)")
    parser.add_argument("--skip-node", action="store_true", help="do not run the official compiler")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")

    path: Path = args.issue or largest_issue()
    issue = load_issue(path).issue
    settings = Settings().newsletter
    source = render_mjml(issue, settings)
    html = compile_mjml(source)
    html_bytes = len(html.encode("utf-8"))

    print(f"issue: {path} ({path.stat().st_size} bytes YAML, {len(source.encode('utf-8'))} bytes MJML)")
    print(f"runs: {args.runs} (after {PYTHON_WARMUPS} warm-ups)")
    pipeline = median_ms(lambda: render_issue(issue, settings), args.runs)
    jinja = median_ms(lambda: render_mjml(issue, settings), args.runs)
    compiled = median_ms(lambda: compile_mjml(source), args.runs)
    text = median_ms(lambda: render_text(issue, settings), args.runs)
    print(f"pipeline render_issue median: {pipeline:.2f} ms")
    print(f"  jinja render_mjml median:   {jinja:.2f} ms")
    print(f"  mjml-python compile median: {compiled:.2f} ms")
    print(f"  text render_text median:    {text:.2f} ms")
    print(f"mjml-python HTML: {html_bytes} bytes")

    missed = pipeline >= PIPELINE_TARGET_MS
    if args.skip_node:
        official: NodeResult | None = None
        print("official mjml: skipped (--skip-node)")
    else:
        try:
            official = run_official(source, args.runs)
        except (NodeUnavailable, OSError) as exc:
            print(f"official mjml: unavailable: {exc} (use --skip-node to skip it)", file=sys.stderr)
            return 2
        print(f"official mjml (npm, node {node_version()}), after {NODE_WARMUPS} warm-ups:")
        print(f"  compile median (inside node): {official.compile_ms:.2f} ms")
        print(f"  round trip median (from Python, incl. JSON + pipe): {official.round_trip_ms:.2f} ms")
        print(f"official mjml HTML: {official.html_bytes} bytes ({official.errors} validation warnings)")
        print(f"HTML size official/mjml-python: {official.html_bytes / html_bytes:.2f}")
        ratio = official.compile_ms / compiled
        print(f"compile ratio official/mjml-python: {ratio:.1f}x")
        print(f"  (round trip/mjml-python: {official.round_trip_ms / compiled:.1f}x)")

    print(f"{verdict(not missed)}: pipeline median {pipeline:.2f} ms < {PIPELINE_TARGET_MS:g} ms")
    if official is not None:
        ratio_ok = ratio >= RATIO_TARGET
        missed = missed or not ratio_ok
        print(f"{verdict(ratio_ok)}: compile ratio {ratio:.1f}x >= {RATIO_TARGET:g}x")
    return 1 if args.strict and missed else 0


def node_version() -> str:
    done = subprocess.run(["node", "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "?"


if __name__ == "__main__":
    sys.exit(main())
