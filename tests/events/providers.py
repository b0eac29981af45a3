"""One fixture per webhook provider: how the tests build its requests and break its credentials.

The contract suites (``test_parser_contract.py`` for ``verify``/``parse``, ``test_endpoint_contract.py``
for ``POST /webhooks/{provider}``) run every provider through the same cases with these; adding a
provider means a parser module in ``newsletter/events/``, its samples under
``tests/fixtures/webhooks/<provider>/`` (written from the provider's documented payloads) and one
:class:`Webhook` subclass here, listed in :data:`WEBHOOKS`.

A fixture knows its provider's samples and what each means (:attr:`Webhook.samples`), how a
sample is changed the ways the contract needs (another event id, address or ids we sent: :meth:`record`),
how to sign a request as the provider does, at a given time (:meth:`signed`), the ways a
request's credentials can be wrong (:meth:`broken`), and the secrets the app reads
(:meth:`install`). SendGrid's requests are signed with a P-256 key pair made for the test run,
Mailgun's with a signing key of our own, SNS's with a certificate made here (``sns_signing.py``).
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import json
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, ClassVar

import orjson
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from newsletter.config import Settings, WebhooksSettings
from newsletter.events import mailgun, postmark, sendgrid, ses, sns
from newsletter.events.model import BadPayload, ProviderEvent, Verdict, WebhookRequest
from newsletter.events.sendgrid import SIGNATURE_HEADER, TIMESTAMP_HEADER
from newsletter.store.models import EventKind, SubscriberStatus, SuppressionReason
from tests.events.sns_signing import (
    CERT_URL,
    OTHER_TOPIC,
    TOPIC,
    FakeFetcher,
    Signer,
    notification,
    ses_record,
    timestamp,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks"
READERS = [f"reader{i}@example.org" for i in range(5)]
USER, PASSWORD = "postmark-hook", "s3cret-pass:word"
MAILGUN_KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f0-webhook-signing"
#: SendGrid's signing key: one per test run, as SendGrid keeps one per account.
SENDGRID_KEY = ec.generate_private_key(ec.SECP256R1())
#: SNS's key and certificate (served at ``CERT_URL``), and somebody else's.
SNS_SIGNER = Signer.make()
STRANGER = Signer.make()

Headers = dict[str, str]
Request = tuple[Headers, bytes]


def now_seconds() -> int:
    return int(dt.datetime.now(dt.UTC).timestamp())


def _utc(*parts: int) -> dt.datetime:
    return dt.datetime(*parts, tzinfo=dt.UTC)


# Postmark ------------------------------------------------------------------------------------------


def sample(name: str, **changes: Any) -> dict[str, Any]:
    """A Postmark record, with ``changes`` made to it."""
    record: dict[str, Any] = json.loads((FIXTURES / "postmark" / f"{name}.json").read_text())
    record.update(changes)
    return record


def basic(user: str = USER, password: str = PASSWORD) -> Headers:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


# SendGrid ------------------------------------------------------------------------------------------


def sendgrid_sample(name: str, **changes: Any) -> list[dict[str, Any]]:
    """A SendGrid POST of one event, with ``changes`` made to the event."""
    events: list[dict[str, Any]] = json.loads((FIXTURES / "sendgrid" / f"{name}.json").read_text())
    events[0].update(changes)
    return events


def public_key_text(key: ec.EllipticCurvePrivateKey = SENDGRID_KEY) -> str:
    """The verification key as SendGrid shows it: base64 of the DER SubjectPublicKeyInfo."""
    der = key.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(der).decode()


def sendgrid_headers(
    body: bytes, *, timestamp: int | None = None, key: ec.EllipticCurvePrivateKey = SENDGRID_KEY
) -> Headers:
    """The headers SendGrid sends with ``body``: its ECDSA signature of timestamp + body."""
    stamp = str(now_seconds() if timestamp is None else timestamp)
    signature = key.sign(stamp.encode() + body, ec.ECDSA(hashes.SHA256()))
    return {SIGNATURE_HEADER: base64.b64encode(signature).decode(), TIMESTAMP_HEADER: stamp}


# Mailgun -------------------------------------------------------------------------------------------


def mailgun_sample(name: str, **changes: Any) -> dict[str, Any]:
    """A Mailgun POST, with ``changes`` made to its event-data (the signature is :func:`mailgun_signed`'s)."""
    record: dict[str, Any] = json.loads((FIXTURES / "mailgun" / f"{name}.json").read_text())
    record["event-data"].update(changes)
    return record


def mailgun_signed(
    record: dict[str, Any],
    *,
    timestamp: int | None = None,
    token: str | None = None,
    key: str = MAILGUN_KEY,
) -> dict[str, Any]:
    """``record`` with a signature block as Mailgun signs it: HMAC-SHA256 of timestamp + token."""
    stamp = str(now_seconds() if timestamp is None else timestamp)
    token = secrets.token_hex(25) if token is None else token
    digest = hmac.new(key.encode(), (stamp + token).encode(), hashlib.sha256).hexdigest()
    return {**record, "signature": {"timestamp": stamp, "token": token, "signature": digest}}


# The fixtures ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Sample:
    """A sample file of the provider's and the one event it must become."""

    name: str
    kind: EventKind
    email: str
    occurred_at: dt.datetime
    #: ``(send_id, delivery_id)`` as we sent them.
    ids: tuple[int | None, int | None] = (1, 1)


@dataclass(frozen=True)
class Leaving:
    """A sample that takes its readers off the list, and how."""

    name: str
    readers: tuple[str, ...]
    status: SubscriberStatus
    reason: SuppressionReason


def _bounced(name: str, *readers: str) -> Leaving:
    return Leaving(name, readers, SubscriberStatus.BOUNCED, SuppressionReason.BOUNCED)


def _complained(name: str) -> Leaving:
    return Leaving(name, (READERS[2],), SubscriberStatus.COMPLAINED, SuppressionReason.COMPLAINED)


def _unsubscribed(name: str) -> Leaving:
    return Leaving(name, (READERS[3],), SubscriberStatus.UNSUBSCRIBED, SuppressionReason.UNSUBSCRIBED)


class Webhook:
    """A provider's webhooks as the tests send them. Subclasses fill in the class attributes."""

    name: ClassVar[str]
    module: ClassVar[ModuleType]
    #: Every single-event sample, and the event it is.
    samples: ClassVar[tuple[Sample, ...]]
    #: The samples that take a reader off the list; the first is a hard bounce of ``READERS[0]``.
    leaving: ClassVar[tuple[Leaving, ...]]
    #: A soft bounce of ``READERS[1]``, counted towards ``[webhooks] soft_bounce_limit``.
    soft_bounce: ClassVar[str]
    #: A failed attempt the provider retries itself (of ``READERS[1]``): never counted, or None.
    retried_attempt: ClassVar[str | None] = None
    #: A click, whose URL is kept without its query.
    click: ClassVar[str]
    #: Part of the hard bounce's stored detail.
    hard_bounce_detail: ClassVar[dict[str, Any]]
    #: The answer to the very same request posted a second time: 200 (its events are known, so
    #: nothing new) or 401 (its one-time nonce is spent).
    replay_status: ClassVar[int] = 200
    #: The answer to a body that is not JSON at all: 400 where the credentials do not live in the
    #: body (or the envelope is checked before the signature, as SNS's), 401 where they do.
    unreadable_status: ClassVar[int] = 400
    #: What the app needs in the environment, and what the log says when it is missing.
    environ: ClassVar[dict[str, str]] = {}
    unconfigured_log: ClassVar[str]

    def settings(self, **webhooks: Any) -> Settings:
        """The settings the app runs with for this provider (``[webhooks]`` overrides)."""
        return Settings(webhooks=WebhooksSettings(**webhooks))

    def unconfigured_settings(self) -> Settings:
        """Settings in which nobody can be this provider (with :attr:`environ` unset too)."""
        return self.settings()

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """The provider's secrets where the app reads them (SNS's certificate is served by the
        ``fetcher`` fixture of ``conftest.py``)."""
        for name, value in self.environ.items():
            monkeypatch.setenv(name, value)

    def verify(self, request: WebhookRequest, settings: Settings, environ: Mapping[str, str]) -> Verdict:
        return self.module.verify(request, settings, environ)

    def parse(self, body: bytes) -> list[ProviderEvent]:
        return self.module.parse(body)

    def window(self, settings: Settings) -> tuple[int, int] | None:
        """How many seconds a signed time may lie behind and ahead of ours; None: nothing signs one."""
        return None

    def record(
        self,
        name: str,
        *,
        event_id: str | None = None,
        email: str | None = None,
        ids: Mapping[str, object] | None = None,
    ) -> Any:
        """Sample ``name`` as the provider would post it, unsigned: with its own event id (the one its
        retries repeat), another recipient address, or other ``send_id``/``delivery_id`` values in
        place of ours (``{}``: none)."""
        raise NotImplementedError

    def signed(self, record: Any, *, at: int | None = None) -> Request:
        """The headers and body of ``record`` signed as the provider signs it, at ``at`` (default now)."""
        raise NotImplementedError

    def variants(self) -> dict[str, tuple[Any, EventKind]]:
        """The provider's own words for what happened (bounce types, drop and failure reasons,
        feedback types, ...), each in an unsigned record, and the kind every event of it must be."""
        return {}

    def broken(self, record: Any) -> dict[str, Request]:
        """``record`` posted with credentials that must not be trusted, by what is wrong."""
        raise NotImplementedError

    def credentials_for(self, body: bytes) -> Headers:
        """Good credentials for any ``body`` where they travel beside it (headers); none where
        they live inside it, as Mailgun's and SNS's do."""
        return {}

    def malformed(self) -> list[bytes]:
        """Bodies of nearly the provider's shape that ``parse`` refuses (beyond what is not JSON)."""
        raise NotImplementedError

    def hostile(self) -> list[Request]:
        """Requests with good credentials and a body of the wrong shape: 400, nothing stored."""
        raise NotImplementedError


class Postmark(Webhook):
    name = "postmark"
    module = postmark
    samples = (
        Sample("bounce_hard", EventKind.BOUNCED_HARD, READERS[0], _utc(2026, 11, 27, 19, 3, 11, 123456)),
        Sample("bounce_soft", EventKind.BOUNCED_SOFT, READERS[1], _utc(2026, 11, 27, 14, 5), (1, 2)),
        Sample("spam_complaint", EventKind.COMPLAINED, READERS[2], _utc(2026, 11, 27, 15, 0), (1, 3)),
        Sample("subscription_change", EventKind.UNSUBSCRIBED, READERS[3], _utc(2026, 11, 27, 16, 0), (1, 4)),
        Sample("delivery", EventKind.DELIVERED, READERS[4], _utc(2026, 11, 27, 14, 0, 1), (1, 5)),
        Sample("open", EventKind.OPENED, READERS[4], _utc(2026, 11, 27, 14, 10), (1, 5)),
        Sample("click", EventKind.CLICKED, READERS[4], _utc(2026, 11, 27, 14, 12), (1, 5)),
    )
    leaving = (
        _bounced("bounce_hard", READERS[0]),
        _complained("spam_complaint"),
        _unsubscribed("subscription_change"),
    )
    soft_bounce = "bounce_soft"
    click = "click"
    hard_bounce_detail: ClassVar[dict[str, Any]] = {"type": "HardBounce", "type_code": 1}
    environ: ClassVar[dict[str, str]] = {"POSTMARK_WEBHOOK_USER": USER, "POSTMARK_WEBHOOK_PASSWORD": PASSWORD}
    unconfigured_log = "POSTMARK_WEBHOOK_USER and POSTMARK_WEBHOOK_PASSWORD not set"

    def record(
        self,
        name: str,
        *,
        event_id: str | None = None,
        email: str | None = None,
        ids: Mapping[str, object] | None = None,
    ) -> Any:
        record = sample(name)
        if event_id is not None:
            # Bounces and complaints carry Postmark's ID; the rest are told apart by their content.
            record["ID" if "ID" in record else "MessageID"] = event_id
        if email is not None:
            record["Email" if "Email" in record else "Recipient"] = email
        if ids is not None:
            record["Metadata"] = dict(ids)
        return record

    def signed(self, record: Any, *, at: int | None = None) -> Request:
        return basic(), orjson.dumps(record)

    def credentials_for(self, body: bytes) -> Headers:
        return basic()

    def variants(self) -> dict[str, tuple[Any, EventKind]]:
        bounce_types = {
            "HardBounce": EventKind.BOUNCED_HARD,
            "BadEmailAddress": EventKind.BOUNCED_HARD,
            "ManuallyDeactivated": EventKind.BOUNCED_HARD,
            "SoftBounce": EventKind.BOUNCED_SOFT,
            "Transient": EventKind.BOUNCED_SOFT,
            "DnsError": EventKind.BOUNCED_SOFT,
            "SpamComplaint": EventKind.COMPLAINED,
            "Unsubscribe": EventKind.UNSUBSCRIBED,
            # An out-of-office reply or a block of our sending IP says nothing about the address.
            "AutoResponder": EventKind.OTHER,
            "Blocked": EventKind.OTHER,
            "SomethingNew": EventKind.OTHER,
        }
        cases = {f"Type {t}": (sample("bounce_hard", Type=t), kind) for t, kind in bounce_types.items()}
        # A reactivation: only the person's own new consent brings them back here.
        reactivated = sample("subscription_change", SuppressSending=False)
        cases["SuppressSending false"] = (reactivated, EventKind.OTHER)
        return cases

    def broken(self, record: Any) -> dict[str, Request]:
        body = orjson.dumps(record)
        return {
            "no credentials": ({}, body),
            "wrong password": (basic(password=PASSWORD + "x"), body),
            "wrong user": (basic(user="someone-else"), body),
            "no colon": ({"Authorization": "Basic " + base64.b64encode(USER.encode()).decode()}, body),
            "not basic": ({"Authorization": "Bearer token"}, body),
            "not base64": ({"Authorization": "Basic !!!not-base64"}, body),
            "garbage": ({"Authorization": "Basic " + "x" * 20}, body),
            "empty": (basic("", ""), body),
        }

    def malformed(self) -> list[bytes]:
        return [
            b'{"RecordType": 5}',
            b'{"RecordType": "Bounce", "Metadata": "1"}',
            b'{"RecordType": "Bounce", "BouncedAt": "yesterday"}',
            b'{"RecordType": "SubscriptionChange"}',
            b'{"RecordType": "SubscriptionChange", "SuppressSending": "yes"}',
        ]

    def hostile(self) -> list[Request]:
        return [(basic(), body) for body in self.malformed()]


class SendGrid(Webhook):
    name = "sendgrid"
    module = sendgrid
    _AT = _utc(2026, 11, 27, 19, 3, 11)
    samples = (
        Sample("bounce", EventKind.BOUNCED_HARD, READERS[0], _AT),
        Sample("blocked", EventKind.BOUNCED_SOFT, READERS[1], _AT),
        Sample("deferred", EventKind.OTHER, READERS[1], _AT),
        Sample("dropped", EventKind.BOUNCED_HARD, READERS[4], _AT),
        Sample("spamreport", EventKind.COMPLAINED, READERS[2], _AT),
        Sample("unsubscribe", EventKind.UNSUBSCRIBED, READERS[3], _AT),
        Sample("group_unsubscribe", EventKind.UNSUBSCRIBED, READERS[3], _AT),
        Sample("delivered", EventKind.DELIVERED, READERS[4], _AT),
        Sample("open", EventKind.OPENED, READERS[4], _AT),
        Sample("click", EventKind.CLICKED, READERS[4], _AT),
        Sample("processed", EventKind.OTHER, READERS[4], _AT),
    )
    leaving = (
        _bounced("bounce", READERS[0]),
        _complained("spamreport"),
        _unsubscribed("unsubscribe"),
        _unsubscribed("group_unsubscribe"),
        _bounced("dropped", READERS[4]),
    )
    soft_bounce = "blocked"
    retried_attempt = "deferred"
    click = "click"
    hard_bounce_detail: ClassVar[dict[str, Any]] = {
        "type": "bounce",
        "classification": "Invalid Address",
        "status": "5.1.1",
    }
    environ: ClassVar[dict[str, str]] = {"SENDGRID_WEBHOOK_PUBLIC_KEY": public_key_text()}
    unconfigured_log = "SENDGRID_WEBHOOK_PUBLIC_KEY not set"

    def window(self, settings: Settings) -> tuple[int, int] | None:
        tolerance = settings.webhooks.timestamp_tolerance
        return tolerance, tolerance

    def record(
        self,
        name: str,
        *,
        event_id: str | None = None,
        email: str | None = None,
        ids: Mapping[str, object] | None = None,
    ) -> Any:
        events = sendgrid_sample(name)
        if event_id is not None:
            events[0]["sg_event_id"] = event_id
        if email is not None:
            events[0]["email"] = email
        if ids is not None:
            del events[0]["send_id"], events[0]["delivery_id"]
            events[0].update(ids)
        return events

    def signed(self, record: Any, *, at: int | None = None) -> Request:
        body = record if isinstance(record, bytes) else orjson.dumps(record)
        return sendgrid_headers(body, timestamp=at), body

    def credentials_for(self, body: bytes) -> Headers:
        return sendgrid_headers(body)

    def variants(self) -> dict[str, tuple[Any, EventKind]]:
        drop_reasons = {
            # SendGrid's own suppression of the address, mirrored here.
            "Bounced Address": EventKind.BOUNCED_HARD,
            "Spam Reporting Address": EventKind.COMPLAINED,
            "Unsubscribed Address": EventKind.UNSUBSCRIBED,
            # About the message, not the person.
            "Invalid SMTPAPI header": EventKind.OTHER,
            "Spam Content (if Spam Checker app is enabled)": EventKind.OTHER,
            "Recipient List over Package Quota": EventKind.OTHER,
            "Invalid": EventKind.OTHER,
        }
        cases = {
            f"dropped: {reason}": (sendgrid_sample("dropped", reason=reason), kind)
            for reason, kind in drop_reasons.items()
        }
        # Older payloads have no type: a bounce is permanent by SendGrid's definition.
        cases["bounce of no type"] = (sendgrid_sample("bounce", type=None), EventKind.BOUNCED_HARD)
        return cases

    def broken(self, record: Any) -> dict[str, Request]:
        good, body = self.signed(record)
        signature, stamp = good[SIGNATURE_HEADER], good[TIMESTAMP_HEADER]
        return {
            "no headers": ({}, body),
            "no timestamp": ({SIGNATURE_HEADER: signature}, body),
            "no signature": ({TIMESTAMP_HEADER: stamp}, body),
            "another key": (sendgrid_headers(body, key=ec.generate_private_key(ec.SECP256R1())), body),
            "body appended to": (good, body + b" "),
            "body altered": (good, body.replace(b"reader0", b"reader1")),
            "timestamp altered": ({**good, TIMESTAMP_HEADER: str(int(stamp) + 1)}, body),
            "signature not base64": ({**good, SIGNATURE_HEADER: "!!not base64!!"}, body),
            "signature not DER": ({**good, SIGNATURE_HEADER: base64.b64encode(b"0\x02junk").decode()}, body),
            "signature too long": ({**good, SIGNATURE_HEADER: "A" * 10_000}, body),
            "timestamp not a number": ({**good, TIMESTAMP_HEADER: "soon"}, body),
            "timestamp too long": ({**good, TIMESTAMP_HEADER: "9" * 40}, body),
        }

    def malformed(self) -> list[bytes]:
        return [
            b'{"event": "bounce"}',
            b"[1]",
            b'[{"event": "bounce"}]',
            b'[{"event": 5, "sg_event_id": "x", "timestamp": 1}]',
            b'[{"event": "open", "sg_event_id": "", "timestamp": 1}]',
            b'[{"event": "open", "sg_event_id": ["x"], "timestamp": 1}]',
            b'[{"event": "open", "sg_event_id": "x", "timestamp": "yesterday"}]',
            b'[{"event": "open", "sg_event_id": "x", "timestamp": 1e300}]',
            b'[{"event": "open", "sg_event_id": "x", "timestamp": -1}]',
            b'[{"event": "open", "sg_event_id": "x", "timestamp": true}]',
            b'[{"event": "open", "sg_event_id": "x", "timestamp": 1, "email": 42}]',
            b'[{"event": "bounce", "sg_event_id": 1, "timestamp": 1}]',
            b'[{"a":' * 5000 + b"1" + b"}" * 5000 + b"]",
        ]

    def hostile(self) -> list[Request]:
        # A signed array as large as the body limit allows, of numbers, not events.
        from newsletter.web.app import MAX_BODY

        numbers = b"[" + b"1," * (MAX_BODY // 2 - 2) + b"1]"
        return [self.signed(body) for body in [*self.malformed(), numbers]]


class Mailgun(Webhook):
    name = "mailgun"
    module = mailgun
    _AT = _utc(2026, 11, 27, 19, 3, 11, 123456)
    samples = (
        Sample("failed_permanent", EventKind.BOUNCED_HARD, READERS[0], _AT),
        Sample("failed_old", EventKind.BOUNCED_SOFT, READERS[1], _AT),
        Sample("failed_temporary", EventKind.OTHER, READERS[1], _AT),
        Sample("failed_suppress_complaint", EventKind.COMPLAINED, READERS[2], _AT),
        Sample("complained", EventKind.COMPLAINED, READERS[2], _AT),
        Sample("unsubscribed", EventKind.UNSUBSCRIBED, READERS[3], _AT),
        Sample("delivered", EventKind.DELIVERED, READERS[4], _AT),
        Sample("opened", EventKind.OPENED, READERS[4], _AT),
        Sample("clicked", EventKind.CLICKED, READERS[4], _AT),
        Sample("accepted", EventKind.OTHER, READERS[4], _AT),
    )
    leaving = (
        _bounced("failed_permanent", READERS[0]),
        _complained("complained"),
        _complained("failed_suppress_complaint"),
        _unsubscribed("unsubscribed"),
    )
    soft_bounce = "failed_old"
    retried_attempt = "failed_temporary"
    click = "clicked"
    hard_bounce_detail: ClassVar[dict[str, Any]] = {"severity": "permanent", "reason": "bounce", "code": 550}
    # Mailgun's token is a one-time nonce: the same request twice is a replay, refused.
    replay_status = 401
    # The signature lives in the body: what is not JSON has none.
    unreadable_status = 401
    environ: ClassVar[dict[str, str]] = {"MAILGUN_WEBHOOK_SIGNING_KEY": MAILGUN_KEY}
    unconfigured_log = "MAILGUN_WEBHOOK_SIGNING_KEY not set"

    def window(self, settings: Settings) -> tuple[int, int] | None:
        tolerance = settings.webhooks.timestamp_tolerance
        return tolerance + mailgun.RETRY_WINDOW, tolerance

    def record(
        self,
        name: str,
        *,
        event_id: str | None = None,
        email: str | None = None,
        ids: Mapping[str, object] | None = None,
    ) -> Any:
        record = mailgun_sample(name)
        data = record["event-data"]
        if event_id is not None:
            data["id"] = event_id
        if email is not None:
            data["recipient"] = email
        if ids is not None:
            data["user-variables"] = dict(ids)
        return record

    def signed(self, record: Any, *, at: int | None = None) -> Request:
        return {"Content-Type": "application/json"}, orjson.dumps(mailgun_signed(record, timestamp=at))

    def broken(self, record: Any) -> dict[str, Request]:
        good = mailgun_signed(record)
        block = good["signature"]
        mangled = block["signature"].replace(block["signature"][0], "x")
        later = str(int(block["timestamp"]) + 1)
        cases: dict[str, Any] = {
            "the sample's own block, signed by another key long ago": record,
            "no signature block": {"event-data": record["event-data"]},
            "another key": mailgun_signed(record, key="not our key"),
            "signature altered": {**good, "signature": {**block, "signature": mangled}},
            "signature zeros": {**good, "signature": {**block, "signature": "0" * 64}},
            "signature not ASCII": {**good, "signature": {**block, "signature": "é" * 64}},
            "token altered": {**good, "signature": {**block, "token": block["token"] + "x"}},
            "timestamp altered": {**good, "signature": {**block, "timestamp": later}},
            "no token": {**good, "signature": {**block, "token": None}},
            "timestamp a boolean": {**good, "signature": {**block, "timestamp": True}},
            "block a string": {**good, "signature": "sig"},
            "token too long": mailgun_signed(record, token="x" * 129),
            "token empty": mailgun_signed(record, token=""),
        }
        requests = {name: (self.signed(record)[0], orjson.dumps(value)) for name, value in cases.items()}
        for name, body in (("not JSON", b"not json"), ("an array", b"[]"), ("an empty object", b"{}")):
            requests[name] = ({}, body)
        return requests

    def variants(self) -> dict[str, tuple[Any, EventKind]]:
        permanent_reasons = {
            "bounce": EventKind.BOUNCED_HARD,
            "generic": EventKind.BOUNCED_HARD,
            # Mailgun's own suppression of the address, mirrored here.
            "suppress-bounce": EventKind.BOUNCED_HARD,
            "suppress-complaint": EventKind.COMPLAINED,
            "suppress-unsubscribe": EventKind.UNSUBSCRIBED,
            # Retries on temporary failures ran out.
            "old": EventKind.BOUNCED_SOFT,
        }
        return {
            f"permanent {reason}": (mailgun_sample("failed_permanent", reason=reason), kind)
            for reason, kind in permanent_reasons.items()
        }

    def malformed(self) -> list[bytes]:
        return [
            b"[]",
            b'{"event-data": []}',
            b'{"event-data": {"id": "x", "timestamp": 1}}',
            b'{"event-data": {"event": "failed", "timestamp": 1}}',
            b'{"event-data": {"event": "failed", "id": 7, "timestamp": 1}}',
            b'{"event-data": {"event": "failed", "id": "x", "timestamp": "now"}}',
            b'{"event-data": {"event": "failed", "id": "x", "timestamp": 1, "recipient": ["a"]}}',
            b'{"event-data": {"event": "failed", "id": "x", "timestamp": 1, "user-variables": "1"}}',
        ]

    def hostile(self) -> list[Request]:
        event_data: list[Any] = [
            None,
            [],
            "failed",
            {"event": "failed"},
            {"event": ["failed"], "id": "x", "timestamp": 1},
            {"event": "failed", "id": "x", "timestamp": "yesterday"},
            {"event": "failed", "id": "x", "timestamp": 1, "recipient": {"a": 1}},
            {"event": "failed", "id": "x", "timestamp": 1, "user-variables": [1] * 100_000},
        ]
        return [self.signed({"event-data": data}) for data in event_data]


def _message_id(event_id: str) -> str:
    """An SNS MessageId (a UUID) standing for ``event_id``: the same one for the same id."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, event_id))


_HUGE_BOUNCE = {
    **ses_record("bounce_permanent"),
    "bounce": {
        "bounceType": "Permanent",
        "bouncedRecipients": [{"emailAddress": f"r{i}@example.org"} for i in range(5000)],
    },
}


def _preferences(unsubscribe_all: bool, **topics: str) -> dict[str, Any]:
    """SES list management's topic preferences of a reader."""
    statuses = [{"topicName": name, "subscriptionStatus": status} for name, status in topics.items()]
    return {"unsubscribeAll": unsubscribe_all, "topicSubscriptionStatus": statuses}


def _broken_record(name: str, *path: str, value: Any) -> dict[str, Any]:
    """SES sample ``name`` with the field at ``path`` set to ``value``."""
    record = ses_record(name)
    target = record
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return record


#: A certificate URL off SNS's hosts (``test_sns.py`` has many more).
FOREIGN_CERT_URL = CERT_URL.replace(".amazonaws.com/", ".amazonaws.com.evil.example/")


class SES(Webhook):
    """Amazon SES's events inside SNS's envelopes; SNS's own control messages are in test_ses.py."""

    name = "ses"
    module = ses
    samples = (
        Sample("bounce_transient", EventKind.BOUNCED_SOFT, READERS[1], _utc(2026, 11, 27, 14, 5, 3, 100000)),
        Sample("complaint", EventKind.COMPLAINED, READERS[2], _utc(2026, 11, 27, 16, 12, 44)),
        Sample("subscription", EventKind.UNSUBSCRIBED, READERS[3], _utc(2026, 11, 27, 18, 2, 11)),
        Sample(
            "notification_bounce",  # the older identity notifications carry no tags: no ids
            EventKind.BOUNCED_HARD,
            READERS[0],
            _utc(2026, 11, 27, 14, 0, 3, 669000),
            (None, None),
        ),
        Sample("delivery", EventKind.DELIVERED, READERS[4], _utc(2026, 11, 27, 14, 0, 4, 120000)),
        Sample("open", EventKind.OPENED, READERS[4], _utc(2026, 11, 27, 17, 20, 1)),
        Sample("click", EventKind.CLICKED, READERS[4], _utc(2026, 11, 27, 17, 21, 9)),
        Sample("send", EventKind.OTHER, READERS[4], _utc(2026, 11, 27, 14, 0, 2, 12000)),
        Sample("reject", EventKind.OTHER, READERS[4], _utc(2026, 11, 27, 14, 0, 2, 12000)),
        Sample("delivery_delay", EventKind.OTHER, READERS[1], _utc(2026, 11, 27, 14, 30)),
        Sample("rendering_failure", EventKind.OTHER, READERS[4], _utc(2026, 11, 27, 14, 0, 2, 12000)),
    )
    leaving = (
        # One SES message may report several recipients: an event each.
        _bounced("bounce_permanent", READERS[0], READERS[1]),
        _complained("complaint"),
        _unsubscribed("subscription"),
        _bounced("notification_bounce", READERS[0]),
    )
    soft_bounce = "bounce_transient"
    retried_attempt = "delivery_delay"
    click = "click"
    hard_bounce_detail: ClassVar[dict[str, Any]] = {
        "type": "Permanent",
        "subtype": "General",
        "status": "5.1.1",
    }
    unconfigured_log = "ses_topic_arns is empty"

    def settings(self, **webhooks: Any) -> Settings:
        return Settings(webhooks=WebhooksSettings(ses_topic_arns=(TOPIC,), **webhooks))

    def unconfigured_settings(self) -> Settings:
        return Settings()

    def verify(self, request: WebhookRequest, settings: Settings, environ: Mapping[str, str]) -> Verdict:
        return ses.verify(request, settings, sns.Certificates(FakeFetcher({CERT_URL: SNS_SIGNER.pem})))

    def window(self, settings: Settings) -> tuple[int, int] | None:
        tolerance = settings.webhooks.timestamp_tolerance
        return int(ses.SNS_RETRY_WINDOW.total_seconds()) + tolerance, tolerance

    def record(
        self,
        name: str,
        *,
        event_id: str | None = None,
        email: str | None = None,
        ids: Mapping[str, object] | None = None,
    ) -> Any:
        record = ses_record(name)
        if email is not None:
            for part in record.values():
                for key in ("bouncedRecipients", "complainedRecipients", "delayedRecipients"):
                    if isinstance(part, dict) and key in part:
                        part[key] = [{**part[key][0], "emailAddress": email}]
                if isinstance(part, dict) and "recipients" in part:
                    part["recipients"] = [email]
            record["mail"]["destination"] = [email]
        if ids is not None:
            record["mail"]["tags"] = {key: [value] for key, value in ids.items()}
        envelope = notification(record)
        if event_id is not None:
            envelope["MessageId"] = _message_id(event_id)
        return envelope

    def signed(self, record: Any, *, at: int | None = None) -> Request:
        when = dt.datetime.fromtimestamp(now_seconds() if at is None else at, dt.UTC)
        return {}, json.dumps(SNS_SIGNER.sign({**record, "Timestamp": timestamp(when)})).encode()

    def broken(self, record: Any) -> dict[str, Request]:
        good = json.loads(self.signed(record)[1])
        cases: dict[str, dict[str, Any]] = {
            "message altered": {**good, "Message": "{}"},
            "message id altered": {**good, "MessageId": "x-1"},
            "another key": STRANGER.sign(record),
            "another topic, signed by SNS": SNS_SIGNER.sign({**record, "TopicArn": OTHER_TOPIC}),
            "version 1 signature as version 2": {**good, "SignatureVersion": "2"},
            "certificate off SNS": SNS_SIGNER.sign({**record, "SigningCertURL": FOREIGN_CERT_URL}),
        }
        return {name: ({}, json.dumps(value).encode()) for name, value in cases.items()}

    def variants(self) -> dict[str, tuple[Any, EventKind]]:
        cases: dict[str, tuple[Any, EventKind]] = {}
        for bounce_type, kind in {
            "Permanent": EventKind.BOUNCED_HARD,
            "Transient": EventKind.BOUNCED_SOFT,
            "Undetermined": EventKind.OTHER,
            "SomethingNew": EventKind.OTHER,
            None: EventKind.OTHER,
        }.items():
            record = _broken_record("bounce_transient", "bounce", "bounceType", value=bounce_type)
            cases[f"bounceType {bounce_type}"] = (notification(record), kind)
        # No feedback type (most mailbox providers send none) is the reader pressing "spam"; a
        # report of a failed authentication or a virus, or a "not spam" vote, is no complaint.
        for feedback_type, kind in {
            "abuse": EventKind.COMPLAINED,
            "fraud": EventKind.COMPLAINED,
            "other": EventKind.COMPLAINED,
            None: EventKind.COMPLAINED,
            "not-spam": EventKind.OTHER,
            "virus": EventKind.OTHER,
            "auth-failure": EventKind.OTHER,
        }.items():
            record = _broken_record("complaint", "complaint", "complaintFeedbackType", value=feedback_type)
            cases[f"complaintFeedbackType {feedback_type}"] = (notification(record), kind)
        opted_in, opted_out = _preferences(False, weekly="OptIn"), _preferences(False, weekly="OptOut")
        for label, old, new, kind in (
            ("unsubscribe all", opted_in, _preferences(True, weekly="OptIn"), EventKind.UNSUBSCRIBED),
            ("opt out of our topic", opted_in, opted_out, EventKind.UNSUBSCRIBED),
            ("opt in", opted_out, opted_in, EventKind.OTHER),
            # An old opt-out of another topic is no new decision to leave.
            (
                "an old opt-out of another topic",
                _preferences(False, other="OptOut"),
                _preferences(False, other="OptOut", weekly="OptIn"),
                EventKind.OTHER,
            ),
        ):
            record = ses_record("subscription")
            record["subscription"].update(oldTopicPreferences=old, newTopicPreferences=new)
            cases[f"subscription: {label}"] = (notification(record), kind)
        return cases

    def malformed(self) -> list[bytes]:
        messages: list[dict[str, Any] | str] = [
            "not json",
            "",
            "[1, 2]",
            '"Bounce"',
            "{}",
            '{"eventType": 5, "mail": {}}',
            '{"eventType": "Bounce"}',
            '{"a":' * 3000 + "1" + "}" * 3000,
            _broken_record("bounce_permanent", "mail", value="reader0@example.org"),
            _broken_record("bounce_permanent", "bounce", value=None),
            _broken_record("bounce_permanent", "bounce", "bouncedRecipients", value=[]),
            _broken_record("bounce_permanent", "bounce", "bouncedRecipients", value="reader0@example.org"),
            _broken_record("bounce_permanent", "bounce", "bouncedRecipients", value=[{"emailAddress": 5}]),
            _broken_record(
                "bounce_permanent", "bounce", "bouncedRecipients", value=[{"emailAddress": "a@x.org"}] * 51
            ),
            _HUGE_BOUNCE,
            _broken_record("bounce_permanent", "bounce", "timestamp", value="yesterday"),
            _broken_record("bounce_permanent", "bounce", "timestamp", value=12),
            _broken_record("complaint", "complaint", "complainedRecipients", value=None),
            _broken_record("delivery", "delivery", "recipients", value=[None]),
            _broken_record("open", "mail", "destination", value={"to": "reader4@example.org"}),
            _broken_record("open", "mail", "tags", value=["delivery_id"]),
            _broken_record("click", "click", value="https://www.example.org/"),
            _broken_record("subscription", "subscription", "newTopicPreferences", value=None),
            _broken_record(
                "subscription", "subscription", "newTopicPreferences", "topicSubscriptionStatus", value="x"
            ),
            {"eventType": "Bounce", "mail": []},
        ]
        bodies = [json.dumps(notification(message)).encode() for message in messages]
        # Envelopes that are not SNS's shape, and an SNS message that carries no events.
        bodies += [
            json.dumps({**notification("x"), "Message": 5}).encode(),
            json.dumps({**notification("x"), "Timestamp": None}).encode(),
        ]
        return bodies

    def hostile(self) -> list[Request]:
        return [({}, self._resign(body)) for body in self.malformed()]

    @staticmethod
    def _resign(body: bytes) -> bytes:
        """``body`` signed by SNS where it is an envelope that can be signed, else as it is."""
        record = json.loads(body)
        try:
            return json.dumps(SNS_SIGNER.sign(record)).encode()
        except BadPayload:  # not an envelope: posted unsigned, refused before any signature
            return body


#: Every provider's fixture, by the name in ``/webhooks/{provider}``.
WEBHOOKS: dict[str, Webhook] = {hook.name: hook for hook in (Postmark(), SendGrid(), Mailgun(), SES())}

#: Foreign ``send_id``/``delivery_id`` values (a message we did not send through the ledger).
FOREIGN_IDS: list[object] = [
    "x",
    "-1",
    "0",
    "1e3",
    "",
    True,
    1.5,
    2**63,
    "9223372036854775808",  # past a BIGINT
    "9" * 40,
    "1" * 5000,  # past Python's int-from-string limit: was a 500
    None,
    [1],
    {"id": 1},
]

