"""``POST /webhooks/postmark`` on both databases: stored once, applied once, never unauthenticated."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest
from sqlalchemy import Engine, func, select
from starlette.testclient import TestClient

from newsletter.config import Settings, WebhooksSettings
from newsletter.store.db import session_scope
from newsletter.store.ledger import Ledger, ledger_for
from newsletter.store.models import (
    Delivery,
    DeliveryState,
    Event,
    EventKind,
    Subscriber,
    SubscriberStatus,
    Suppression,
    SuppressionReason,
)
from newsletter.store.privacy import address_hash
from newsletter.store.subscribers import SubscriberRepository
from newsletter.web.app import MAX_BODY, create_app
from tests.events.providers import READERS, basic, sample

URL = "/webhooks/postmark"
pytestmark = pytest.mark.usefixtures("readers")


def post(client: TestClient, record: object, **headers: str) -> tuple[int, dict[str, object]]:
    response = client.post(URL, content=orjson.dumps(record), headers=headers or basic())
    return response.status_code, response.json()


def audience(engine: Engine) -> int:
    with engine.connect() as conn:
        return Ledger(conn).audience_count("")


def events(engine: Engine) -> list[tuple[str, EventKind, str | None]]:
    with engine.connect() as conn:
        query = select(Event.provider_event_id, Event.kind, Event.address_hash).order_by(Event.id)
        return [(event_id, kind, digest) for event_id, kind, digest in conn.execute(query)]


def status_of(engine: Engine, email: str) -> SubscriberStatus:
    with engine.connect() as conn:
        query = select(Subscriber.status).where(Subscriber.email_normalized == email)
        return conn.execute(query).scalar_one()


def suppression(engine: Engine, email: str) -> SuppressionReason | None:
    with engine.connect() as conn:
        query = select(Suppression.reason).where(Suppression.address_hash == address_hash(email))
        return conn.execute(query).scalar_one_or_none()


def test_hard_bounce_is_stored_and_suppresses(engine: Engine, client: TestClient) -> None:
    assert audience(engine) == 5
    assert post(client, sample("bounce_hard")) == (200, {"received": 1, "new": 1})
    assert audience(engine) == 4
    assert status_of(engine, READERS[0]) is SubscriberStatus.BOUNCED
    assert suppression(engine, READERS[0]) is SuppressionReason.BOUNCED
    with engine.connect() as conn:
        row = conn.execute(select(Event.__table__)).one()
    assert row.provider == "postmark" and row.kind is EventKind.BOUNCED_HARD
    assert (row.send_id, row.delivery_id) == (1, 1)
    assert row.address_hash == address_hash(READERS[0])
    assert row.occurred_at == dt.datetime(2026, 11, 27, 19, 3, 11, 123456, tzinfo=dt.UTC)
    assert row.detail["type"] == "HardBounce"
    assert READERS[0] not in orjson.dumps(row.detail).decode()


@pytest.mark.parametrize(
    ("name", "email", "status", "reason"),
    [
        ("spam_complaint", READERS[2], SubscriberStatus.COMPLAINED, SuppressionReason.COMPLAINED),
        ("subscription_change", READERS[3], SubscriberStatus.UNSUBSCRIBED, SuppressionReason.UNSUBSCRIBED),
    ],
)
def test_complaints_and_unsubscribes_take_the_person_off_the_list(
    engine: Engine,
    client: TestClient,
    name: str,
    email: str,
    status: SubscriberStatus,
    reason: SuppressionReason,
) -> None:
    assert post(client, sample(name)) == (200, {"received": 1, "new": 1})
    assert status_of(engine, email) is status
    assert suppression(engine, email) is reason
    assert audience(engine) == 4


@pytest.mark.parametrize("name", ["delivery", "open", "click"])
def test_engagement_is_recorded_only(engine: Engine, client: TestClient, name: str) -> None:
    assert post(client, sample(name)) == (200, {"received": 1, "new": 1})
    assert len(events(engine)) == 1
    assert audience(engine) == 5


def test_a_replay_is_stored_once_and_applied_once(engine: Engine, client: TestClient) -> None:
    bounce = sample("bounce_hard")
    assert post(client, bounce) == (200, {"received": 1, "new": 1})
    # The person comes back by their own consent; a replay of the old bounce must not undo that.
    with session_scope(engine) as session:
        SubscriberRepository(session).add(READERS[0], resubscribe=True)
    assert audience(engine) == 5
    assert post(client, bounce) == (200, {"received": 1, "new": 0})
    assert len(events(engine)) == 1
    assert audience(engine) == 5
    assert status_of(engine, READERS[0]) is SubscriberStatus.ACTIVE


def test_soft_bounces_suppress_only_at_the_limit(engine: Engine, credentials: None) -> None:
    settings = Settings(webhooks=WebhooksSettings(soft_bounce_limit=2))
    with TestClient(create_app(settings, engine)) as client:
        assert post(client, sample("bounce_soft", ID=1))[0] == 200
        assert post(client, sample("bounce_soft", ID=1)) == (200, {"received": 1, "new": 0})
        assert suppression(engine, READERS[1]) is None
        assert status_of(engine, READERS[1]) is SubscriberStatus.ACTIVE
        assert post(client, sample("bounce_soft", ID=2))[0] == 200
    assert suppression(engine, READERS[1]) is SuppressionReason.BOUNCED
    assert status_of(engine, READERS[1]) is SubscriberStatus.BOUNCED
    assert audience(engine) == 4


def test_default_soft_bounce_limit_is_three(engine: Engine, client: TestClient) -> None:
    for event_id in (1, 2):
        post(client, sample("bounce_soft", ID=event_id))
    assert audience(engine) == 5
    post(client, sample("bounce_soft", ID=3))
    assert audience(engine) == 4


def test_a_bounce_of_an_address_not_on_the_list_still_suppresses_it(
    engine: Engine, client: TestClient
) -> None:
    assert post(client, sample("bounce_hard", Email="Gone@Example.org"))[0] == 200
    assert suppression(engine, "gone@example.org") is SuppressionReason.BOUNCED


@pytest.mark.parametrize(
    "headers",
    [
        {},
        basic(password="wrong"),
        basic(user="someone-else"),
        {"Authorization": "Basic " + "x" * 20},
        {"Authorization": "Bearer token"},
    ],
)
def test_without_the_credentials_nothing_is_stored(
    engine: Engine, client: TestClient, headers: dict[str, str]
) -> None:
    response = client.post(URL, content=orjson.dumps(sample("bounce_hard")), headers=headers)
    assert response.status_code == 401
    assert events(engine) == [] and audience(engine) == 5


def test_unconfigured_credentials_refuse_everyone(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.delenv("POSTMARK_WEBHOOK_USER", raising=False)
    monkeypatch.delenv("POSTMARK_WEBHOOK_PASSWORD", raising=False)
    with TestClient(create_app(Settings(), engine)) as client:
        for headers in ({}, basic(), basic("", "")):
            response = client.post(URL, content=orjson.dumps(sample("bounce_hard")), headers=headers)
            assert response.status_code == 401
    assert "not set in the environment" in caplog.text
    assert events(engine) == []


def test_unknown_provider_and_method(client: TestClient) -> None:
    assert client.post("/webhooks/no-such-provider", content=b"{}", headers=basic()).status_code == 404
    assert client.get(URL).status_code == 405


def test_oversize_body_is_refused(engine: Engine, client: TestClient) -> None:
    big = b'{"RecordType": "Delivery", "Details": "' + b"x" * MAX_BODY + b'"}'
    assert client.post(URL, content=big, headers=basic()).status_code == 413

    def chunks():  # no Content-Length: the stream itself is cut off
        for _ in range(MAX_BODY // 65536 + 2):
            yield b"x" * 65536

    assert client.post(URL, content=chunks(), headers=basic()).status_code == 413
    assert events(engine) == []


@pytest.mark.parametrize(
    "body",
    [b"garbage", b"\x00\xff\x13\x37binary", b"[" * 5000 + b"]" * 5000, b'{"a":' * 3000 + b"1" + b"}" * 3000],
)
def test_bad_payloads_are_400(engine: Engine, client: TestClient, body: bytes) -> None:
    response = client.post(URL, content=body, headers=basic())
    assert response.status_code == 400 and "error" in response.json()
    assert events(engine) == []


def test_a_hard_bounce_mid_send_is_honoured_by_the_remaining_batches(
    engine: Engine, client: TestClient
) -> None:
    with engine.begin() as conn:
        send = ledger_for(conn).create_send(
            issue_file="issues/2026-11-27.yaml",
            issue_date=dt.date(2026, 11, 27),
            segment="",
            subject="Subject",
            content_hash="0" * 64,
            provider="postmark",
        )
    assert send.recipients == 5
    status, body = post(client, sample("bounce_hard", Metadata={"send_id": str(send.id)}))
    assert (status, body) == (200, {"received": 1, "new": 1})
    with engine.begin() as conn:
        batch = ledger_for(conn).claim(send.id, 10, owner="test", lease=dt.timedelta(minutes=5))
    assert batch is not None
    assert [row.email for row in batch.rows] == READERS[1:]
    with engine.connect() as conn:
        query = select(Delivery.state, func.count()).where(Delivery.send_id == send.id)
        query = query.group_by(Delivery.state)
        assert dict(conn.execute(query).all()) == {DeliveryState.SUPPRESSED: 1, DeliveryState.PENDING: 4}
