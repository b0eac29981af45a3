"""What every webhook parser must do, run for each provider's fixture (``providers.py``); no database.

``verify`` trusts only a request signed with the provider's credentials, recently where the
provider signs a time, and nobody while the credentials are not configured; ``parse`` turns each
event kind into the right :class:`~newsletter.events.model.ProviderEvent` (the ids we sent, the
recipient, the time, a detail without the address), foreign ids into no id, and anything that is
not the provider's shape into :class:`~newsletter.events.model.BadPayload`. What only one provider
does is in its own ``test_<provider>.py``.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

import orjson
import pytest

from newsletter.config import Settings
from newsletter.events.model import BadPayload, ProviderEvent, WebhookRequest
from newsletter.store.models import EventKind
from tests.events.providers import FOREIGN_IDS, WEBHOOKS, Sample, Webhook, now_seconds

#: Bodies that are no provider's JSON: empty, text, binary, too deep for any parser, a bare value.
NOT_JSON = [
    b"",
    b"not json",
    b"\xff\xfe\x00binary\x00",
    b"null",
    b'"Bounce"',
    b"[1, 2]",
    b"{}",
    b"[" * 100_000 + b"]" * 100_000,
    b'{"a":' * 5000 + b"1" + b"}" * 5000,
]


def _cases(attribute: str) -> list[Any]:
    """``(provider, item)`` for each item of each fixture's ``attribute``, named after both."""
    return [
        pytest.param(webhook, item, id=f"{name}-{getattr(item, 'name', item)}")
        for name, webhook in WEBHOOKS.items()
        for item in getattr(webhook, attribute)
    ]


PROVIDERS = [pytest.param(webhook, id=name) for name, webhook in WEBHOOKS.items()]
TIMED = [pytest.param(webhook, id=name) for name, webhook in WEBHOOKS.items() if webhook.window(Settings())]


