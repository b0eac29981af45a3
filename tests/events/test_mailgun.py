"""What only Mailgun's webhooks do: failures by severity and reason, event ids per day, the signed
token as a one-time nonce, a retry window of hours. The rest, for every provider, is in
``test_parser_contract.py`` and ``test_endpoint_contract.py``."""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from newsletter.config import Settings
from newsletter.events import mailgun
from newsletter.events.model import Verdict, WebhookRequest
from newsletter.store.db import writing
from newsletter.store.models import SubscriberStatus
from newsletter.store.nonces import KEPT_FOR, Nonce, Replayed, claim
from tests.events.providers import MAILGUN_KEY, READERS, mailgun_sample, mailgun_signed, now_seconds
from tests.events.stored import audience, events, nonces, status_of

ENV = {"MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY}


def test_a_failure_keeps_its_code_not_the_servers_message() -> None:
    (event,) = mailgun.parse(orjson.dumps(mailgun_sample("failed_permanent")))
    assert event.detail == {"severity": "permanent", "reason": "bounce", "code": 550, "description": ""}


def test_the_same_id_on_another_day_is_another_event() -> None:
    today = mailgun.parse(orjson.dumps(mailgun_sample("opened")))[0]
    again = mailgun.parse(orjson.dumps(mailgun_sample("opened")))[0]
    tomorrow = mailgun.parse(orjson.dumps(mailgun_sample("opened", timestamp=1795892591.123456)))[0]
    assert today.event_id == again.event_id != tomorrow.event_id
    # Mailgun's id is unique within a day: the stored id adds the event's own timestamp.
    assert today.event_id == mailgun_sample("opened")["event-data"]["id"] + ":1795806191.123456"


def verdict(record: dict[str, Any], at: int) -> Verdict:
    request = WebhookRequest(
        headers={}, body=orjson.dumps(record), received_at=dt.datetime.fromtimestamp(at, dt.UTC)
    )
    return mailgun.verify(request, Settings(), ENV)


def test_verify_names_the_token_as_the_nonce() -> None:
    signed = mailgun_signed(mailgun_sample("delivered"), token="t" * 50)
    result = verdict(signed, now_seconds())
    assert result.trusted and result.nonce == "t" * 50
    # Mailgun documents the timestamp as an int and sends a string: both are read.
    block = signed["signature"]
    as_int = {**signed, "signature": {**block, "timestamp": int(block["timestamp"])}}
    assert verdict(as_int, now_seconds()).trusted


def test_a_retry_hours_later_carries_its_first_signature() -> None:
    now = now_seconds()
    assert verdict(mailgun_signed(mailgun_sample("failed_permanent"), timestamp=now - 8 * 3600), now).trusted


def post(client: TestClient, record: dict[str, Any] | bytes) -> tuple[int, Any]:
    raw = record if isinstance(record, bytes) else orjson.dumps(record)
    response = client.post("/webhooks/mailgun", content=raw, headers={"Content-Type": "application/json"})
    return response.status_code, response.json()


@pytest.mark.usefixtures("readers")
def test_a_replayed_token_is_refused_and_changes_nothing(engine: Engine, client: TestClient) -> None:
    first = mailgun_signed(mailgun_sample("opened"), token="a" * 50)
    assert post(client, first) == (200, {"received": 1, "new": 1})
    # Captured and posted again, as is: the same token.
    assert post(client, first)[0] == 401
    # Or with other event-data under the same (still valid) signature: a new event id, a bounce.
    forged = {**mailgun_sample("failed_permanent", id="brand-new"), "signature": first["signature"]}
    assert post(client, forged)[0] == 401
    assert len(events(engine)) == 1 and audience(engine) == 5
    assert status_of(engine, READERS[0]) is SubscriberStatus.ACTIVE
    assert nonces(engine) == [("mailgun", "a" * 50)]
    # Mailgun's own retry is signed afresh: its new token is remembered, its event known.
    assert post(client, mailgun_signed(mailgun_sample("opened"), token="b" * 50)) == (
        200,
        {"received": 1, "new": 0},
    )
    assert sorted(nonces(engine)) == [("mailgun", "a" * 50), ("mailgun", "b" * 50)]


@pytest.mark.usefixtures("readers")
def test_a_body_too_deep_to_find_its_signature_is_refused(engine: Engine, client: TestClient) -> None:
    signed = orjson.dumps(mailgun_signed({"event-data": {}}))
    deep = signed[:-1] + b',"deep":' + b"[" * 5000 + b"]" * 5000 + b"}"
    assert post(client, deep)[0] == 401  # too deep to read even the signature
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
