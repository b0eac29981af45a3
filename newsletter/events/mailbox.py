"""What one message in the bounce mailbox is, from its bytes to :class:`ProviderEvent` values.

Pure: no IMAP, no database. ``newsletter.bounces`` fetches the bytes, this module classifies them,
and ``newsletter.store.mailbox`` stores the events with the message's key in one transaction.

In this order, the first that fits:

- an ARF feedback report (RFC 5965, ``multipart/report; report-type=feedback-report``): a
  complaint (``Feedback-Type`` abuse, fraud, other); not-spam, virus and auth-failure reports are
  ``other``;
- a DSN (RFC 3464, a ``message/delivery-status`` part): each failed recipient a hard bounce
  (status 5.x.x) or a soft one (4.x.x: the server gave up on a temporary failure); ``delayed``
  is a deferral the server still retries, ``other``, as with every provider's webhook;
- a mail to the ``mailto:`` unsubscribe address: an unsubscribe of the delivery its token names,
  or, without a token, of the sender's address when the subject or first line says
  "unsubscribe" (the store checks the address is on the list);
- an auto-reply (``Auto-Submitted: auto-replied``, the vacation headers): left alone;
- a non-standard bounce, found by one of flufl.bounce's heuristic detectors (Mailman's), from a
  mailer daemon or to a VERP bounce address;
- anything else: left alone.

Which delivery a message is about comes from a VERP token (``tokens.py``) in the addresses it was
delivered to, or in the quoted original's Return-Path and List-Unsubscribe. A token that does not
verify makes the whole message ``forged``: ignored, and logged by the caller. Without a token, the
failed recipients flufl.bounce reports are the addresses. Every limit holds whatever the message:
at most ``max_recipients`` events, text cut by ``fields.text``; a MIME tree the parser cannot take
is ``malformed``, never an exception.
"""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import enum
import hashlib
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from email.message import Message
from email.utils import getaddresses, parseaddr, parsedate_to_datetime

from newsletter.errors import BadInput
from newsletter.events.fields import text
from newsletter.events.model import EventKind, ProviderEvent

__all__ = ["MAILBOX_PROVIDER", "Classified", "MessageClass", "Recipients", "TokenReader", "classify"]

#: Events from the mailbox are the ``smtp`` provider's, as a webhook's are its provider's.
MAILBOX_PROVIDER = "smtp"

#: ``(purpose, send_id, delivery_id)`` of a VERP token; raises BadInput for one that does not verify.
TokenReader = Callable[[str], tuple[str, int, int]]

_ENHANCED_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_AUTO_REPLY_HEADERS = ("x-autoreply", "x-autorespond", "x-auto-response-suppress")
_AUTO_REPLY_SUBJECT = re.compile(
    r"^\s*(auto(matic)?[ -]?(reply|response)|out of (the )?office|abwesenheit|vacation)", re.I
)
_MAILER = re.compile(r"^(mailer-daemon|postmaster|mail-daemon|mailer|bounces?)@", re.I)
_ENVELOPE_HEADERS = ("delivered-to", "x-original-to", "envelope-to", "x-envelope-to", "to", "cc")
_ORIGINAL_HEADERS = ("return-path", "list-unsubscribe", "from", "to")
#: How far a message's Date may be from when it was read and still count as when it happened.
_DATE_SLACK_PAST = dt.timedelta(days=30)
_DATE_SLACK_FUTURE = dt.timedelta(hours=1)
#: Parts walked in one message at most: a MIME tree wider than this is malformed.
MAX_PARTS = 500


class MessageClass(enum.StrEnum):
    BOUNCE = "bounce"
    DELAY = "delay"  #: a DSN saying the server still tries: a deferral, stored as ``other``
    COMPLAINT = "complaint"
    UNSUBSCRIBE = "unsubscribe"
    AUTO_REPLY = "auto_reply"
    FORGED = "forged"  #: a VERP token that does not verify: ignored
    MALFORMED = "malformed"
    OTHER = "other"


