"""What only Postmark's webhooks do: its event ids, its basic auth's details (its bounce types are
``providers.Postmark.variants``).
The rest, for every provider, is in ``test_parser_contract.py`` and ``test_endpoint_contract.py``."""

from __future__ import annotations

import datetime as dt

import orjson
import pytest

from newsletter.config import Settings
from newsletter.events import postmark
from newsletter.events.model import WebhookRequest
from tests.events.providers import PASSWORD, USER, basic, sample

ENV = {"POSTMARK_WEBHOOK_USER": USER, "POSTMARK_WEBHOOK_PASSWORD": PASSWORD}


def test_event_ids_are_stable_and_distinct() -> None:
    bounce = postmark.parse(orjson.dumps(sample("bounce_hard")))[0]
    assert bounce.event_id == "Bounce:4323372036854775807"
    opened = orjson.dumps(sample("open"))
    assert postmark.parse(opened)[0].event_id == postmark.parse(opened)[0].event_id
    # The same record with its keys in another order is the same event.
    reordered = orjson.dumps(dict(reversed(list(sample("open").items()))))
    assert postmark.parse(reordered)[0].event_id == postmark.parse(opened)[0].event_id
    later = orjson.dumps(sample("open", ReceivedAt="2026-11-27T15:00:00Z"))
    assert postmark.parse(later)[0].event_id != postmark.parse(opened)[0].event_id


def trusted(headers: dict[str, str], environ: dict[str, str]) -> bool:
    request = WebhookRequest(headers=headers, body=b"{}", received_at=dt.datetime.now(dt.UTC))
    return postmark.verify(request, Settings(), environ).trusted


def test_header_names_are_matched_whatever_their_case() -> None:
    assert trusted({"AUTHORIZATION": basic()["Authorization"]}, ENV)
    assert trusted({"authorization": basic()["Authorization"]}, ENV)


def test_half_the_credentials_configured_refuses_everyone(caplog: pytest.LogCaptureFixture) -> None:
    assert not trusted(basic(), {"POSTMARK_WEBHOOK_USER": USER})
    assert "POSTMARK_WEBHOOK_PASSWORD not set" in caplog.text
    # Empty credentials are not credentials, even against empty configured ones.
    assert not trusted(basic("", ""), {})
    assert not trusted(basic("", ""), {"POSTMARK_WEBHOOK_USER": "", "POSTMARK_WEBHOOK_PASSWORD": ""})
