"""Mailgun's webhooks: who may post them, and what each event means.

Mailgun signs inside the body: ``{"signature": {"timestamp", "token", "signature"}, "event-data":
{...}}``, where ``signature`` is the hex HMAC-SHA256 of ``timestamp + token`` keyed with the
webhook signing key (from the environment). The signature covers only those two values, so
:func:`verify` also bounds the timestamp and hands the token
back as the request's nonce: the store records it with the events, and a second request carrying it
(a replay, whatever its event-data says) is refused with 401 and changes nothing. The bound: Mailgun
retries a webhook that got no 200 for about 8 hours (10 and 10 and 15 and 30 minutes, then 1, 2 and
4 hours) with its first signature, so a timestamp may be that much older (:data:`RETRY_WINDOW`),
plus ``[webhooks] timestamp_tolerance`` for clocks that differ; a shorter bound would lose the
events of any outage of ours longer than the tolerance. Tokens are remembered for a day, longer
than both together (``store/nonces.py``).

One POST carries one event. ``event-data`` has ``event``, ``id``, ``timestamp`` (seconds, with
microseconds), ``recipient``, and ``user-variables`` with the ``v:send_id`` and ``v:delivery_id``
we sent (``delivery/esp/mailgun.py``). What the events mean here:

- ``failed`` with ``severity`` "permanent": Mailgun gave up. A hard bounce, except when the
  ``reason`` is Mailgun's own suppression of the address ("suppress-bounce", "suppress-complaint",
  "suppress-unsubscribe": mirrored as a hard bounce, complaint or unsubscribe, as SendGrid's
  ``dropped`` is; see ``events/sendgrid.py``) or "old" (retries ran out on temporary failures: a
  soft bounce, counted).
- ``failed`` with ``severity`` "temporary": one attempt refused for now; Mailgun retries and reports
  the end. Recorded only, as SendGrid's ``deferred``.
- ``complained``, ``unsubscribed``; ``delivered``, ``opened``, ``clicked``; anything else
  (``accepted``, ``rejected``, ...) is recorded only.

Mailgun documents ``event-data.id`` as unique within a day, so the stored id adds the event's
timestamp, which a retry repeats.
"""

from __future__ import annotations

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
from newsletter.events.signed import stale

__all__ = ["PROVIDER", "parse", "verify"]

PROVIDER = "mailgun"
log = logging.getLogger(__name__)

#: Permanent failures that are not a new bounce of the address.
PERMANENT_REASONS = {
    "suppress-bounce": EventKind.BOUNCED_HARD,
    "suppress-complaint": EventKind.COMPLAINED,
    "suppress-unsubscribe": EventKind.UNSUBSCRIBED,
    "old": EventKind.BOUNCED_SOFT,
}
_KINDS = {
    "delivered": EventKind.DELIVERED,
    "complained": EventKind.COMPLAINED,
    "unsubscribed": EventKind.UNSUBSCRIBED,
    "opened": EventKind.OPENED,
    "clicked": EventKind.CLICKED,
}
#: Mailgun's tokens are 50 characters; ``webhook_nonces.nonce`` holds 128.
TOKEN_MAX = 128
#: Seconds over which Mailgun resends a webhook with its first signature (8 h 5 min), and a margin.
RETRY_WINDOW = int(8.5 * 3600)


def missing_secrets(settings: Settings, environ: Mapping[str, str]) -> list[str]:
    """What ``verify`` needs and the environment lacks (``doctor``): the signing key."""
    name = settings.webhooks.mailgun_signing_key_env
    return [] if environ.get(name) else [f"{name} is not set"]


