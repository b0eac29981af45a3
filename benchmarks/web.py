"""Web benchmark: what ``newsletter serve`` answers per second, each beside a baseline of the same run.

Sends the largest packaged sample through the outbox into a scratch database (a SQLite file, or a
fresh database on the PostgreSQL server ``--database`` names, dropped afterwards: see
``scratch.py``), builds the static site from it, and starts one uvicorn process (a child, as
``newsletter serve`` runs) with ``newsletter serve``'s app plus a ``StaticFiles`` mount of that
static site. Keep-alive clients on loopback (the standard library's ``http.client``, the cheapest
Python client, since they share the server's cores) drive every target in turn, round after round,
and the median round is printed.

* **Archive page** (``/issues/<date>/``: a version query per request, the rendered page from
  memory) beside the **baseline**: the same server answering the page's own bytes as a static file.
  Target: at least 0.5x the baseline.
* **One-click unsubscribe** (``POST /u/TOKEN``, RFC 8058): each request unsubscribes another of
  ``--leavers`` subscribers imported after the send, so every answer pays for its write (an event,
  the subscriber's row and a suppression, committed before the answer). Target: 1,000 a second on
  PostgreSQL.
* **Sign-up** (``POST /subscribe`` with a new address each): the form read and validated, the
  ALTCHA solution verified at the configured cost (PBKDF2, 5,000 iterations by default) and
  claimed once in the database, the rate limits counted, and off the request path the pending
  subscriber written and the confirmation mailed through the outbox. The round lasts until every
  confirmation is written, so the rate is of finished sign-ups. The challenges are made by the
  parent with the server's key (``NEWSLETTER_ALTCHA_KEY``) and a known answer, so the clients do
  not spend the proof of work a browser would.
* **Webhooks**: SendGrid-style POSTs of 1,000 signed events (ECDSA over the body, verified with the
  key the child has in ``SENDGRID_WEBHOOK_PUBLIC_KEY``; deliveries, opens, clicks and a few bounces
  and complaints of imported subscribers), and Postmark-style single ``Delivery`` records with
  basic auth, in events per second beside the **bare INSERT** baseline: the same event rows
  written by the parent with one ``executemany`` of 1,000 rows per transaction. Target: at least
  5,000 events a second in batches.

    .venv/bin/python benchmarks/web.py [--seconds 3] [--rounds 3] [--clients 4] [--database URL] [--strict]
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import http.client
import itertools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from scratch import scratch_database  # this script's folder is the first on sys.path

TARGET = 0.5
ONE_CLICK_TARGET = 1000
WEBHOOK_TARGET = 5000
SENDGRID_BATCH = 1000
PORT_LINE = "listening on "
NO_LIMIT = "1000000 per minute"
ALTCHA_KEY = "benchmark-altcha-key"
POSTMARK_USER, POSTMARK_PASSWORD = "bench", "bench-password"


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
    sock.listen(1024)  # before the port is told: the first client must not meet a refusal
    print(f"{PORT_LINE}{sock.getsockname()[1]}", flush=True)
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False))
    server.run(sockets=[sock])


def _settings(root: Path, database: str):  # type: ignore[no-untyped-def]
    """The service as configured by default, but for limits no benchmark client could stay under."""
    from newsletter.config import Settings

    return Settings.model_validate(
        {
            "newsletter": {"base_url": "http://127.0.0.1:8000"},
            "database": {"url": database},
            "esp": {"outbox_dir": str(root / "outbox")},
            "web": {"limit_per_address": NO_LIMIT, "limit_per_domain": NO_LIMIT, "limit_per_ip": NO_LIMIT},
            "webhooks": {"timestamp_tolerance": 3600},
        }
    )


# -- the data -------------------------------------------------------------------------------------


def prepare(root: Path, database: str, leavers: int, hook_readers: int) -> tuple[str, list[str], list[str]]:
    """Send the largest sample issue (a real outbox send) and build the static site; then import
    ``leavers`` and ``hook_readers`` subscribers. The page's path, one one-click path for each
    leaver, and the webhook readers' addresses."""
    from newsletter.delivery import runner
    from newsletter.demo import SAMPLE_ISSUES_DIR
    from newsletter.store.db import make_engine, session_scope
    from newsletter.store.subscribers import SubscriberRepository
    from newsletter.web.archive import build_site

    settings = _settings(root, database)
    engine = make_engine(database)
    try:
        with session_scope(engine) as session:
            for i in range(3):
                SubscriberRepository(session).add(f"reader{i}@example.org")
        issue = max(SAMPLE_ISSUES_DIR.glob("*.yaml"), key=lambda path: path.stat().st_size)
        prepared = runner.prepare_issue(issue, settings)
        runner.execute(runner.plan(prepared, settings, "", start=True), settings)
        build_site(settings, engine, root / "site")
        readers = [f"hook{i}@example.org" for i in range(hook_readers)]
        paths = _import(root, engine, settings, [f"leaver{i}@example.org" for i in range(leavers)], readers)
    finally:
        engine.dispose()
    return f"issues/{issue.stem}/", paths, readers


