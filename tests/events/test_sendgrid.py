"""SendGrid's events to provider-neutral events, and its Signed Event Webhook; no database."""

from __future__ import annotations

import base64
import datetime as dt

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from newsletter.config import Settings, WebhooksSettings
from newsletter.events import sendgrid
from newsletter.events.model import BadPayload, WebhookRequest
from newsletter.events.sendgrid import SIGNATURE_HEADER, TIMESTAMP_HEADER
from newsletter.store.models import EventKind
from tests.events.providers import (
    SENDGRID_KEY,
    now_seconds,
    public_key_text,
    sendgrid_headers,
    sendgrid_sample,
)

ENV = {"SENDGRID_WEBHOOK_PUBLIC_KEY": public_key_text()}
BODY = orjson.dumps(sendgrid_sample("bounce"))


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("bounce", EventKind.BOUNCED_HARD),
        ("blocked", EventKind.BOUNCED_SOFT),
        ("deferred", EventKind.OTHER),
        ("dropped", EventKind.BOUNCED_HARD),
        ("spamreport", EventKind.COMPLAINED),
        ("unsubscribe", EventKind.UNSUBSCRIBED),
        ("group_unsubscribe", EventKind.UNSUBSCRIBED),
        ("delivered", EventKind.DELIVERED),
        ("open", EventKind.OPENED),
        ("click", EventKind.CLICKED),
        ("processed", EventKind.OTHER),
    ],
)
def test_each_event_has_its_kind_and_the_ids_we_sent(name: str, kind: EventKind) -> None:
    (record,) = sendgrid_sample(name)
    (event,) = sendgrid.parse(orjson.dumps([record]))
    assert event.provider == "sendgrid" and event.kind is kind
    assert event.event_id == record["sg_event_id"]
    assert (event.send_id, event.delivery_id) == (1, 1)
    assert event.email == record["email"]
    assert event.occurred_at == dt.datetime(2026, 11, 27, 19, 3, 11, tzinfo=dt.UTC)
    # The address never reaches what is stored, not even quoted in a bounce reason or a URL.
    assert "@" not in orjson.dumps(event.detail).decode()


TOLERANCE = Settings().webhooks.timestamp_tolerance

def test_a_bounce_keeps_its_type_and_classification() -> None:
    (event,) = sendgrid.parse(orjson.dumps(sendgrid_sample("bounce")))
    assert event.detail == {
        "type": "bounce",
        "classification": "Invalid Address",
        "status": "5.1.1",
        "reason": "550 5.1.1 <<address>>: Recipient address rejected: User unknown",
    }
    # Older payloads have no type: a bounce is permanent by SendGrid's definition.
    (untyped,) = sendgrid.parse(orjson.dumps(sendgrid_sample("bounce", type=None)))
    assert untyped.kind is EventKind.BOUNCED_HARD


@pytest.mark.parametrize(
    ("reason", "kind"),
    [
        ("Bounced Address", EventKind.BOUNCED_HARD),
        ("Spam Reporting Address", EventKind.COMPLAINED),
        ("Unsubscribed Address", EventKind.UNSUBSCRIBED),
        ("Invalid SMTPAPI header", EventKind.OTHER),
        ("Spam Content (if Spam Checker app is enabled)", EventKind.OTHER),
        ("Recipient List over Package Quota", EventKind.OTHER),
        ("Invalid", EventKind.OTHER),
    ],
)
def test_a_drop_for_the_address_mirrors_sendgrids_suppression(reason: str, kind: EventKind) -> None:
    (event,) = sendgrid.parse(orjson.dumps(sendgrid_sample("dropped", reason=reason)))
    assert event.kind is kind and event.detail["reason"] == reason


def test_click_keeps_the_link_without_its_query() -> None:
    (event,) = sendgrid.parse(orjson.dumps(sendgrid_sample("click")))
    assert event.detail == {"url": "https://www.example.org/statements/2026/11/27/"}


def test_a_batch_keeps_every_event_in_order() -> None:
    names = ["processed", "delivered", "open", "click", "bounce", "spamreport"]
    batch = [sendgrid_sample(name)[0] for name in names]
    events = sendgrid.parse(orjson.dumps(batch))
    assert [e.event_id for e in events] == [r["sg_event_id"] for r in batch]
    assert sendgrid.parse(b"[]") == []


def test_an_overlong_event_id_is_hashed_not_cut() -> None:
    long_a, long_b = "a" * 200, "a" * 199 + "b"
    (a,) = sendgrid.parse(orjson.dumps(sendgrid_sample("open", sg_event_id=long_a)))
    (b,) = sendgrid.parse(orjson.dumps(sendgrid_sample("open", sg_event_id=long_b)))
    assert a.event_id != b.event_id and len(a.event_id) <= 128


