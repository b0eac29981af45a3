"""Link check benchmark: the largest sample issue's links against a loopback site that waits.

Every URL the email carries (``email_links``: stories, buttons, images, the archive link) is moved
onto a loopback server, each original host onto its own address (``127.0.0.N``, same port), so the
check's per-host limit binds as it would on the real sites. The server waits ``--delay`` seconds
before each answer. Printed, from one run:

- the slowest single request: each URL checked alone, one after the other (the baseline);
- the whole issue's check, fresh: wall time and its ratio to the slowest single request
  (target: under 1.5x), beside the floor the per-host limit sets (a host with 6 links and
  ``per_host = 4`` needs two rounds whatever the code does);
- the cached rerun of the same check (target: under 0.1 s), which makes no request.

    .venv/bin/python benchmarks/links.py [--delay 0.2] [--issue PATH] [--strict]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import multiprocessing
import socket
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from urllib.parse import urlsplit

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from newsletter.checks.cache import LinkCache
from newsletter.checks.links import fetch_links
from newsletter.config import CheckSettings, Settings
from newsletter.content.links import email_links, link_problems
from newsletter.content.loader import load_issue
from newsletter.demo import SAMPLE_ISSUES_DIR

WALL_TARGET = 1.5
CACHED_TARGET_S = 0.1


def largest_issue() -> Path:
    return max(SAMPLE_ISSUES_DIR.glob("*.yaml"), key=lambda path: path.stat().st_size)


def site(delay: float) -> Starlette:
    async def answer(request: Request) -> Response:
        await asyncio.sleep(delay)
        image = request.url.path.endswith((".png", ".jpg", ".jpeg", ".gif", ".webp"))
        body = b"" if request.method == "HEAD" else b"ok"
        return Response(body, media_type="image/png" if image else "text/html")

    return Starlette(routes=[Route("/{path:path}", answer, methods=["GET", "HEAD"])])


def _run_server(delay: float, sockets: list[socket.socket]) -> None:
    config = uvicorn.Config(site(delay), log_level="warning", access_log=False, lifespan="off")
    uvicorn.Server(config).run(sockets=sockets)


def serve(delay: float, hosts: int) -> tuple[multiprocessing.process.BaseProcess, int]:
    """A server process listening on 127.0.0.1 .. 127.0.0.HOSTS, all on one port: its own core and
    interpreter, so the figures are the check's, not the server's share of one GIL."""
    first = socket.socket()
    first.bind(("127.0.0.1", 0))
    port = first.getsockname()[1]
    sockets = [first]
    for n in range(2, hosts + 1):
        sock = socket.socket()
        sock.bind((f"127.0.0.{n}", port))
        sockets.append(sock)
    for sock in sockets:
        sock.listen(512)
    context = multiprocessing.get_context("fork")
    process = context.Process(target=_run_server, args=(delay, sockets), daemon=True)
    process.start()
    for sock in sockets:
        sock.close()
    deadline = time.monotonic() + 20
    while True:  # the server answers once it has started
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline or not process.is_alive():
                raise RuntimeError("the benchmark's server did not start") from None
            time.sleep(0.02)
    return process, port


def main() -> int:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--delay", type=float, default=0.2, help="seconds the server waits per request")
    parser.add_argument("--issue", type=Path, default=None)
    parser.add_argument("--per-host", type=int, default=None, help="override [check] per_host")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    args = parser.parse_args()

    issue = args.issue or largest_issue()
    loaded = load_issue(issue)
    settings = Settings()
    uses = email_links(loaded, settings.newsletter)
    hosts = sorted({urlsplit(use.url).hostname or "" for use in uses})
    process, port = serve(args.delay, len(hosts))
    address = {host: f"127.0.0.{n}" for n, host in enumerate(hosts, start=1)}

    def local(url: str) -> str:
        parts = urlsplit(url)
        return parts._replace(scheme="http", netloc=f"{address[parts.hostname or '']}:{port}").geturl()

    moved = [type(use)(local(use.url), use.at, use.kind, use.origin) for use in uses]
    urls = list(dict.fromkeys(use.url for use in moved))
    per_host = Counter(urlsplit(url).hostname for url in urls)
    with tempfile.TemporaryDirectory() as tmp:
        config = CheckSettings(allow_private_links=True, cache_file=Path(tmp) / "links.json")
        if args.per_host:
            config = config.model_copy(update={"per_host": args.per_host})
        try:
            fetch_links([urls[0]], config)  # warm-up: the CA bundle, the event loop's first start
            singles = []
            for url in urls:
                start = time.perf_counter()
                fetch_links([url], config)
                singles.append(time.perf_counter() - start)
            slowest = max(singles)

            cache = LinkCache.for_settings(config)
            start = time.perf_counter()
            results = fetch_links(urls, config, cache=cache)
            problems = link_problems(loaded, moved, results)
            wall = time.perf_counter() - start

            start = time.perf_counter()
            again = fetch_links(urls, config, cache=LinkCache.for_settings(config))
            link_problems(loaded, moved, again)
            cached = time.perf_counter() - start
        finally:
            process.terminate()
            process.join(10)

    rounds = math.ceil(max(per_host.values()) / config.per_host)
    broken = [problem for problem in problems if problem.severity == "error"]
    print(f"issue {issue.name}: {len(uses)} links, {len(urls)} distinct on {len(hosts)} hosts "
          f"(at most {max(per_host.values())} on one); server delay {args.delay * 1000:.0f} ms per request")
    print(f"baseline slowest single request: {slowest * 1000:.0f} ms "
          f"(median {sorted(singles)[len(singles) // 2] * 1000:.0f} ms, each URL alone)")
    print(f"whole issue, fresh: {wall * 1000:.0f} ms = {wall / slowest:.2f}x the slowest single request "
          f"(per-host floor: {rounds} round(s) of {config.per_host} = {rounds:.1f}x); {len(broken)} error(s)")
    print(f"whole issue, cached rerun: {cached * 1000:.1f} ms, {len(again)} results, no request")
    wall_ok = wall / slowest < WALL_TARGET
    cached_ok = cached < CACHED_TARGET_S
    print(f"target: fresh under {WALL_TARGET}x the slowest single request: {'PASS' if wall_ok else 'MISS'}")
    print(f"target: cached rerun under {CACHED_TARGET_S * 1000:.0f} ms: {'PASS' if cached_ok else 'MISS'}")
    if broken:
        print("\n".join(str(problem) for problem in broken[:5]), file=sys.stderr)
        return 1
    return 1 if args.strict and not (wall_ok and cached_ok) else 0


if __name__ == "__main__":
    sys.exit(main())