def _import(root: Path, engine, settings, leavers: list[str], readers: list[str]) -> list[str]:  # type: ignore[no-untyped-def]
    """The subscribers imported in bulk, and the one-click path of each leaver (send 1's token)."""
    from sqlalchemy import select

    from newsletter.delivery.runner import secret_key
    from newsletter.delivery.tokens import TokenSigner
    from newsletter.store.importer import import_csv
    from newsletter.store.models import Subscriber

    csv = root / "subscribers.csv"
    csv.write_text("email\n" + "".join(f"{address}\n" for address in [*leavers, *readers]), encoding="utf-8")
    with engine.connect() as conn:
        import_csv(conn, csv)
        ids = conn.execute(select(Subscriber.id).where(Subscriber.email.like("leaver%"))).scalars().all()
    signer = TokenSigner(secret_key(settings))
    return [f"/u/{signer.unsubscribe_token(1, subscriber_id)}" for subscriber_id in ids]


@dataclass(frozen=True)
class Request:
    """One prepared request; ``units`` is what it counts for (events in a webhook batch)."""

    method: str
    path: str
    body: bytes | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    units: int = 1


FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def signups(count: int) -> list[Request]:
    """``count`` sign-up POSTs, each a new address with an ALTCHA solution of its own."""
    from urllib.parse import urlencode

    import altcha

    from newsletter.config import WebSettings

    cost = WebSettings().altcha_cost
    expires = dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)
    made = []
    for i in range(count):
        # A known answer (counter 0): the parent finds it in one derivation, not a browser's search.
        challenge = altcha.create_challenge(
            "PBKDF2/SHA-256", cost, counter=0, expires_at=expires, hmac_secret=ALTCHA_KEY
        )
        solution = altcha.solve_challenge(altcha.Challenge.from_dict(challenge.to_dict()))
        assert solution is not None
        payload = altcha.Payload(challenge, solution).to_base64()
        body = urlencode({"email": f"signup{i}@example.org", "altcha": payload, "website": ""})
        made.append(Request("POST", "/subscribe", body.encode(), FORM))
    return made


def sendgrid_batches(count: int, readers: list[str], private_key: Any) -> list[Request]:
    """``count`` signed SendGrid POSTs of :data:`SENDGRID_BATCH` events: mostly deliveries, opens
    and clicks, one in fifty a bounce and one in two hundred a complaint, of the imported readers."""
    import orjson
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    now = int(time.time())
    timestamp = str(now).encode()
    kinds = ["delivered"] * 10 + ["open"] * 5 + ["click"] * 3 + ["bounce"]
    made = []
    serial = itertools.count()
    for _ in range(count):
        records = []
        for _ in range(SENDGRID_BATCH):
            n = next(serial)
            kind = "spamreport" if n % 200 == 199 else kinds[n % len(kinds)]
            record: dict[str, Any] = {
                "email": readers[n % len(readers)],
                "timestamp": now,
                "event": kind,
                "sg_event_id": f"bench-{n}",
                "sg_message_id": f"msg-{n // 3}.filter",
                "send_id": "1",
                "delivery_id": str(n % 100_000 + 1),
            }
            if kind == "click":
                record["url"] = "https://example.org/story"
            if kind == "bounce":
                record |= {"type": "bounce", "status": "5.1.1", "reason": "550 no such user"}
            records.append(record)
        body = orjson.dumps(records)
        signature = private_key.sign(timestamp + body, ec.ECDSA(hashes.SHA256()))
        headers = {
            "Content-Type": "application/json",
            "X-Twilio-Email-Event-Webhook-Signature": base64.b64encode(signature).decode(),
            "X-Twilio-Email-Event-Webhook-Timestamp": timestamp.decode(),
        }
        made.append(Request("POST", "/webhooks/sendgrid", body, headers, units=SENDGRID_BATCH))
    return made


