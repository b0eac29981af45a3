"""The mailbox classifier: each fixture (written for this project, shaped like what Postfix, Exim,
Gmail, Microsoft 365 and Yahoo send, plus ARF reports, unsubscribe mails and auto-replies) and the
events it must make; then the hostile shapes: a tampered token, a huge or broken MIME tree."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from newsletter.delivery.tokens import BadToken, TokenSigner
from newsletter.events.mailbox import MAX_PARTS, MessageClass, Recipients, classify
from newsletter.events.model import EventKind

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "mailbox"
SECRET = "test-secret-key-0123456789"
SIGNER = TokenSigner(SECRET)
B = SIGNER.verp_token("b", 3, 41)
U = SIGNER.verp_token("u", 3, 41)
NOW = dt.datetime(2026, 12, 6, 12, 0, tzinfo=dt.UTC)
RECIPIENTS = Recipients(
    locals=("bounces", "unsubscribe"), unsubscribe_local="unsubscribe", read_token=SIGNER.read_verp_token
)


def sample(name: str, **replace: str) -> bytes:
    text = (SAMPLES / f"{name}.eml").read_text(encoding="utf-8")
    values = {"B": B, "U": U, "TAMPERED": f"b3-42-{B.rsplit('-', 1)[1]}", **replace}
    for key, value in values.items():
        text = text.replace(f"%%{key}%%", value)
    return text.replace("\n", "\r\n").encode("utf-8")


DELIVERY = (3, 41)
CASES = {
    # name: (class, [(event kind, (send, delivery) or None, address or None, status or None)])
    "postfix_hard": (MessageClass.BOUNCE, [(EventKind.BOUNCED_HARD, DELIVERY, None, "5.1.1")]),
    "exim_soft": (MessageClass.BOUNCE, [(EventKind.BOUNCED_SOFT, DELIVERY, None, "4.2.2")]),
    "gmail_no_token": (MessageClass.BOUNCE, [(EventKind.BOUNCED_HARD, None, "ann@example.com", "5.1.1")]),
    "m365_hard": (MessageClass.BOUNCE, [(EventKind.BOUNCED_HARD, DELIVERY, None, "5.1.10")]),
    "yahoo_nonstandard": (MessageClass.BOUNCE, [(EventKind.BOUNCED_HARD, DELIVERY, None, "5.0.0")]),
    "postfix_delayed": (MessageClass.DELAY, [(EventKind.OTHER, DELIVERY, None, "4.4.1")]),
    "arf_token": (MessageClass.COMPLAINT, [(EventKind.COMPLAINED, DELIVERY, None, None)]),
    "arf_no_token": (MessageClass.COMPLAINT, [(EventKind.COMPLAINED, None, "ann@example.com", None)]),
    "arf_not_spam": (MessageClass.COMPLAINT, [(EventKind.OTHER, None, "ann@example.com", None)]),
    "unsubscribe_token": (MessageClass.UNSUBSCRIBE, [(EventKind.UNSUBSCRIBED, DELIVERY, None, None)]),
    "unsubscribe_plain": (
        MessageClass.UNSUBSCRIBE,
        [(EventKind.UNSUBSCRIBED, None, "ann@example.com", None)],
    ),
    "autoreply_ooo": (MessageClass.AUTO_REPLY, []),
    "autoreply_vacation": (MessageClass.AUTO_REPLY, []),
    "human_reply": (MessageClass.OTHER, []),
    "tampered": (MessageClass.FORGED, []),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_each_sample_makes_its_events(name: str) -> None:
    kind, expected = CASES[name]
    result = classify(sample(name), RECIPIENTS, received_at=NOW)
    assert result.kind is kind, result.note
    got = [
        (e.kind, (e.send_id, e.delivery_id) if e.delivery_id else None, e.email, e.detail.get("status"))
        for e in result.events
    ]
    assert got == expected
    for event in result.events:
        assert event.provider == "smtp" and event.event_id.startswith(f"mailbox:{result.key}:")
        assert "@" not in str(event.detail), "the detail never keeps an address"


def test_every_sample_file_has_its_expected_events() -> None:
    assert {path.stem for path in SAMPLES.glob("*.eml")} == set(CASES)


def test_the_same_message_has_the_same_key_and_event_ids() -> None:
    first = classify(sample("postfix_hard"), RECIPIENTS, received_at=NOW)
    again = classify(sample("postfix_hard"), RECIPIENTS, received_at=NOW + dt.timedelta(days=1))
    assert first.key == again.key and [e.event_id for e in first.events] == [e.event_id for e in again.events]


def test_a_verp_token_survives_a_change_of_case_and_is_refused_when_altered() -> None:
    assert SIGNER.read_verp_token(B.upper()) == ("b", 3, 41)
    for bad in (B[:-1] + ("a" if B[-1] != "a" else "b"), B.replace("b3-", "u3-"), "b3-41", ""):
        with pytest.raises(BadToken):
            SIGNER.read_verp_token(bad)
    with pytest.raises(BadToken):
        TokenSigner("another-secret-key-entirely").read_verp_token(B)


def test_a_bounce_address_token_and_an_unsubscribe_token_differ() -> None:
    assert SIGNER.verp_token("b", 3, 41) != SIGNER.verp_token("u", 3, 41)
    assert len(f"bounces+{SIGNER.verp_token('b', 2**31, 2**40)}") <= 64  # an SMTP local part's limit


def _dsn(recipients: int) -> bytes:
    blocks = "".join(
        f"Final-Recipient: rfc822; r{n}@example.net\r\nAction: failed\r\nStatus: 5.1.1\r\n\r\n"
        for n in range(recipients)
    )
    return (
        "From: MAILER-DAEMON@relay.example.net\r\nTo: bounces@news.example.org\r\n"
        "Message-ID: <big@relay.example.net>\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/report; report-type=delivery-status; boundary="b"\r\n\r\n'
        "--b\r\nContent-Type: message/delivery-status\r\n\r\nReporting-MTA: dns; relay.example.net\r\n\r\n"
        f"{blocks}--b--\r\n"
    ).encode()


def test_a_dsn_with_ten_thousand_recipients_makes_at_most_the_limit() -> None:
    everyone = classify(_dsn(10_000), RECIPIENTS, received_at=NOW)
    assert everyone.kind is MessageClass.BOUNCE and len(everyone.events) == 10_000
    capped = Recipients(RECIPIENTS.locals, "unsubscribe", SIGNER.read_verp_token, max_recipients=100)
    result = classify(_dsn(10_000), capped, received_at=NOW)
    assert len(result.events) == 100 and result.truncated == 9_900


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"\x00\xff\xfe binary \x00" * 1000,
        b"Content-Type: multipart/mixed; boundary=x\r\n\r\n"
        + b"--x\r\nContent-Type: multipart/mixed; boundary=x\r\n\r\n" * 5000,
        b"Content-Type: multipart/report; report-type=delivery-status; boundary=q\r\n\r\n--q\r\n"
        b"Content-Type: message/delivery-status\r\n\r\nAction: failed\r\nStatus: 5.\x00\r\n--q",
        b"Content-Type: multipart/mixed; boundary=w\r\n\r\n"
        + b"--w\r\nContent-Type: text/plain\r\n\r\nx\r\n" * (MAX_PARTS + 10),
        b"To: bounces+" + b"9" * 5000 + b"@news.example.org\r\n\r\nhello",
        b"Content-Type: message/rfc822\r\n\r\nContent-Type: message/rfc822\r\n\r\n" * 2000,
    ],
    ids=["empty", "binary", "nested-5000", "broken-dsn", "too-wide", "long-token", "rfc822-2000-deep"],
)
def test_hostile_messages_are_classified_never_raised(raw: bytes) -> None:
    result = classify(raw, RECIPIENTS, received_at=NOW)
    assert result.kind in set(MessageClass)
    assert len(result.key) == 64


def test_a_twenty_megabyte_message_cut_at_the_size_limit_still_classifies() -> None:
    attachment = b"A" * 76 + b"\r\n"
    raw = sample("postfix_hard").replace(
        b"--4Q9Zx1.1733302931/relay.news.example.org--",
        b"--4Q9Zx1.1733302931/relay.news.example.org\r\nContent-Type: application/octet-stream\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + attachment * (20 * 1024 * 1024 // len(attachment)),
    )
    assert len(raw) > 20 * 1024 * 1024
    result = classify(raw[: 4 * 1024 * 1024], RECIPIENTS, received_at=NOW)
    assert result.kind is MessageClass.BOUNCE and result.events[0].kind is EventKind.BOUNCED_HARD