def verify(
    request: WebhookRequest, settings: Settings, environ: Mapping[str, str] | None = None
) -> Verdict:
    """Trusted if the body's signature block was signed with our key, recently; the token is the
    nonce. A body with no signature block is untrusted (401), however malformed it is otherwise."""
    environ = os.environ if environ is None else environ
    name = settings.webhooks.mailgun_signing_key_env
    key = environ.get(name, "")
    if not key:
        log.warning("mailgun webhook refused: %s not set in the environment", name)
        return Verdict(False, f"{name} not set")
    try:
        record = orjson.loads(request.body)
    except (orjson.JSONDecodeError, RecursionError):
        return Verdict(False, "body is not JSON")
    block = record.get("signature") if isinstance(record, dict) else None
    if not isinstance(block, dict):
        return Verdict(False, "no signature block")
    timestamp, token, signature = (block.get(part) for part in ("timestamp", "token", "signature"))
    if isinstance(timestamp, int) and not isinstance(timestamp, bool):
        timestamp = str(timestamp)  # documented as an int, sent as a string
    if not (isinstance(timestamp, str) and isinstance(token, str) and isinstance(signature, str)):
        return Verdict(False, "incomplete signature block")
    if not token or len(token) > TOKEN_MAX:
        return Verdict(False, "bad token")
    if reason := stale(timestamp, request.received_at, settings.webhooks.timestamp_tolerance, RETRY_WINDOW):
        return Verdict(False, reason)
    message = (timestamp + token).encode("utf-8", "surrogatepass")
    expected = hmac.new(key.encode(), message, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected.encode(), signature.lower().encode("utf-8", "surrogatepass")):
        return Verdict(False, "wrong signature")
    return Verdict(True, nonce=token)


def parse(body: bytes) -> list[ProviderEvent]:
    """The event of one webhook POST. Raises :class:`BadPayload` for anything but Mailgun's shape."""
    try:
        record = orjson.loads(body)
    except (orjson.JSONDecodeError, RecursionError) as exc:
        raise BadPayload(f"not JSON: {exc}") from None
    data = record.get("event-data") if isinstance(record, dict) else None
    if not isinstance(data, dict):
        raise BadPayload("no event-data object")
    name = data.get("event")
    if not isinstance(name, str) or not name:
        raise BadPayload("event-data has no event name")
    recipient = data.get("recipient")
    if recipient is not None and not isinstance(recipient, str):
        raise BadPayload("recipient is not a string")
    variables = data.get("user-variables")
    if variables is not None and not isinstance(variables, dict):
        raise BadPayload("user-variables is not an object")
    variables = variables or {}
    occurred_at = fields.epoch_time(data.get("timestamp"))
    kind, detail = _meaning(name, data)
    return [
        ProviderEvent(
            provider=PROVIDER,
            event_id=fields.event_id(data.get("id"), suffix=f":{occurred_at.timestamp():.6f}"),
            kind=kind,
            occurred_at=occurred_at,
            delivery_id=fields.int_id(variables.get("delivery_id")),
            send_id=fields.int_id(variables.get("send_id")),
            email=recipient,
            detail=detail,
        )
    ]


def _meaning(name: str, data: dict[str, Any]) -> tuple[EventKind, dict[str, Any]]:
    """The event's kind, and the little we keep of it: never the address, nor the receiving
    server's ``delivery-status.message``, which quotes it."""
    if name == "failed":
        severity = fields.text(data.get("severity")) or ""
        reason = fields.text(data.get("reason")) or ""
        status = data.get("delivery-status")
        status = status if isinstance(status, dict) else {}
        code = status.get("code")
        detail = {
            "severity": severity,
            "reason": reason,
            "code": code if isinstance(code, int) and not isinstance(code, bool) else None,
            "description": fields.text(status.get("description")),
        }
        if severity == "permanent":
            return PERMANENT_REASONS.get(reason, EventKind.BOUNCED_HARD), detail
        return EventKind.OTHER, detail
    if name == "clicked":
        return EventKind.CLICKED, {"url": fields.link(data.get("url"))}
    if name in _KINDS:
        return _KINDS[name], {}
    return EventKind.OTHER, {"event": name[: fields.DETAIL_MAX]}
