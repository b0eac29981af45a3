"""SMTP both ways, end to end: an issue sent through the ``smtp`` provider to an aiosmtpd sink
with VERP addresses; two captured messages bounce back into a real Dovecot mailbox as DSNs and one
draws an ARF complaint; ``worker --once`` reads the mailbox and suppresses exactly those three
subscribers, ``report`` counts them, ``status`` says what the mailbox held, and the next issue's
send skips them."""

from __future__ import annotations

import email
import email.policy
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.store.db import make_engine
from newsletter.store.models import SubscriberStatus
from newsletter.store.subscribers import SubscriberRepository
from tests.conftest import FIXTURE_ISSUES_DIR
from tests.delivery.test_smtp import Handler, Server
from tests.events.test_mailbox import SECRET
from tests.imap_server import ImapUser

pytestmark = pytest.mark.imap

FIRST, SECOND = "2026-11-20.yaml", "2026-11-27.yaml"
READERS = [f"reader{i}@example.net" for i in range(6)]


@pytest.fixture
def sink() -> Iterator[Server]:
    server = Server(Handler())
    server.controller.start()
    yield server
    server.controller.stop()


@pytest.fixture
def cli(db_url: str, sink: Server, imap_user: ImapUser, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    variables = {
        "NEWSLETTER_DATABASE_URL": db_url,
        "NEWSLETTER_SECRET_KEY": SECRET,
        "NEWSLETTER_ESP_PROVIDER": "smtp",
        "NEWSLETTER_ESP_HOST": "127.0.0.1",
        "NEWSLETTER_ESP_PORT": str(sink.port),
        "NEWSLETTER_ESP_TLS": "none",
        "NEWSLETTER_BOUNCES_ADDRESS": "bounces@news.example.org",
        "NEWSLETTER_BOUNCES_UNSUBSCRIBE_ADDRESS": "unsubscribe@news.example.org",
        **{f"NEWSLETTER_BOUNCES_{key.upper()}": str(value) for key, value in imap_user.settings().items()},
        "TEST_IMAP_PASSWORD": imap_user.password,
    }
    for name, value in variables.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "issues").mkdir()
    for name in (FIRST, SECOND):
        shutil.copy(FIXTURE_ISSUES_DIR / name, tmp_path / "issues" / name)
    runner = CliRunner()

    def invoke(*args: str) -> object:
        return runner.invoke(app, list(args), catch_exceptions=False)

    for address in READERS:
        assert invoke("subscribers", "add", address).exit_code == 0  # type: ignore[attr-defined]
    return invoke


def dsn(mail_from: str, recipient: str, original: bytes, status: str) -> bytes:
    headers = original.split(b"\r\n\r\n", 1)[0].decode()
    return (
        "Return-Path: <>\r\n"
        f"Delivered-To: {mail_from}\r\n"
        "From: MAILER-DAEMON@mx.example.net (Mail Delivery System)\r\n"
        f"To: {mail_from}\r\n"
        "Subject: Undelivered Mail Returned to Sender\r\n"
        f"Message-ID: <dsn-{recipient}@mx.example.net>\r\n"
        "MIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="r"\r\n\r\n'
        f"--r\r\nContent-Type: text/plain\r\n\r\n<{recipient}>: {status} user unknown\r\n"
        "--r\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; mx.example.net\r\n\r\n"
        f"Final-Recipient: rfc822; {recipient}\r\nAction: failed\r\nStatus: {status}\r\n\r\n"
        f"--r\r\nContent-Type: text/rfc822-headers\r\n\r\n{headers}\r\n--r--\r\n"
    ).encode()


def arf(original: bytes) -> bytes:
    return (
        b"From: fbl@mail.example.net\r\nTo: abuse@news.example.org\r\nSubject: abuse report\r\n"
        b"Message-ID: <arf-e2e@mail.example.net>\r\nMIME-Version: 1.0\r\n"
        b'Content-Type: multipart/report; report-type=feedback-report; boundary="f"\r\n\r\n'
        b"--f\r\nContent-Type: message/feedback-report\r\n\r\nFeedback-Type: abuse\r\nVersion: 1\r\n\r\n"
        b"--f\r\nContent-Type: message/rfc822\r\n\r\n" + original + b"\r\n--f--\r\n"
    )


def statuses(db_url: str) -> dict[str, SubscriberStatus]:
    from sqlalchemy.orm import Session

    engine = make_engine(db_url)
    try:
        with Session(engine) as session:
            repo = SubscriberRepository(session)
            return {a: s.status for a in READERS if (s := repo.get_by_email(a)) is not None}
    finally:
        engine.dispose()


def test_bounces_and_a_complaint_come_back_and_the_next_send_skips_them(
    cli, db_url: str, sink: Server, imap_user: ImapUser
) -> None:
    result = cli("send", f"issues/{FIRST}", "--yes")
    assert result.exit_code == 0, result.output
    envelopes = {rcpts[0]: (mail_from, content) for mail_from, rcpts, content in sink.handler.envelopes}
    assert set(envelopes) == set(READERS)
    for mail_from, content in envelopes.values():
        assert mail_from.startswith("bounces+b") and mail_from.endswith("@news.example.org")
        message = email.message_from_bytes(content, policy=email.policy.default)
        assert "mailto:unsubscribe+u" in message["List-Unsubscribe"]
    assert len({mail_from for mail_from, _ in envelopes.values()}) == len(READERS)  # one per delivery

    hard, soft_then_hard, complainer = READERS[0], READERS[1], READERS[2]
    imap_user.append(
        # The DSN quotes another address (a forward): the VERP token says whose delivery it was.
        dsn(envelopes[hard][0], "forwarded-to@elsewhere.example", envelopes[hard][1], "5.1.1"),
        dsn(envelopes[soft_then_hard][0], soft_then_hard, envelopes[soft_then_hard][1], "5.2.1"),
        arf(envelopes[complainer][1]),  # the original's List-Unsubscribe mailto token names it
    )
    result = cli("worker", "--once")
    assert result.exit_code == 0, result.output

    after = statuses(db_url)
    assert after[hard] is SubscriberStatus.BOUNCED
    assert after[soft_then_hard] is SubscriberStatus.BOUNCED
    assert after[complainer] is SubscriberStatus.COMPLAINED
    assert all(after[a] is SubscriberStatus.ACTIVE for a in READERS[3:])
    assert imap_user.count("INBOX") == 0 and imap_user.count("Processed") == 3

    report = cli("report", f"issues/{FIRST}", "--json")
    assert report.exit_code == 0, report.output
    metrics = json.loads(report.output)[0]["metrics"]
    assert metrics["bounced_hard"]["recipients"] == 2 and metrics["complained"]["recipients"] == 1

    status = cli("status")
    assert "last read" in status.output and "bounce 2" in status.output and "complaint 1" in status.output

    sink.handler.envelopes.clear()
    result = cli("send", f"issues/{SECOND}", "--yes")
    assert result.exit_code == 0, result.output
    assert sorted(r for _, rcpts, _ in sink.handler.envelopes for r in rcpts) == READERS[3:]
