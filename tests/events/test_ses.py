"""SES's event records to provider-neutral events, and who may post them; no database, no network."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
from typing import Any

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

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

SETTINGS = Settings(webhooks=WebhooksSettings(ses_topic_arns=(TOPIC,)))
NOW = dt.datetime.now(dt.UTC)


def parsed(record: dict[str, Any] | str, **envelope: Any) -> list[ProviderEvent]:
    return ses.parse(json.dumps(notification(record, **envelope)).encode())


def request(record: dict[str, Any], at: dt.datetime = NOW) -> WebhookRequest:
    return WebhookRequest(headers={}, body=json.dumps(record).encode(), received_at=at)


def verdict(
    signer: Signer, record: dict[str, Any], settings: Settings = SETTINGS, served: Signer | None = None
) -> Verdict:
    """``record`` signed by ``signer``, verified with the certificate SNS serves (``served``'s)."""
    certificates = sns.Certificates(FakeFetcher({CERT_URL: (served or signer).pem}))
    return ses.verify(request(signer.sign(record)), settings, certificates)


@pytest.mark.parametrize(
    ("name", "kind", "email"),
    [
        ("bounce_transient", EventKind.BOUNCED_SOFT, "reader1@example.org"),
        ("complaint", EventKind.COMPLAINED, "reader2@example.org"),
        ("delivery", EventKind.DELIVERED, "reader4@example.org"),
        ("open", EventKind.OPENED, "reader4@example.org"),
        ("click", EventKind.CLICKED, "reader4@example.org"),
        ("subscription", EventKind.UNSUBSCRIBED, "reader3@example.org"),
        ("send", EventKind.OTHER, "reader4@example.org"),
        ("reject", EventKind.OTHER, "reader4@example.org"),
        ("delivery_delay", EventKind.OTHER, "reader1@example.org"),
        ("rendering_failure", EventKind.OTHER, "reader4@example.org"),
    ],
)
def test_each_event_type_has_its_kind_and_the_ids_we_sent(name: str, kind: EventKind, email: str) -> None:
    (event,) = parsed(ses_record(name))
    assert event.provider == "ses" and event.kind is kind and event.email == email
    assert (event.send_id, event.delivery_id) == (1, 1)
    assert event.event_id == "6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b:0"
    assert event.occurred_at.tzinfo is dt.UTC
    assert "example.org" not in json.dumps(event.detail).replace("www.example.org", "")


def test_a_bounce_of_several_recipients_is_an_event_each() -> None:
    first, second = parsed(ses_record("bounce_permanent"))
    assert (first.kind, second.kind) == (EventKind.BOUNCED_HARD, EventKind.BOUNCED_HARD)
    assert (first.email, second.email) == ("reader0@example.org", "reader1@example.org")
    assert first.event_id.endswith(":0") and second.event_id.endswith(":1")
    assert first.occurred_at == dt.datetime(2026, 11, 27, 14, 0, 3, 669000, tzinfo=dt.UTC)
    # SES's diagnostic code quotes the address: only the status is kept.
    assert first.detail == {"type": "Permanent", "subtype": "General", "status": "5.1.1"}


@pytest.mark.parametrize(
    ("bounce_type", "kind"),
    [
        ("Permanent", EventKind.BOUNCED_HARD),
        ("Transient", EventKind.BOUNCED_SOFT),
        ("Undetermined", EventKind.OTHER),
        ("SomethingNew", EventKind.OTHER),
        (None, EventKind.OTHER),
    ],
)
def test_bounce_types(bounce_type: str | None, kind: EventKind) -> None:
    record = ses_record("bounce_transient")
    record["bounce"]["bounceType"] = bounce_type
    assert parsed(record)[0].kind is kind


@pytest.mark.parametrize(
    ("feedback_type", "kind"),
    [
        ("abuse", EventKind.COMPLAINED),
        ("fraud", EventKind.COMPLAINED),
        ("other", EventKind.COMPLAINED),
        (None, EventKind.COMPLAINED),
        ("not-spam", EventKind.OTHER),
        ("virus", EventKind.OTHER),
        ("auth-failure", EventKind.OTHER),
    ],
)
def test_complaint_feedback_types(feedback_type: str | None, kind: EventKind) -> None:
    record = ses_record("complaint")
    record["complaint"]["complaintFeedbackType"] = feedback_type
    assert parsed(record)[0].kind is kind


def test_the_older_identity_notification_format() -> None:
    (event,) = parsed(ses_record("notification_bounce"))
    assert event.kind is EventKind.BOUNCED_HARD and event.email == "reader0@example.org"
    # Identity notifications carry no message tags: no ids, the address still counts.
    assert event.delivery_id is None and event.send_id is None


def test_click_keeps_the_link_without_its_query() -> None:
    (event,) = parsed(ses_record("click"))
    assert event.detail == {"url": "https://www.example.org/statements/2026/11/27/"}


def _preferences(unsubscribe_all: bool, **topics: str) -> dict[str, Any]:
    statuses = [{"topicName": name, "subscriptionStatus": status} for name, status in topics.items()]
    return {"unsubscribeAll": unsubscribe_all, "topicSubscriptionStatus": statuses}


@pytest.mark.parametrize(
    ("old", "new", "kind"),
    [
        (_preferences(False, weekly="OptIn"), _preferences(True, weekly="OptIn"), EventKind.UNSUBSCRIBED),
        (_preferences(False, weekly="OptIn"), _preferences(False, weekly="OptOut"), EventKind.UNSUBSCRIBED),
        (_preferences(False, weekly="OptOut"), _preferences(False, weekly="OptIn"), EventKind.OTHER),
        # An old opt-out of another topic is no new decision to leave.
        (
            _preferences(False, other="OptOut"),
            _preferences(False, other="OptOut", weekly="OptIn"),
            EventKind.OTHER,
        ),
    ],
)
def test_subscription_changes(old: dict[str, Any], new: dict[str, Any], kind: EventKind) -> None:
    record = ses_record("subscription")
    record["subscription"].update(oldTopicPreferences=old, newTopicPreferences=new)
    assert parsed(record)[0].kind is kind


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


def _broken(name: str, *path: str, value: Any) -> dict[str, Any]:
    record = ses_record(name)
    target = record
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return record


@pytest.mark.parametrize(
    "message",
    [
        "not json",
        "",
        "[1, 2]",
        '"Bounce"',
        "{}",
        '{"eventType": 5, "mail": {}}',
        '{"eventType": "Bounce"}',
        '{"a":' * 3000 + "1" + "}" * 3000,
        _broken("bounce_permanent", "mail", value="reader0@example.org"),
        _broken("bounce_permanent", "bounce", value=None),
        _broken("bounce_permanent", "bounce", "bouncedRecipients", value=[]),
        _broken("bounce_permanent", "bounce", "bouncedRecipients", value="reader0@example.org"),
        _broken("bounce_permanent", "bounce", "bouncedRecipients", value=[{"emailAddress": 5}]),
        _broken("bounce_permanent", "bounce", "bouncedRecipients", value=[{"emailAddress": "a@x.org"}] * 51),
        _broken("bounce_permanent", "bounce", "timestamp", value="yesterday"),
        _broken("bounce_permanent", "bounce", "timestamp", value=12),
        _broken("complaint", "complaint", "complainedRecipients", value=None),
        _broken("delivery", "delivery", "recipients", value=[None]),
        _broken("open", "mail", "destination", value={"to": "reader4@example.org"}),
        _broken("open", "mail", "tags", value=["delivery_id"]),
        _broken("click", "click", value="https://www.example.org/"),
        _broken("subscription", "subscription", "newTopicPreferences", value=None),
        _broken("subscription", "subscription", "newTopicPreferences", "topicSubscriptionStatus", value="x"),
    ],
)
def test_malformed_records_are_bad_payloads(message: dict[str, Any] | str) -> None:
    with pytest.raises(BadPayload):
        parsed(message)


def test_only_a_notification_carries_events() -> None:
    with pytest.raises(BadPayload):
        ses.parse(json.dumps(confirmation()).encode())


def test_verify_accepts_only_our_topics_signed_by_sns(
    signer: Signer, stranger: Signer, caplog: pytest.LogCaptureFixture
) -> None:
    record = notification(ses_record("delivery"))
    assert verdict(signer, record).trusted
    assert verdict(signer, {**record, "SignatureVersion": "2"}).trusted
    assert not verdict(stranger, record, served=signer).trusted
    # SNS signs anybody's topic: a genuine message from another topic is not ours.
    other = verdict(signer, notification(ses_record("delivery"), topic=OTHER_TOPIC))
    assert not other.trusted and "not in ses_topic_arns" in other.reason
    # No topic configured: nobody gets in, and the log says why.
    assert not verdict(signer, record, Settings()).trusted
    assert "ses_topic_arns is empty" in caplog.text


def test_verify_fetches_nothing_for_a_stranger(signer: Signer) -> None:
    fetcher = FakeFetcher({CERT_URL: signer.pem})
    for record in (
        notification("x", topic=OTHER_TOPIC),
        notification("x", at=NOW - dt.timedelta(hours=3)),
        notification("x", cert_url="https://sns.eu-west-1.amazonaws.com.evil.example/x.pem"),
    ):
        assert not ses.verify(request(signer.sign(record)), SETTINGS, sns.Certificates(fetcher)).trusted
    assert fetcher.fetched == []


@pytest.mark.parametrize(
    ("age", "trusted"),
    [
        (dt.timedelta(0), True),
        (dt.timedelta(minutes=59), True),  # SNS still retrying
        (ses.SNS_RETRY_WINDOW + dt.timedelta(seconds=299), True),
        (ses.SNS_RETRY_WINDOW + dt.timedelta(seconds=301), False),
        (dt.timedelta(days=30), False),
        (-dt.timedelta(seconds=299), True),  # our clock a little behind
        (-dt.timedelta(seconds=301), False),
    ],
)
def test_timestamp_tolerance(signer: Signer, age: dt.timedelta, trusted: bool) -> None:
    assert verdict(signer, notification("x", at=NOW - age)).trusted is trusted


def test_timestamp_tolerance_is_configurable(signer: Signer) -> None:
    settings = Settings(webhooks=WebhooksSettings(ses_topic_arns=(TOPIC,), timestamp_tolerance=10))
    late = notification("x", at=NOW - ses.SNS_RETRY_WINDOW - dt.timedelta(seconds=20))
    assert not verdict(signer, late, settings).trusted
    assert verdict(signer, late).trusted


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
