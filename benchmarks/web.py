"""Web archive benchmark: requests per second for an issue page beside a static file, same server.

Sends the largest packaged sample through the outbox into a scratch database (SQLite, or
``--database URL``), builds the static site from it, and starts one uvicorn process (a child, as
``newsletter serve`` runs) with ``newsletter serve``'s app plus a ``StaticFiles`` mount of that
static site. The baseline is that server answering the issue page's own bytes as a static file;
the figure is the same server answering ``/issues/<date>/`` from the archive (one version query
per request, the rendered page from memory). Both are driven by the same keep-alive clients on
loopback, alternating rounds, and the median round is printed.

Target: the archive page at least 0.5x the static baseline, printed as PASS/MISS.

The one-click unsubscribe (``POST /u/TOKEN``, RFC 8058) is measured on the same server: each request
unsubscribes another of ``--leavers`` subscribers imported after the send, so every answer pays for
its write (an event and the subscriber's row, in one transaction). Target: 1,000 a second on
PostgreSQL, printed beside the static baseline.

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
from collections.abc import Callable
from pathlib import Path

import httpx

TARGET = 0.5
ONE_CLICK_TARGET = 1000
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


def prepare(root: Path, database: str, leavers: int) -> tuple[str, list[str]]:
    """Send the largest sample issue (a real outbox send) and build the static site; then import
    ``leavers`` more subscribers. The page's path, and one one-click path for each of them."""
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
        paths = _leavers(root, engine, settings, leavers)
    finally:
        engine.dispose()
    return f"issues/{issue.stem}/", paths


def _leavers(root: Path, engine, settings, count: int) -> list[str]:  # type: ignore[no-untyped-def]
    """``count`` subscribers imported in bulk, and the one-click path of each (send 1's token)."""
    from sqlalchemy import select

    from newsletter.delivery.runner import secret_key
    from newsletter.delivery.tokens import TokenSigner
    from newsletter.store.importer import import_csv
    from newsletter.store.models import Subscriber

    csv = root / "leavers.csv"
    csv.write_text("email\n" + "".join(f"leaver{i}@example.org\n" for i in range(count)), encoding="utf-8")
    with engine.connect() as conn:
        import_csv(conn, csv)
        ids = conn.execute(select(Subscriber.id).where(Subscriber.email.like("leaver%"))).scalars().all()
    signer = TokenSigner(secret_key(settings))
    return [f"/u/{signer.unsubscribe_token(1, subscriber_id)}" for subscriber_id in ids]


def one_clicks(base: str, paths: list[str], seconds: float, clients: int) -> tuple[float, int]:
    """One-click POSTs per second, each to the next path not yet used; and how many were made."""
    lock = threading.Lock()
    todo = iter(paths)
    made = [0] * clients
    errors: list[str] = []
    stop = time.monotonic() + seconds

    def loop(index: int) -> None:
        with httpx.Client(base_url=base, timeout=10) as client:
            while True:  # at least one request each, however short the round or busy the machine
                if made[index] and time.monotonic() >= stop:
                    return
                with lock:
                    path = next(todo, None)
                if path is None:
                    return
                response = client.post(path, data={"List-Unsubscribe": "One-Click"})
                if response.status_code != 200:
                    errors.append(f"{path}: {response.status_code}")
                    return
                made[index] += 1

    elapsed = _drive(loop, clients, errors)
    return sum(made) / elapsed, sum(made)


def rate(base: str, path: str, seconds: float, clients: int) -> tuple[float, int]:
    """Requests per second over ``seconds`` from ``clients`` keep-alive clients; and the body size."""
    counts = [0] * clients
    sizes = [0] * clients
    stop = time.monotonic() + seconds
    errors: list[str] = []

    def loop(index: int) -> None:
        with httpx.Client(base_url=base, timeout=10) as client:
            while not counts[index] or time.monotonic() < stop:  # at least one, however busy
                response = client.get(path)
                if response.status_code != 200:
                    errors.append(f"{path}: {response.status_code}")
                    return
                sizes[index] = len(response.content)
                counts[index] += 1

    elapsed = _drive(loop, clients, errors)
    return sum(counts) / elapsed, max(sizes)


def _drive(loop: Callable[[int], None], clients: int, errors: list[str]) -> float:
    """Run ``loop`` in ``clients`` threads at once; the seconds they took (the first error ends it)."""
    started = time.monotonic()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise SystemExit(f"error: {errors[0]}")
    return time.monotonic() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one round per target")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4, help="concurrent keep-alive clients")
    parser.add_argument("--database", help="a database URL (default: a scratch SQLite file)")
    parser.add_argument("--leavers", type=int, default=20_000, help="subscribers for the one-click POSTs")
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
        page, leavers = prepare(root, database, args.leavers)
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
        static, archive, clicks = [], [], []
        per_round = len(leavers) // args.rounds
        for index in range(args.rounds):
            static.append(rate(base, static_path, args.seconds, args.clients))
            archive.append(rate(base, archive_path, args.seconds, args.clients))
            ours = leavers[index * per_round : (index + 1) * per_round]
            clicks.append(one_clicks(base, ours, args.seconds, args.clients))
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
    click_rate = statistics.median(r for r, _ in clicks)
    print(f"one-click POST /u/TOKEN, one unsubscribe written each: {click_rate:,.0f} req/s "
          f"({click_rate / static_rate:.2f}x the baseline; {sum(n for _, n in clicks):,} readers left)")
    if dialect == "postgresql":
        print(f"target: one-click at least {ONE_CLICK_TARGET:,} a second on PostgreSQL: "
              f"{'PASS' if click_rate >= ONE_CLICK_TARGET else 'MISS'}")
    return 1 if args.strict and verdict == "MISS" else 0


if __name__ == "__main__":
    sys.exit(main())
