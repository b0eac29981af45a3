"""Amazon SES's events, as SNS delivers them: who may post them, and what each one means.

SES publishes the events of the configuration set we send with to an SNS topic, and SNS posts each
one to ``/webhooks/ses`` inside its signed envelope (``events/sns.py``). :func:`verify` trusts a
message that SNS signed, for a topic in ``[webhooks] ses_topic_arns``, published recently;
:func:`control` confirms the subscription when SNS asks; :func:`parse` maps the SES record in the
envelope's ``Message`` to :class:`~newsletter.events.model.ProviderEvent` values.

Two record formats arrive: event publishing (``eventType``: Bounce, Complaint, Delivery, Send,
Reject, Open, Click, DeliveryDelay, Subscription, Rendering Failure), and the older identity
notifications (``notificationType``: Bounce, Complaint, Delivery) with the same objects. Every
message we send carries the message tags ``delivery_id`` and ``send_id`` (the SES adapter sets
them), which event publishing hands back in ``mail.tags``; identity notifications carry no tags, so
their events are tied to no delivery (the address still suppresses).

One SNS message may report several recipients (a bounce of a message to three addresses): each is
its own event, ``<SNS MessageId>:<index>``. SNS retries with the same MessageId, so a retry is
recognised as a replay.

The timestamp tolerance: SNS retries an HTTPS delivery for up to an hour (a hard limit of its
delivery policies) and a retry keeps the message's first ``Timestamp``, so a message may be
``SNS_RETRY_WINDOW`` plus ``[webhooks] timestamp_tolerance`` old; a tighter window would turn a
short outage of ours into lost bounces. A replay inside it changes nothing (its event ids are
stored), and a timestamp ahead of our clock by more than the tolerance is refused.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from newsletter.config import Settings
from newsletter.events import sns
from newsletter.events.fields import DETAIL_MAX, int_id, iso_time, link, text
from newsletter.events.model import BadPayload, EventKind, ProviderEvent, Verdict, WebhookRequest

__all__ = ["PROVIDER", "SNS_RETRY_WINDOW", "control", "parse", "verify"]

PROVIDER = "ses"
log = logging.getLogger(__name__)

#: The longest SNS keeps retrying an HTTPS delivery ("total policy retry time").
SNS_RETRY_WINDOW = dt.timedelta(seconds=3600)
#: SES accepts at most 50 recipients per message, so no report lists more.
MAX_RECIPIENTS = 50

#: Each event type's own object in the record (SES has spelt Rendering Failure both ways).
_PARTS = {
    "Bounce": "bounce",
    "Complaint": "complaint",
    "Delivery": "delivery",
    "Send": "send",
    "Reject": "reject",
    "Open": "open",
    "Click": "click",
    "DeliveryDelay": "deliveryDelay",
    "Subscription": "subscription",
    "Rendering Failure": "failure",
    "RenderingFailure": "failure",
}
#: The event types whose own object says who and what: without it the record means nothing.
_REQUIRED_PARTS = frozenset({"Bounce", "Complaint", "Delivery", "DeliveryDelay", "Subscription"})
#: Complaint feedback types (RFC 5965) that are not the reader calling the mail unwanted: a report
#: of a failed authentication or a virus, or a "not spam" vote. No type at all (most mailbox
#: providers send none) means the reader pressed "spam".
NOT_COMPLAINTS = frozenset({"not-spam", "auth-failure", "virus"})


def missing_secrets(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    """What ``verify`` needs (``doctor``): not a secret (SNS signs) but the topics that are ours."""
    return [] if settings.webhooks.ses_topic_arns else ["[webhooks] ses_topic_arns is empty"]


def verify(
    request: WebhookRequest, settings: Settings, certificates: sns.Certificates | None = None
) -> Verdict:
    """Trusted if SNS signed the message, for one of our topics, recently enough.

    Cheap checks first: a stranger's message costs no certificate fetch. Raises
    :class:`BadPayload` when the body is not an SNS envelope, which has nothing to verify.
    """
    topics = settings.webhooks.ses_topic_arns
    if not topics:
        log.warning("ses webhook refused: [webhooks] ses_topic_arns is empty")
        return Verdict(False, "no SNS topic configured in [webhooks] ses_topic_arns")
    envelope = sns.parse_envelope(request.body)
    if envelope.topic_arn not in topics:
        return Verdict(False, f"topic {envelope.topic_arn[:300]!r} is not in ses_topic_arns")
    tolerance = dt.timedelta(seconds=settings.webhooks.timestamp_tolerance)
    age = request.received_at - envelope.timestamp
    if age > SNS_RETRY_WINDOW + tolerance or age < -tolerance:
        return Verdict(False, f"Timestamp {envelope.timestamp.isoformat()} is outside the tolerance")
    return sns.verify_signature(envelope, request.received_at, certificates or sns.CERTIFICATES)


def control(
    request: WebhookRequest, settings: Settings, confirm: Callable[[str], None] | None = None
) -> bool:
    """Answer SNS's subscription messages (already verified); False for a Notification.

    A SubscriptionConfirmation is confirmed by a GET of its ``SubscribeURL``, only if that is a
    confirmation of the same topic on an SNS host. If SNS cannot be reached, the log says so and
    gives the URL to confirm by hand: the subscription stays pending until then.
    """
    envelope = sns.parse_envelope(request.body)
    topic = envelope.topic_arn
    if envelope.type == sns.NOTIFICATION:
        return False
    if envelope.type == sns.UNSUBSCRIBE_CONFIRMATION:
        log.warning("SNS unsubscribed this endpoint from %s; SES events of it no longer arrive", topic)
        return True
    url = envelope.subscribe_url
    if not sns.is_subscribe_url(url, topic):
        log.warning("SNS subscription to %s not confirmed: %r is not its confirmation URL", topic, url[:300])
        return True
    try:
        (confirm or sns.confirm_subscription)(url)
    except OSError as exc:
        log.error("SNS subscription to %s not confirmed (%s); confirm it by visiting %s", topic, exc, url)
        return True
    log.info("SNS subscription to %s confirmed", topic)
    return True


def parse(body: bytes) -> list[ProviderEvent]:
    """The events of one SNS Notification: one per recipient the SES record reports.

    Raises :class:`BadPayload` for anything that is not an SNS Notification carrying an SES
    record of a known shape.
    """
    envelope = sns.parse_envelope(body)
    if envelope.type != sns.NOTIFICATION:
        raise BadPayload(f"an SNS {envelope.type} carries no events")
    try:
        record = orjson.loads(envelope.message)
    except (orjson.JSONDecodeError, RecursionError) as exc:
        raise BadPayload(f"Message is not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise BadPayload("Message is not a JSON object")
    event_type = record.get("eventType", record.get("notificationType"))
    if not isinstance(event_type, str):
        raise BadPayload("Message has no eventType or notificationType")
    mail = _object(record, "mail", required=True)
    part = _object(record, _PARTS.get(event_type, ""), required=event_type in _REQUIRED_PARTS)
    tags = _object(mail, "tags", required=False)
    occurred_at = iso_time(part.get("timestamp"), iso_time(mail.get("timestamp"), envelope.timestamp))
    return [
        ProviderEvent(
            provider=PROVIDER,
            event_id=f"{envelope.message_id}:{index}",
            kind=kind,
            occurred_at=occurred_at,
            delivery_id=_tag_id(tags, "delivery_id"),
            send_id=_tag_id(tags, "send_id"),
            email=email,
            detail=detail,
        )
        for index, (email, kind, detail) in enumerate(_meaning(event_type, part, mail))
    ]


_Reported = tuple[str | None, EventKind, dict[str, Any]]


def _meaning(event_type: str, part: dict[str, Any], mail: dict[str, Any]) -> list[_Reported]:
    """Each reported recipient with its event's kind and the little we keep of it (never an
    address, nor SES's diagnostic codes and SMTP responses, which often quote one)."""
    if event_type == "Bounce":
        bounce_type = text(part.get("bounceType")) or ""
        kind = {"Permanent": EventKind.BOUNCED_HARD, "Transient": EventKind.BOUNCED_SOFT}.get(
            bounce_type, EventKind.OTHER
        )
        detail = {"type": bounce_type, "subtype": text(part.get("bounceSubType"))}
        return [
            (email, kind, detail | {"status": text(entry.get("status"))})
            for email, entry in _recipients(part, "bouncedRecipients")
        ]
    if event_type == "Complaint":
        feedback = text(part.get("complaintFeedbackType"))
        kind = EventKind.OTHER if feedback in NOT_COMPLAINTS else EventKind.COMPLAINED
        detail = {"feedback_type": feedback, "subtype": text(part.get("complaintSubType"))}
        return [(email, kind, detail) for email, _ in _recipients(part, "complainedRecipients")]
    if event_type == "Delivery":
        return [(email, EventKind.DELIVERED, {}) for email in _addresses(part, "recipients")]
    if event_type == "DeliveryDelay":
        detail = {"event_type": event_type, "delay_type": text(part.get("delayType"))}
        return [(email, EventKind.OTHER, detail) for email, _ in _recipients(part, "delayedRecipients")]
    # The rest report no recipients of their own: the message's, if it had exactly one.
    destination = _addresses(mail, "destination")
    email = destination[0] if len(destination) == 1 else None
    if event_type == "Open":
        return [(email, EventKind.OPENED, {})]
    if event_type == "Click":
        return [(email, EventKind.CLICKED, {"url": link(part.get("link"))})]
    if event_type == "Subscription":
        return [_subscription(email, part)]
    facts: dict[str, Any] = {"event_type": event_type[:DETAIL_MAX]}
    if event_type == "Reject":
        facts["reason"] = text(part.get("reason"))
    elif event_type in ("Rendering Failure", "RenderingFailure"):
        facts["template"] = text(part.get("templateName"))
    return [(email, EventKind.OTHER, facts)]


