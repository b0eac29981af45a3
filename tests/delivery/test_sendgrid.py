"""The SendGrid adapter's own part: the documented v3 mail/send payload, a 429 that names its wait
as a reset time, what the fake refuses as SendGrid does, the configuration, and a whole
``newsletter send`` through the fake SendGrid on both dialects. What every adapter must do (each
recipient's values, refusals, retries, limits) is the contract, ``test_adapter_contract.py``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import pytest

from newsletter.config import EspSettings
from newsletter.delivery.esp.base import Outcome, Outgoing, RetryableError
from newsletter.delivery.esp.registry import adapter_factory, token_env
from newsletter.delivery.esp.sendgrid import SendGridAdapter
from newsletter.devtools.fake_esp import RunningFakeESP
from newsletter.errors import ConfigError
from newsletter.render.slots import html_values
from tests.delivery.conftest import TOKEN, make_message, make_recipient, make_recipients


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


# -- SendGrid's answers ---------------------------------------------------------------------------------


def test_429_without_retry_after_waits_for_the_rate_limit_reset(message: Outgoing) -> None:
    reset = str(int(time.time()) + 30)
    adapter = scripted(lambda request: httpx.Response(429, headers={"X-RateLimit-Reset": reset}))
    with pytest.raises(RetryableError) as caught:
        adapter.send_batch(message, make_recipients(1))
    assert caught.value.retry_after is not None and 25 <= caught.value.retry_after <= 30


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
