"""What only SES's webhooks do: a message of several recipients, bounce and complaint types, the older
notification format, list-management subscriptions, message tags, our SNS topics and SNS's
subscription messages; no network. The rest, for every provider, is in ``test_parser_contract.py``
and ``test_endpoint_contract.py``."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import Engine
from starlette.testclient import TestClient

from newsletter.config import Settings, WebhooksSettings
from newsletter.events import ses, sns
from newsletter.events.model import BadPayload, ProviderEvent, Verdict, WebhookRequest
from newsletter.store.models import EventKind
from tests.events.sns_signing import (
    CERT_URL,
    OTHER_TOPIC,
    SUBSCRIBE_URL,
    TOPIC,
    FakeFetcher,
    Signer,
    confirmation,
    notification,
    ses_record,
)
from tests.events.stored import events

SETTINGS = Settings(webhooks=WebhooksSettings(ses_topic_arns=(TOPIC,)))
NOW = dt.datetime.now(dt.UTC)
MESSAGE_ID = "6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b"


def parsed(record: dict[str, Any] | str, **envelope: Any) -> list[ProviderEvent]:
    return ses.parse(json.dumps(notification(record, **envelope)).encode())


def request(record: dict[str, Any], at: dt.datetime | None = None) -> WebhookRequest:
    """Received now, as a notification is signed now: a clock read at import (collection) would
    have fallen out of the signed time's window in a long run of the whole suite."""
    received_at = at or dt.datetime.now(dt.UTC)
    return WebhookRequest(headers={}, body=json.dumps(record).encode(), received_at=received_at)


def verdict(
    signer: Signer, record: dict[str, Any], settings: Settings = SETTINGS, served: Signer | None = None
) -> Verdict:
    """``record`` signed by ``signer``, verified with the certificate SNS serves (``served``'s)."""
    certificates = sns.Certificates(FakeFetcher({CERT_URL: (served or signer).pem}))
    return ses.verify(request(signer.sign(record)), settings, certificates)


def test_a_bounce_of_several_recipients_is_an_event_each() -> None:
    first, second = parsed(ses_record("bounce_permanent"))
    assert (first.kind, second.kind) == (EventKind.BOUNCED_HARD, EventKind.BOUNCED_HARD)
    assert (first.email, second.email) == ("reader0@example.org", "reader1@example.org")
    # One SNS message, one event per recipient: the MessageId (which SNS's retries repeat) and the index.
    assert (first.event_id, second.event_id) == (f"{MESSAGE_ID}:0", f"{MESSAGE_ID}:1")
    assert first.occurred_at == dt.datetime(2026, 11, 27, 14, 0, 3, 669000, tzinfo=dt.UTC)
    # SES's diagnostic code quotes the address: only the status is kept.
    assert first.detail == {"type": "Permanent", "subtype": "General", "status": "5.1.1"}


def test_the_older_identity_notification_format() -> None:
    (event,) = parsed(ses_record("notification_bounce"))
    assert event.kind is EventKind.BOUNCED_HARD and event.email == "reader0@example.org"
    # Identity notifications carry no message tags: no ids, the address still counts.
    assert event.delivery_id is None and event.send_id is None


def test_events_of_a_message_to_several_readers_name_none_of_them() -> None:
    for name in ("subscription", "open", "click"):
        record = ses_record(name)
        record["mail"]["destination"] = ["reader3@example.org", "reader4@example.org"]
        (event,) = parsed(record)
        assert event.email is None
        assert event.kind is not EventKind.UNSUBSCRIBED


@pytest.mark.parametrize(
    "tags",
    [
        None,
        {},
        {"send_id": "7", "delivery_id": "123"},
        {"send_id": ["x"], "delivery_id": ["-1"]},
        {"send_id": ["1", "2"], "delivery_id": []},
        {"send_id": [7.5], "delivery_id": [True]},
        {"send_id": ["99999999999999999999999"], "delivery_id": ["1e3"]},
    ],
)
def test_foreign_tags_are_no_ids(tags: object) -> None:
    record = ses_record("delivery")
    record["mail"]["tags"] = tags
    (event,) = parsed(record)
    assert event.delivery_id is None and event.send_id is None


def test_tags_as_the_ses_adapter_sends_them() -> None:
    record = ses_record("delivery")
    record["mail"]["tags"] = {"delivery_id": ["123"], "send_id": ["7"]}
    (event,) = parsed(record)
    assert (event.delivery_id, event.send_id) == (123, 7)


def test_only_a_notification_carries_events() -> None:
    with pytest.raises(BadPayload):
        ses.parse(json.dumps(confirmation()).encode())


def test_verify_accepts_only_our_topics_signed_by_sns(signer: Signer, stranger: Signer) -> None:
    record = notification(ses_record("delivery"))
    assert verdict(signer, record).trusted
    assert verdict(signer, {**record, "SignatureVersion": "2"}).trusted
    assert not verdict(stranger, record, served=signer).trusted
    # SNS signs anybody's topic: a genuine message from another topic is not ours, and the
    # verdict's reason (logged) says so.
    other = verdict(signer, notification(ses_record("delivery"), topic=OTHER_TOPIC))
    assert not other.trusted and "not in ses_topic_arns" in other.reason


def test_verify_fetches_nothing_for_a_stranger(signer: Signer) -> None:
    fetcher = FakeFetcher({CERT_URL: signer.pem})
    for record in (
        notification("x", topic=OTHER_TOPIC),
        notification("x", at=NOW - dt.timedelta(hours=3)),
        notification("x", cert_url="https://sns.eu-west-1.amazonaws.com.evil.example/x.pem"),
    ):
        assert not ses.verify(request(signer.sign(record)), SETTINGS, sns.Certificates(fetcher)).trusted
    assert fetcher.fetched == []


