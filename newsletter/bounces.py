"""One read of the bounce mailbox: fetch a page, classify it, store it, move it away; repeat.

``newsletter bounces poll --once`` runs :func:`poll` once; ``newsletter worker`` runs it every
``[bounces] poll_seconds``. Each page of messages is stored in one transaction (their keys and
events, ``store/mailbox.py``) and only then moved to ``done_folder``: a crash in between leaves the
page in the folder, and the next poll finds its keys and only moves it. A mailbox that cannot be
reached is logged and recorded as the poll's error; the next poll tries again.
"""

from __future__ import annotations

import os
import threading
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from newsletter.config import Settings
from newsletter.errors import ConfigError

if TYPE_CHECKING:
    from newsletter.events.mailbox import Recipients

__all__ = ["PollReport", "last_read", "poll", "recipients_for"]

Log = Callable[[str], None]


@dataclass
class PollReport:
    held: int = 0  #: messages in the folder, not yet processed, when it was read
    counts: Counter[str] = field(default_factory=Counter)
    error: str | None = None

    def describe(self) -> str:
        parts = ", ".join(f"{name} {n}" for name, n in sorted(self.counts.items()) if n)
        line = f"mailbox: {self.held} new message(s)" + (f": {parts}" if parts else "")
        return line + (f"; not read: {self.error}" if self.error else "")


def recipients_for(settings: Settings, environ: Mapping[str, str] | None = None) -> Recipients:
    """The classifier's view of our VERP addresses, with the token check of this installation."""
    from newsletter.delivery.runner import secret_key
    from newsletter.delivery.tokens import TokenSigner
    from newsletter.events.mailbox import Recipients

    bounces = settings.bounces
    signer = TokenSigner(secret_key(settings, dict(environ) if environ is not None else None))
    # Without VERP, the mailto of List-Unsubscribe is [esp] unsubscribe_mailto or the reply-to.
    plain_mailto = settings.esp.unsubscribe_mailto or str(settings.newsletter.reply_to)
    bounce_local = (bounces.address or plain_mailto).partition("@")[0]
    unsubscribe_local = (bounces.unsubscribe_address or bounces.address or plain_mailto).partition("@")[0]
    return Recipients(
        locals=tuple(dict.fromkeys((bounce_local, unsubscribe_local))),
        unsubscribe_local=unsubscribe_local,
        read_token=signer.read_verp_token,
        max_recipients=bounces.max_recipients,
    )


def poll(
    settings: Settings,
    *,
    log: Log = print,
    environ: Mapping[str, str] | None = None,
    stop: threading.Event | None = None,
    ssl_context: object | None = None,
) -> PollReport:
    """Read the configured mailbox once; every page processed is stored, then moved away."""
    from newsletter.events.imap import Mailbox, MailboxUnavailable
    from newsletter.events.mailbox import classify
    from newsletter.store.db import open_database, writing
    from newsletter.store.mailbox import record_messages, record_poll
    from newsletter.store.models import utcnow

    bounces = settings.bounces
    if not bounces.mailbox:
        raise ConfigError("bounces.imap_host: no bounce mailbox is configured")
    environ = os.environ if environ is None else environ
    password = environ.get(bounces.password_env, "")
    if bounces.username and not password:
        raise ConfigError(
            f"{bounces.password_env} is not set: the IMAP password comes from that environment "
            "variable (bounces.password_env)"
        )
    recipients = recipients_for(settings, environ)
    report = PollReport()
    started = utcnow()
    engine = open_database(settings.database.url)
    limit = settings.webhooks.soft_bounce_limit
    try:
        try:
            with Mailbox(
                bounces.imap_host,
                bounces.port,
                tls=bounces.tls,
                username=bounces.username,
                password=password,
                folder=bounces.folder,
                done_folder=bounces.done_folder,
                timeout=bounces.timeout,
                max_bytes=bounces.max_message_bytes,
                ssl_context=ssl_context,  # type: ignore[arg-type]
            ) as box:
                uids = box.uids()
                report.held = len(uids)
                uids = uids[: bounces.max_per_poll]
                for start in range(0, len(uids), bounces.page_size):
                    if stop is not None and stop.is_set():
                        break
                    page = uids[start : start + bounces.page_size]
                    entries = []
                    done = []
                    for fetched in box.fetch(page):
                        now = utcnow()
                        classified = classify(fetched.raw, recipients, received_at=now)
                        report.counts[str(classified.kind)] += 1
                        if fetched.truncated:
                            report.counts["oversized"] += 1
                        if classified.truncated:
                            log(f"mailbox: {classified.truncated} more failed recipients left out")
                        if classified.kind in ("forged", "malformed"):
                            log(f"mailbox: message {fetched.uid} ignored: {classified.note}")
                        entries.append((classified.key, str(classified.kind), classified.events))
                        done.append(fetched.uid)
                    with writing(engine).begin() as conn:
                        recorded = record_messages(conn, entries, soft_bounce_limit=limit)
                    report.counts["duplicate"] += recorded.duplicates
                    report.counts["events"] += recorded.events
                    report.counts["unmatched"] += recorded.unmatched
                    box.done(done)
        except MailboxUnavailable as exc:
            report.error = str(exc)
            log(f"mailbox not read: {exc}; trying again on the next poll")
        with writing(engine).begin() as conn:
            record_poll(conn, started_at=started, held=report.held, counts=report.counts, error=report.error)
    finally:
        engine.dispose()
    return report


def last_read(settings: Settings) -> str | None:
    """``status``'s line about the mailbox: when it was last read and what it held; None if unused."""
    from newsletter.store.db import open_database
    from newsletter.store.mailbox import last_poll

    if not settings.bounces.mailbox:
        return None
    engine = open_database(settings.database.url)
    try:
        with engine.connect() as conn:
            polled = last_poll(conn)
    finally:
        engine.dispose()
    if polled is None:
        return f"Mailbox {settings.bounces.folder} on {settings.bounces.imap_host}: never read"
    counts = ", ".join(f"{name} {n}" for name, n in sorted(polled.counts.items()) if n)
    line = (
        f"Mailbox {settings.bounces.folder} on {settings.bounces.imap_host}: last read "
        f"{polled.finished_at:%Y-%m-%d %H:%M:%S} UTC, held {polled.held} new message(s)"
        + (f": {counts}" if counts else "")
    )
    return line + (f"\n  not read: {polled.error}" if polled.error else "")
