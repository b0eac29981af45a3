"""``POST /webhooks/sendgrid`` and ``/webhooks/mailgun`` on both databases: only what the provider
signed, recently, once, is stored, and each event kind is applied."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Engine, select
from starlette.testclient import TestClient

from newsletter.config import Settings, WebhooksSettings
from newsletter.store.db import writing
from newsletter.store.models import Event, EventKind, SubscriberStatus, SuppressionReason, WebhookNonce
from newsletter.store.nonces import KEPT_FOR, Nonce, Replayed, claim
from newsletter.web.app import MAX_BODY, create_app
from tests.events.providers import (
    READERS,
    mailgun_sample,
    mailgun_signed,
    now_seconds,
    sendgrid_headers,
    sendgrid_sample,
)
from tests.events.stored import audience, events, status_of, suppression

pytestmark = pytest.mark.usefixtures("readers")


def post_sendgrid(client: TestClient, body: bytes | list[Any], **headers: str) -> tuple[int, Any]:
    raw = body if isinstance(body, bytes) else orjson.dumps(body)
    response = client.post("/webhooks/sendgrid", content=raw, headers=headers or sendgrid_headers(raw))
    return response.status_code, response.json()


def post_mailgun(client: TestClient, record: dict[str, Any] | bytes) -> tuple[int, Any]:
    raw = record if isinstance(record, bytes) else orjson.dumps(record)
    response = client.post("/webhooks/mailgun", content=raw, headers={"Content-Type": "application/json"})
    return response.status_code, response.json()


def nonces(engine: Engine) -> list[tuple[str, str]]:
    with engine.connect() as conn:
        return [tuple(row) for row in conn.execute(select(WebhookNonce.provider, WebhookNonce.nonce))]


LEAVING = [
    # (provider sample, reader, status, suppression)
    ("bounce", READERS[0], SubscriberStatus.BOUNCED, SuppressionReason.BOUNCED),
    ("spamreport", READERS[2], SubscriberStatus.COMPLAINED, SuppressionReason.COMPLAINED),
    ("unsubscribe", READERS[3], SubscriberStatus.UNSUBSCRIBED, SuppressionReason.UNSUBSCRIBED),
    ("group_unsubscribe", READERS[3], SubscriberStatus.UNSUBSCRIBED, SuppressionReason.UNSUBSCRIBED),
    ("dropped", READERS[4], SubscriberStatus.BOUNCED, SuppressionReason.BOUNCED),
]


@pytest.mark.parametrize(("name", "email", "status", "reason"), LEAVING)
def test_sendgrid_events_that_take_a_reader_off_the_list(
    engine: Engine,
    client: TestClient,
    name: str,
    email: str,
    status: SubscriberStatus,
    reason: SuppressionReason,
) -> None:
    assert post_sendgrid(client, sendgrid_sample(name)) == (200, {"received": 1, "new": 1})
    assert status_of(engine, email) is status
    assert suppression(engine, email) is reason
    assert audience(engine) == 4
    # SendGrid retries a batch it got no 200 for: stored and applied once.
    assert post_sendgrid(client, sendgrid_sample(name)) == (200, {"received": 1, "new": 0})
    assert len(events(engine)) == 1


@pytest.mark.parametrize("name", ["delivered", "open", "click", "processed", "deferred"])
def test_sendgrid_engagement_and_progress_are_recorded_only(
    engine: Engine, client: TestClient, name: str
) -> None:
    assert post_sendgrid(client, sendgrid_sample(name)) == (200, {"received": 1, "new": 1})
    assert len(events(engine)) == 1 and audience(engine) == 5


def test_a_sendgrid_batch_is_stored_in_one_go(engine: Engine, client: TestClient) -> None:
    names = ["processed", "delivered", "open", "click", "bounce", "spamreport"]
    batch = [sendgrid_sample(name)[0] for name in names]
    assert post_sendgrid(client, batch) == (200, {"received": 6, "new": 6})
    with engine.connect() as conn:
        row = conn.execute(select(Event.__table__).where(Event.kind == EventKind.BOUNCED_HARD)).one()
    assert (row.provider, row.send_id, row.delivery_id) == ("sendgrid", 1, 1)
    assert row.occurred_at == dt.datetime(2026, 11, 27, 19, 3, 11, tzinfo=dt.UTC)
    assert row.detail["classification"] == "Invalid Address"
    assert "@" not in orjson.dumps(row.detail).decode()
    assert audience(engine) == 3


def test_blocked_soft_bounces_suppress_at_the_limit(engine: Engine, credentials: None) -> None:
    settings = Settings(webhooks=WebhooksSettings(soft_bounce_limit=2))
    with TestClient(create_app(settings, engine)) as client:
        assert post_sendgrid(client, sendgrid_sample("blocked", sg_event_id="b1"))[0] == 200
        # Deferrals are attempts SendGrid retries, not failures: they never count.
        for attempt in range(5):
            deferred = sendgrid_sample("deferred", sg_event_id=f"d{attempt}", attempt=str(attempt + 1))
            assert post_sendgrid(client, deferred)[0] == 200
        assert post_sendgrid(client, sendgrid_sample("blocked", sg_event_id="b1"))[1]["new"] == 0
        assert status_of(engine, READERS[1]) is SubscriberStatus.ACTIVE
        assert post_sendgrid(client, sendgrid_sample("blocked", sg_event_id="b2"))[0] == 200
    assert status_of(engine, READERS[1]) is SubscriberStatus.BOUNCED
    assert suppression(engine, READERS[1]) is SuppressionReason.BOUNCED


def test_a_huge_sendgrid_batch_up_to_the_body_limit(engine: Engine, client: TestClient) -> None:
    template = sendgrid_sample("delivered")[0]
    one = len(orjson.dumps(template)) + 1
    batch = [{**template, "sg_event_id": f"e{i}"} for i in range(MAX_BODY // one - 1)]
    raw = orjson.dumps(batch)
    assert len(raw) <= MAX_BODY
    assert post_sendgrid(client, raw) == (200, {"received": len(batch), "new": len(batch)})
    assert len(events(engine)) == len(batch) > 2000


def test_unsigned_or_badly_signed_sendgrid_posts_store_nothing(engine: Engine, client: TestClient) -> None:
    raw = orjson.dumps(sendgrid_sample("bounce"))
    good = sendgrid_headers(raw)
    now = now_seconds()
    attempts = [
        {},
        {"X-Twilio-Email-Event-Webhook-Signature": good["X-Twilio-Email-Event-Webhook-Signature"]},
        {"X-Twilio-Email-Event-Webhook-Timestamp": good["X-Twilio-Email-Event-Webhook-Timestamp"]},
        sendgrid_headers(raw, key=ec.generate_private_key(ec.SECP256R1())),
        sendgrid_headers(raw, timestamp=now - 86400),
        sendgrid_headers(raw, timestamp=now + 86400),
        {**good, "X-Twilio-Email-Event-Webhook-Signature": "not base64"},
    ]
    for headers in attempts:
        response = client.post("/webhooks/sendgrid", content=raw, headers=headers)
        assert response.status_code == 401, headers
    # The body altered after signing: the signature no longer matches.
    altered = raw.replace(b"reader0", b"reader1")
    assert client.post("/webhooks/sendgrid", content=altered, headers=good).status_code == 401
    assert events(engine) == [] and audience(engine) == 5


@pytest.mark.parametrize(
    "body",
    [
        b"garbage",
        b"\x00\xff\x13\x37binary",
        b'{"event": "bounce"}',
        b"[" * 5000 + b"]" * 5000,
        b'[{"a":' * 3000 + b"1" + b"}" * 3000 + b"]",
        b"[" + b"1," * (MAX_BODY // 2 - 2) + b"1]",
        b'[{"event": "bounce", "sg_event_id": 1, "timestamp": 1}]',
    ],
)
def test_signed_hostile_sendgrid_bodies_are_400(engine: Engine, client: TestClient, body: bytes) -> None:
    assert len(body) <= MAX_BODY
    status, answer = post_sendgrid(client, body)
    assert status == 400 and "error" in answer
    assert events(engine) == []


MAILGUN_LEAVING = [
    ("failed_permanent", READERS[0], SubscriberStatus.BOUNCED, SuppressionReason.BOUNCED),
    ("complained", READERS[2], SubscriberStatus.COMPLAINED, SuppressionReason.COMPLAINED),
    ("failed_suppress_complaint", READERS[2], SubscriberStatus.COMPLAINED, SuppressionReason.COMPLAINED),
    ("unsubscribed", READERS[3], SubscriberStatus.UNSUBSCRIBED, SuppressionReason.UNSUBSCRIBED),
]


@pytest.mark.parametrize(("name", "email", "status", "reason"), MAILGUN_LEAVING)
def test_mailgun_events_that_take_a_reader_off_the_list(
    engine: Engine,
    client: TestClient,
    name: str,
    email: str,
    status: SubscriberStatus,
    reason: SuppressionReason,
) -> None:
    assert post_mailgun(client, mailgun_signed(mailgun_sample(name))) == (200, {"received": 1, "new": 1})
    assert status_of(engine, email) is status
    assert suppression(engine, email) is reason
    assert audience(engine) == 4
    # Mailgun's retry is signed afresh: a new token, the same event, stored once.
    assert post_mailgun(client, mailgun_signed(mailgun_sample(name))) == (200, {"received": 1, "new": 0})
    assert len(events(engine)) == 1 and len(nonces(engine)) == 2


@pytest.mark.parametrize("name", ["delivered", "opened", "clicked", "accepted", "failed_temporary"])
def test_mailgun_engagement_and_progress_are_recorded_only(
    engine: Engine, client: TestClient, name: str
) -> None:
    assert post_mailgun(client, mailgun_signed(mailgun_sample(name))) == (200, {"received": 1, "new": 1})
    assert len(events(engine)) == 1 and audience(engine) == 5


def test_mailgun_soft_bounces_suppress_at_the_limit(engine: Engine, credentials: None) -> None:
    settings = Settings(webhooks=WebhooksSettings(soft_bounce_limit=2))
    with TestClient(create_app(settings, engine)) as client:
        for attempt in range(4):  # temporary failures Mailgun retries: never counted
            post_mailgun(client, mailgun_signed(mailgun_sample("failed_temporary", id=f"t{attempt}")))
        assert post_mailgun(client, mailgun_signed(mailgun_sample("failed_old", id="old1")))[0] == 200
        assert status_of(engine, READERS[1]) is SubscriberStatus.ACTIVE
        assert post_mailgun(client, mailgun_signed(mailgun_sample("failed_old", id="old2")))[0] == 200
    assert status_of(engine, READERS[1]) is SubscriberStatus.BOUNCED
    assert suppression(engine, READERS[1]) is SuppressionReason.BOUNCED


def test_a_replayed_mailgun_token_is_refused_and_changes_nothing(engine: Engine, client: TestClient) -> None:
    first = mailgun_signed(mailgun_sample("opened"), token="a" * 50)
    assert post_mailgun(client, first) == (200, {"received": 1, "new": 1})
    # Captured and posted again, as is: the same token.
    assert post_mailgun(client, first)[0] == 401
    # Or with other event-data under the same (still valid) signature: a new event id, a bounce.
    forged = {**mailgun_sample("failed_permanent", id="brand-new"), "signature": first["signature"]}
    assert post_mailgun(client, forged)[0] == 401
    assert len(events(engine)) == 1 and audience(engine) == 5
    assert status_of(engine, READERS[0]) is SubscriberStatus.ACTIVE
    assert nonces(engine) == [("mailgun", "a" * 50)]


def test_bad_mailgun_signatures_store_nothing(engine: Engine, client: TestClient) -> None:
    record = mailgun_sample("failed_permanent")
    now = now_seconds()
    good = mailgun_signed(record)
    attempts: list[dict[str, Any] | bytes] = [
        record,
        mailgun_signed(record, key="not our key"),
        mailgun_signed(record, timestamp=now - 86400),
        mailgun_signed(record, timestamp=now + 86400),
        {**good, "signature": {**good["signature"], "signature": "0" * 64}},
        {"event-data": record["event-data"]},
        b"not json: no signature to check",
        b"[" * 5000 + b"]" * 5000,
    ]
    for attempt in attempts:
        assert post_mailgun(client, attempt)[0] == 401
    assert events(engine) == [] and nonces(engine) == [] and audience(engine) == 5


@pytest.mark.parametrize(
    "event_data",
    [
        None,
        [],
        "failed",
        {"event": "failed"},
        {"event": ["failed"], "id": "x", "timestamp": 1},
        {"event": "failed", "id": "x", "timestamp": "yesterday"},
        {"event": "failed", "id": "x", "timestamp": 1, "recipient": {"a": 1}},
        {"event": "failed", "id": "x", "timestamp": 1, "user-variables": [1] * 100_000},
    ],
)
def test_signed_hostile_mailgun_bodies_are_400(engine: Engine, client: TestClient, event_data: Any) -> None:
    record = mailgun_signed({"event-data": event_data})
    status, answer = post_mailgun(client, record)
    assert status == 400 and "error" in answer
    assert events(engine) == [] and nonces(engine) == []


def test_a_deeply_nested_mailgun_body_is_refused(engine: Engine, client: TestClient) -> None:
    signed = orjson.dumps(mailgun_signed({"event-data": {}}))
    deep = signed[:-1] + b',"deep":' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert post_mailgun(client, deep)[0] == 401  # too deep to read even the signature
    assert events(engine) == [] and nonces(engine) == []


def test_old_nonces_are_forgotten_as_new_ones_arrive(engine: Engine) -> None:
    now = dt.datetime.now(dt.UTC)
    with writing(engine).begin() as conn:
        claim(conn, Nonce("mailgun", "old"), now=now - KEPT_FOR - dt.timedelta(seconds=1))
        claim(conn, Nonce("mailgun", "recent"), now=now - KEPT_FOR + dt.timedelta(minutes=1))
    with writing(engine).begin() as conn:
        claim(conn, Nonce("mailgun", "new"), now=now)
    assert sorted(nonces(engine)) == [("mailgun", "new"), ("mailgun", "recent")]
    # Another provider's nonce of the same value is another nonce.
    with writing(engine).begin() as conn:
        claim(conn, Nonce("other", "new"), now=now)
        with pytest.raises(Replayed):
            claim(conn, Nonce("mailgun", "recent"), now=now)