@pytest.mark.parametrize("value", ["x", "-1", "1e3", "", True, 1.5, 2**63, "9" * 40, None, {"id": 1}])
def test_foreign_custom_args_are_no_id(value: object) -> None:
    (event,) = sendgrid.parse(orjson.dumps(sendgrid_sample("bounce", send_id=value, delivery_id=value)))
    assert event.delivery_id is None and event.send_id is None


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00binary\x00",
        b'{"event": "bounce"}',
        b"[1]",
        b'[{"event": "bounce"}]',
        b'[{"event": 5, "sg_event_id": "x", "timestamp": 1}]',
        b'[{"event": "open", "sg_event_id": "", "timestamp": 1}]',
        b'[{"event": "open", "sg_event_id": ["x"], "timestamp": 1}]',
        b'[{"event": "open", "sg_event_id": "x", "timestamp": "yesterday"}]',
        b'[{"event": "open", "sg_event_id": "x", "timestamp": 1e300}]',
        b'[{"event": "open", "sg_event_id": "x", "timestamp": -1}]',
        b'[{"event": "open", "sg_event_id": "x", "timestamp": true}]',
        b'[{"event": "open", "sg_event_id": "x", "timestamp": 1, "email": 42}]',
        b"[" * 100_000 + b"]" * 100_000,
        b'[{"a":' * 5000 + b"1" + b"}" * 5000 + b"]",
    ],
)
def test_malformed_bodies_are_bad_payloads(body: bytes) -> None:
    with pytest.raises(BadPayload):
        sendgrid.parse(body)


def request(
    body: bytes = BODY, headers: dict[str, str] | None = None, at: int | None = None
) -> WebhookRequest:
    received = dt.datetime.fromtimestamp(now_seconds() if at is None else at, dt.UTC)
    return WebhookRequest(headers=headers or {}, body=body, received_at=received)


def trusted(req: WebhookRequest, environ: dict[str, str] = ENV, settings: Settings | None = None) -> bool:
    return sendgrid.verify(req, settings or Settings(), environ).trusted


def test_verify_accepts_sendgrids_signature_of_this_body_now() -> None:
    assert trusted(request(headers=sendgrid_headers(BODY)))
    # Header names are matched whatever their case.
    lower = {k.lower(): v for k, v in sendgrid_headers(BODY).items()}
    assert trusted(request(headers=lower))
    # The key may also be given as PEM.
    pem = SENDGRID_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert trusted(request(headers=sendgrid_headers(BODY)), {"SENDGRID_WEBHOOK_PUBLIC_KEY": pem.decode()})


def test_verify_refuses_anything_else(caplog: pytest.LogCaptureFixture) -> None:
    good = sendgrid_headers(BODY)
    other_key = ec.generate_private_key(ec.SECP256R1())
    now = now_seconds()
    refused = [
        request(headers={}),
        request(headers={SIGNATURE_HEADER: good[SIGNATURE_HEADER]}),
        request(headers={TIMESTAMP_HEADER: good[TIMESTAMP_HEADER]}),
        request(headers=sendgrid_headers(BODY, key=other_key)),
        request(body=BODY + b" ", headers=good),
        request(body=BODY.replace(b"reader0", b"reader1"), headers=good),
        request(headers={**good, TIMESTAMP_HEADER: str(int(good[TIMESTAMP_HEADER]) + 1)}),
        request(headers={**good, SIGNATURE_HEADER: "!!not base64!!"}),
        request(headers={**good, SIGNATURE_HEADER: base64.b64encode(b"\x30\x02junk").decode()}),
        request(headers={**good, SIGNATURE_HEADER: "A" * 10_000}),
        request(headers={**good, TIMESTAMP_HEADER: "soon"}),
        request(headers={**good, TIMESTAMP_HEADER: "9" * 40}),
        request(headers=sendgrid_headers(BODY, timestamp=now - TOLERANCE - 1), at=now),
        request(headers=sendgrid_headers(BODY, timestamp=now + TOLERANCE + 1), at=now),
    ]
    assert [trusted(r) for r in refused] == [False] * len(refused)
    # Within the tolerance either way is fine, and the tolerance is the setting's.
    assert trusted(request(headers=sendgrid_headers(BODY, timestamp=now - TOLERANCE + 1), at=now))
    assert trusted(request(headers=sendgrid_headers(BODY, timestamp=now + TOLERANCE - 1), at=now))
    strict = Settings(webhooks=WebhooksSettings(timestamp_tolerance=10))
    assert not trusted(request(headers=sendgrid_headers(BODY, timestamp=now - 60), at=now), settings=strict)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "not base64!",
        base64.b64encode(b"not a key").decode(),
        public_key_text(ec.generate_private_key(ec.SECP384R1())),
    ],
)
def test_without_a_usable_key_nobody_is_trusted(key: str, caplog: pytest.LogCaptureFixture) -> None:
    assert not trusted(request(headers=sendgrid_headers(BODY)), {"SENDGRID_WEBHOOK_PUBLIC_KEY": key})
    assert "SENDGRID_WEBHOOK_PUBLIC_KEY" in caplog.text
