"""The SendGrid adapter: the documented v3 mail/send payload, what each recipient would get (the fake
applies the substitutions as SendGrid does), what every failure becomes, and a whole ``newsletter
send`` through the fake SendGrid on both dialects.
"""

from __future__ import annotations

import csv
import hashlib
import html
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from sqlalchemy import select

from newsletter.config import EspSettings
from newsletter.delivery.esp.base import AuthError, Outcome, Outgoing, RetryableError
from newsletter.delivery.esp.registry import adapter_factory, token_env
from newsletter.delivery.esp.sendgrid import SendGridAdapter
from newsletter.devtools.fake_esp import FakeESP, RunningFakeESP, running
from newsletter.errors import ConfigError
from newsletter.render.slots import fill, html_values
from newsletter.store.db import make_engine
from newsletter.store.importer import import_csv
from newsletter.store.models import Delivery, DeliveryState
from tests.conftest import FIXTURE_ISSUES_DIR, clean_environment
from tests.delivery.conftest import TOKEN, make_message, make_recipient, make_recipients, read_record


@pytest.fixture
def adapter(fake: RunningFakeESP) -> Iterator[SendGridAdapter]:
    adapter = SendGridAdapter(TOKEN, base_url=fake.url, timeout=2.0)
    yield adapter
    adapter.close()


def scripted(handler: Callable[[httpx.Request], httpx.Response]) -> SendGridAdapter:
    client = httpx.Client(base_url="https://api.sendgrid.test", transport=httpx.MockTransport(handler))
    return SendGridAdapter("key", client=client)


# -- the request --------------------------------------------------------------------------------


def test_a_batch_is_one_documented_mail_send_request(message: Outgoing) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return httpx.Response(202, headers={"X-Message-Id": "sg-abc"})

    adapter = scripted(handler)
    recipients = [make_recipient(0), make_recipient(2), make_recipient(4)]  # markup, comma, no name
    results = adapter.send_batch(message, recipients)
    assert [(r.outcome, r.message_id) for r in results] == [(Outcome.ACCEPTED, "sg-abc")] * 3

    (request,) = seen
    assert request.method == "POST" and request.url.path == "/v3/mail/send"
    assert request.headers["Content-Type"] == "application/json"
    body = orjson.loads(request.content)
    assert set(body) == {"personalizations", "from", "reply_to", "subject", "content", "headers"}
    assert body["from"] == {"email": "news@example.org", "name": "Wöchentliche Rundschau"}
    assert body["reply_to"] == {"email": "editors@example.org"}
    assert body["subject"] == message.subject
    assert body["headers"] == dict(message.headers)
    # text/plain first, then text/html: the HTML travels once, its tags distinct from the text's.
    assert [part["type"] for part in body["content"]] == ["text/plain", "text/html"]
    assert body["content"][0]["value"] == message.text
    assert body["content"][1]["value"] == message.html.replace("%%name%%", "%%name_html%%").replace(
        "%%email%%", "%%email_html%%"
    ).replace("%%unsubscribe_url%%", "%%unsubscribe_url_html%%")

    first, comma, nameless = body["personalizations"]
    assert first["to"] == [{"email": "reader0@example.com", "name": '<b>Ana</b> & "Bo"'}]
    assert comma["to"] == [{"email": "reader2@example.com", "name": '"Smith, John"'}]
    assert nameless["to"] == [{"email": "reader4@example.com"}]
    for personal, recipient in zip(body["personalizations"], recipients, strict=True):
        assert set(personal) == {"to", "substitutions", "headers", "custom_args"}
        values, escaped = recipient.values, html_values(recipient.values)
        assert personal["substitutions"] == {
            "%%name%%": values["name"],
            "%%unsubscribe_url%%": values["unsubscribe_url"],
            "%%name_html%%": escaped["name"],
            "%%email_html%%": escaped["email"],
            "%%unsubscribe_url_html%%": escaped["unsubscribe_url"],
        }
        assert personal["headers"] == dict(recipient.headers)  # List-Unsubscribe, Message-ID
        assert personal["custom_args"] == {"send_id": "7", "delivery_id": str(recipient.delivery_id)}
    adapter.close()


def test_a_tag_becomes_the_category() -> None:
    bodies: list[Any] = []

    def handler(request: httpx.Request) -> httpx.Response:
        bodies.append(orjson.loads(request.content))
        return httpx.Response(202)

    adapter = scripted(handler)
    results = adapter.send_batch(make_message(tag="issue-2026-11-20", reply_to=""), make_recipients(1))
    assert results[0].outcome is Outcome.ACCEPTED and results[0].message_id is None
    assert bodies[0]["categories"] == ["issue-2026-11-20"] and "reply_to" not in bodies[0]


