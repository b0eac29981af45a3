"""The Mailgun adapter's own part: the documented messages payload (batch sending with
recipient-variables), editor text that must not become a variable, what the fake refuses as Mailgun
does, the configuration, and a whole ``newsletter send`` through the fake Mailgun on both dialects.
What every adapter must do is the contract, ``test_adapter_contract.py``.
"""

from __future__ import annotations

import email.parser
import email.policy
from collections.abc import Callable

import httpx
import orjson
import pytest

from newsletter.config import EspSettings
from newsletter.delivery.esp.base import Outcome, Outgoing
from newsletter.delivery.esp.mailgun import MAILGUN_API, MAILGUN_EU_API, MailgunAdapter
from newsletter.delivery.esp.registry import adapter_factory, token_env
from newsletter.devtools.fake_esp import RunningFakeESP
from newsletter.errors import ConfigError
from newsletter.render.slots import html_values
from tests.delivery.conftest import TOKEN, make_message, make_recipient, make_recipients

DOMAIN = "mg.example.org"


def scripted(handler: Callable[[httpx.Request], httpx.Response]) -> MailgunAdapter:
    client = httpx.Client(base_url="https://api.mailgun.test", transport=httpx.MockTransport(handler))
    return MailgunAdapter("key", DOMAIN, client=client)


def form(request: httpx.Request) -> list[tuple[str, str]]:
    """The request's multipart fields in order, read by the standard library's parser."""
    head = f"Content-Type: {request.headers['Content-Type']}\r\n\r\n".encode()
    parsed = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(head + request.content)
    assert parsed.is_multipart()
    fields = []
    for part in parsed.iter_parts():
        name = part.get_param("name", header="content-disposition")
        payload = part.get_payload(decode=True)
        assert isinstance(name, str) and isinstance(payload, bytes)
        fields.append((name, payload.decode("utf-8")))
    return fields


def queued(request: httpx.Request) -> httpx.Response:
    return httpx.Response(200, json={"id": f"<abc.1@{DOMAIN}>", "message": "Queued. Thank you."})


# -- the request --------------------------------------------------------------------------------


def test_a_batch_is_one_documented_messages_request(message: Outgoing) -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return queued(request)

    adapter = scripted(handler)
    recipients = [make_recipient(0), make_recipient(2), make_recipient(4)]  # markup, comma, no name
    results = adapter.send_batch(message, recipients)
    assert [(r.outcome, r.message_id) for r in results] == [(Outcome.ACCEPTED, f"abc.1@{DOMAIN}")] * 3

    (request,) = seen
    assert request.method == "POST" and request.url.path == f"/v3/{DOMAIN}/messages"
    assert request.headers["Content-Type"].startswith("multipart/form-data; boundary=")
    fields = form(request)
    by_name: dict[str, list[str]] = {}
    for name, value in fields:
        by_name.setdefault(name, []).append(value)
    assert by_name["from"] == ["Wöchentliche Rundschau <news@example.org>"]
    assert by_name["to"] == [
        '"<b>Ana</b> & \\"Bo\\"" <reader0@example.com>',
        '"Smith, John" <reader2@example.com>',
        "reader4@example.com",
    ]
    assert by_name["subject"] == [message.subject]
    assert by_name["text"] == [
        message.text.replace("%%name%%", "%recipient.name%").replace(
            "%%unsubscribe_url%%", "%recipient.unsubscribe_url%"
        )
    ]
    assert by_name["html"] == [
        message.html.replace("%%name%%", "%recipient.name_html%")
        .replace("%%email%%", "%recipient.email_html%")
        .replace("%%unsubscribe_url%%", "%recipient.unsubscribe_url_html%")
    ]
    assert by_name["h:Reply-To"] == ["editors@example.org"]
    assert by_name["h:List-Id"] == ["Weekly <weekly.example.org>"]
    assert by_name["h:List-Unsubscribe-Post"] == ["List-Unsubscribe=One-Click"]
    assert by_name["h:List-Unsubscribe"] == ["%recipient.list_unsubscribe%"]
    assert by_name["h:Message-ID"] == ["%recipient.message_id%"]
    assert by_name["v:send_id"] == ["7"]
    assert by_name["v:delivery_id"] == ["%recipient.delivery_id%"]
    assert "o:tag" not in by_name
    # One of each field but ``to``: the body travels once per batch.
    assert all(len(values) == 1 for name, values in by_name.items() if name != "to")

    variables = orjson.loads(by_name["recipient-variables"][0])
    assert list(variables) == [r.email for r in recipients]
    for recipient in recipients:
        values, escaped = recipient.values, html_values(recipient.values)
        assert variables[recipient.email] == {
            "name": values["name"],
            "unsubscribe_url": values["unsubscribe_url"],
            "name_html": escaped["name"],
            "email_html": escaped["email"],
            "unsubscribe_url_html": escaped["unsubscribe_url"],
            "message_id": recipient.headers["Message-ID"],
            "list_unsubscribe": recipient.headers["List-Unsubscribe"],
            "delivery_id": str(recipient.delivery_id),
        }
    adapter.close()


