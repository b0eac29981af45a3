"""``POST /webhooks/ses`` on both databases: SNS-signed SES events stored once and applied once;
nothing from anyone else, and SNS's subscription confirmed."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine, select
from starlette.testclient import TestClient

from newsletter.config import Settings
from newsletter.store.models import Event, EventKind, SubscriberStatus, SuppressionReason
from newsletter.store.privacy import address_hash
from newsletter.web.app import create_app
from tests.events.providers import READERS
from tests.events.sns_signing import (
    CERT_URL,
    OTHER_TOPIC,
    SUBSCRIBE_URL,
    FakeFetcher,
    Signer,
    confirmation,
    notification,
    ses_record,
)
from tests.events.stored import audience, events, status_of, suppression

URL = "/webhooks/ses"
pytestmark = pytest.mark.usefixtures("readers")


def _bounce(**envelope: Any) -> dict[str, Any]:
    return notification(ses_record("bounce_permanent"), **envelope)


def post(client: TestClient, signer: Signer, record: dict[str, Any]) -> tuple[int, dict[str, object]]:
    response = client.post(URL, content=json.dumps(signer.sign(record)))
    return response.status_code, response.json()


def test_a_bounce_of_two_readers_suppresses_both(
    engine: Engine, client: TestClient, signer: Signer
) -> None:
    assert post(client, signer, _bounce()) == (200, {"received": 2, "new": 2})
    for email in READERS[:2]:
        assert status_of(engine, email) is SubscriberStatus.BOUNCED
        assert suppression(engine, email) is SuppressionReason.BOUNCED
    assert audience(engine) == 3
    with engine.connect() as conn:
        rows = conn.execute(select(Event.__table__).order_by(Event.id)).all()
    assert [row.provider for row in rows] == ["ses", "ses"]
    assert [row.address_hash for row in rows] == [address_hash(email) for email in READERS[:2]]
    assert {(row.send_id, row.delivery_id) for row in rows} == {(1, 1)}
    assert READERS[0] not in orjson.dumps([row.detail for row in rows]).decode()


@pytest.mark.parametrize(
    ("name", "email", "status", "reason"),
    [
        ("complaint", READERS[2], SubscriberStatus.COMPLAINED, SuppressionReason.COMPLAINED),
        ("subscription", READERS[3], SubscriberStatus.UNSUBSCRIBED, SuppressionReason.UNSUBSCRIBED),
        ("notification_bounce", READERS[0], SubscriberStatus.BOUNCED, SuppressionReason.BOUNCED),
    ],
)
def test_complaints_unsubscribes_and_identity_bounces_take_the_reader_off(
    engine: Engine,
    client: TestClient,
    signer: Signer,
    name: str,
    email: str,
    status: SubscriberStatus,
    reason: SuppressionReason,
) -> None:
    assert post(client, signer, notification(ses_record(name))) == (200, {"received": 1, "new": 1})
    assert status_of(engine, email) is status
    assert suppression(engine, email) is reason
    assert audience(engine) == 4


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("delivery", EventKind.DELIVERED),
        ("open", EventKind.OPENED),
        ("click", EventKind.CLICKED),
        ("send", EventKind.OTHER),
        ("reject", EventKind.OTHER),
        ("delivery_delay", EventKind.OTHER),
        ("rendering_failure", EventKind.OTHER),
        ("bounce_transient", EventKind.BOUNCED_SOFT),
    ],
)
def test_the_rest_is_recorded_only(
    engine: Engine, client: TestClient, signer: Signer, name: str, kind: EventKind
) -> None:
    assert post(client, signer, notification(ses_record(name), version="2"))[0] == 200
    assert [event_kind for _, event_kind, _ in events(engine)] == [kind]
    assert audience(engine) == 5


def test_soft_bounces_suppress_at_the_limit(engine: Engine, client: TestClient, signer: Signer) -> None:
    for n in range(3):
        record = notification(ses_record("bounce_transient"), message_id=f"6f1a2b3c-4d5e-4f60-8a7b-{n:012d}")
        assert post(client, signer, record)[0] == 200
    assert suppression(engine, READERS[1]) is SuppressionReason.BOUNCED
    assert audience(engine) == 4


def test_an_sns_retry_is_stored_once(engine: Engine, client: TestClient, signer: Signer) -> None:
    record = _bounce()
    assert post(client, signer, record) == (200, {"received": 2, "new": 2})
    assert post(client, signer, record) == (200, {"received": 2, "new": 0})
    assert len(events(engine)) == 2


def test_the_subscription_is_confirmed_once_and_stores_nothing(
    engine: Engine, client: TestClient, signer: Signer, confirmed: list[str], fetcher: FakeFetcher
) -> None:
    assert post(client, signer, confirmation()) == (200, {"received": 0, "new": 0})
    assert confirmed == [SUBSCRIBE_URL]
    unsubscribed = confirmation("UnsubscribeConfirmation")
    assert post(client, signer, unsubscribed) == (200, {"received": 0, "new": 0})
    assert confirmed == [SUBSCRIBE_URL]
    assert fetcher.fetched == [CERT_URL]  # once for both: the certificate is cached
    assert events(engine) == []


def test_a_confirmation_of_another_topic_is_refused(
    client: TestClient, signer: Signer, confirmed: list[str]
) -> None:
    assert post(client, signer, confirmation(topic=OTHER_TOPIC))[0] == 401
    assert confirmed == []


FOREIGN_CERTIFICATE_URLS = (
    "https://sns.us-east-1.amazonaws.com.evil.example/SimpleNotificationService-abc.pem",
    "http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
    "https://amazonaws.com/SimpleNotificationService-abc.pem",
    "https://sns.eu-west-1.amazonaws.com@evil.example/SimpleNotificationService-abc.pem",
    "https://sns.eu-west-1.amazonaws.com:8443/SimpleNotificationService-abc.pem",
    "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem?x=.pem",
)
#: Requests that must not be trusted, made with SNS's key (``ours``) or a stranger's (``other``).
UNTRUSTED = {
    "altered-message": lambda ours, other: {**ours.sign(_bounce()), "Message": "{}"},
    "altered-id": lambda ours, other: {**ours.sign(_bounce()), "MessageId": "x-1"},
    "wrong-cert": lambda ours, other: other.sign(_bounce()),
    "unknown-topic": lambda ours, other: ours.sign(_bounce(topic=OTHER_TOPIC)),
    "stale": lambda ours, other: ours.sign(_bounce(at=dt.datetime.now(dt.UTC) - dt.timedelta(hours=2))),
    **{url: lambda ours, _, url=url: ours.sign(_bounce(cert_url=url)) for url in FOREIGN_CERTIFICATE_URLS},
}


@pytest.mark.parametrize("case", UNTRUSTED)
def test_anything_but_our_topic_signed_by_sns_is_401_and_stores_nothing(
    engine: Engine, client: TestClient, signer: Signer, stranger: Signer, fetcher: FakeFetcher, case: str
) -> None:
    response = client.post(URL, content=json.dumps(UNTRUSTED[case](signer, stranger)))
    assert response.status_code == 401
    assert events(engine) == [] and audience(engine) == 5
    assert set(fetcher.fetched) <= {CERT_URL}


def test_unconfigured_topics_refuse_everyone(
    engine: Engine, fetcher: FakeFetcher, signer: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    with TestClient(create_app(Settings(), engine)) as client:
        assert post(client, signer, notification(ses_record("bounce_permanent")))[0] == 401
    assert "ses_topic_arns is empty" in caplog.text
    assert events(engine) == [] and fetcher.fetched == []


def _signed(signer: Signer, message: str) -> bytes:
    return json.dumps(signer.sign(notification(message))).encode()


_HUGE_BOUNCE = {
    **ses_record("bounce_permanent"),
    "bounce": {
        "bounceType": "Permanent",
        "bouncedRecipients": [{"emailAddress": f"r{i}@example.org"} for i in range(5000)],
    },
}
#: Bodies that are not SNS envelopes of SES records, some signed by SNS's key.
HOSTILE = {
    "not-json": lambda signer: b"garbage",
    "binary": lambda signer: b"\x00\xff\x13\x37binary",
    "nested-array": lambda signer: b"[" * 5000 + b"]" * 5000,
    "nested-object": lambda signer: b'{"a":' * 3000 + b"1" + b"}" * 3000,
    "message-type": lambda signer: json.dumps({**notification("x"), "Message": 5}).encode(),
    "no-time": lambda signer: json.dumps({**notification("x"), "Timestamp": None}).encode(),
    "message-not-json": lambda signer: _signed(signer, "not json"),
    "message-not-object": lambda signer: _signed(signer, "[]"),
    "message-nested": lambda signer: _signed(signer, '{"a":' * 3000 + "1" + "}" * 3000),
    "wrong-types": lambda signer: _signed(signer, json.dumps({"eventType": "Bounce", "mail": []})),
    "huge-recipient-list": lambda signer: _signed(signer, json.dumps(_HUGE_BOUNCE)),
}


@pytest.mark.parametrize("case", HOSTILE)
def test_hostile_bodies_are_400(engine: Engine, client: TestClient, signer: Signer, case: str) -> None:
    response = client.post(URL, content=HOSTILE[case](signer))
    assert response.status_code == 400 and "error" in response.json()
    assert events(engine) == []