# -- what each recipient gets ------------------------------------------------------------------


def test_each_recipient_gets_their_values_escaped_in_html_and_raw_in_text(
    adapter: SendGridAdapter, fake: RunningFakeESP, message: Outgoing, record_path: Path
) -> None:
    recipients = make_recipients(5)
    adapter.prepare(message)
    results = {r.delivery_id: r for r in adapter.send_batch(message, recipients)}
    adapter.finish(message)
    assert all(r.outcome is Outcome.ACCEPTED for r in results.values())
    record = {entry["recipient"]: entry for entry in read_record(record_path)}
    assert len(record) == 5
    message_ids = {entry["message_id"].rpartition(".")[0] for entry in record.values()}
    assert message_ids == {r.message_id for r in results.values()}  # one X-Message-Id per request
    for index, recipient in enumerate(recipients):
        entry = record[recipient.email]
        assert entry["provider"] == "sendgrid"
        assert entry["message_id"] == f"{results[recipient.delivery_id].message_id}.{index}"
        expected_html = fill(message.html, html_values(recipient.values))
        assert entry["html"] == expected_html
        assert entry["html_sha256"] == hashlib.sha256(expected_html.encode()).hexdigest()
        assert entry["text"] == fill(message.text, recipient.values)
        assert entry["subject"] == message.subject
        assert entry["custom_args"] == {"send_id": "7", "delivery_id": str(recipient.delivery_id)}
        assert entry["headers"] == {**message.headers, **recipient.headers}
        assert f"Hello {html.escape(recipient.name)}," in entry["html"]
        assert f"Hello {recipient.name}," in entry["text"]
    assert "<b>Ana</b>" in record["reader0@example.com"]["text"]
    assert "&lt;b&gt;Ana&lt;/b&gt;" in record["reader0@example.com"]["html"]


def test_slots_in_the_subject_get_the_raw_value(
    adapter: SendGridAdapter, fake: RunningFakeESP, record_path: Path
) -> None:
    message = make_message(subject="For %%name%% only")
    adapter.send_batch(message, [make_recipient(0)])
    assert read_record(record_path)[0]["subject"] == 'For <b>Ana</b> & "Bo" only'


def test_a_full_batch_is_one_request(
    adapter: SendGridAdapter, fake: RunningFakeESP, message: Outgoing
) -> None:
    assert adapter.max_batch == 1000
    results = adapter.send_batch(message, make_recipients(1000))
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 1000
    assert fake.esp.stats["send_requests"] == 1 and fake.esp.stats["accepted"] == 1000


def test_a_batch_above_the_limit_is_never_sent(
    adapter: SendGridAdapter, fake: RunningFakeESP, message: Outgoing
) -> None:
    with pytest.raises(ValueError, match="at most 1000 "):
        adapter.send_batch(message, make_recipients(1001))
    assert fake.esp.stats["send_requests"] == 0

    adapter.max_batch = 1001  # raised by mistake: the fake refuses it as SendGrid would
    results = adapter.send_batch(message, make_recipients(1001))
    assert {r.outcome for r in results} == {Outcome.FAILED}
    assert "limited to 1000 personalizations" in (results[0].error or "")
    assert fake.esp.stats["refused_too_many"] == 1 and fake.esp.stats["accepted"] == 0


# -- failures ---------------------------------------------------------------------------------


def test_429_is_retryable_with_its_retry_after(
    adapter: SendGridAdapter, fake: RunningFakeESP, message: Outgoing
) -> None:
    fake.esp.set_faults(next=["429"], retry_after=7)
    with pytest.raises(RetryableError) as caught:
        adapter.send_batch(message, make_recipients(3))
    assert caught.value.retry_after == 7
    assert all(r.outcome is Outcome.ACCEPTED for r in adapter.send_batch(message, make_recipients(3)))


def test_429_without_retry_after_waits_for_the_rate_limit_reset(message: Outgoing) -> None:
    reset = str(int(time.time()) + 30)
    adapter = scripted(lambda request: httpx.Response(429, headers={"X-RateLimit-Reset": reset}))
    with pytest.raises(RetryableError) as caught:
        adapter.send_batch(message, make_recipients(1))
    assert caught.value.retry_after is not None and 25 <= caught.value.retry_after <= 30


@pytest.mark.parametrize(("fault", "retry_after"), [("500", None), ("503", 2.5)])
def test_server_errors_are_retryable(
    adapter: SendGridAdapter, fake: RunningFakeESP, message: Outgoing, fault: str, retry_after: float | None
) -> None:
    fake.esp.set_faults(next=[fault], retry_after=2.5)
    with pytest.raises(RetryableError, match=fault) as caught:
        adapter.send_batch(message, make_recipients(3))
    assert caught.value.retry_after == retry_after


