"""SNS as the tests play it: a certificate made here, envelopes signed with its key the way SNS
signs them, and a certificate fetcher that serves it without any network."""

from __future__ import annotations

import base64
import datetime as dt
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from newsletter.events import sns

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks" / "ses"
REGION = "eu-west-1"
TOPIC = f"arn:aws:sns:{REGION}:123456789012:newsletter-events"
OTHER_TOPIC = f"arn:aws:sns:{REGION}:210987654321:someone-elses-events"
CERT_URL = f"https://sns.{REGION}.amazonaws.com/SimpleNotificationService-0123456789abcdef0123456789abcdef.pem"
SUBSCRIBE_URL = (
    f"https://sns.{REGION}.amazonaws.com/?Action=ConfirmSubscription&TopicArn={TOPIC}"
    "&Token=2336412f37fb687f5d51e6e2425dacbba9e1e4e5b7d2f0a1c3e5f7092b4d6f8a"
)


@dataclass(frozen=True)
class Signer:
    """An RSA key and a self-signed certificate for it, valid from ``not_before`` to ``not_after``."""

    key: rsa.RSAPrivateKey
    pem: bytes

    @classmethod
    def make(cls, not_before: dt.datetime | None = None, not_after: dt.datetime | None = None) -> Signer:
        now = dt.datetime.now(dt.UTC)
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "sns.amazonaws.com")])
        certificate = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before or now - dt.timedelta(days=1))
            .not_valid_after(not_after or now + dt.timedelta(days=365))
            .sign(key, hashes.SHA256())
        )
        return cls(key, certificate.public_bytes(serialization.Encoding.PEM))

    def sign(self, record: dict[str, Any]) -> dict[str, Any]:
        """``record`` with ``Signature`` set as SNS would, for its ``SignatureVersion``."""
        envelope = sns.parse_envelope(json.dumps({**record, "Signature": ""}).encode())
        digest = hashes.SHA1() if record["SignatureVersion"] == "1" else hashes.SHA256()
        signature = self.key.sign(sns.string_to_sign(envelope), padding.PKCS1v15(), digest)
        return {**record, "Signature": base64.b64encode(signature).decode()}


@dataclass
class FakeFetcher:
    """Serves certificates by URL and counts the fetches; an unknown URL is a failed fetch."""

    pems: dict[str, bytes]
    fetched: list[str] = field(default_factory=list)

    def __call__(self, url: str) -> bytes:
        self.fetched.append(url)
        if url not in self.pems:
            raise OSError("HTTP 404")
        return self.pems[url]


def ses_record(name: str, **changes: Any) -> dict[str, Any]:
    """An SES event record from ``tests/fixtures/webhooks/ses``."""
    record: dict[str, Any] = json.loads((SAMPLES / f"{name}.json").read_text())
    record.update(changes)
    return record


def timestamp(at: dt.datetime | None = None) -> str:
    """SNS's Timestamp format: ISO 8601 UTC with milliseconds and Z."""
    at = at or dt.datetime.now(dt.UTC)
    return at.strftime("%Y-%m-%dT%H:%M:%S.") + f"{at.microsecond // 1000:03d}Z"


def notification(
    message: dict[str, Any] | str,
    *,
    message_id: str = "6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b",
    topic: str = TOPIC,
    at: dt.datetime | None = None,
    version: str = "1",
    cert_url: str = CERT_URL,
    **extra: Any,
) -> dict[str, Any]:
    """An unsigned SNS Notification carrying ``message`` (an SES record, or any string)."""
    return {
        "Type": "Notification",
        "MessageId": message_id,
        "TopicArn": topic,
        "Message": message if isinstance(message, str) else json.dumps(message),
        "Timestamp": timestamp(at),
        "SignatureVersion": version,
        "Signature": "",
        "SigningCertURL": cert_url,
        "UnsubscribeURL": f"https://sns.{REGION}.amazonaws.com/?Action=Unsubscribe&SubscriptionArn={topic}:1",
        **extra,
    }


def confirmation(
    kind: str = "SubscriptionConfirmation",
    *,
    topic: str = TOPIC,
    subscribe_url: str = SUBSCRIBE_URL,
    version: str = "1",
    at: dt.datetime | None = None,
) -> dict[str, Any]:
    """An unsigned SNS (Un)SubscriptionConfirmation."""
    verb = "subscribe to" if kind == "SubscriptionConfirmation" else "unsubscribe from"
    return {
        "Type": kind,
        "MessageId": "165545c9-2a5c-472c-8df2-7ff2be2b3b1b",
        "Token": "2336412f37fb687f5d51e6e2425dacbba9e1e4e5b7d2f0a1c3e5f7092b4d6f8a",
        "TopicArn": topic,
        "Message": f"You have chosen to {verb} the topic {topic}.\nTo confirm, visit the SubscribeURL.",
        "SubscribeURL": subscribe_url,
        "Timestamp": timestamp(at),
        "SignatureVersion": version,
        "Signature": "",
        "SigningCertURL": CERT_URL,
    }
