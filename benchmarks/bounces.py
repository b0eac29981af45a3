"""Bounce mailbox benchmark: messages classified per second, beside the same run's bare fetch.

Starts a throw-away Dovecot (as the tests do, ``tests/imap_server.py``), fills one mailbox by
IMAP APPEND with ``--messages`` mixed messages made from the project's fixtures
(``tests/fixtures/mailbox``: Postfix, Exim, Gmail, Microsoft 365, Yahoo shaped bounces, ARF
reports, unsubscribe mails, auto-replies, other mail; each with its own Message-ID), then times:

1. the bare fetch: every message over IMAP in pages of ``[bounces] page_size`` (the baseline);
2. classifying the fetched bytes (``events.mailbox.classify``), nothing else;
3. a whole ``newsletter.bounces.poll`` on a fresh SQLite database: fetch, classify, store, move.

    .venv/bin/python benchmarks/bounces.py [--messages 10000] [--page-size 200]
"""

from __future__ import annotations

import argparse
import datetime as dt
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from newsletter.bounces import poll  # noqa: E402
from newsletter.config import Settings  # noqa: E402
from newsletter.events.mailbox import classify  # noqa: E402
from newsletter.store.db import make_engine, upgrade  # noqa: E402
from tests.events.test_mailbox import CASES, RECIPIENTS, SECRET, sample  # noqa: E402
from tests.imap_server import Dovecot  # noqa: E402


def mixed(count: int) -> list[bytes]:
    names = sorted(CASES)
    out = []
    for n in range(count):
        raw = sample(names[n % len(names)])
        head, _, body = raw.partition(b"\r\n")
        out.append(f"X-Bench: {n}\r\n".encode() + head + b"\r\n" + body)
    # A distinct Message-ID for each, or the store would count them as duplicates.
    return [_renumber(raw, n) for n, raw in enumerate(out)]


def _renumber(raw: bytes, n: int) -> bytes:
    lines = raw.split(b"\r\n")
    for i, line in enumerate(lines):
        if line.lower().startswith(b"message-id:"):
            lines[i] = f"Message-ID: <bench-{n}@bench.example>".encode()
            break
        if line == b"":
            lines.insert(i, f"Message-ID: <bench-{n}@bench.example>".encode())
            break
    return b"\r\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=10_000)
    parser.add_argument("--page-size", type=int, default=200)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="newsletter-bench-dovecot-"))
    server = Dovecot(root)
    server.start()
    try:
        user = server.user()
        messages = mixed(args.messages)
        started = time.perf_counter()
        with user.mailbox(folder="INBOX") as box:
            for raw in messages:
                box.append(raw)
        filled = time.perf_counter() - started
        print(
            f"Mailbox of {len(messages):,} mixed messages ({sum(map(len, messages)) / 1e6:.1f} MB), "
            f"filled by APPEND in {filled:.1f} s"
        )

        started = time.perf_counter()
        with user.mailbox(folder="INBOX") as box:
            uids = box.uids()
            fetched = [
                f.raw
                for start in range(0, len(uids), args.page_size)
                for f in box.fetch(uids[start : start + args.page_size])
            ]
        fetch_s = time.perf_counter() - started
        assert len(fetched) == len(messages)

        now = dt.datetime.now(dt.UTC)
        started = time.perf_counter()
        kinds: dict[str, int] = {}
        for raw in fetched:
            kind = str(classify(raw, RECIPIENTS, received_at=now).kind)
            kinds[kind] = kinds.get(kind, 0) + 1
        classify_s = time.perf_counter() - started

        database = root / "bench.db"
        engine = make_engine(f"sqlite:///{database}")
        upgrade(engine)
        engine.dispose()
        settings = Settings.model_validate(
            {
                "database": {"url": f"sqlite:///{database}"},
                "bounces": user.settings(
                    address="bounces@news.example.org",
                    unsubscribe_address="unsubscribe@news.example.org",
                    page_size=args.page_size,
                    max_per_poll=len(messages),
                ),
            }
        )
        started = time.perf_counter()
        report = poll(
            settings,
            environ={"TEST_IMAP_PASSWORD": user.password, "NEWSLETTER_SECRET_KEY": SECRET},
            log=lambda _: None,
        )
        poll_s = time.perf_counter() - started
        assert report.error is None, report.error

        n = len(messages)
        print(f"  bare fetch (baseline)        {fetch_s:7.2f} s  {n / fetch_s:9,.0f} messages/s")
        print(
            f"  classify only                {classify_s:7.2f} s  {n / classify_s:9,.0f} messages/s"
            f"  ({classify_s / fetch_s:.2f}x the fetch)"
        )
        print(
            f"  whole poll (fetch, classify, {poll_s:7.2f} s  {n / poll_s:9,.0f} messages/s"
            f"  ({poll_s / fetch_s:.2f}x the fetch)"
        )
        print("   store, move; SQLite)")
        print("  classes: " + ", ".join(f"{k} {v:,}" for k, v in sorted(kinds.items())))
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