@dataclass(frozen=True)
class Recipients:
    """Where the VERP addresses are: ``LOCAL+TOKEN@…`` for these local parts (case-insensitive)."""

    locals: tuple[str, ...]
    unsubscribe_local: str
    read_token: TokenReader
    max_recipients: int = 10_000

    def pattern(self) -> re.Pattern[str]:
        names = "|".join(re.escape(name) for name in self.locals)
        return re.compile(rf"(?i)(?<![\w.+-])(?:{names})\+([a-z0-9-]{{1,80}})@")


@dataclass(frozen=True)
class Classified:
    """One message: what it is, the events it makes, and a line for the log."""

    key: str  #: sha256 of its Message-ID (of its bytes without one): the same message, the same key
    kind: MessageClass
    events: tuple[ProviderEvent, ...] = ()
    note: str = ""
    #: Whether the events' delivery came from a verified VERP token (else from the addresses).
    tokened: bool = False
    truncated: int = 0  #: failed recipients left out over ``max_recipients``
    detail: dict[str, str] = field(default_factory=dict)


def message_key(raw: bytes, message_id: str | None) -> str:
    basis = message_id.strip().encode("utf-8", "replace") if message_id and message_id.strip() else raw
    return hashlib.sha256(basis).hexdigest()


def classify(raw: bytes, recipients: Recipients, *, received_at: dt.datetime) -> Classified:
    """What ``raw`` (one message, possibly cut at the size limit) is and which events it makes."""
    try:
        msg = email.message_from_bytes(raw, policy=email.policy.compat32)
    except Exception as exc:  # the parser is lenient; anything it still raises is a broken message
        return Classified(message_key(raw, None), MessageClass.MALFORMED, note=f"unparsable: {exc!r}"[:200])
    key = message_key(raw, _header(msg, "message-id"))
    try:
        return _classify(msg, key, recipients, received_at)
    except (RecursionError, _TooWide) as exc:
        return Classified(
            key, MessageClass.MALFORMED, note=f"MIME tree too deep or wide: {type(exc).__name__}"
        )
    except (LookupError, ValueError, TypeError, AttributeError, UnicodeError) as exc:
        return Classified(key, MessageClass.MALFORMED, note=f"malformed MIME: {exc!r}"[:200])


class _TooWide(Exception):
    pass


def _parts(msg: Message) -> Iterator[Message]:
    """Every MIME part, depth first, without descending into a delivery-status part's recipient
    blocks (one per recipient, not parts; ``max_recipients`` bounds those)."""
    stack, count = [msg], 0
    while stack:
        part = stack.pop()
        count += 1
        if count > MAX_PARTS:
            raise _TooWide
        yield part
        if part.is_multipart() and part.get_content_type() != "message/delivery-status":
            children = part.get_payload()
            if isinstance(children, list):
                stack.extend(reversed([c for c in children if isinstance(c, Message)]))


def _classify(msg: Message, key: str, recipients: Recipients, received_at: dt.datetime) -> Classified:
    occurred = _date(msg) or received_at
    if not (received_at - _DATE_SLACK_PAST <= occurred <= received_at + _DATE_SLACK_FUTURE):
        occurred = received_at  # a Date far off (a wrong clock, a forged header): when we read it
    parts = list(_parts(msg))
    content_types = {part.get_content_type() for part in parts}
    report_type = (msg.get_param("report-type", header="content-type") or "") if msg.is_multipart() else ""
    report_type = report_type.lower() if isinstance(report_type, str) else ""

    tokens = _tokens(msg, parts, recipients)
    if tokens.bad and not tokens.good:
        return Classified(key, MessageClass.FORGED, note=f"VERP token does not verify: {tokens.bad[0][:100]}")
    made = _Maker(key, occurred)

    if report_type == "feedback-report" or "message/feedback-report" in content_types:
        return _complaint(msg, parts, key, tokens, made)
    if "message/delivery-status" in content_types:
        return _dsn(msg, parts, key, tokens, made, recipients)
    unsubscribe = _unsubscribe(msg, key, tokens, made, recipients)
    if unsubscribe is not None:
        return unsubscribe
    if _auto_reply(msg):
        return Classified(key, MessageClass.AUTO_REPLY, note="auto-reply")
    heuristic = _heuristic_bounce(msg, parts, key, tokens, made, recipients)
    if heuristic is not None:
        return heuristic
    return Classified(key, MessageClass.OTHER, note="not a bounce, complaint or unsubscribe")