def test_control_confirms_a_subscription_once() -> None:
    visited: list[str] = []
    assert ses.control(request(confirmation()), SETTINGS, visited.append)
    assert visited == [SUBSCRIBE_URL]
    assert not ses.control(request(notification("x")), SETTINGS, visited.append)
    assert visited == [SUBSCRIBE_URL]


def test_control_follows_no_other_url(caplog: pytest.LogCaptureFixture) -> None:
    visited: list[str] = []
    for url in (
        SUBSCRIBE_URL.replace("ConfirmSubscription", "Unsubscribe"),
        SUBSCRIBE_URL.replace("amazonaws.com/", "amazonaws.com.evil.example/"),
        SUBSCRIBE_URL.replace(TOPIC, OTHER_TOPIC),
    ):
        assert ses.control(request(confirmation(subscribe_url=url)), SETTINGS, visited.append)
    assert visited == []
    assert "not confirmed" in caplog.text


def test_a_failed_confirmation_is_logged_with_the_url(caplog: pytest.LogCaptureFixture) -> None:
    def unreachable(url: str) -> None:
        raise OSError("connection refused")

    assert ses.control(request(confirmation()), SETTINGS, unreachable)
    assert "connection refused" in caplog.text and SUBSCRIBE_URL in caplog.text


def test_an_unsubscribe_confirmation_is_logged_only(caplog: pytest.LogCaptureFixture) -> None:
    visited: list[str] = []
    assert ses.control(request(confirmation("UnsubscribeConfirmation")), SETTINGS, visited.append)
    assert visited == [] and "unsubscribed this endpoint" in caplog.text


def test_topic_arns_from_the_file_and_the_environment() -> None:
    from newsletter.config import load_settings
    from newsletter.errors import ConfigError

    environ = {"NEWSLETTER_WEBHOOKS_SES_TOPIC_ARNS": f"{TOPIC}, {OTHER_TOPIC}"}
    assert load_settings(environ=environ).webhooks.ses_topic_arns == (TOPIC, OTHER_TOPIC)
    assert load_settings(environ={}).webhooks.ses_topic_arns == ()
    with pytest.raises(ConfigError, match="ses_topic_arns"):
        load_settings(environ={"NEWSLETTER_WEBHOOKS_SES_TOPIC_ARNS": "newsletter-events"})


_SCALARS = st.none() | st.booleans() | st.integers() | st.text(max_size=20)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=12), inner, max_size=3),
    max_leaves=8,
)
_SAMPLES = [
    "bounce_permanent", "complaint", "delivery", "open", "click", "subscription", "delivery_delay", "send",
]


@hsettings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_SAMPLES), st.data())
def test_any_json_anywhere_in_a_record_is_events_or_a_bad_payload(name: str, data: st.DataObject) -> None:
    """Whatever a record holds where SES puts something else, the answer is events or a 400."""
    record = ses_record(name)
    target: dict[str, Any] = record
    while True:
        key = data.draw(st.sampled_from(sorted(target)))
        inner = target[key]
        if isinstance(inner, list) and inner and isinstance(inner[0], dict):
            inner = inner[0]
        if isinstance(inner, dict) and inner and data.draw(st.booleans()):
            target = inner
            continue
        target[key] = data.draw(_JSON)
        break
    with contextlib.suppress(BadPayload):
        parsed(record)


def post(client: TestClient, signer: Signer, record: dict[str, Any]) -> tuple[int, dict[str, object]]:
    response = client.post("/webhooks/ses", content=json.dumps(signer.sign(record)))
    return response.status_code, response.json()


@pytest.mark.usefixtures("readers")
def test_the_subscription_is_confirmed_once_and_stores_nothing(
    engine: Engine, client: TestClient, signer: Signer, confirmed: list[str], fetcher: FakeFetcher
) -> None:
    assert post(client, signer, confirmation()) == (200, {"received": 0, "new": 0})
    assert confirmed == [SUBSCRIBE_URL]
    unsubscribed = confirmation("UnsubscribeConfirmation")
    assert post(client, signer, unsubscribed) == (200, {"received": 0, "new": 0})
    assert confirmed == [SUBSCRIBE_URL]
    assert fetcher.fetched == [CERT_URL]  # once for both: the certificate is cached
    assert events(engine) == []


@pytest.mark.usefixtures("readers")
def test_a_confirmation_of_another_topic_is_refused(
    client: TestClient, signer: Signer, confirmed: list[str]
) -> None:
    assert post(client, signer, confirmation(topic=OTHER_TOPIC))[0] == 401
    assert confirmed == []


@pytest.mark.usefixtures("readers")
def test_a_certificate_off_sns_is_never_fetched(
    engine: Engine, client: TestClient, signer: Signer, fetcher: FakeFetcher
) -> None:
    for url in (
        "https://sns.us-east-1.amazonaws.com.evil.example/SimpleNotificationService-abc.pem",
        "http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.eu-west-1.amazonaws.com@evil.example/SimpleNotificationService-abc.pem",
        "https://sns.eu-west-1.amazonaws.com:8443/SimpleNotificationService-abc.pem",
        "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem?x=.pem",
    ):
        record = notification(ses_record("bounce_permanent"), cert_url=url)
        assert post(client, signer, record)[0] == 401, url
    assert events(engine) == [] and fetcher.fetched == []