def test_a_wrong_key_stops_the_send(fake: RunningFakeESP, message: Outgoing) -> None:
    adapter = SendGridAdapter("wrong-key", base_url=fake.url)
    with pytest.raises(AuthError, match="401"):
        adapter.send_batch(message, make_recipients(2))
    adapter.close()


def test_a_revoked_key_mid_send_stops_it(
    adapter: SendGridAdapter, fake: RunningFakeESP, message: Outgoing
) -> None:
    assert adapter.send_batch(message, make_recipients(1))[0].outcome is Outcome.ACCEPTED
    fake.esp.set_faults(next=["401"])
    with pytest.raises(AuthError, match="401"):
        adapter.send_batch(message, make_recipients(2))


@pytest.mark.parametrize("fault", ["drop", "drop_after"])
def test_a_dropped_connection_leaves_every_recipient_unknown(
    adapter: SendGridAdapter, fake: RunningFakeESP, message: Outgoing, record_path: Path, fault: str
) -> None:
    fake.esp.set_faults(next=[fault])
    results = adapter.send_batch(message, make_recipients(3))
    assert [r.outcome for r in results] == [Outcome.UNKNOWN] * 3
    assert len(read_record(record_path)) == (3 if fault == "drop_after" else 0)
    assert all(r.outcome is Outcome.ACCEPTED for r in adapter.send_batch(message, make_recipients(3, 3)))


def test_an_answer_slower_than_the_timeout_leaves_every_recipient_unknown(
    fake: RunningFakeESP, message: Outgoing, record_path: Path
) -> None:
    adapter = SendGridAdapter(TOKEN, base_url=fake.url, timeout=0.3)
    fake.esp.set_faults(next=["slow"], slow_seconds=1.5)
    results = adapter.send_batch(message, make_recipients(2))
    assert [r.outcome for r in results] == [Outcome.UNKNOWN] * 2
    assert len(read_record(record_path)) == 2
    adapter.close()


def test_a_400_fails_every_recipient_with_the_message(message: Outgoing) -> None:
    errors = {
        "errors": [{"message": "The from email does not contain a valid address.", "field": "from.email"}]
    }
    adapter = scripted(lambda request: httpx.Response(400, json=errors))
    results = adapter.send_batch(message, make_recipients(3))
    assert [r.outcome for r in results] == [Outcome.FAILED] * 3
    assert results[0].error == "The from email does not contain a valid address. (from.email)"


def test_a_bad_address_fails_alone_and_the_rest_are_retried(
    adapter: SendGridAdapter, fake: RunningFakeESP, message: Outgoing, record_path: Path
) -> None:
    """SendGrid refuses the whole request for one bad address: that one fails, the others wait."""
    recipients = [make_recipient(0), make_recipient(1, email="not-an-address"), make_recipient(2)]
    results = adapter.send_batch(message, recipients)
    assert [r.outcome for r in results] == [Outcome.RETRY, Outcome.FAILED, Outcome.RETRY]
    assert results[1].error == "Does not contain a valid address. (personalizations.1.to.0.email)"
    assert read_record(record_path) == []
    retried = adapter.send_batch(message, [recipients[0], recipients[2]])
    assert [r.outcome for r in retried] == [Outcome.ACCEPTED] * 2


@pytest.mark.parametrize("status", [404, 413])
def test_a_status_no_retry_can_fix_stops_the_send(message: Outgoing, status: int) -> None:
    adapter = scripted(lambda request: httpx.Response(status, text="nope"))
    with pytest.raises(AuthError, match=str(status)):
        adapter.send_batch(message, make_recipients(2))


def test_no_connection_at_all_is_retryable(message: Outgoing) -> None:
    with running(FakeESP(token=TOKEN)) as gone:
        url = gone.url
    adapter = SendGridAdapter(TOKEN, base_url=url, timeout=1)
    with pytest.raises(RetryableError, match="could not connect"):
        adapter.send_batch(message, make_recipients(2))
    adapter.close()


