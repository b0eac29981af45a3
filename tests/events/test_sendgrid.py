"""What only SendGrid's webhooks do: batches of events, its bounce and drop details, its key.
The rest, for every provider, is in ``test_parser_contract.py`` and ``test_endpoint_contract.py``."""

from __future__ import annotations

import base64
import datetime as dt

import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import Engine, select
from starlette.testclient import TestClient

from newsletter.config import Settings
from newsletter.events import sendgrid
from newsletter.events.model import WebhookRequest
from newsletter.store.models import Event, EventKind
from newsletter.web.app import MAX_BODY
from tests.events.providers import (
    SENDGRID_KEY,
    now_seconds,
    public_key_text,
    sendgrid_headers,
    sendgrid_sample,
)
from tests.events.stored import audience, events

ENV = {"SENDGRID_WEBHOOK_PUBLIC_KEY": public_key_text()}
BODY = orjson.dumps(sendgrid_sample("bounce"))


def test_a_bounce_keeps_its_type_and_classification() -> None:
    (event,) = sendgrid.parse(orjson.dumps(sendgrid_sample("bounce")))
    assert event.detail == {
        "type": "bounce",
        "classification": "Invalid Address",
        "status": "5.1.1",
        "reason": "550 5.1.1 <<address>>: Recipient address rejected: User unknown",
    }


def test_a_drop_keeps_its_reason() -> None:
    reason = "Spam Content (if Spam Checker app is enabled)"
    (event,) = sendgrid.parse(orjson.dumps(sendgrid_sample("dropped", reason=reason)))
    assert event.detail == {"event": "dropped", "reason": reason}


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


def request(body: bytes = BODY, headers: dict[str, str] | None = None) -> WebhookRequest:
    received = dt.datetime.fromtimestamp(now_seconds(), dt.UTC)
    return WebhookRequest(headers=headers or {}, body=body, received_at=received)


def trusted(req: WebhookRequest, environ: dict[str, str] = ENV) -> bool:
    return sendgrid.verify(req, Settings(), environ).trusted


def test_header_names_in_any_case_and_the_key_as_pem() -> None:
    # Header names are matched whatever their case.
    lower = {k.lower(): v for k, v in sendgrid_headers(BODY).items()}
    assert trusted(request(headers=lower))
    # The key may also be given as PEM.
    pem = SENDGRID_KEY.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    assert trusted(request(headers=sendgrid_headers(BODY)), {"SENDGRID_WEBHOOK_PUBLIC_KEY": pem.decode()})


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


def post(client: TestClient, body: bytes) -> tuple[int, object]:
    response = client.post("/webhooks/sendgrid", content=body, headers=sendgrid_headers(body))
    return response.status_code, response.json()


@pytest.mark.usefixtures("readers")
def test_a_batch_is_stored_in_one_go(engine: Engine, client: TestClient) -> None:
    names = ["processed", "delivered", "open", "click", "bounce", "spamreport"]
    batch = [sendgrid_sample(name)[0] for name in names]
    assert post(client, orjson.dumps(batch)) == (200, {"received": 6, "new": 6})
    with engine.connect() as conn:
        row = conn.execute(select(Event.__table__).where(Event.kind == EventKind.BOUNCED_HARD)).one()
    assert (row.provider, row.send_id, row.delivery_id) == ("sendgrid", 1, 1)
    assert row.occurred_at == dt.datetime(2026, 11, 27, 19, 3, 11, tzinfo=dt.UTC)
    assert row.detail["classification"] == "Invalid Address"
    assert "@" not in orjson.dumps(row.detail).decode()
    assert audience(engine) == 3


@pytest.mark.usefixtures("readers")
def test_a_huge_batch_up_to_the_body_limit(engine: Engine, client: TestClient) -> None:
    template = sendgrid_sample("delivered")[0]
    one = len(orjson.dumps(template)) + 1
    batch = [{**template, "sg_event_id": f"e{i}"} for i in range(MAX_BODY // one - 1)]
    raw = orjson.dumps(batch)
    assert len(raw) <= MAX_BODY
    assert post(client, raw) == (200, {"received": len(batch), "new": len(batch)})
    assert len(events(engine)) == len(batch) > 2000
