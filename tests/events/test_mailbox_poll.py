"""``newsletter.bounces.poll`` against a real Dovecot: messages put in with IMAP APPEND, read in
pages, stored once, moved away; and a mailbox that cannot be reached or stops answering."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from newsletter.bounces import last_read, poll
from newsletter.config import Settings
from newsletter.events.imap import Mailbox
from newsletter.store.db import make_engine
from newsletter.store.models import Event, EventKind, MailboxMessage, SubscriberStatus
from newsletter.store.subscribers import SubscriberRepository
from tests.events.test_mailbox import SECRET, sample
from tests.imap_server import ImapUser

pytestmark = pytest.mark.imap


def make_settings(db_url: str, user: ImapUser, **bounces: Any) -> Settings:
    table = user.settings(
        address="bounces@news.example.org", unsubscribe_address="unsubscribe@news.example.org"
    )
    table.update(bounces)
    return Settings.model_validate({"database": {"url": db_url}, "bounces": table})


def environ(user: ImapUser) -> dict[str, str]:
    return {"TEST_IMAP_PASSWORD": user.password, "NEWSLETTER_SECRET_KEY": SECRET}


@pytest.fixture
def listed(db_url: str) -> Iterator[str]:
    """ann@example.com is on the list."""
    engine = make_engine(db_url)
    with Session(engine) as session:
        SubscriberRepository(session).add("ann@example.com")
        session.commit()
    yield db_url
    engine.dispose()


def status_of(db_url: str, address: str) -> SubscriberStatus | None:
    engine = make_engine(db_url)
    try:
        with Session(engine) as session:
            subscriber = SubscriberRepository(session).get_by_email(address)
            return None if subscriber is None else subscriber.status
    finally:
        engine.dispose()


def count(db_url: str, what: Any) -> int:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(what)).scalar_one())
    finally:
        engine.dispose()


def test_a_mixed_mailbox_is_read_stored_and_moved(listed: str, imap_user: ImapUser) -> None:
    names = ["gmail_no_token", "autoreply_ooo", "human_reply", "arf_not_spam", "postfix_delayed"]
    imap_user.append(*(sample(name) for name in names))
    settings = make_settings(listed, imap_user)
    lines: list[str] = []
    report = poll(settings, environ=environ(imap_user), log=lines.append)
    assert report.error is None and report.held == 5
    assert report.counts["bounce"] == 1 and report.counts["auto_reply"] == 1 and report.counts["other"] == 1
    assert status_of(listed, "ann@example.com") is SubscriberStatus.BOUNCED
    assert imap_user.count("INBOX") == 0 and imap_user.count("Processed") == 5
    assert count(listed, MailboxMessage) == 5
    again = poll(settings, environ=environ(imap_user), log=lines.append)
    assert again.held == 0 and not again.counts
    line = last_read(settings)
    assert line is not None and "held 0 new message(s)" in line


def test_the_same_dsn_delivered_twice_counts_once(listed: str, imap_user: ImapUser) -> None:
    imap_user.append(sample("exim_soft"), sample("exim_soft"))
    # No token of a real delivery here: the bounce is matched by address, so give it one on the list.
    imap_user.append(sample("unsubscribe_plain"), sample("unsubscribe_plain"))
    report = poll(make_settings(listed, imap_user), environ=environ(imap_user), log=lambda _: None)
    assert report.counts["duplicate"] == 2
    assert count(listed, Event) == 1  # the unsubscribe; the soft bounce named no delivery that exists
    assert report.counts["unmatched"] == 1
    assert status_of(listed, "ann@example.com") is SubscriberStatus.UNSUBSCRIBED
    assert imap_user.count("Processed") == 4


def test_a_reader_that_dies_before_moving_the_page_changes_nothing_twice(
    listed: str, imap_user: ImapUser, monkeypatch: pytest.MonkeyPatch
) -> None:
    imap_user.append(sample("gmail_no_token"), sample("arf_no_token"))
    settings = make_settings(listed, imap_user)

    def die(self: Mailbox, uids: Any) -> None:
        raise SystemExit("killed between the commit and the move")

    with monkeypatch.context() as patch:
        patch.setattr(Mailbox, "done", die)
        with pytest.raises(SystemExit):
            poll(settings, environ=environ(imap_user), log=lambda _: None)
    assert count(listed, Event) == 2 and imap_user.count("INBOX") == 2
    report = poll(settings, environ=environ(imap_user), log=lambda _: None)
    assert report.counts["duplicate"] == 2 and report.counts["events"] == 0
    assert count(listed, Event) == 2 and imap_user.count("INBOX") == 0


def test_hostile_mail_changes_nothing(listed: str, imap_user: ImapUser) -> None:
    stranger = sample("gmail_no_token").replace(b"ann@example.com", b"stranger@example.com")
    imap_user.append(sample("tampered"), stranger, sample("unsubscribe_token"))
    lines: list[str] = []
    report = poll(make_settings(listed, imap_user), environ=environ(imap_user), log=lines.append)
    assert report.counts["forged"] == 1 and report.counts["unmatched"] == 2  # stranger, delivery 41
    assert any("VERP token does not verify" in line for line in lines)
    assert count(listed, Event) == 0
    assert status_of(listed, "ann@example.com") is SubscriberStatus.ACTIVE


def test_pages_and_the_per_poll_limit(listed: str, imap_user: ImapUser) -> None:
    imap_user.append(*(sample("human_reply").replace(b"reply-0001", f"reply-{n}".encode()) for n in range(7)))
    settings = make_settings(listed, imap_user, page_size=2, max_per_poll=5)
    report = poll(settings, environ=environ(imap_user), log=lambda _: None)
    assert report.held == 7 and report.counts["other"] == 5
    assert imap_user.count("INBOX") == 2 and count(listed, MailboxMessage) == 5


def test_without_a_done_folder_messages_are_flagged_in_place(listed: str, imap_user: ImapUser) -> None:
    imap_user.append(sample("human_reply"), sample("autoreply_vacation"))
    settings = make_settings(listed, imap_user, done_folder="")
    assert poll(settings, environ=environ(imap_user), log=lambda _: None).held == 2
    assert poll(settings, environ=environ(imap_user), log=lambda _: None).held == 0
    assert imap_user.count("INBOX") == 2


def test_a_twenty_megabyte_message_is_read_only_up_to_the_limit(listed: str, imap_user: ImapUser) -> None:
    line = b"A" * 76 + b"\r\n"
    huge = sample("gmail_no_token").replace(b"(body)", line * (20 * 1024 * 1024 // len(line)))
    imap_user.append(huge)
    settings = make_settings(listed, imap_user, max_message_bytes=256 * 1024)
    report = poll(settings, environ=environ(imap_user), log=lambda _: None)
    assert report.counts["oversized"] == 1 and report.counts["bounce"] == 1
    assert status_of(listed, "ann@example.com") is SubscriberStatus.BOUNCED


def test_an_unreachable_mailbox_is_an_error_of_the_poll(listed: str, imap_user: ImapUser) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    settings = make_settings(listed, imap_user, port=port)
    report = poll(settings, environ=environ(imap_user), log=lambda _: None)
    assert report.error and "cannot connect" in report.error
    line = last_read(settings)
    assert line is not None and "not read" in line


def test_a_server_that_stops_answering_times_out(listed: str, imap_user: ImapUser) -> None:
    """A listener that accepts and never says a word: the poll gives up after ``timeout``."""
    silent = socket.create_server(("127.0.0.1", 0))
    accepted: list[socket.socket] = []
    thread = threading.Thread(target=lambda: accepted.append(silent.accept()[0]), daemon=True)
    thread.start()
    try:
        settings = make_settings(listed, imap_user, port=silent.getsockname()[1], timeout=0.5)
        report = poll(settings, environ=environ(imap_user), log=lambda _: None)
        assert report.error and "did not answer" in report.error
    finally:
        thread.join(5)
        for conn in accepted:
            conn.close()
        silent.close()


def test_a_wrong_password_is_an_error_of_the_poll(listed: str, imap_user: ImapUser) -> None:
    report = poll(
        make_settings(listed, imap_user),
        environ={"TEST_IMAP_PASSWORD": "wrong", "NEWSLETTER_SECRET_KEY": SECRET},
        log=lambda _: None,
    )
    assert report.error is not None


def test_the_kinds_are_the_store_kinds() -> None:
    assert {EventKind.BOUNCED_HARD, EventKind.COMPLAINED, EventKind.UNSUBSCRIBED} <= set(EventKind)


def test_the_poll_command_exit_codes(
    listed: str, imap_user: ImapUser, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from typer.testing import CliRunner

    from newsletter.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", listed)
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", SECRET)
    runner = CliRunner()
    assert runner.invoke(app, ["bounces", "poll"]).exit_code == 2  # the worker is the loop
    assert runner.invoke(app, ["bounces", "poll", "--once"]).exit_code == 2  # no mailbox configured
    for key, value in imap_user.settings().items():
        monkeypatch.setenv(f"NEWSLETTER_BOUNCES_{key.upper()}", str(value))
    monkeypatch.setenv("NEWSLETTER_BOUNCES_UNSUBSCRIBE_ADDRESS", "unsubscribe@news.example.org")
    assert runner.invoke(app, ["bounces", "poll", "--once"]).exit_code == 2  # no password in the env
    monkeypatch.setenv("TEST_IMAP_PASSWORD", imap_user.password)
    imap_user.append(sample("unsubscribe_plain"))
    done = runner.invoke(app, ["bounces", "poll", "--once"])
    assert done.exit_code == 0 and "unsubscribe 1" in done.stdout, done.output
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        monkeypatch.setenv("NEWSLETTER_BOUNCES_PORT", str(sock.getsockname()[1]))
    assert runner.invoke(app, ["bounces", "poll", "--once"]).exit_code == 1
