"""Amazon SNS's HTTP(S) deliveries: the envelope, and the proof that SNS signed it.

SNS posts one JSON envelope per request. Its ``Type`` is ``Notification`` (a published message,
in ``Message``), ``SubscriptionConfirmation`` (visit ``SubscribeURL`` to start receiving) or
``UnsubscribeConfirmation``. SNS signs a canonical string of some of the envelope's fields, RSA
PKCS#1 v1.5 with SHA-1 (``SignatureVersion`` 1) or SHA-256 (2), with the key of a certificate it
serves at ``SigningCertURL``. The certificate is trusted because it is fetched over verified TLS
from an SNS host (``sns.<region>.amazonaws.com``), so that URL is checked before anything is
fetched; a certificate is fetched once per URL and kept in a small in-memory cache.

A valid signature proves only that SNS sent the message: anybody can have SNS sign messages of
their own topic. Whoever uses this module checks ``TopicArn`` (``events/ses.py``).
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import orjson

from newsletter.events.model import BadPayload, Verdict

if TYPE_CHECKING:
    from cryptography.x509 import Certificate

__all__ = [
    "CERTIFICATES",
    "Certificates",
    "Envelope",
    "confirm_subscription",
    "fetch_certificate",
    "is_certificate_url",
    "is_subscribe_url",
    "parse_envelope",
    "string_to_sign",
    "verify_signature",
]

log = logging.getLogger(__name__)

NOTIFICATION = "Notification"
SUBSCRIPTION_CONFIRMATION = "SubscriptionConfirmation"
UNSUBSCRIBE_CONFIRMATION = "UnsubscribeConfirmation"

#: The fields each message type signs, in the order of the string to sign (AWS's documented
#: algorithm: each as its name, a newline, its value, a newline). ``Subject`` only when present.
_CONFIRMATION_FIELDS = ("Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type")
SIGNED_FIELDS = {
    NOTIFICATION: ("Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"),
    SUBSCRIPTION_CONFIRMATION: _CONFIRMATION_FIELDS,
    UNSUBSCRIBE_CONFIRMATION: _CONFIRMATION_FIELDS,
}
_OPTIONAL_FIELDS = frozenset({"Subject"})
_HASHES = {"1": "SHA1", "2": "SHA256"}

#: SNS's own hosts: ``sns.<region>.amazonaws.com``, nothing before, after or around it.
_SNS_HOST = re.compile(r"sns\.[a-z]{2}(?:-[a-z]+)+-[0-9]{1,2}\.amazonaws\.com")
#: A certificate's path: one segment ending .pem (SNS's is ``/SimpleNotificationService-<hex>.pem``).
_CERTIFICATE_PATH = re.compile(r"/[A-Za-z0-9_-]{1,200}\.pem")
_MESSAGE_ID = re.compile(r"[A-Za-z0-9-]{1,100}")
_URL_MAX = 2048
#: A certificate is a couple of KB; anything far larger is not one.
CERTIFICATE_MAX_BYTES = 64 * 1024
FETCH_TIMEOUT = 5.0


@dataclass(frozen=True)
class Envelope:
    """The SNS envelope of one POST, its fields checked to be the strings SNS sends."""

    type: str
    message_id: str
    topic_arn: str
    message: str
    timestamp: dt.datetime
    signature_version: str
    signature: bytes
    signing_cert_url: str
    #: The signed fields of this type, as sent: the string to sign is built from these.
    signed: Mapping[str, str]

    @property
    def subscribe_url(self) -> str:
        return self.signed.get("SubscribeURL", "")


def parse_envelope(body: bytes) -> Envelope:
    """The envelope of a POST; :class:`BadPayload` for anything but SNS's shape."""
    try:
        record = orjson.loads(body)
    except (orjson.JSONDecodeError, RecursionError) as exc:
        raise BadPayload(f"not JSON: {exc}") from None
    if not isinstance(record, dict):
        raise BadPayload("expected a JSON object")
    kind = record.get("Type")
    if not isinstance(kind, str) or kind not in SIGNED_FIELDS:
        raise BadPayload("Type is not an SNS message type")
    fields = ("SignatureVersion", "Signature", "SigningCertURL", *SIGNED_FIELDS[kind])
    values: dict[str, str] = {}
    for name in fields:
        value = record.get(name)
        if value is None and name in _OPTIONAL_FIELDS:
            continue
        if not isinstance(value, str):
            raise BadPayload(f"{name} is not a string")
        values[name] = value
    if not _MESSAGE_ID.fullmatch(values["MessageId"]):
        raise BadPayload("MessageId is not an SNS message id")
    if values["SignatureVersion"] not in _HASHES:
        raise BadPayload("SignatureVersion is neither 1 nor 2")
    try:
        signature = base64.b64decode(values["Signature"], validate=True)
    except (binascii.Error, ValueError):
        raise BadPayload("Signature is not base64") from None
    return Envelope(
        type=kind,
        message_id=values["MessageId"],
        topic_arn=values["TopicArn"],
        message=values["Message"],
        timestamp=_timestamp(values["Timestamp"]),
        signature_version=values["SignatureVersion"],
        signature=signature,
        signing_cert_url=values["SigningCertURL"],
        signed={name: values[name] for name in SIGNED_FIELDS[kind] if name in values},
    )