def _subscription(email: str | None, part: dict[str, Any]) -> _Reported:
    """A change made through SES's list management (its unsubscribe link or header).

    Leaving means opting out of everything, or of a topic the reader was not already out of;
    opting in changes nothing here (only the person's new consent through us brings them back),
    and neither does a change whose reader we cannot tell apart.
    """
    new = _object(part, "newTopicPreferences", required=True)
    old = _object(part, "oldTopicPreferences", required=False)
    unsubscribe_all = new.get("unsubscribeAll") is True
    opted_out = sorted(_opted_out(new) - _opted_out(old))
    detail = {
        "contact_list": text(part.get("contactList")),
        "source": text(part.get("source")),
        "unsubscribe_all": unsubscribe_all,
        "opted_out": opted_out[:20],
    }
    leaving = (unsubscribe_all or bool(opted_out)) and email is not None
    return email, (EventKind.UNSUBSCRIBED if leaving else EventKind.OTHER), detail


def _opted_out(preferences: dict[str, Any]) -> set[str]:
    statuses = preferences.get("topicSubscriptionStatus") or []
    if not isinstance(statuses, list) or len(statuses) > 100:
        raise BadPayload("topicSubscriptionStatus is not a short list")
    return {
        name[:DETAIL_MAX]
        for entry in statuses
        if isinstance(entry, dict)
        and entry.get("subscriptionStatus") == "OptOut"
        and isinstance(name := entry.get("topicName"), str)
    }


