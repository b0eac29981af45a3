"""Postmark's webhook records to provider-neutral events, and its basic auth; no database."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest

from newsletter.config import Settings
from newsletter.events import postmark
from newsletter.events.model import BadPayload, WebhookRequest
from newsletter.store.models import EventKind
from tests.events.providers import PASSWORD, USER, basic, sample

ENV = {"POSTMARK_WEBHOOK_USER": USER, "POSTMARK_WEBHOOK_PASSWORD": PASSWORD}


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("bounce_hard", EventKind.BOUNCED_HARD),
        ("bounce_soft", EventKind.BOUNCED_SOFT),
        ("spam_complaint", EventKind.COMPLAINED),
        ("subscription_change", EventKind.UNSUBSCRIBED),
        ("delivery", EventKind.DELIVERED),
        ("open", EventKind.OPENED),
        ("click", EventKind.CLICKED),
    ],
)
def test_each_record_type_has_its_kind_and_the_ids_we_sent(name: str, kind: EventKind) -> None:
    record = sample(name)
    (event,) = postmark.parse(orjson.dumps(record))
    assert event.provider == "postmark" and event.kind is kind
    assert event.send_id == int(record["Metadata"]["send_id"])
    assert event.delivery_id == int(record["Metadata"]["delivery_id"])
    assert event.email == record.get("Email", record.get("Recipient"))
    assert event.occurred_at.tzinfo is dt.UTC
    # The address never reaches what is stored.
    assert "example.org" not in orjson.dumps(event.detail).decode().replace("www.example.org", "")


@pytest.mark.parametrize(
    ("bounce_type", "kind"),
    [
        ("HardBounce", EventKind.BOUNCED_HARD),
        ("BadEmailAddress", EventKind.BOUNCED_HARD),
        ("ManuallyDeactivated", EventKind.BOUNCED_HARD),
        ("SoftBounce", EventKind.BOUNCED_SOFT),
        ("Transient", EventKind.BOUNCED_SOFT),
        ("DnsError", EventKind.BOUNCED_SOFT),
        ("SpamComplaint", EventKind.COMPLAINED),
        ("Unsubscribe", EventKind.UNSUBSCRIBED),
        ("AutoResponder", EventKind.OTHER),
        ("Blocked", EventKind.OTHER),
        ("SomethingNew", EventKind.OTHER),
    ],
)
def test_bounce_types(bounce_type: str, kind: EventKind) -> None:
    (event,) = postmark.parse(orjson.dumps(sample("bounce_hard", Type=bounce_type)))
    assert event.kind is kind


def test_event_ids_are_stable_and_distinct() -> None:
    bounce = postmark.parse(orjson.dumps(sample("bounce_hard")))[0]
    assert bounce.event_id == "Bounce:4323372036854775807"
    opened = orjson.dumps(sample("open"))
    assert postmark.parse(opened)[0].event_id == postmark.parse(opened)[0].event_id
    # The same record with its keys in another order is the same event.
    reordered = orjson.dumps(dict(reversed(list(sample("open").items()))))
    assert postmark.parse(reordered)[0].event_id == postmark.parse(opened)[0].event_id
    later = orjson.dumps(sample("open", ReceivedAt="2026-11-27T15:00:00Z"))
    assert postmark.parse(later)[0].event_id != postmark.parse(opened)[0].event_id


def test_a_reactivation_changes_nothing() -> None:
    (event,) = postmark.parse(orjson.dumps(sample("subscription_change", SuppressSending=False)))
    assert event.kind is EventKind.OTHER


def test_click_keeps_the_link_without_its_query() -> None:
    (event,) = postmark.parse(orjson.dumps(sample("click")))
    assert event.detail == {"url": "https://www.example.org/statements/2026/11/27/"}


@pytest.mark.parametrize(
    "metadata",
    [
        {},
        {"send_id": "x", "delivery_id": "-1"},
        {"delivery_id": "1e3"},
        {"send_id": "9223372036854775808"},  # past a BIGINT
        {"send_id": "1" * 5000},  # past Python's int-from-string limit: was a 500
    ],
)
def test_foreign_metadata_is_no_id(metadata: dict[str, str]) -> None:
    (event,) = postmark.parse(orjson.dumps(sample("bounce_hard", Metadata=metadata)))
    assert event.delivery_id is None and event.send_id is None


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00binary\x00",
        b"[1, 2]",
        b'"Bounce"',
        b"{}",
        b'{"RecordType": 5}',
        b'{"RecordType": "Bounce", "Metadata": "1"}',
        b'{"RecordType": "Bounce", "BouncedAt": "yesterday"}',
        b'{"RecordType": "SubscriptionChange"}',
        b'{"a":' * 5000 + b"1" + b"}" * 5000,
        b"[" * 100_000 + b"]" * 100_000,
    ],
)
def test_malformed_bodies_are_bad_payloads(body: bytes) -> None:
    with pytest.raises(BadPayload):
        postmark.parse(body)


def trusted(headers: dict[str, str], settings: Settings, environ: dict[str, str]) -> bool:
    request = WebhookRequest(headers=headers, body=b"{}", received_at=dt.datetime.now(dt.UTC))
    return postmark.verify(request, settings, environ).trusted


def test_verify_accepts_only_the_configured_credentials(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings()
    assert trusted(basic(), settings, ENV)
    assert not trusted(basic(password=PASSWORD + "x"), settings, ENV)
    assert not trusted(basic(user="someone"), settings, ENV)
    assert not trusted({}, settings, ENV)
    assert not trusted({"authorization": "Bearer abc"}, settings, ENV)
    assert not trusted({"authorization": "Basic !!!not-base64"}, settings, ENV)
    # Header names are matched whatever their case.
    assert trusted({"AUTHORIZATION": basic()["Authorization"]}, settings, ENV)
    # No credentials configured: nobody gets in, and the log says why.
    assert not trusted(basic(), settings, {"POSTMARK_WEBHOOK_USER": USER})
    assert "POSTMARK_WEBHOOK_PASSWORD not set" in caplog.text
    assert not trusted(basic("", ""), settings, {})
