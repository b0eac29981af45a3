"""Mailgun's events to provider-neutral events, and its signature; no database."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest

from newsletter.config import Settings, WebhooksSettings
from newsletter.events import mailgun
from newsletter.events.model import BadPayload, WebhookRequest
from newsletter.store.models import EventKind
from tests.events.providers import MAILGUN_KEY, mailgun_sample, mailgun_signed, now_seconds

ENV = {"MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY}


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("failed_permanent", EventKind.BOUNCED_HARD),
        ("failed_old", EventKind.BOUNCED_SOFT),
        ("failed_temporary", EventKind.OTHER),
        ("failed_suppress_complaint", EventKind.COMPLAINED),
        ("complained", EventKind.COMPLAINED),
        ("unsubscribed", EventKind.UNSUBSCRIBED),
        ("delivered", EventKind.DELIVERED),
        ("opened", EventKind.OPENED),
        ("clicked", EventKind.CLICKED),
        ("accepted", EventKind.OTHER),
    ],
)
def test_each_event_has_its_kind_and_the_ids_we_sent(name: str, kind: EventKind) -> None:
    record = mailgun_sample(name)
    (event,) = mailgun.parse(orjson.dumps(record))
    assert event.provider == "mailgun" and event.kind is kind
    assert event.event_id == record["event-data"]["id"] + ":1795806191.123456"
    assert (event.send_id, event.delivery_id) == (1, 1)
    assert event.email == record["event-data"]["recipient"]
    assert event.occurred_at == dt.datetime(2026, 11, 27, 19, 3, 11, 123456, tzinfo=dt.UTC)
    assert "@" not in orjson.dumps(event.detail).decode()


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("bounce", EventKind.BOUNCED_HARD),
        ("generic", EventKind.BOUNCED_HARD),
        ("suppress-bounce", EventKind.BOUNCED_HARD),
        ("suppress-complaint", EventKind.COMPLAINED),
        ("suppress-unsubscribe", EventKind.UNSUBSCRIBED),
        ("old", EventKind.BOUNCED_SOFT),
    ],
)
def test_permanent_failures_by_reason(reason: str, kind: EventKind) -> None:
    (event,) = mailgun.parse(orjson.dumps(mailgun_sample("failed_permanent", reason=reason)))
    assert event.kind is kind


def test_a_failure_keeps_its_code_not_the_servers_message() -> None:
    (event,) = mailgun.parse(orjson.dumps(mailgun_sample("failed_permanent")))
    assert event.detail == {"severity": "permanent", "reason": "bounce", "code": 550, "description": ""}


def test_click_keeps_the_link_without_its_query() -> None:
    (event,) = mailgun.parse(orjson.dumps(mailgun_sample("clicked")))
    assert event.detail == {"url": "https://www.example.org/statements/2026/11/27/"}


def test_the_same_id_on_another_day_is_another_event() -> None:
    today = mailgun.parse(orjson.dumps(mailgun_sample("opened")))[0]
    again = mailgun.parse(orjson.dumps(mailgun_sample("opened")))[0]
    tomorrow = mailgun.parse(orjson.dumps(mailgun_sample("opened", timestamp=1795892591.123456)))[0]
    assert today.event_id == again.event_id != tomorrow.event_id


@pytest.mark.parametrize("variables", [{}, {"send_id": "x", "delivery_id": "-1"}, {"delivery_id": [1]}])
def test_foreign_variables_are_no_id(variables: dict[str, object]) -> None:
    record = mailgun_sample("failed_permanent", **{"user-variables": variables})
    (event,) = mailgun.parse(orjson.dumps(record))
    assert event.delivery_id is None and event.send_id is None


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00binary\x00",
        b"[]",
        b"{}",
        b'{"event-data": []}',
        b'{"event-data": {"id": "x", "timestamp": 1}}',
        b'{"event-data": {"event": "failed", "timestamp": 1}}',
        b'{"event-data": {"event": "failed", "id": 7, "timestamp": 1}}',
        b'{"event-data": {"event": "failed", "id": "x", "timestamp": "now"}}',
        b'{"event-data": {"event": "failed", "id": "x", "timestamp": 1, "recipient": ["a"]}}',
        b'{"event-data": {"event": "failed", "id": "x", "timestamp": 1, "user-variables": "1"}}',
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
    ],
)
def test_malformed_bodies_are_bad_payloads(body: bytes) -> None:
    with pytest.raises(BadPayload):
        mailgun.parse(body)


def request(record: object, at: int | None = None) -> WebhookRequest:
    received = dt.datetime.fromtimestamp(now_seconds() if at is None else at, dt.UTC)
    body = record if isinstance(record, bytes) else orjson.dumps(record)
    return WebhookRequest(headers={}, body=body, received_at=received)


def verdict(record: object, at: int | None = None, settings: Settings | None = None, environ=ENV):
    return mailgun.verify(request(record, at), settings or Settings(), environ)


def test_verify_accepts_mailguns_signature_and_names_the_token() -> None:
    signed = mailgun_signed(mailgun_sample("delivered"), token="t" * 50)
    result = verdict(signed)
    assert result.trusted and result.nonce == "t" * 50
    # Mailgun documents the timestamp as an int and sends a string: both are read.
    block = signed["signature"]
    as_int = {**signed, "signature": {**block, "timestamp": int(block["timestamp"])}}
    assert verdict(as_int).trusted


def test_verify_refuses_anything_else(caplog: pytest.LogCaptureFixture) -> None:
    record = mailgun_sample("failed_permanent")
    good = mailgun_signed(record)
    block = good["signature"]
    now = now_seconds()
    tolerance = Settings().webhooks.timestamp_tolerance
    oldest = tolerance + mailgun.RETRY_WINDOW
    refused = [
        b"not json",
        b"[]",
        b"{}",
        record,  # the fixture's own block, signed with someone else's key long ago
        mailgun_signed(record, key="another key"),
        {**good, "signature": {**block, "signature": block["signature"].replace(block["signature"][0], "x")}},
        {**good, "signature": {**block, "token": block["token"] + "x"}},
        {**good, "signature": {**block, "timestamp": str(int(block["timestamp"]) + 1)}},
        {**good, "signature": {**block, "signature": "é" * 64}},
        {**good, "signature": {**block, "token": None}},
        {**good, "signature": {**block, "timestamp": True}},
        {**good, "signature": "sig"},
        mailgun_signed(record, token="x" * 129),
        mailgun_signed(record, token=""),
        mailgun_signed(record, timestamp=now - oldest - 1),
        mailgun_signed(record, timestamp=now + tolerance + 1),
    ]
    assert [verdict(r, at=now).trusted for r in refused] == [False] * len(refused)
    assert verdict(mailgun_signed(record, timestamp=now - oldest + 1), at=now).trusted
    # A retry 8 hours after the first attempt still carries the first signature.
    assert verdict(mailgun_signed(record, timestamp=now - 8 * 3600), at=now).trusted
    strict = Settings(webhooks=WebhooksSettings(timestamp_tolerance=10))
    assert not verdict(mailgun_signed(record, timestamp=now + 60), at=now, settings=strict).trusted
    late = now - mailgun.RETRY_WINDOW - 60
    assert not verdict(mailgun_signed(record, timestamp=late), at=now, settings=strict).trusted
    assert verdict(mailgun_signed(record, timestamp=late), at=now).trusted
    # No signing key configured: nobody gets in, and the log says why.
    assert not verdict(good, environ={}).trusted
    assert "MAILGUN_WEBHOOK_SIGNING_KEY not set" in caplog.text
