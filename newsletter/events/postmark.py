"""Postmark's webhooks: who may post them, and what each one means.

Postmark secures a webhook with HTTP basic auth in its URL (``https://USER:PASSWORD@host/...``), so
:func:`verify` checks the ``Authorization`` header against credentials from the environment. One
POST carries one JSON object whose ``RecordType`` says what happened (Bounce, SpamComplaint,
SubscriptionChange, Delivery, Open, Click); :func:`parse` maps it to a
:class:`~newsletter.events.model.ProviderEvent`. Every message we send carries ``Metadata``
``{send_id, delivery_id}`` (``delivery/esp/postmark.py``), which Postmark hands back here.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import hmac
import logging
import os
from collections.abc import Mapping
from typing import Any

import orjson

from newsletter.config import Settings
from newsletter.events import fields
from newsletter.events.model import BadPayload, EventKind, ProviderEvent, Verdict, WebhookRequest

__all__ = ["PROVIDER", "parse", "verify"]

PROVIDER = "postmark"
log = logging.getLogger(__name__)

#: Bounce ``Type`` values (Postmark's bounce types) that say the address will never accept mail.
HARD_BOUNCES = frozenset({"HardBounce", "BadEmailAddress", "ManuallyDeactivated"})
#: Temporary failures: a full mailbox, a server or DNS hiccup. Suppressed only after repeats.
SOFT_BOUNCES = frozenset({"SoftBounce", "Transient", "DnsError"})
#: Everything else (AutoResponder, Blocked, SpamNotification, Unknown, ...) is recorded only:
#: an out-of-office reply or a block of our sending IP says nothing about the address.

_TIME_FIELDS = {
    "Bounce": "BouncedAt",
    "SpamComplaint": "BouncedAt",
    "SubscriptionChange": "ChangedAt",
    "Delivery": "DeliveredAt",
    "Open": "ReceivedAt",
    "Click": "ReceivedAt",
}


def missing_secrets(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    """What ``verify`` needs and the environment lacks (``doctor``): the basic-auth pair."""
    names = (settings.webhooks.postmark_user_env, settings.webhooks.postmark_password_env)
    return [f"{name} is not set" for name in names if not environ.get(name)]


def verify(
    request: WebhookRequest, settings: Settings, environ: Mapping[str, str] | None = None
) -> Verdict:
    """Trusted if the request carries the basic-auth credentials Postmark was given.

    Without configured credentials nobody is accepted: an open endpoint would let anyone
    unsubscribe or suppress any address.
    """
    environ = os.environ if environ is None else environ
    names = (settings.webhooks.postmark_user_env, settings.webhooks.postmark_password_env)
    missing = [name for name in names if not environ.get(name)]
    if missing:
        log.warning("postmark webhook refused: %s not set in the environment", " and ".join(missing))
        return Verdict(False, f"{' and '.join(missing)} not set")
    scheme, _, encoded = request.header("authorization").partition(" ")
    if scheme.lower() != "basic":
        return Verdict(False, "no basic credentials")
    try:
        user, colon, password = base64.b64decode(encoded.strip(), validate=True).partition(b":")
    except (binascii.Error, ValueError):
        return Verdict(False, "credentials are not base64")
    expected_user, expected_password = (environ[name].encode() for name in names)
    # Both compared, always: no early return that would time which half was wrong.
    user_ok = hmac.compare_digest(user, expected_user)
    password_ok = hmac.compare_digest(password, expected_password)
    if bool(colon) and user_ok and password_ok:
        return Verdict(True)
    return Verdict(False, "wrong credentials")


def parse(body: bytes) -> list[ProviderEvent]:
    """The events of one webhook POST (Postmark sends one record per request).

    Raises :class:`BadPayload` for anything that is not a JSON object with a known shape.
    """
    try:
        record = orjson.loads(body)
    except (orjson.JSONDecodeError, RecursionError) as exc:
        raise BadPayload(f"not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise BadPayload("expected a JSON object")
    record_type = record.get("RecordType")
    if not isinstance(record_type, str):
        raise BadPayload("no RecordType")
    kind, detail = _meaning(record_type, record)
    address_field = "Email" if record_type in ("Bounce", "SpamComplaint") else "Recipient"
    email = record.get(address_field)
    email = email if isinstance(email, str) else None
    metadata = record.get("Metadata")
    if metadata is not None and not isinstance(metadata, dict):
        raise BadPayload("Metadata is not an object")
    metadata = metadata or {}
    return [
        ProviderEvent(
            provider=PROVIDER,
            event_id=_event_id(record_type, record),
            kind=kind,
            occurred_at=_time(record.get(_TIME_FIELDS.get(record_type, ""))),
            delivery_id=fields.int_id(metadata.get("delivery_id")),
            send_id=fields.int_id(metadata.get("send_id")),
            email=email,
            detail=detail,
        )
    ]


def _meaning(record_type: str, record: dict[str, Any]) -> tuple[EventKind, dict[str, Any]]:
    """The event's kind, and the little we keep of it (never the address, nor Postmark's
    ``Details``, which quotes the receiving server and often the address with it)."""
    if record_type in ("Bounce", "SpamComplaint"):
        bounce_type = fields.text(record.get("Type")) or ""
        detail = {
            "type": bounce_type,
            "type_code": record.get("TypeCode") if isinstance(record.get("TypeCode"), int) else None,
            "description": fields.text(record.get("Description")),
        }
        if record_type == "SpamComplaint" or bounce_type == "SpamComplaint":
            return EventKind.COMPLAINED, detail
        if bounce_type in HARD_BOUNCES:
            return EventKind.BOUNCED_HARD, detail
        if bounce_type in SOFT_BOUNCES:
            return EventKind.BOUNCED_SOFT, detail
        if bounce_type == "Unsubscribe":
            return EventKind.UNSUBSCRIBED, detail
        return EventKind.OTHER, detail
    if record_type == "SubscriptionChange":
        suppress = record.get("SuppressSending")
        if not isinstance(suppress, bool):
            raise BadPayload("SubscriptionChange without a boolean SuppressSending")
        detail = {
            "suppress_sending": suppress,
            "reason": fields.text(record.get("SuppressionReason")),
            "origin": fields.text(record.get("Origin")),
        }
        # SuppressSending false is a reactivation in Postmark: only the person's own new consent
        # brings them back here, so it is recorded and changes nothing.
        return (EventKind.UNSUBSCRIBED if suppress else EventKind.OTHER), detail
    if record_type == "Delivery":
        return EventKind.DELIVERED, {}
    if record_type == "Open":
        return EventKind.OPENED, {"first_open": record.get("FirstOpen") is True}
    if record_type == "Click":
        return EventKind.CLICKED, {"url": fields.link(record.get("OriginalLink"))}
    return EventKind.OTHER, {"record_type": record_type[: fields.DETAIL_MAX]}


def _event_id(record_type: str, record: dict[str, Any]) -> str:
    """Postmark's own ID where it has one (bounces and complaints); else a hash of the record,
    which is stable because Postmark retries a webhook with the same body."""
    record_id = record.get("ID")
    if record_type in ("Bounce", "SpamComplaint") and isinstance(record_id, int | str) and str(record_id):
        return f"{record_type}:{record_id}"[:128]
    digest = hashlib.sha256(orjson.dumps(record, option=orjson.OPT_SORT_KEYS)).hexdigest()
    return f"{record_type[:40]}:sha256:{digest}"


def _time(value: object) -> dt.datetime:
    """An event's time, in UTC; now if Postmark left it out."""
    return fields.iso_time(value)
