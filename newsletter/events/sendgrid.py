"""SendGrid's Event Webhook: who may post it, and what each event means.

With the Signed Event Webhook enabled, SendGrid signs ``timestamp + body`` with ECDSA (P-256,
SHA-256) and sends the base64 DER signature in ``X-Twilio-Email-Event-Webhook-Signature`` and the
timestamp in ``X-Twilio-Email-Event-Webhook-Timestamp``; :func:`verify` checks both against the
verification key SendGrid shows (base64 DER SubjectPublicKeyInfo), from the environment.

One POST carries a JSON array of events. Each has ``event``, ``email``, ``timestamp`` (seconds) and
``sg_event_id`` (stable across SendGrid's retries), and the ``custom_args`` we sent
(``delivery/esp/sendgrid.py``: ``send_id``, ``delivery_id``) as top-level keys. What they mean here:

- ``bounce`` with ``type`` "bounce" (or no type, in older payloads): the receiving server refused
  the address for good: a hard bounce. SendGrid adds it to its own bounce list.
- ``bounce`` with ``type`` "blocked": refused for now (often our IP's reputation or the content,
  ``bounce_classification`` says which); SendGrid does not retry it: a soft bounce, counted.
- ``deferred``: one delivery attempt put off (``attempt`` counts them). SendGrid retries for up to
  72 hours and reports the end as ``delivered``, ``bounce`` or ``blocked``, so a deferral is
  recorded only: counting each attempt as a soft bounce would suppress a reader after one greylisted
  message.
- ``dropped``: SendGrid did not try. When the reason is its own suppression of the address
  ("Bounced Address", "Spam Reporting Address", "Unsubscribed Address") it is mirrored here as a
  hard bounce, complaint or unsubscribe: that address gets nothing through SendGrid until someone
  clears it there, and for a complaint or an unsubscribe the person has told the sender to stop
  (perhaps on another list of the same account). Keeping them on our list would only count them in
  every audience and send into a drop. Other drop reasons (spam content, an invalid header, a
  quota) are about the message, not the person: recorded only.
- ``spamreport``: a complaint. ``unsubscribe``/``group_unsubscribe``: an unsubscribe (we use no
  groups, so leaving one is leaving the newsletter). ``group_resubscribe``: recorded only; only
  the person's own consent through our sign-up brings them back.
- ``delivered``, ``open``, ``click``: engagement. ``processed`` and anything new: recorded only.
"""

from __future__ import annotations

import base64
import binascii
import functools
import logging
import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import orjson

from newsletter.config import Settings
from newsletter.events import fields
from newsletter.events.model import BadPayload, EventKind, ProviderEvent, Verdict, WebhookRequest
from newsletter.events.signed import stale

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.asymmetric.ec import EllipticCurvePublicKey

__all__ = ["PROVIDER", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "parse", "verify"]

PROVIDER = "sendgrid"
SIGNATURE_HEADER = "X-Twilio-Email-Event-Webhook-Signature"
TIMESTAMP_HEADER = "X-Twilio-Email-Event-Webhook-Timestamp"
log = logging.getLogger(__name__)

#: ``dropped`` reasons that are SendGrid's suppression of the address, and what they mean here.
DROPPED_FOR_THE_ADDRESS = {
    "Bounced Address": EventKind.BOUNCED_HARD,
    "Spam Reporting Address": EventKind.COMPLAINED,
    "Unsubscribed Address": EventKind.UNSUBSCRIBED,
}
_KINDS = {
    "delivered": EventKind.DELIVERED,
    "spamreport": EventKind.COMPLAINED,
    "unsubscribe": EventKind.UNSUBSCRIBED,
    "group_unsubscribe": EventKind.UNSUBSCRIBED,
    "open": EventKind.OPENED,
    "click": EventKind.CLICKED,
}
#: A DER ECDSA P-256 signature is at most 72 bytes; base64 of anything longer is no signature.
_SIGNATURE_MAX = 200