def postmark_events(count: int, readers: list[str]) -> list[Request]:
    """``count`` Postmark ``Delivery`` records, one per POST, with the webhook's basic auth."""
    import orjson

    credentials = base64.b64encode(f"{POSTMARK_USER}:{POSTMARK_PASSWORD}".encode()).decode()
    headers = {"Content-Type": "application/json", "Authorization": f"Basic {credentials}"}
    delivered = dt.datetime.now(dt.UTC).isoformat()
    return [
        Request(
            "POST",
            "/webhooks/postmark",
            orjson.dumps(
                {
                    "RecordType": "Delivery",
                    "MessageID": f"bench-pm-{n:08d}-0000-0000-000000000000",
                    "Recipient": readers[n % len(readers)],
                    "DeliveredAt": delivered,
                    "Details": "Test delivery webhook details",
                    "Tag": "",
                    "ServerID": 1,
                    "Metadata": {"send_id": "1", "delivery_id": str(n + 1)},
                }
            ),
            headers,
        )
        for n in range(count)
    ]


def bare_insert_rate(database: str, batch: Request, batches: int) -> float:
    """Events per second for the event rows of ``batch`` written with one ``executemany`` of
    :data:`SENDGRID_BATCH` rows per transaction: the floor under any webhook ingestion."""
    from sqlalchemy import insert

    from newsletter.events import sendgrid
    from newsletter.store.db import make_engine
    from newsletter.store.models import Event, utcnow
    from newsletter.store.privacy import address_hash

    assert batch.body is not None
    events = sendgrid.parse(batch.body)
    engine = make_engine(database)
    try:
        started = time.perf_counter()
        for n in range(batches):
            now = utcnow()
            rows = [
                {
                    "provider": "baseline",
                    "provider_event_id": f"{n}-{e.event_id}",
                    "kind": e.kind,
                    "delivery_id": e.delivery_id,
                    "send_id": e.send_id,
                    "address_hash": address_hash(e.email or ""),
                    "occurred_at": e.occurred_at,
                    "received_at": now,
                    "detail": e.detail,
                }
                for e in events
            ]
            with engine.begin() as conn:
                conn.execute(insert(Event), rows)
        return batches * len(events) / (time.perf_counter() - started)
    finally:
        engine.dispose()


# -- driving the server ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Round:
    requests: int
    units: int
    seconds: float
    size: int  #: the largest answer's body, bytes

    @property
    def rate(self) -> float:
        return self.units / self.seconds


