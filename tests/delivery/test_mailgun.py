"""The Mailgun adapter's own part: the documented messages payload (batch sending with
recipient-variables), editor text that must not become a variable, what the fake refuses as Mailgun
does, the configuration, and a whole ``newsletter send`` through the fake Mailgun on both dialects.
What every adapter must do is the contract, ``test_adapter_contract.py``.
"""

from __future__ import annotations

import csv
import email.parser
import email.policy
import shutil
import subprocess
import sys
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import httpx
import orjson
import pytest
from sqlalchemy import select

from newsletter.config import EspSettings
from newsletter.delivery.esp.base import Outcome, Outgoing
from newsletter.delivery.esp.mailgun import MAILGUN_API, MAILGUN_EU_API, MailgunAdapter
from newsletter.delivery.esp.registry import adapter_factory, token_env
from newsletter.devtools.fake_esp import FakeESP, RunningFakeESP, running
from newsletter.errors import ConfigError
from newsletter.render.slots import html_values
from newsletter.store.db import make_engine
from newsletter.store.importer import import_csv
from newsletter.store.models import Delivery, DeliveryState
from tests.conftest import FIXTURE_ISSUES_DIR, clean_environment
from tests.delivery.conftest import TOKEN, make_message, make_recipient, make_recipients, read_record

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


# -- a whole send through the fake Mailgun -------------------------------------------------------

ISSUE = "2026-11-20.yaml"
SUBSCRIBERS = 3_000


def test_a_send_through_mailgun_reaches_everyone_once(db_url: str, tmp_path: Path) -> None:
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
    with running(FakeESP(token="mg-key", record=record, record_bodies="text")) as fake:
        env = {
            **clean_environment(),
            "NEWSLETTER_DATABASE_URL": db_url,
            "NEWSLETTER_ESP_PROVIDER": "mailgun",
            "NEWSLETTER_ESP_DOMAIN": DOMAIN,
            "NEWSLETTER_ESP_BASE_URL": fake.url,
            "NEWSLETTER_ESP_TIMEOUT": "10",
            "MAILGUN_API_KEY": "mg-key",
            "NEWSLETTER_SECRET_KEY": "mailgun-test-secret-key-0123456789",
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
    assert len({entry["metadata"]["delivery_id"] for entry in entries}) == SUBSCRIBERS
    one = next(entry for entry in entries if entry["recipient"] == "reader7@example.org")
    assert "%recipient." not in one["subject"] and "%recipient." not in one["text"]
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