def missing_secrets(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    """What ``verify`` needs and the environment lacks (``doctor``): the verification key."""
    name = settings.webhooks.sendgrid_public_key_env
    return [] if environ.get(name) else [f"{name} is not set"]


def verify(
    request: WebhookRequest, settings: Settings, environ: Mapping[str, str] | None = None
) -> Verdict:
    """Trusted if SendGrid's key signed this timestamp and this exact body, and the timestamp is
    within ``[webhooks] timestamp_tolerance`` of our clock. Without a key, nobody is trusted."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    environ = os.environ if environ is None else environ
    name = settings.webhooks.sendgrid_public_key_env
    encoded_key = environ.get(name, "").strip()
    if not encoded_key:
        log.warning("sendgrid webhook refused: %s not set in the environment", name)
        return Verdict(False, f"{name} not set")
    key = _public_key(encoded_key)
    if key is None:
        log.warning("sendgrid webhook refused: %s is not a P-256 public key (base64 DER)", name)
        return Verdict(False, f"{name} is not a P-256 public key")
    signature_text = request.header(SIGNATURE_HEADER).strip()
    timestamp = request.header(TIMESTAMP_HEADER).strip()
    if not signature_text or not timestamp:
        return Verdict(False, "no signature or timestamp header")
    if reason := stale(timestamp, request.received_at, settings.webhooks.timestamp_tolerance):
        return Verdict(False, reason)
    if len(signature_text) > _SIGNATURE_MAX:
        return Verdict(False, "signature too long")
    try:
        signature = base64.b64decode(signature_text, validate=True)
    except (binascii.Error, ValueError):
        return Verdict(False, "signature is not base64")
    try:
        key.verify(signature, timestamp.encode() + request.body, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        return Verdict(False, "wrong signature")
    return Verdict(True)


@functools.lru_cache(maxsize=4)
def _public_key(encoded: str) -> EllipticCurvePublicKey | None:
    """The verification key, loaded once per value (base64 DER as SendGrid shows it, or PEM)."""
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_der_public_key, load_pem_public_key

    try:
        if encoded.startswith("-----BEGIN"):
            key = load_pem_public_key(encoded.encode())
        else:
            key = load_der_public_key(base64.b64decode("".join(encoded.split()), validate=True))
    except (binascii.Error, ValueError, TypeError):
        return None
    if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
        return None
    return key


def parse(body: bytes) -> list[ProviderEvent]:
    """The events of one webhook POST. Raises :class:`BadPayload` for anything but a JSON array of
    events of SendGrid's shape: one bad event refuses the POST (SendGrid never sends one)."""
    try:
        records = orjson.loads(body)
    except (orjson.JSONDecodeError, RecursionError) as exc:
        raise BadPayload(f"not JSON: {exc}") from None
    if not isinstance(records, list):
        raise BadPayload("expected a JSON array of events")
    return [_event(index, record) for index, record in enumerate(records)]


def _event(index: int, record: object) -> ProviderEvent:
    if not isinstance(record, dict):
        raise BadPayload(f"event {index} is not an object")
    name = record.get("event")
    if not isinstance(name, str) or not name:
        raise BadPayload(f"event {index} has no event name")
    email = record.get("email")
    if email is not None and not isinstance(email, str):
        raise BadPayload(f"event {index}: email is not a string")
    kind, detail = _meaning(name, record)
    return ProviderEvent(
        provider=PROVIDER,
        event_id=fields.event_id(record.get("sg_event_id")),
        kind=kind,
        occurred_at=fields.epoch_time(record.get("timestamp")),
        delivery_id=fields.int_id(record.get("delivery_id")),
        send_id=fields.int_id(record.get("send_id")),
        email=email,
        detail=detail,
    )


def _meaning(name: str, record: dict[str, Any]) -> tuple[EventKind, dict[str, Any]]:
    """The event's kind, and the little we keep of it (never the address: reasons are scrubbed)."""
    if name == "bounce":
        bounce_type = fields.text(record.get("type")) or "bounce"
        detail = {
            "type": bounce_type,
            "classification": fields.text(record.get("bounce_classification")),
            "status": fields.text(record.get("status")),
            "reason": fields.text(record.get("reason")),
        }
        return (EventKind.BOUNCED_SOFT if bounce_type == "blocked" else EventKind.BOUNCED_HARD), detail
    if name == "dropped":
        reason = fields.text(record.get("reason")) or ""
        return DROPPED_FOR_THE_ADDRESS.get(reason, EventKind.OTHER), {"event": name, "reason": reason}
    if name == "deferred":
        detail = {
            "event": name,
            "attempt": fields.text(record.get("attempt")),
            "response": fields.text(record.get("response")),
        }
        return EventKind.OTHER, detail
    if name == "click":
        return EventKind.CLICKED, {"url": fields.link(record.get("url"))}
    if name == "open":
        return EventKind.OPENED, {"machine_open": record.get("sg_machine_open") is True}
    if name in _KINDS:
        return _KINDS[name], {}
    return EventKind.OTHER, {"event": name[: fields.DETAIL_MAX]}
