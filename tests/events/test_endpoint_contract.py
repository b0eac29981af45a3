"""What ``POST /webhooks/{provider}`` must do for every provider, on both databases.

Each provider's fixture (``providers.py``) builds, signs and breaks its requests; the cases are the
same for all: each event kind stored once and applied once (a reader who leaves is taken off the
list, the rest is recorded only), a provider's retry and a replay change nothing, soft bounces
count up to the limit, an event of no delivery of ours still suppresses its address, and nothing
is stored from a request with wrong, stale or unconfigured credentials (401), a body over the
limit (413) or a body of the wrong shape (400). What only one provider does is in its own
``test_<provider>.py``.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from sqlalchemy import Engine, func, select
from starlette.testclient import TestClient

from newsletter.store.db import session_scope
from newsletter.store.ledger import ledger_for
from newsletter.store.models import Delivery, DeliveryState, EventKind, SubscriberStatus, SuppressionReason
from newsletter.store.privacy import address_hash
from newsletter.store.subscribers import SubscriberRepository
from newsletter.web.app import MAX_BODY, create_app
from tests.events.providers import READERS, WEBHOOKS, Leaving, Sample, Webhook, now_seconds
from tests.events.sns_signing import FakeFetcher
from tests.events.stored import audience, event_rows, events, nonces, status_of, suppression

pytestmark = pytest.mark.usefixtures("readers")

PROVIDERS = [pytest.param(webhook, id=name) for name, webhook in WEBHOOKS.items()]
LEAVING = [
    pytest.param(webhook, leaving, id=f"{name}-{leaving.name}")
    for name, webhook in WEBHOOKS.items()
    for leaving in webhook.leaving
]
RECORDED_ONLY = [
    pytest.param(webhook, sample, id=f"{name}-{sample.name}")
    for name, webhook in WEBHOOKS.items()
    for sample in webhook.samples
    if sample.name not in {leaving.name for leaving in webhook.leaving}
]
TIMED = [
    pytest.param(webhook, id=name) for name, webhook in WEBHOOKS.items() if webhook.window(webhook.settings())
]
#: Bodies that are no JSON at all, or too deep for any parser.
UNREADABLE = [
    b"garbage",
    b"\x00\xff\x13\x37binary",
    b"[" * 5000 + b"]" * 5000,
    b'{"a":' * 3000 + b"1" + b"}" * 3000,
]


def post(client: TestClient, webhook: Webhook, request: tuple[dict[str, str], Any]) -> tuple[int, Any]:
    headers, body = request
    response = client.post(f"/webhooks/{webhook.name}", content=body, headers=headers)
    return response.status_code, response.json()


def send(client: TestClient, webhook: Webhook, record: Any) -> tuple[int, Any]:
    """``record`` signed afresh (a new timestamp, token or signature) and posted."""
    return post(client, webhook, webhook.signed(record))


def nothing_stored(engine: Engine) -> bool:
    return events(engine) == [] and nonces(engine) == [] and audience(engine) == len(READERS)


@pytest.fixture
def app(engine: Engine, credentials: None) -> Iterator[Any]:
    """Makes clients of the app run with other ``[webhooks]`` settings for ``webhook``."""
    clients: list[TestClient] = []

    def make(webhook: Webhook, **webhooks: Any) -> TestClient:
        client = TestClient(create_app(webhook.settings(**webhooks), engine))
        clients.append(client.__enter__())
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.mark.parametrize(("webhook", "leaving"), LEAVING)
def test_what_takes_a_reader_off_the_list(
    engine: Engine, client: TestClient, webhook: Webhook, leaving: Leaving
) -> None:
    count = len(leaving.readers)
    record = webhook.record(leaving.name)
    assert send(client, webhook, record) == (200, {"received": count, "new": count})
    for email in leaving.readers:
        assert status_of(engine, email) is leaving.status
        assert suppression(engine, email) is leaving.reason
    assert audience(engine) == len(READERS) - count
    # The provider retries what got no 200 (signed afresh where it signs each attempt): stored and
    # applied once.
    assert send(client, webhook, record) == (200, {"received": count, "new": 0})
    assert len(events(engine)) == count


@pytest.mark.parametrize(("webhook", "sample"), RECORDED_ONLY)
def test_the_rest_is_recorded_only(
    engine: Engine, client: TestClient, webhook: Webhook, sample: Sample
) -> None:
    assert send(client, webhook, webhook.record(sample.name)) == (200, {"received": 1, "new": 1})
    assert [kind for _, kind, _ in events(engine)] == [sample.kind]
    assert audience(engine) == len(READERS)


@pytest.mark.parametrize("webhook", PROVIDERS)
def test_an_event_is_stored_as_parsed_without_the_address(
    engine: Engine, client: TestClient, webhook: Webhook
) -> None:
    headers, body = webhook.signed(webhook.record(webhook.leaving[0].name))
    parsed = webhook.parse(body)
    assert post(client, webhook, (headers, body))[0] == 200
    rows = event_rows(engine)
    assert [(row.provider, row.kind, row.send_id, row.delivery_id) for row in rows] == [
        (webhook.name, EventKind.BOUNCED_HARD, 1, 1) for _ in parsed
    ]
    assert [row.address_hash for row in rows] == [address_hash(event.email or "") for event in parsed]
    assert [row.provider_event_id for row in rows] == [event.event_id for event in parsed]
    # Times keep their microseconds on both databases.
    assert [row.occurred_at for row in rows] == [event.occurred_at for event in parsed]
    assert [row.detail for row in rows] == [event.detail for event in parsed]
    assert not any(email in str(row.detail) for row in rows for email in READERS)


@pytest.mark.parametrize("webhook", PROVIDERS)
def test_a_replay_changes_nothing(engine: Engine, client: TestClient, webhook: Webhook) -> None:
    hard = webhook.leaving[0]
    record = webhook.record(hard.name)
    request = webhook.signed(record)
    count = len(hard.readers)
    assert post(client, webhook, request) == (200, {"received": count, "new": count})
    # The person comes back by their own consent; neither a replay of the old bounce nor the
    # provider's retry of it may undo that.
    with session_scope(engine) as session:
        SubscriberRepository(session).add(READERS[0], resubscribe=True)
    again = post(client, webhook, request)
    if webhook.replay_status == 200:
        assert again == (200, {"received": count, "new": 0})
    else:
        assert again[0] == webhook.replay_status
    assert send(client, webhook, record) == (200, {"received": count, "new": 0})
    assert len(events(engine)) == count
    assert status_of(engine, READERS[0]) is SubscriberStatus.ACTIVE


@pytest.mark.parametrize("webhook", PROVIDERS)
def test_soft_bounces_suppress_only_at_the_limit(engine: Engine, app: Any, webhook: Webhook) -> None:
    client = app(webhook, soft_bounce_limit=2)
    soft = webhook.soft_bounce
    assert send(client, webhook, webhook.record(soft, event_id="soft-1"))[0] == 200
    if webhook.retried_attempt:
        # Attempts the provider retries itself are not failures: they never count.
        for attempt in range(4):
            record = webhook.record(webhook.retried_attempt, event_id=f"attempt-{attempt}")
            assert send(client, webhook, record) == (200, {"received": 1, "new": 1})
    assert send(client, webhook, webhook.record(soft, event_id="soft-1")) == (200, {"received": 1, "new": 0})
    assert suppression(engine, READERS[1]) is None
    assert status_of(engine, READERS[1]) is SubscriberStatus.ACTIVE
    assert send(client, webhook, webhook.record(soft, event_id="soft-2"))[0] == 200
    assert suppression(engine, READERS[1]) is SuppressionReason.BOUNCED
    assert status_of(engine, READERS[1]) is SubscriberStatus.BOUNCED
    assert audience(engine) == len(READERS) - 1


@pytest.mark.parametrize("webhook", PROVIDERS)
def test_the_default_soft_bounce_limit_is_three(engine: Engine, client: TestClient, webhook: Webhook) -> None:
    for n in (1, 2):
        assert send(client, webhook, webhook.record(webhook.soft_bounce, event_id=f"soft-{n}"))[0] == 200
    assert audience(engine) == len(READERS)
    assert send(client, webhook, webhook.record(webhook.soft_bounce, event_id="soft-3"))[0] == 200
    assert audience(engine) == len(READERS) - 1


@pytest.mark.parametrize("webhook", PROVIDERS)
def test_a_bounce_of_no_delivery_of_ours_still_suppresses_the_address(
    engine: Engine, client: TestClient, webhook: Webhook
) -> None:
    record = webhook.record(webhook.leaving[0].name, email="Gone@Example.org", ids={})
    assert send(client, webhook, record) == (200, {"received": 1, "new": 1})
    assert suppression(engine, "gone@example.org") is SuppressionReason.BOUNCED
    assert [(row.send_id, row.delivery_id) for row in event_rows(engine)] == [(None, None)]
    assert audience(engine) == len(READERS)


@pytest.mark.parametrize("webhook", PROVIDERS)
def test_a_hard_bounce_mid_send_is_honoured_by_the_remaining_batches(
    engine: Engine, client: TestClient, webhook: Webhook
) -> None:
    with engine.begin() as conn:
        running = ledger_for(conn).create_send(
            issue_file="issues/2026-11-27.yaml",
            issue_date=dt.date(2026, 11, 27),
            segment="",
            subject="Subject",
            content_hash="0" * 64,
            provider=webhook.name,
        )
    assert running.recipients == len(READERS)
    hard = webhook.leaving[0]
    record = webhook.record(hard.name, ids={"send_id": str(running.id)})
    assert send(client, webhook, record)[0] == 200
    with engine.begin() as conn:
        batch = ledger_for(conn).claim(running.id, 10, owner="test", lease=dt.timedelta(minutes=5))
    assert batch is not None
    assert [row.email for row in batch.rows] == [email for email in READERS if email not in hard.readers]
    with engine.connect() as conn:
        query = select(Delivery.state, func.count()).where(Delivery.send_id == running.id)
        states = dict(conn.execute(query.group_by(Delivery.state)).all())
    left = len(hard.readers)
    assert states == {DeliveryState.SUPPRESSED: left, DeliveryState.PENDING: len(READERS) - left}


@pytest.mark.parametrize("webhook", PROVIDERS)
def test_wrong_credentials_are_401_and_store_nothing(
    engine: Engine, client: TestClient, webhook: Webhook
) -> None:
    broken = webhook.broken(webhook.record(webhook.leaving[0].name))
    url = f"/webhooks/{webhook.name}"
    answers = {name: client.post(url, content=body, headers=head) for name, (head, body) in broken.items()}
    assert {name: response.status_code for name, response in answers.items()} == dict.fromkeys(broken, 401)
    assert all(response.json() == {"error": "unauthorized"} for response in answers.values())
    assert all("www-authenticate" in response.headers for response in answers.values())
    assert nothing_stored(engine)


@pytest.mark.parametrize("webhook", TIMED)
def test_a_stale_or_early_signature_is_401(engine: Engine, client: TestClient, webhook: Webhook) -> None:
    record = webhook.record(webhook.leaving[0].name)
    now = now_seconds()
    for at in (now - 86400, now + 86400):
        assert post(client, webhook, webhook.signed(record, at=at))[0] == 401
    assert nothing_stored(engine)


@pytest.mark.parametrize("webhook", PROVIDERS)
def test_unconfigured_credentials_refuse_everyone(
    engine: Engine,
    credentials: None,
    fetcher: FakeFetcher,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
    webhook: Webhook,
) -> None:
    for name in webhook.environ:
        monkeypatch.delenv(name)
    request = webhook.signed(webhook.record(webhook.leaving[0].name))
    with TestClient(create_app(webhook.unconfigured_settings(), engine)) as client:
        assert post(client, webhook, request)[0] == 401
        assert post(client, webhook, ({}, request[1]))[0] == 401
    assert webhook.unconfigured_log in caplog.text
    # Refused before anything costly: not even SNS's certificate is fetched.
    assert nothing_stored(engine) and fetcher.fetched == []


@pytest.mark.parametrize("webhook", PROVIDERS)
def test_a_body_over_the_limit_is_413(engine: Engine, client: TestClient, webhook: Webhook) -> None:
    url = f"/webhooks/{webhook.name}"
    big = b'{"x": "' + b"x" * MAX_BODY + b'"}'
    assert client.post(url, content=big, headers=webhook.credentials_for(big)).status_code == 413

    def chunks() -> Iterator[bytes]:  # no Content-Length: the stream itself is cut off
        for _ in range(MAX_BODY // 65536 + 2):
            yield b"x" * 65536

    assert client.post(url, content=chunks(), headers=webhook.credentials_for(b"")).status_code == 413
    assert nothing_stored(engine)


@pytest.mark.parametrize("webhook", PROVIDERS)
def test_a_body_that_is_not_json_stores_nothing(engine: Engine, client: TestClient, webhook: Webhook) -> None:
    for body in UNREADABLE:
        status, answer = post(client, webhook, (webhook.credentials_for(body), body))
        assert status == webhook.unreadable_status and "error" in answer, body[:12]
    assert nothing_stored(engine)


@pytest.mark.parametrize("webhook", PROVIDERS)
def test_a_credentialed_body_of_the_wrong_shape_is_400(
    engine: Engine, client: TestClient, webhook: Webhook
) -> None:
    answers = []
    for headers, body in webhook.hostile():
        assert len(body) <= MAX_BODY
        answers.append(post(client, webhook, (headers, body)))
    assert Counter(status for status, _ in answers) == {400: len(answers)}
    assert all(answer["error"] for _, answer in answers)
    assert nothing_stored(engine)


@pytest.mark.parametrize("webhook", PROVIDERS)
def test_only_post(client: TestClient, webhook: Webhook) -> None:
    assert client.get(f"/webhooks/{webhook.name}").status_code == 405


def test_an_unknown_provider_is_404(client: TestClient) -> None:
    headers, body = WEBHOOKS["postmark"].signed(WEBHOOKS["postmark"].record("bounce_hard"))
    assert client.post("/webhooks/no-such-provider", content=body, headers=headers).status_code == 404