def _object(record: dict[str, Any], name: str, *, required: bool) -> dict[str, Any]:
    value = record.get(name) if name else None
    if value is None and not required:
        return {}
    if not isinstance(value, dict):
        raise BadPayload(f"{name or 'the event'} is not an object")
    return value


def _listed(record: dict[str, Any], name: str) -> list[Any]:
    """A list of one to :data:`MAX_RECIPIENTS` recipients."""
    value = record.get(name)
    if not isinstance(value, list) or not 0 < len(value) <= MAX_RECIPIENTS:
        raise BadPayload(f"{name} is not a list of 1 to {MAX_RECIPIENTS} recipients")
    return value


def _recipients(part: dict[str, Any], name: str) -> list[tuple[str, dict[str, Any]]]:
    """``[{"emailAddress": ...}, ...]`` as (address, entry) pairs."""
    pairs = []
    for entry in _listed(part, name):
        email = entry.get("emailAddress") if isinstance(entry, dict) else None
        if not isinstance(email, str):
            raise BadPayload(f"{name} has an entry without an emailAddress")
        pairs.append((email[:DETAIL_MAX], entry))
    return pairs


def _addresses(record: dict[str, Any], name: str) -> list[str]:
    """``["reader@example.org", ...]``."""
    addresses = _listed(record, name)
    if not all(isinstance(email, str) for email in addresses):
        raise BadPayload(f"{name} is not a list of addresses")
    return [email[:DETAIL_MAX] for email in addresses]


def _tag_id(tags: dict[str, Any], name: str) -> int | None:
    """A message tag we set: SES reports each tag as a list of its values, one for ours."""
    values = tags.get(name)
    if isinstance(values, list) and len(values) == 1:
        return int_id(values[0])
    return None