# -- tokens ----------------------------------------------------------------------------------------


@dataclass
class _Tokens:
    good: list[tuple[str, int, int]] = field(default_factory=list)
    bad: list[str] = field(default_factory=list)

    def delivery(self, purpose: str) -> tuple[int, int] | None:
        """``(send_id, delivery_id)`` of the first token for ``purpose``; any purpose if none."""
        for wanted in (purpose, None):
            for got, send_id, delivery_id in self.good:
                if wanted is None or got == wanted:
                    return send_id, delivery_id
        return None

    def has(self, purpose: str) -> bool:
        return any(got == purpose for got, _, _ in self.good)


def _tokens(msg: Message, parts: list[Message], recipients: Recipients) -> _Tokens:
    """VERP tokens where this message was delivered to, and in the quoted original's headers."""
    pattern = recipients.pattern()
    values = [v for name in _ENVELOPE_HEADERS for v in _all(msg, name)]
    for original in _originals(parts):
        values.extend(v for name in _ORIGINAL_HEADERS for v in _all(original, name))
    found = _Tokens()
    seen: set[str] = set()
    for value in values:
        for token in pattern.findall(value):
            token = token.lower()
            if token in seen:
                continue
            seen.add(token)
            try:
                found.good.append(recipients.read_token(token))
            except BadInput:
                found.bad.append(token)
    return found


def _originals(parts: list[Message]) -> Iterator[Message]:
    """The returned message's headers: a ``message/rfc822`` part, or ``text/rfc822-headers``."""
    for part in parts:
        kind = part.get_content_type()
        if kind in ("message/rfc822", "message/global") and part.is_multipart():
            payload = part.get_payload()
            if isinstance(payload, list) and payload and isinstance(payload[0], Message):
                yield payload[0]
        elif kind in ("text/rfc822-headers", "text/rfc822-header"):
            body = part.get_payload(decode=True)
            if isinstance(body, bytes):
                yield email.message_from_bytes(body[:65536], policy=email.policy.compat32)


# -- each kind -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Maker:
    key: str
    occurred: dt.datetime

    def event(
        self, n: int, kind: EventKind, delivery: tuple[int, int] | None, address: str | None, **detail: str
    ) -> ProviderEvent:
        send_id, delivery_id = delivery if delivery else (None, None)
        return ProviderEvent(
            provider=MAILBOX_PROVIDER,
            event_id=f"mailbox:{self.key}:{n}",
            kind=kind,
            occurred_at=self.occurred,
            delivery_id=delivery_id,
            send_id=send_id,
            email=address,
            detail={"source": "mailbox", **{k: v for k, v in detail.items() if v}},
        )


def _complaint(msg: Message, parts: list[Message], key: str, tokens: _Tokens, made: _Maker) -> Classified:
    report = next((p for p in parts if p.get_content_type() == "message/feedback-report"), None)
    fields = _report_fields(report)
    feedback = fields.get("feedback-type", "abuse").strip().lower()
    kind = EventKind.COMPLAINED if feedback in ("abuse", "fraud", "other", "") else EventKind.OTHER
    delivery = tokens.delivery("b")
    address = None
    if delivery is None:
        candidates = [fields.get("original-rcpt-to", "")]
        candidates += [original.get("to", "") for original in _originals(parts)]
        address = next((a for a in (_address(c) for c in candidates) if a), None)
    if delivery is None and address is None:
        return Classified(key, MessageClass.OTHER, note="feedback report naming no recipient of ours")
    event = made.event(0, kind, delivery, address, type="arf", feedback_type=text(feedback) or "")
    note = f"complaint ({feedback})" if kind is EventKind.COMPLAINED else f"feedback report ({feedback})"
    return Classified(key, MessageClass.COMPLAINT, (event,), note, tokened=delivery is not None)