def received(at: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(at, dt.UTC)


def trusted(webhook: Webhook, request: tuple[dict[str, str], bytes], at: int, settings: Settings) -> bool:
    headers, body = request
    hook = WebhookRequest(headers=headers, body=body, received_at=received(at))
    return webhook.verify(hook, settings, webhook.environ).trusted


def parsed(webhook: Webhook, record: Any) -> list[ProviderEvent]:
    return webhook.parse(webhook.signed(record)[1])


def _without_addresses(detail: dict[str, Any]) -> bool:
    """Neither an address nor its domain (the newsletter's own www. links aside) in ``detail``."""
    text = orjson.dumps(detail).decode()
    return "@" not in text and "example.org" not in text.replace("www.example.org", "")


@pytest.mark.parametrize(("webhook", "sample"), _cases("samples"))
def test_each_event_kind_is_its_provider_event(webhook: Webhook, sample: Sample) -> None:
    (event,) = parsed(webhook, webhook.record(sample.name))
    assert event.provider == webhook.name and event.kind is sample.kind
    assert event.email == sample.email
    assert (event.send_id, event.delivery_id) == sample.ids
    assert event.occurred_at == sample.occurred_at and event.occurred_at.tzinfo is dt.UTC
    # The address never reaches what is stored, not even quoted in a bounce reason or a URL.
    assert _without_addresses(event.detail)


VARIANTS = [
    pytest.param(webhook, record, kind, id=f"{name}-{label}")
    for name, webhook in WEBHOOKS.items()
    for label, (record, kind) in webhook.variants().items()
]


@pytest.mark.parametrize(("webhook", "record", "kind"), VARIANTS)
def test_the_providers_own_words_for_what_happened(webhook: Webhook, record: Any, kind: EventKind) -> None:
    events = parsed(webhook, record)
    assert events and [event.kind for event in events] == [kind] * len(events)


@pytest.mark.parametrize(("webhook", "leaving"), _cases("leaving"))
def test_what_takes_a_reader_off_names_each_of_them(webhook: Webhook, leaving: Any) -> None:
    events = parsed(webhook, webhook.record(leaving.name))
    assert [event.email for event in events] == list(leaving.readers)
    assert all(_without_addresses(event.detail) for event in events)


@pytest.mark.parametrize("webhook", PROVIDERS)
def test_a_hard_bounce_keeps_what_it_says_of_the_failure(webhook: Webhook) -> None:
    event = parsed(webhook, webhook.record(webhook.leaving[0].name))[0]
    assert event.detail.items() >= webhook.hard_bounce_detail.items()


@pytest.mark.parametrize("webhook", PROVIDERS)
def test_a_click_keeps_the_link_without_its_query(webhook: Webhook) -> None:
    (event,) = parsed(webhook, webhook.record(webhook.click))
    assert event.detail == {"url": "https://www.example.org/statements/2026/11/27/"}


@pytest.mark.parametrize("webhook", PROVIDERS)
def test_event_ids_tell_retries_from_new_events(webhook: Webhook) -> None:
    """A provider's retry repeats the event's id, so the store recognises it; another event has another."""
    name = webhook.leaving[0].name
    first = [e.event_id for e in parsed(webhook, webhook.record(name, event_id="event-1"))]
    retry = [e.event_id for e in parsed(webhook, webhook.record(name, event_id="event-1"))]
    other = [e.event_id for e in parsed(webhook, webhook.record(name, event_id="event-2"))]
    assert first == retry and not set(first) & set(other)
    assert all(0 < len(event_id) <= 128 for event_id in first + other)
    # Signed again (a new timestamp or token), the same event is still the same.
    later = webhook.signed(webhook.record(name, event_id="event-1"), at=now_seconds() + 1)[1]
    assert [e.event_id for e in webhook.parse(later)] == first


@pytest.mark.parametrize("value", FOREIGN_IDS, ids=repr)
@pytest.mark.parametrize("webhook", PROVIDERS)
def test_foreign_ids_are_no_ids(webhook: Webhook, value: object) -> None:
    """A message we did not send through the ledger (or a stranger's values) names no delivery."""
    record = webhook.record(webhook.leaving[0].name, ids={"send_id": value, "delivery_id": value})
    assert {(event.send_id, event.delivery_id) for event in parsed(webhook, record)} == {(None, None)}


@pytest.mark.parametrize("webhook", PROVIDERS)
def test_no_ids_at_all_is_an_event_of_no_delivery(webhook: Webhook) -> None:
    record = webhook.record(webhook.leaving[0].name, email="Gone@Example.org", ids={})
    events = parsed(webhook, record)
    assert [(e.email, e.send_id, e.delivery_id) for e in events] == [("Gone@Example.org", None, None)]


@pytest.mark.parametrize("body", NOT_JSON, ids=lambda body: repr(body[:12]))
@pytest.mark.parametrize("webhook", PROVIDERS)
def test_what_is_not_json_is_a_bad_payload(webhook: Webhook, body: bytes) -> None:
    with pytest.raises(BadPayload):
        webhook.parse(body)


@pytest.mark.parametrize("webhook", PROVIDERS)
def test_what_is_not_the_providers_shape_is_a_bad_payload(webhook: Webhook) -> None:
    for body in webhook.malformed():
        with pytest.raises(BadPayload):
            webhook.parse(body)


@pytest.mark.parametrize("webhook", PROVIDERS)
def test_a_request_signed_as_the_provider_signs_it_is_trusted(webhook: Webhook) -> None:
    now = now_seconds()
    request = webhook.signed(webhook.record(webhook.leaving[0].name), at=now)
    assert trusted(webhook, request, now, webhook.settings())


@pytest.mark.parametrize("webhook", PROVIDERS)
def test_wrong_credentials_are_not_trusted(webhook: Webhook) -> None:
    now = now_seconds()
    broken = webhook.broken(webhook.record(webhook.leaving[0].name))
    assert broken, "a provider whose credentials cannot be got wrong"
    settings = webhook.settings()
    assert [name for name, request in broken.items() if trusted(webhook, request, now, settings)] == []


@pytest.mark.parametrize("webhook", PROVIDERS)
def test_without_configured_credentials_nobody_is_trusted(
    webhook: Webhook, caplog: pytest.LogCaptureFixture
) -> None:
    now = now_seconds()
    headers, body = webhook.signed(webhook.record(webhook.leaving[0].name), at=now)
    hook = WebhookRequest(headers=headers, body=body, received_at=received(now))
    verdict = webhook.verify(hook, webhook.unconfigured_settings(), {})
    # The log says why, for whoever set the provider up; the answer says nothing.
    assert not verdict.trusted and webhook.unconfigured_log in caplog.text


@pytest.mark.parametrize("webhook", TIMED)
def test_a_signed_time_is_trusted_only_within_the_window(webhook: Webhook) -> None:
    """A signature proves who, not when: its time may lie behind ours by the tolerance plus the
    provider's retries with the first signature, and ahead by the tolerance."""
    now = now_seconds()
    settings = webhook.settings()
    window = webhook.window(settings)
    assert window is not None
    behind, ahead = window
    record = webhook.record(webhook.leaving[0].name)
    for at, expected in (
        (now - behind + 1, True),
        (now - behind - 1, False),
        (now - 30 * 86400, False),
        (now + ahead - 1, True),
        (now + ahead + 1, False),
    ):
        assert trusted(webhook, webhook.signed(record, at=at), now, settings) is expected, at - now


@pytest.mark.parametrize("webhook", TIMED)
def test_the_window_is_the_settings_tolerance(webhook: Webhook) -> None:
    now = now_seconds()
    default, strict = webhook.settings(), webhook.settings(timestamp_tolerance=10)
    window = webhook.window(strict)
    assert window is not None
    record = webhook.record(webhook.leaving[0].name)
    late, early = webhook.signed(record, at=now - window[0] - 1), webhook.signed(record, at=now + 60)
    assert not trusted(webhook, late, now, strict) and not trusted(webhook, early, now, strict)
    assert trusted(webhook, late, now, default) and trusted(webhook, early, now, default)