def drive(port: int, take: Callable[[], Request | None], seconds: float, clients: int) -> Round:
    """``clients`` keep-alive connections sending what ``take`` hands out, for ``seconds`` (each at
    least one request, however busy the machine) or until it hands out None. Any answer but 200
    ends the benchmark."""
    made = [0] * clients
    units = [0] * clients
    sizes = [0] * clients
    errors: list[str] = []
    stop = time.monotonic() + seconds

    def loop(index: int) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            while not made[index] or time.monotonic() < stop:
                request = take()
                if request is None:
                    return
                conn.request(request.method, request.path, body=request.body, headers=dict(request.headers))
                response = conn.getresponse()
                body = response.read()
                if response.status != 200:
                    errors.append(f"{request.method} {request.path[:60]}: {response.status} {body[:200]!r}")
                    return
                made[index] += 1
                units[index] += request.units
                sizes[index] = max(sizes[index], len(body))
        except OSError as exc:
            errors.append(f"{exc!r}")
        finally:
            conn.close()

    started = time.monotonic()
    threads = [threading.Thread(target=loop, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise SystemExit(f"error: {errors[0]}")
    return Round(sum(made), sum(units), time.monotonic() - started, max(sizes))


def repeat(request: Request) -> Callable[[], Request]:
    return lambda: request


def hand_out(requests: list[Request]) -> Callable[[], Request | None]:
    """Each of ``requests`` once, to whichever client asks next."""
    lock = threading.Lock()
    todo = iter(requests)

    def take() -> Request | None:
        with lock:
            return next(todo, None)

    return take


def until_mailed(outbox: Path, expected: int, timeout: float = 120.0) -> None:
    """Wait until the outbox holds ``expected`` transactional messages (each sign-up's confirmation)."""
    deadline = time.monotonic() + timeout
    while _count(outbox) < expected:
        if time.monotonic() > deadline:
            done = _count(outbox)
            raise SystemExit(f"error: {done} of {expected} confirmations mailed after {timeout:g} s")
        time.sleep(0.01)


def _count(folder: Path) -> int:
    return len(os.listdir(folder)) if folder.is_dir() else 0


def share(requests: list[Request], rounds: int) -> Iterator[list[Request]]:
    per_round = len(requests) // rounds
    for index in range(rounds):
        yield requests[index * per_round : (index + 1) * per_round]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="length of one round per target")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--clients", type=int, default=4, help="concurrent keep-alive clients")
    parser.add_argument("--database", help="a PostgreSQL server's URL (default: a scratch SQLite file)")
    parser.add_argument("--leavers", type=int, default=20_000, help="subscribers for the one-click POSTs")
    parser.add_argument("--signups", type=int, default=1_500, help="sign-up POSTs prepared (new addresses)")
    parser.add_argument("--batches", type=int, default=150, help="SendGrid batches of 1,000 events prepared")
    parser.add_argument("--singles", type=int, default=9_000, help="Postmark single events prepared")
    parser.add_argument("--hook-readers", type=int, default=20_000, help="subscribers the events name")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    parser.add_argument("--serve", metavar="DIR", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(Path(args.serve), args.database)
        return 0
    root = Path(tempfile.mkdtemp(prefix="newsletter-web-bench-"))
    try:
        with scratch_database(args.database, root) as database:
            return run(args, root, database)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def run(args: argparse.Namespace, root: Path, database: str) -> int:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    page, leavers, readers = prepare(root, database, args.leavers, max(args.hook_readers, 1))
    key = ec.generate_private_key(ec.SECP256R1())
    public = key.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    joins = signups(args.signups)
    batches = sendgrid_batches(args.batches, readers, key)
    singles = postmark_events(args.singles, readers)
    insert_rate = bare_insert_rate(database, batches[0], max(3, args.batches // 10))
    env = {
        **os.environ,
        "NEWSLETTER_ALTCHA_KEY": ALTCHA_KEY,
        "SENDGRID_WEBHOOK_PUBLIC_KEY": base64.b64encode(public).decode(),
        "POSTMARK_WEBHOOK_USER": POSTMARK_USER,
        "POSTMARK_WEBHOOK_PASSWORD": POSTMARK_PASSWORD,
    }
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(root), "--database", database],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    try:
        assert server.stdout is not None
        line = server.stdout.readline()
        if not line.startswith(PORT_LINE):
            raise SystemExit(f"error: the server did not start: {line!r}")
        port = int(line[len(PORT_LINE) :])
        static_path, archive_path = f"/static/{page}index.html", f"/{page}"
        static_get, archive_get = Request("GET", static_path), Request("GET", archive_path)
        for request in (static_get, archive_get):  # warm up: render once, connections, caches
            drive(port, repeat(request), 0.3, args.clients)
        outbox = root / "outbox" / "0"
        static, archive, clicks, joined, sendgrid, postmark = [], [], [], [], [], []
        mailed = _count(outbox)
        for ours_clicks, ours_joins, ours_batches, ours_singles in zip(
            share(leavers, args.rounds),
            share(joins, args.rounds),
            share(batches, args.rounds),
            share(singles, args.rounds),
            strict=True,
        ):
            static.append(drive(port, repeat(static_get), args.seconds, args.clients))
            archive.append(drive(port, repeat(archive_get), args.seconds, args.clients))
            clicks.append(drive(port, hand_out([Request("POST", p, b"List-Unsubscribe=One-Click", FORM)
                                                for p in ours_clicks]), args.seconds, args.clients))
            started = time.monotonic()
            answered = drive(port, hand_out(ours_joins), args.seconds, args.clients)
            mailed += answered.requests
            until_mailed(outbox, mailed)
            joined.append(Round(answered.requests, answered.units, time.monotonic() - started, answered.size))
            sendgrid.append(drive(port, hand_out(ours_batches), args.seconds, args.clients))
            postmark.append(drive(port, hand_out(ours_singles), args.seconds, args.clients))
    finally:
        server.terminate()
        server.wait(10)
    return report(args, database, page, static, archive, clicks, joined, sendgrid, postmark, insert_rate)


def report(
    args: argparse.Namespace,
    database: str,
    page: str,
    static: list[Round],
    archive: list[Round],
    clicks: list[Round],
    joined: list[Round],
    sendgrid: list[Round],
    postmark: list[Round],
    insert_rate: float,
) -> int:
    def median(rounds: list[Round]) -> float:
        return statistics.median(r.rate for r in rounds)

    dialect = database.split(":", 1)[0].split("+", 1)[0]
    static_rate, archive_rate = median(static), median(archive)
    ratio = archive_rate / static_rate
    print(f"issue page: {archive[0].size / 1024:.1f} KB, {args.clients} keep-alive clients, {dialect}, "
          f"median of {args.rounds} rounds of {args.seconds:g} s")
    print(f"baseline static file (StaticFiles, same server): {static_rate:,.0f} req/s")
    print(f"archive page /{page}: {archive_rate:,.0f} req/s ({ratio:.2f}x the baseline)")
    archive_ok = ratio >= TARGET
    print(f"target: archive page at least {TARGET}x the static baseline: {'PASS' if archive_ok else 'MISS'}")
    click_rate = median(clicks)
    print(f"one-click POST /u/TOKEN, one unsubscribe written each: {click_rate:,.0f} req/s "
          f"({click_rate / static_rate:.2f}x the baseline; {sum(r.requests for r in clicks):,} readers left)")
    clicks_ok = click_rate >= ONE_CLICK_TARGET
    if dialect == "postgresql":
        print(f"target: one-click at least {ONE_CLICK_TARGET:,} a second on PostgreSQL: "
              f"{'PASS' if clicks_ok else 'MISS'}")
    join_rate = median(joined)
    print(f"sign-up POST /subscribe, ALTCHA verified, confirmation mailed: {join_rate:,.0f} req/s "
          f"({join_rate / static_rate:.2f}x the baseline; {sum(r.requests for r in joined):,} confirmations)")
    print(f"baseline bare INSERT of the same event rows ({SENDGRID_BATCH:,} per transaction): "
          f"{insert_rate:,.0f} events/s")
    batch_rate, single_rate = median(sendgrid), median(postmark)
    print(f"SendGrid webhook, signed batches of {SENDGRID_BATCH:,}: {batch_rate:,.0f} events/s "
          f"({batch_rate / insert_rate:.2f}x the bare INSERT; {sum(r.units for r in sendgrid):,} events)")
    print(f"Postmark webhook, one event per request: {single_rate:,.0f} events/s "
          f"({single_rate / insert_rate:.2f}x the bare INSERT; {sum(r.units for r in postmark):,} events)")
    hooks_ok = batch_rate >= WEBHOOK_TARGET
    print(f"target: webhook ingestion at least {WEBHOOK_TARGET:,} events/s in batches: "
          f"{'PASS' if hooks_ok else 'MISS'}")
    missed = not (archive_ok and hooks_ok and (clicks_ok or dialect != "postgresql"))
    return 1 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main())