def _dsn(
    msg: Message, parts: list[Message], key: str, tokens: _Tokens, made: _Maker, recipients: Recipients
) -> Classified:
    from flufl.bounce import all_failures

    temporary, permanent = all_failures(msg)
    statuses = _dsn_statuses(parts)
    failed = sorted(_decoded(permanent))
    delayed = sorted(_decoded(temporary) - set(failed))
    if not failed and not delayed:
        return Classified(
            key, MessageClass.OTHER, note="delivery report without a failure (relayed, delivered)"
        )
    if not failed:
        return _deferral(key, tokens, made, delayed, statuses)
    return _bounce(key, tokens, made, failed, statuses, recipients, "dsn")


def _bounce(
    key: str,
    tokens: _Tokens,
    made: _Maker,
    failed: list[str],
    statuses: dict[str, tuple[str, str]],
    recipients: Recipients,
    shape: str,
    default_status: str = "5.0.0",
) -> Classified:
    delivery = tokens.delivery("b")
    if delivery is not None:
        # One message went to one recipient: the token says which delivery, whatever the report
        # quotes (a forwarding address, an alias); the worst status of the report is its outcome.
        codes = [statuses.get(a, (default_status, ""))[0] for a in failed]
        status = min(codes, key=lambda c: (not c.startswith("5"), c))
        diagnostic = next((statuses[a][1] for a in failed if a in statuses and statuses[a][0] == status), "")
        event = made.event(
            0,
            _bounce_kind(status),
            delivery,
            None,
            type=shape,
            status=status,
            diagnostic=text(diagnostic) or "",
        )
        return Classified(key, MessageClass.BOUNCE, (event,), f"bounce {status} (VERP)", tokened=True)
    limit = recipients.max_recipients
    events = []
    for n, address in enumerate(failed[:limit]):
        status, diagnostic = statuses.get(address, (default_status, ""))
        events.append(
            made.event(
                n,
                _bounce_kind(status),
                None,
                address,
                type=shape,
                status=status,
                diagnostic=text(diagnostic) or "",
            )
        )
    note = f"bounce of {len(failed)} recipient(s), no VERP token"
    return Classified(key, MessageClass.BOUNCE, tuple(events), note, truncated=max(0, len(failed) - limit))


def _deferral(
    key: str, tokens: _Tokens, made: _Maker, delayed: list[str], statuses: dict[str, tuple[str, str]]
) -> Classified:
    delivery = tokens.delivery("b")
    status = statuses.get(delayed[0], ("4.0.0", ""))[0]
    if delivery is None:
        return Classified(key, MessageClass.DELAY, note=f"delayed ({status}), no VERP token")
    event = made.event(0, EventKind.OTHER, delivery, None, type="dsn", action="delayed", status=status)
    return Classified(key, MessageClass.DELAY, (event,), f"delayed ({status})", tokened=True)


def _bounce_kind(status: str) -> EventKind:
    return EventKind.BOUNCED_SOFT if status.startswith("4") else EventKind.BOUNCED_HARD


def _dsn_statuses(parts: list[Message]) -> dict[str, tuple[str, str]]:
    """Each recipient block's (status, diagnostic), by final and original recipient address."""
    out: dict[str, tuple[str, str]] = {}
    for part in parts:
        if part.get_content_type() != "message/delivery-status" or not part.is_multipart():
            continue
        blocks = part.get_payload()
        if not isinstance(blocks, list):
            continue
        for block in blocks:
            if not isinstance(block, Message):
                continue
            match = _ENHANCED_STATUS.search(str(block.get("status", "")))
            diagnostic = str(block.get("diagnostic-code", ""))
            if match is None:
                match = _ENHANCED_STATUS.search(diagnostic)
            if match is None:
                continue
            status = match.group(0)
            for name in ("final-recipient", "original-recipient", "x-actual-recipient"):
                value = str(block.get(name, ""))
                address = _address(value.split(";", 1)[-1])
                if address:
                    out.setdefault(address, (status, diagnostic))
    return out