def test_the_fake_refuses_what_sendgrid_refuses(fake: RunningFakeESP) -> None:
    def post(body: Any, key: str = TOKEN) -> httpx.Response:
        headers = {"Authorization": f"Bearer {key}"}
        return httpx.post(f"{fake.url}/v3/mail/send", json=body, headers=headers, timeout=5)

    good = {
        "personalizations": [{"to": [{"email": "a@example.com"}]}],
        "from": {"email": "news@example.org"},
        "subject": "Hi",
        "content": [{"type": "text/plain", "value": "Hello"}],
    }
    answer = post(good)
    assert answer.status_code == 202 and answer.headers["X-Message-Id"] and answer.content == b""
    assert post(good, key="wrong").status_code == 401

    def fields(body: Any) -> set[str]:
        answer = post(body)
        assert answer.status_code == 400
        return {error["field"] for error in answer.json()["errors"]}

    assert fields({**good, "personalizations": []}) == {"personalizations"}
    assert fields({**good, "personalizations": [{"to": []}]}) == {"personalizations.0.to"}
    twice = [{"to": [{"email": "a@example.com"}]}, {"to": [{"email": "A@example.com"}]}]
    assert fields({**good, "personalizations": twice}) == {"personalizations.1.to.0.email"}
    assert fields({**good, "from": {"name": "x"}}) == {"from"}
    assert fields({**good, "content": []}) == {"content"}
    assert fields({**good, "subject": ""}) == {"subject"}
    numbers = [{"to": [{"email": "a@example.com"}], "substitutions": {"%%n%%": 1}}]
    assert fields({**good, "personalizations": numbers}) == {"personalizations.0.substitutions"}
    html_first = [{"type": "text/html", "value": "<p>x</p>"}, {"type": "text/plain", "value": "x"}]
    assert fields({**good, "content": html_first}) == {"content"}


# -- configuration ------------------------------------------------------------------------------


def test_the_key_comes_from_sendgrid_api_key_unless_token_env_says_otherwise() -> None:
    esp = EspSettings(provider="sendgrid")
    assert token_env(esp) == "SENDGRID_API_KEY"
    assert token_env(EspSettings(provider="postmark")) == "POSTMARK_TOKEN"
    assert token_env(EspSettings(provider="sendgrid", token_env="MY_KEY")) == "MY_KEY"
    with pytest.raises(ConfigError, match="SENDGRID_API_KEY"):
        adapter_factory(esp, {"POSTMARK_TOKEN": "x"})
    adapter = adapter_factory(esp, {"SENDGRID_API_KEY": "k"})()
    assert isinstance(adapter, SendGridAdapter) and adapter.max_batch == 1000
    adapter.close()


# -- a whole send through the fake SendGrid -----------------------------------------------------

ISSUE = "2026-11-20.yaml"
SUBSCRIBERS = 3_000


def test_a_send_through_sendgrid_reaches_everyone_once(db_url: str, tmp_path: Path) -> None:
    (tmp_path / "issues").mkdir()
    shutil.copy(FIXTURE_ISSUES_DIR / ISSUE, tmp_path / "issues" / ISSUE)
    addresses = [f"reader{i}@example.org" for i in range(SUBSCRIBERS)]
    path = tmp_path / "list.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name"])
        writer.writerows([address, f"Reader <{i}>"] for i, address in enumerate(addresses))
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            assert import_csv(conn, path).added == SUBSCRIBERS
    finally:
        engine.dispose()

    record = tmp_path / "record.jsonl"
    with running(FakeESP(token="sg-key", record=record, record_bodies="text")) as fake:
        env = {
            **clean_environment(),
            "NEWSLETTER_DATABASE_URL": db_url,
            "NEWSLETTER_ESP_PROVIDER": "sendgrid",
            "NEWSLETTER_ESP_BASE_URL": fake.url,
            "NEWSLETTER_ESP_TIMEOUT": "10",
            "SENDGRID_API_KEY": "sg-key",
            "NEWSLETTER_SECRET_KEY": "sendgrid-test-secret-key-0123456789",
        }
        done = subprocess.run(
            [sys.executable, "-m", "newsletter", "send", f"issues/{ISSUE}", "--yes"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        stats = dict(fake.esp.stats)
    assert done.returncode == 0, done.stderr + done.stdout
    entries = read_record(record)
    assert Counter(entry["recipient"] for entry in entries) == Counter(addresses)
    assert stats["send_requests"] == 3 and stats["accepted"] == SUBSCRIBERS
    assert len({entry["custom_args"]["delivery_id"] for entry in entries}) == SUBSCRIBERS
    one = next(entry for entry in entries if entry["recipient"] == "reader7@example.org")
    assert "%%" not in one["subject"] and "%%" not in one["text"]
    assert one["headers"]["List-Unsubscribe"].startswith("<http")
    assert "List-Unsubscribe-Post" in one["headers"] and "List-Id" in one["headers"]

    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = conn.execute(select(Delivery.state, Delivery.provider_message_id)).all()
    finally:
        engine.dispose()
    assert len(rows) == SUBSCRIBERS
    assert {state for state, _ in rows} == {DeliveryState.ACCEPTED}
    assert all(message_id for _, message_id in rows)
