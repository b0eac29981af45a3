"""CLI benchmark: how long ``newsletter --help`` and ``newsletter check`` take, whole process.

Each command runs ``--runs`` times as a fresh process (interpreter start, imports, work, exit), and
the median wall time is printed beside ``python -c pass`` measured in the same run, with the ratio.
``check`` checks the largest sample issue shipped in the package.

Targets, with bytecode cached as on a user's machine (the first run writes the ``.pyc`` files,
and is not counted): ``--help`` under 0.25 s, ``check`` under 0.5 s. The same commands are then
timed with no bytecode cache at all (``PYTHONDONTWRITEBYTECODE=1`` and an empty
``-X pycache_prefix``, so every module is compiled from source on every run): what a read-only
install or a sandbox that sets ``PYTHONDONTWRITEBYTECODE`` sees; printed, not held to a target.

    .venv/bin/python benchmarks/cli.py [--runs 20] [--strict]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_ISSUES_DIR = ROOT / "newsletter" / "samples" / "issues"
HELP_TARGET_S = 0.25
CHECK_TARGET_S = 0.5


def newsletter_command() -> list[str]:
    """The console script users type, next to this interpreter; ``-m newsletter`` without one."""
    script = Path(sys.executable).with_name("newsletter")
    return [str(script)] if script.exists() else [sys.executable, "-m", "newsletter"]


def largest_sample() -> Path:
    return max(SAMPLE_ISSUES_DIR.glob("*.yaml"), key=lambda path: path.stat().st_size)


def environment(*, cached: bool, prefix: Path) -> dict[str, str]:
    """No ``NEWSLETTER_*`` of the shell (a config or a database URL would change the work)."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("NEWSLETTER_")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env.pop("PYTHONPYCACHEPREFIX", None)
    if not cached:
        env["PYTHONDONTWRITEBYTECODE"] = "1"
        env["PYTHONPYCACHEPREFIX"] = str(prefix)  # empty: nothing to read, nothing written
    return env


def median_seconds(command: list[str], env: dict[str, str], runs: int) -> float:
    """Median wall time of ``runs`` fresh processes; a failing command stops the benchmark."""
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        done = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, check=False)
        times.append(time.perf_counter() - started)
        if done.returncode != 0:
            raise SystemExit(f"{' '.join(command)} exited {done.returncode}:\n{done.stderr.decode()}")
    return statistics.median(times)


def verdict(seconds: float, target: float) -> str:
    return "PASS" if seconds < target else "MISS"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=20, help="processes per command (median)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args(argv)

    newsletter = newsletter_command()
    sample = largest_sample()
    commands = [
        ("python -c pass", [sys.executable, "-c", "pass"], None),
        ("newsletter --help", [*newsletter, "--help"], HELP_TARGET_S),
        (f"newsletter check {sample.name}", [*newsletter, "check", str(sample)], CHECK_TARGET_S),
    ]
    missed = False
    with tempfile.TemporaryDirectory(prefix="newsletter-pycache-") as empty:
        for cached in (True, False):
            env = environment(cached=cached, prefix=Path(empty))
            if cached:
                print(f"Bytecode cached (as on a user's machine), median of {args.runs} runs, whole process:")
                for _, command, _ in commands:  # writes the .pyc files; not counted
                    median_seconds(command, env, 1)
            else:
                print(
                    "No bytecode cache (PYTHONDONTWRITEBYTECODE=1, empty pycache prefix: every module "
                    f"compiled on every run), median of {args.runs} runs, no target:"
                )
            baseline = median_seconds(commands[0][1], env, args.runs)
            print(f"  {commands[0][0]:36} {baseline:6.3f} s")
            for label, command, target in commands[1:]:
                seconds = median_seconds(command, env, args.runs)
                line = f"  {label:36} {seconds:6.3f} s  {seconds / baseline:5.1f}x baseline"
                if cached and target is not None:
                    line += f"  target < {target:.2f} s  {verdict(seconds, target)}"
                    missed |= seconds >= target
                print(line)
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