def string_to_sign(envelope: Envelope) -> bytes:
    """What SNS signed: each signed field present, in order, as ``name\\nvalue\\n``."""
    names = [name for name in SIGNED_FIELDS[envelope.type] if name in envelope.signed]
    return "".join(f"{name}\n{envelope.signed[name]}\n" for name in names).encode()


def _sns_url(url: str) -> tuple[str, str] | None:
    """``(path, query)`` of an https URL on an SNS host, or None: no user, port, fragment, or
    anything but plain ASCII that a lenient parser might read differently."""
    if len(url) > _URL_MAX or not url.isascii() or any(c.isspace() or c == "\\" for c in url):
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    if parts.scheme != "https" or parts.fragment or not _SNS_HOST.fullmatch(parts.netloc):
        return None
    return parts.path, parts.query


def is_certificate_url(url: str) -> bool:
    """Whether ``SigningCertURL`` is a certificate on an SNS host, so worth fetching."""
    where = _sns_url(url)
    return where is not None and not where[1] and bool(_CERTIFICATE_PATH.fullmatch(where[0]))


def is_subscribe_url(url: str, topic_arn: str) -> bool:
    """Whether ``SubscribeURL`` confirms a subscription to ``topic_arn`` on an SNS host, and does
    nothing else: a GET of it must not become any other SNS action."""
    where = _sns_url(url)
    if where is None or where[0] != "/":
        return False
    query = parse_qs(where[1], keep_blank_values=True)
    return query.get("Action") == ["ConfirmSubscription"] and query.get("TopicArn") == [topic_arn]


def fetch_certificate(url: str) -> bytes:
    """The PEM at ``url``: a short timeout, no redirects, at most :data:`CERTIFICATE_MAX_BYTES`."""
    import httpx

    chunks: list[bytes] = []
    size = 0
    try:
        with httpx.stream("GET", url, timeout=FETCH_TIMEOUT, follow_redirects=False) as response:
            if response.status_code != 200:
                raise OSError(f"HTTP {response.status_code}")
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > CERTIFICATE_MAX_BYTES:
                    raise OSError(f"more than {CERTIFICATE_MAX_BYTES} bytes")
                chunks.append(chunk)
    except httpx.HTTPError as exc:
        raise OSError(str(exc) or type(exc).__name__) from exc
    return b"".join(chunks)


def confirm_subscription(url: str) -> None:
    """GET ``SubscribeURL``, which is how SNS expects an endpoint to confirm a subscription;
    ``OSError`` if SNS does not answer 2xx."""
    import httpx

    try:
        httpx.get(url, timeout=FETCH_TIMEOUT, follow_redirects=False).raise_for_status()
    except httpx.HTTPError as exc:
        raise OSError(str(exc) or type(exc).__name__) from exc


class Certificates:
    """Signing certificates by URL: fetched once, kept (at most ``capacity``, least recently used
    dropped). SNS has one certificate per region at a time, so a few entries hold them all, and a
    stranger's valid SNS URLs cannot grow the cache without bound. Safe across worker threads."""

    def __init__(self, fetch: Callable[[str], bytes] | None = None, capacity: int = 16) -> None:
        self._fetch = fetch
        self._capacity = capacity
        self._cache: OrderedDict[str, Certificate] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, url: str) -> Certificate:
        """The certificate at ``url`` (a checked SNS URL); ``OSError`` if it cannot be fetched,
        ``ValueError`` if what came is no PEM certificate. Fetched outside the lock: a slow fetch
        does not hold up the other URLs."""
        with self._lock:
            if url in self._cache:
                self._cache.move_to_end(url)
                return self._cache[url]
        from cryptography import x509

        pem = (self._fetch or fetch_certificate)(url)
        certificate = x509.load_pem_x509_certificate(pem)
        with self._lock:
            self._cache[url] = certificate
            self._cache.move_to_end(url)
            while len(self._cache) > self._capacity:
                self._cache.popitem(last=False)
        return certificate


#: The process's certificates; tests replace it with one whose fetcher serves their own.
CERTIFICATES = Certificates()


def verify_signature(envelope: Envelope, now: dt.datetime, certificates: Certificates) -> Verdict:
    """Whether SNS signed ``envelope`` with a certificate valid ``now``."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    url = envelope.signing_cert_url
    if not is_certificate_url(url):
        return Verdict(False, f"SigningCertURL is not a certificate on an SNS host: {url[:200]!r}")
    try:
        certificate = certificates.get(url)
    except (OSError, ValueError) as exc:
        return Verdict(False, f"no certificate from {url}: {exc}")
    if not certificate.not_valid_before_utc <= now <= certificate.not_valid_after_utc:
        return Verdict(False, f"the certificate at {url} is not valid now")
    key = certificate.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        return Verdict(False, "the certificate's key is not RSA")
    digest = hashes.SHA1() if _HASHES[envelope.signature_version] == "SHA1" else hashes.SHA256()
    try:
        key.verify(envelope.signature, string_to_sign(envelope), padding.PKCS1v15(), digest)
    except InvalidSignature:
        return Verdict(False, "bad signature")
    return Verdict(True)


def _timestamp(value: str) -> dt.datetime:
    try:
        parsed = dt.datetime.fromisoformat(value)
    except ValueError:
        raise BadPayload(f"bad Timestamp {value[:40]!r}") from None
    return parsed.replace(tzinfo=dt.UTC) if parsed.tzinfo is None else parsed.astimezone(dt.UTC)