def _unsubscribe(
    msg: Message, key: str, tokens: _Tokens, made: _Maker, recipients: Recipients
) -> Classified | None:
    if tokens.has("u"):
        delivery = tokens.delivery("u")
        event = made.event(0, EventKind.UNSUBSCRIBED, delivery, None, type="mailto")
        return Classified(key, MessageClass.UNSUBSCRIBE, (event,), "unsubscribe (token)", tokened=True)
    to = {_address(v) for name in _ENVELOPE_HEADERS for v in _all(msg, name)}
    local = recipients.unsubscribe_local.lower()
    if not any(a and a.partition("@")[0] == local for a in to) or _auto_reply(msg):
        return None
    sender = _address(_header(msg, "from") or "")
    if sender is None or _MAILER.match(sender):
        return None
    if not _asks_to_unsubscribe(msg):
        return None
    event = made.event(0, EventKind.UNSUBSCRIBED, None, sender, type="mailto")
    return Classified(key, MessageClass.UNSUBSCRIBE, (event,), "unsubscribe (no token: the sender)")


def _asks_to_unsubscribe(msg: Message) -> bool:
    if "unsubscribe" in (_header(msg, "subject") or "").lower():
        return True
    body = _first_text(msg)
    first = next((line for line in body.splitlines() if line.strip()), "")
    return "unsubscribe" in first.lower()


def _auto_reply(msg: Message) -> bool:
    submitted = (_header(msg, "auto-submitted") or "").lower()
    if submitted.startswith("auto-replied"):
        return True
    if any(msg.get(name) for name in _AUTO_REPLY_HEADERS):
        return True
    precedence = (_header(msg, "precedence") or "").lower()
    return precedence == "auto_reply" or bool(_AUTO_REPLY_SUBJECT.match(_header(msg, "subject") or ""))


def _heuristic_bounce(
    msg: Message, parts: list[Message], key: str, tokens: _Tokens, made: _Maker, recipients: Recipients
) -> Classified | None:
    sender = _address(_header(msg, "from") or "") or ""
    return_path = (_header(msg, "return-path") or "").strip()
    if not (tokens.has("b") or _MAILER.match(sender) or return_path in ("<>", "")):
        return None
    from flufl.bounce import all_failures

    temporary, permanent = all_failures(msg)
    failed = sorted(_decoded(permanent))
    if not failed:
        if temporary:
            return _deferral(key, tokens, made, sorted(_decoded(temporary)), {})
        return None
    codes = _ENHANCED_STATUS.findall(_first_text(msg)[:200_000])
    status = ".".join(codes[0]) if codes else "5.0.0"
    return _bounce(key, tokens, made, failed, {}, recipients, "non-standard", default_status=status)


# -- helpers ---------------------------------------------------------------------------------------


def _report_fields(report: Message | None) -> dict[str, str]:
    """The first header block of an ARF ``message/feedback-report`` part, lower-case names."""
    if report is None:
        return {}
    payload = report.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        return {k.lower(): str(v) for k, v in payload[0].items()}
    if isinstance(payload, str):
        block = email.message_from_string(payload[:65536], policy=email.policy.compat32)
        return {k.lower(): str(v) for k, v in block.items()}
    return {}


def _first_text(msg: Message) -> str:
    for part in msg.walk():
        if part.get_content_type() == "text/plain":
            body = part.get_payload(decode=True)
            if isinstance(body, bytes):
                charset = part.get_content_charset() or "utf-8"
                try:
                    return body.decode(charset, "replace")
                except LookupError:
                    return body.decode("utf-8", "replace")
    return ""


def _decoded(addresses: frozenset[bytes]) -> set[str]:
    out = set()
    for raw in addresses:
        address = _address(raw.decode("ascii", "replace"))
        if address:
            out.add(address)
    return out


def _address(value: str) -> str | None:
    """The one address in a header value, lower-case; None if there is none or it is no address."""
    _, address = parseaddr(str(value).strip())
    address = address.strip().strip("<>").lower()
    if "@" not in address or len(address) > 320 or any(c.isspace() for c in address):
        return None
    return address


def _header(msg: Message, name: str) -> str | None:
    value = msg.get(name)
    return None if value is None else str(value)


def _all(msg: Message, name: str) -> list[str]:
    values = msg.get_all(name) or []
    out = [str(v) for v in values]
    if name in ("to", "cc"):
        out = [addr for _, addr in getaddresses(out)] + out
    return out


def _date(msg: Message) -> dt.datetime | None:
    value = _header(msg, "date")
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.astimezone(dt.UTC)
