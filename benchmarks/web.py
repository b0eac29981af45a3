"""Web archive benchmark: requests per second for an issue page beside a static file, same server.

Sends the largest packaged sample through the outbox into a scratch database (SQLite, or
``--database URL``), builds the static site from it, and starts one uvicorn process (a child, as
``newsletter serve`` runs) with ``newsletter serve``'s app plus a ``StaticFiles`` mount of that
static site. The baseline is that server answering the issue page's own bytes as a static file;
the figure is the same server answering ``/issues/<date>/`` from the archive (one version query
per request, the rendered page from memory). Both are driven by the same keep-alive clients on
loopback, alternating rounds, and the median round is printed.

Target: the archive page at least 0.5x the static baseline, printed as PASS/MISS.

    .venv/bin/python benchmarks/web.py [--seconds 3] [--rounds 3] [--clients 4] [--database URL] [--strict]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

TARGET = 0.5
PORT_LINE = "listening on "


def serve(root: Path, database: str) -> None:
    """The child: ``newsletter serve``'s app with the static site mounted under /static/."""
    import socket

    import uvicorn
    from starlette.applications import Starlette
    from starlette.routing import Mount
    from starlette.staticfiles import StaticFiles

    from newsletter.store.db import open_database
    from newsletter.web.app import create_app

    settings = _settings(root, database)
    engine = open_database(database)
    app = Starlette(
        routes=[
            Mount("/static", StaticFiles(directory=root / "site")),
            Mount("/", create_app(settings, engine)),
        ]
    )
    # IPPROTO_TCP named, not 0: asyncio turns Nagle's algorithm off (TCP_NODELAY) only on sockets
    # that say they are TCP, and with it on every answer waited 40 ms for the client's delayed ACK.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.bind(("127.0.0.1", 0))
    print(f"{PORT_LINE}{sock.getsockname()[1]}", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=[sock])


def _settings(root: Path, database: str):  # type: ignore[no-untyped-def]
    from newsletter.config import Settings

    return Settings.model_validate(
        {
            "newsletter": {"base_url": "http://127.0.0.1:8000"},
            "database": {"url": database},
            "esp": {"outbox_dir": str(root / "outbox")},
        }
    )


def prepare(root: Path, database: str) -> str:
    """Send the largest sample issue (a real outbox send) and build the static site; its page path."""
    from newsletter.delivery import runner
    from newsletter.demo import SAMPLE_ISSUES_DIR
    from newsletter.store.db import make_engine, session_scope, upgrade
    from newsletter.store.subscribers import SubscriberRepository
    from newsletter.web.archive import build_site

    settings = _settings(root, database)
    engine = make_engine(database)
    try:
        upgrade(engine)
        with session_scope(engine) as session:
            for i in range(3):
                SubscriberRepository(session).add(f"reader{i}@example.org")
        issue = max(SAMPLE_ISSUES_DIR.glob("*.yaml"), key=lambda path: path.stat().st_size)
        prepared = runner.prepare_issue(issue, settings)
        runner.execute(runner.plan(prepared, settings, "", start=True), settings)
        build_site(settings, engine, root / "site")
    finally:
        engine.dispose()
    return f"issues/{issue.stem}/"


def rate(base: str, path: str, seconds: float, clients: int) -> tuple[float, int]:
    """Requests per second over ``seconds`` from ``clients`` keep-alive clients; and the body size."""
    counts = [0] * clients
    sizes = [0] * clients
    stop = time.monotonic() + seconds
    errors: list[str] = []

    def loop(index: int) -> None:
        with httpx.Client(base_url=base, timeout=10) as client:
            while time.monotonic() < stop:
                response = client.get(path)
                if response.status_code != 200:
                    errors.append(f"{path}: {response.status_code}")
                    return
                sizes[index] = len(response.content)
                counts[index] += 1

    started = time.monotonic()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise SystemExit(f"error: {errors[0]}")
    return sum(counts) / (time.monotonic() - started), max(sizes)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one round per target")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4, help="concurrent keep-alive clients")
    parser.add_argument("--database", help="a database URL (default: a scratch SQLite file)")
    parser.add_argument("--strict", action="store_true", help="exit 1 when the target is missed")
    parser.add_argument("--serve", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve), args.database)
        return 0
    root = Path(tempfile.mkdtemp(prefix="newsletter-web-bench-"))
    database = args.database or f"sqlite:///{root / 'newsletter.db'}"
    server: subprocess.Popen[str] | None = None
    try:
        page = prepare(root, database)
        server = subprocess.Popen(
            [sys.executable, __file__, "--serve", str(root), "--database", database],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line.startswith(PORT_LINE):
            raise SystemExit(f"error: the server did not start: {line!r}")
        base = f"http://127.0.0.1:{int(line[len(PORT_LINE):])}"
        static_path, archive_path = f"/static/{page}index.html", f"/{page}"
        with httpx.Client(base_url=base) as client:  # the same bytes either way
            assert client.get(static_path).content == client.get(archive_path).content
        rate(base, archive_path, 0.3, args.clients)  # warm up: render once, connections, caches
        rate(base, static_path, 0.3, args.clients)
        static, archive = [], []
        for _ in range(args.rounds):
            static.append(rate(base, static_path, args.seconds, args.clients))
            archive.append(rate(base, archive_path, args.seconds, args.clients))
    finally:
        if server is not None:
            server.terminate()
            server.wait(10)
        shutil.rmtree(root, ignore_errors=True)
    dialect = database.split(":", 1)[0].split("+", 1)[0]
    static_rate = statistics.median(r for r, _ in static)
    archive_rate = statistics.median(r for r, _ in archive)
    ratio = archive_rate / static_rate
    print(f"issue page: {archive[0][1] / 1024:.1f} KB, {args.clients} keep-alive clients, {dialect}, "
          f"median of {args.rounds} rounds of {args.seconds:g} s")
    print(f"baseline static file (StaticFiles, same server): {static_rate:,.0f} req/s")
    print(f"archive page /{page}: {archive_rate:,.0f} req/s ({ratio:.2f}x the baseline)")
    verdict = "PASS" if ratio >= TARGET else "MISS"
    print(f"target: archive page at least {TARGET}x the static baseline: {verdict}")
    return 1 if args.strict and verdict == "MISS" else 0


if __name__ == "__main__":
    sys.exit(main())