def test_a_tag_becomes_o_tag_and_no_reply_to_no_header() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return queued(request)

    adapter = scripted(handler)
    results = adapter.send_batch(make_message(tag="issue-2026-11-20", reply_to=""), make_recipients(1))
    assert results[0].outcome is Outcome.ACCEPTED
    names = dict(form(seen[0]))
    assert names["o:tag"] == "issue-2026-11-20" and "h:Reply-To" not in names


def test_editor_text_cannot_forge_a_mailgun_variable() -> None:
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return queued(request)

    text = "Write %recipient.email% or %unsubscribe_url%; 50% off; hi %%name%%"
    adapter = scripted(handler)
    adapter.send_batch(make_message(text=text, subject="%recipient.x% news"), make_recipients(1))
    fields = dict(form(seen[0]))
    assert fields["text"] == (
        "Write %\u200drecipient.email% or %\u200dunsubscribe_url%; 50% off; hi %recipient.name%"
    )
    assert fields["subject"] == "%\u200drecipient.x% news"


# -- Mailgun's answers ---------------------------------------------------------------------------------


def test_the_fake_refuses_what_mailgun_refuses(fake: RunningFakeESP) -> None:
    url = f"{fake.url}/v3/{DOMAIN}/messages"

    def post(fields: dict[str, str | list[str]], key: str = TOKEN) -> httpx.Response:
        return httpx.post(url, data=fields, auth=("api", key), timeout=5)

    good: dict[str, str | list[str]] = {
        "from": "news@example.org",
        "to": ["a@example.com", "B <b@example.com>"],
        "subject": "Hi %recipient.n%",
        "text": "Hello",
        "recipient-variables": '{"a@example.com": {"n": 1}, "b@example.com": {"n": 2}}',
    }
    answer = post(good)  # urlencoded, as well as multipart
    assert answer.status_code == 200, answer.text
    assert answer.json()["id"].endswith(f"@{DOMAIN}>") and answer.json()["message"] == "Queued. Thank you."
    assert post(good, key="wrong").status_code == 401
    assert httpx.post(url, data=good, auth=("someone", TOKEN), timeout=5).status_code == 401

    def refused(fields: dict[str, str | list[str]]) -> str:
        answer = post(fields)
        assert answer.status_code == 400
        message: str = answer.json()["message"]
        return message

    assert "from" in refused({k: v for k, v in good.items() if k != "from"})
    assert "to parameter is missing" in refused({**good, "to": []})
    assert "not a valid address" in refused({**good, "to": ["nobody"]})
    assert "subject" in refused({**good, "subject": ""})
    assert "'text' or 'html'" in refused({**good, "text": ""})
    assert "not a valid JSON" in refused({**good, "recipient-variables": "{nope"})
    assert "no entry for b@example.com" in refused({**good, "recipient-variables": '{"a@example.com": {}}'})
    many = [f"r{i}@example.com" for i in range(1001)]
    assert "Too many recipients" in refused({**good, "to": many, "recipient-variables": "{}"})


# -- configuration ------------------------------------------------------------------------------


def test_the_key_comes_from_mailgun_api_key_and_the_domain_is_required() -> None:
    esp = EspSettings(provider="mailgun", domain="MG.example.org ")
    assert esp.domain == "mg.example.org"
    assert token_env(esp) == "MAILGUN_API_KEY"
    assert token_env(EspSettings(provider="mailgun", token_env="MY_KEY")) == "MY_KEY"
    with pytest.raises(ConfigError, match=r"esp\.domain"):
        adapter_factory(EspSettings(provider="mailgun"), {"MAILGUN_API_KEY": "k"})
    with pytest.raises(ConfigError, match="MAILGUN_API_KEY"):
        adapter_factory(esp, {"SENDGRID_API_KEY": "x"})
    adapter = adapter_factory(esp, {"MAILGUN_API_KEY": "k"})()
    assert isinstance(adapter, MailgunAdapter) and adapter.max_batch == 1000
    assert adapter.path == "/v3/mg.example.org/messages"
    assert str(adapter._client.base_url).rstrip("/") == MAILGUN_API
    adapter.close()
    eu = adapter_factory(
        EspSettings(provider="mailgun", domain="mg.example.org", region="EU"), {"MAILGUN_API_KEY": "k"}
    )()
    assert isinstance(eu, MailgunAdapter) and str(eu._client.base_url).rstrip("/") == MAILGUN_EU_API
    eu.close()
    # What a region is, is the provider's business: the registry checks Mailgun's.
    with pytest.raises(ConfigError, match=r"esp\.region: Mailgun's region must be us or eu"):
        adapter_factory(
            EspSettings(provider="mailgun", domain="mg.example.org", region="asia"), {"MAILGUN_API_KEY": "k"}
        )
