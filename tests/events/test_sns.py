"""SNS's envelope and signature (AWS's documented algorithm, both versions); no database, no network."""

from __future__ import annotations

import contextlib
import datetime as dt
import http.server
import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from newsletter.events import sns
from newsletter.events.model import BadPayload, Verdict
from tests.events.sns_signing import (
    CERT_URL,
    SUBSCRIBE_URL,
    TOPIC,
    FakeFetcher,
    Signer,
    confirmation,
    notification,
)

NOW = dt.datetime.now(dt.UTC)


def envelope_of(record: dict[str, Any]) -> sns.Envelope:
    return sns.parse_envelope(json.dumps(record).encode())


def verified(record: dict[str, Any], pem: bytes, now: dt.datetime = NOW) -> Verdict:
    certificates = sns.Certificates(FakeFetcher({record["SigningCertURL"]: pem}))
    return sns.verify_signature(envelope_of(record), now, certificates)


def test_string_to_sign_of_a_notification() -> None:
    record = notification("hello\nworld", at=dt.datetime(2026, 11, 27, 14, 0, 5, 123000, tzinfo=dt.UTC))
    assert sns.string_to_sign(envelope_of(record)) == (
        b"Message\nhello\nworld\n"
        b"MessageId\n6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b\n"
        b"Timestamp\n2026-11-27T14:00:05.123Z\n"
        b"TopicArn\n" + TOPIC.encode() + b"\n"
        b"Type\nNotification\n"
    )
    # Subject, when there is one, sits between MessageId and Timestamp; UnsubscribeURL is unsigned.
    with_subject = sns.string_to_sign(envelope_of({**record, "Subject": "Bounce"}))
    assert b"MessageId\n6f1a2b3c-4d5e-4f60-8a7b-9c0d1e2f3a4b\nSubject\nBounce\nTimestamp\n" in with_subject
    no_subject = sns.string_to_sign(envelope_of({**record, "Subject": None}))
    assert no_subject == sns.string_to_sign(envelope_of(record))


def test_string_to_sign_of_a_confirmation() -> None:
    record = confirmation()
    assert sns.string_to_sign(envelope_of(record)).decode() == (
        f"Message\nYou have chosen to subscribe to the topic {TOPIC}.\nTo confirm, visit the SubscribeURL.\n"
        "MessageId\n165545c9-2a5c-472c-8df2-7ff2be2b3b1b\n"
        f"SubscribeURL\n{SUBSCRIBE_URL}\n"
        f"Timestamp\n{record['Timestamp']}\n"
        f"Token\n{record['Token']}\n"
        f"TopicArn\n{TOPIC}\n"
        "Type\nSubscriptionConfirmation\n"
    )


@pytest.mark.parametrize("version", ["1", "2"])
def test_both_signature_versions_verify(signer: Signer, version: str) -> None:
    for record in (notification({"eventType": "Send"}, version=version), confirmation(version=version)):
        assert verified(signer.sign(record), signer.pem).trusted


def test_a_version_1_signature_is_not_a_version_2_one(signer: Signer) -> None:
    record = signer.sign(notification("x", version="1"))
    assert not verified({**record, "SignatureVersion": "2"}, signer.pem).trusted


@pytest.mark.parametrize(
    "change",
    [
        {"Message": '{"eventType": "Bounce"}'},
        {"MessageId": "00000000-0000-4000-8000-000000000000"},
        {"TopicArn": "arn:aws:sns:eu-west-1:123456789012:other"},
        {"Timestamp": "2026-11-27T14:00:05.124Z"},
        {"Subject": "added"},
        {"Type": "SubscriptionConfirmation", "SubscribeURL": SUBSCRIBE_URL, "Token": "t"},
    ],
)
def test_any_signed_field_altered_fails(signer: Signer, change: dict[str, str]) -> None:
    record = signer.sign(notification('{"eventType": "Send"}'))
    assert not verified({**record, **change}, signer.pem).trusted


def test_unsigned_fields_may_change(signer: Signer) -> None:
    record = signer.sign(notification("x"))
    assert verified({**record, "UnsubscribeURL": "https://elsewhere.example/"}, signer.pem).trusted


def test_another_certificate_fails(signer: Signer, stranger: Signer) -> None:
    assert not verified(stranger.sign(notification("x")), signer.pem).trusted
    assert not verified(signer.sign(notification("x")), stranger.pem).trusted


def test_a_certificate_outside_its_validity_fails() -> None:
    expired = Signer.make(NOW - dt.timedelta(days=30), NOW - dt.timedelta(days=1))
    verdict = verified(expired.sign(notification("x")), expired.pem)
    assert not verdict.trusted and "not valid now" in verdict.reason
    future = Signer.make(NOW + dt.timedelta(days=1), NOW + dt.timedelta(days=30))
    assert not verified(future.sign(notification("x")), future.pem).trusted


@pytest.mark.parametrize(
    "pem",
    [b"", b"not a certificate", b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"],
)
def test_what_is_not_a_certificate_fails(signer: Signer, pem: bytes) -> None:
    assert not verified(signer.sign(notification("x")), pem).trusted


@pytest.mark.parametrize(
    "url",
    [
        "http://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.eu-west-1.amazonaws.com.evil.example/SimpleNotificationService-abc.pem",
        "https://evil.example/sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://amazonaws.com/SimpleNotificationService-abc.pem",
        "https://s3.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.eu-west-1.amazonaws.com@evil.example/SimpleNotificationService-abc.pem",
        "https://evil.example@sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://user:pw@sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.eu-west-1.amazonaws.com:8443/SimpleNotificationService-abc.pem",
        "https://sns.eu-west-1.amazonaws.com:443/SimpleNotificationService-abc.pem",
        "https://SNS.EU-WEST-1.AMAZONAWS.COM/SimpleNotificationService-abc.pem",
        "https://sns.eu-west-1.amazonaws.com./SimpleNotificationService-abc.pem",
        "https://xsns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.evil.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.pem.txt",
        "https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-abc.crt",
        "https://sns.eu-west-1.amazonaws.com/../../evil.example/x.pem",
        "https://sns.eu-west-1.amazonaws.com/a/b.pem",
        "https://sns.eu-west-1.amazonaws.com/%2e%2e/x.pem",
        "https://sns.eu-west-1.amazonaws.com/x.pem?u=https://evil.example/",
        "https://sns.eu-west-1.amazonaws.com/x.pem#frag",
        "https://sns.eu-west-1.amazonaws.com\\@evil.example/x.pem",
        "https://sns.eu-west-1.amazonaws.com/x .pem",
        "https://sns.eu-west-1.amazonaws.com/сертификат.pem",
        "//sns.eu-west-1.amazonaws.com/x.pem",
        "https:///x.pem",
        "file:///etc/ssl/x.pem",
        "https://[::1]/x.pem",
        "",
        "https://sns.eu-west-1.amazonaws.com/" + "a" * 3000 + ".pem",
    ],
)
def test_a_certificate_url_off_sns_is_never_fetched(signer: Signer, url: str) -> None:
    assert not sns.is_certificate_url(url)
    fetcher = FakeFetcher({url: signer.pem})
    record = signer.sign(notification("x", cert_url=url))
    verdict = sns.verify_signature(envelope_of(record), NOW, sns.Certificates(fetcher))
    assert not verdict.trusted and fetcher.fetched == []


@pytest.mark.parametrize(
    "url",
    [
        CERT_URL,
        "https://sns.us-east-1.amazonaws.com/SimpleNotificationService-9c6465fa7f48f5cacd23014631ec1136.pem",
        "https://sns.us-gov-west-1.amazonaws.com/SimpleNotificationService-abc.pem",
        "https://sns.ap-southeast-2.amazonaws.com/SimpleNotificationService-abc.pem",
    ],
)
def test_sns_certificate_urls(url: str) -> None:
    assert sns.is_certificate_url(url)


def test_subscribe_urls() -> None:
    assert sns.is_subscribe_url(SUBSCRIBE_URL, TOPIC)
    other = "arn:aws:sns:eu-west-1:123456789012:other"
    assert not sns.is_subscribe_url(SUBSCRIBE_URL, other)
    for url in (
        SUBSCRIBE_URL.replace("https://", "http://"),
        SUBSCRIBE_URL.replace("amazonaws.com/", "amazonaws.com.evil.example/"),
        SUBSCRIBE_URL.replace("ConfirmSubscription", "Unsubscribe"),
        SUBSCRIBE_URL + "&Action=Publish",
        SUBSCRIBE_URL.replace("amazonaws.com/", "amazonaws.com/x"),
        SUBSCRIBE_URL.replace(f"TopicArn={TOPIC}", f"TopicArn={other}"),
        SUBSCRIBE_URL + "#x",
        "https://sns.eu-west-1.amazonaws.com/",
        "",
    ):
        assert not sns.is_subscribe_url(url, TOPIC), url


def test_certificates_are_fetched_once_per_url_and_the_cache_is_bounded(signer: Signer) -> None:
    urls = [CERT_URL.replace(".pem", f"{i}.pem") for i in range(4)]
    fetcher = FakeFetcher(dict.fromkeys(urls, signer.pem))
    certificates = sns.Certificates(fetcher, capacity=2)
    for _ in range(3):
        certificates.get(urls[0])
    assert fetcher.fetched == [urls[0]]
    certificates.get(urls[1])
    certificates.get(urls[0])  # the most recently used stays
    certificates.get(urls[2])  # urls[1] goes
    certificates.get(urls[0])
    certificates.get(urls[1])
    assert fetcher.fetched == [urls[0], urls[1], urls[2], urls[1]]


def test_a_failed_fetch_is_refused_and_not_cached(signer: Signer) -> None:
    fetcher = FakeFetcher({})
    certificates = sns.Certificates(fetcher)
    record = signer.sign(notification("x"))
    verdict = sns.verify_signature(envelope_of(record), NOW, certificates)
    assert not verdict.trusted and "HTTP 404" in verdict.reason
    fetcher.pems[CERT_URL] = signer.pem
    assert sns.verify_signature(envelope_of(record), NOW, certificates).trusted


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"\xff\xfe\x00binary",
        b"[]",
        b'"Notification"',
        b"{}",
        b'{"Type": "Publish"}',
        b'{"Type": ["Notification"]}',
        b'{"Type": {"a": 1}}',
        b'{"a":' * 3000 + b"1" + b"}" * 3000,
        json.dumps({**notification("x"), "Message": {"eventType": "Bounce"}}).encode(),
        json.dumps({**notification("x"), "Message": None}).encode(),
        json.dumps({**notification("x"), "MessageId": 5}).encode(),
        json.dumps({**notification("x"), "MessageId": "../../x"}).encode(),
        json.dumps({**notification("x"), "MessageId": "a" * 101}).encode(),
        json.dumps({**notification("x"), "Timestamp": "yesterday"}).encode(),
        json.dumps({**notification("x"), "SignatureVersion": "3"}).encode(),
        json.dumps({**notification("x"), "SignatureVersion": 1}).encode(),
        json.dumps({**notification("x"), "Signature": "***"}).encode(),
        json.dumps({**notification("x"), "SigningCertURL": ["https://sns"]}).encode(),
        json.dumps({**notification("x"), "Subject": 7}).encode(),
        json.dumps({k: v for k, v in confirmation().items() if k != "SubscribeURL"}).encode(),
        json.dumps({k: v for k, v in notification("x").items() if k != "TopicArn"}).encode(),
    ],
)
def test_what_is_not_an_envelope_is_a_bad_payload(body: bytes) -> None:
    with pytest.raises(BadPayload):
        sns.parse_envelope(body)


_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
_JSON = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=12), inner, max_size=4),
    max_leaves=8,
)
_UNSIGNED = ("Subject", "Signature", "SignatureVersion", "SigningCertURL")
_FIELDS = st.sampled_from([*sns.SIGNED_FIELDS["SubscriptionConfirmation"], *_UNSIGNED])


@hsettings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from([notification("x"), confirmation()]), st.dictionaries(_FIELDS, _JSON, max_size=4))
def test_any_json_in_any_field_is_an_envelope_or_a_bad_payload(
    record: dict[str, Any], changes: dict[str, Any]
) -> None:
    with contextlib.suppress(BadPayload):
        sns.parse_envelope(json.dumps({**record, **changes}).encode())


class _Handler(http.server.BaseHTTPRequestHandler):
    """Loopback stand-in for SNS's web server: ``/cert.pem``, ``/huge.pem``, ``/moved``, ``/gone``."""

    pem = b""
    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        if self.path == "/moved":
            self.send_response(302)
            self.send_header("Location", "/cert.pem")
            self.end_headers()
            return
        body = {
            "/cert.pem": self.pem,
            "/huge.pem": b"x" * (sns.CERTIFICATE_MAX_BYTES + 1),
            "/?Action=ConfirmSubscription": b"<ConfirmSubscriptionResponse/>",
        }.get(self.path)
        self.send_response(404 if body is None else 200)
        self.end_headers()
        self.wfile.write(body or b"")

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def loopback(signer: Signer) -> Iterator[str]:
    _Handler.pem = signer.pem
    _Handler.seen.clear()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_certificate_over_http(loopback: str, signer: Signer) -> None:
    assert sns.fetch_certificate(f"{loopback}/cert.pem") == signer.pem
    with pytest.raises(OSError, match="more than"):
        sns.fetch_certificate(f"{loopback}/huge.pem")
    with pytest.raises(OSError, match="HTTP 404"):
        sns.fetch_certificate(f"{loopback}/gone")
    with pytest.raises(OSError, match="HTTP 302"):  # a redirect is not followed anywhere
        sns.fetch_certificate(f"{loopback}/moved")
    assert _Handler.seen == ["/cert.pem", "/huge.pem", "/gone", "/moved"]
    with pytest.raises(OSError):
        sns.fetch_certificate("http://127.0.0.1:9/cert.pem")  # nobody listening


def test_confirm_subscription_over_http(loopback: str) -> None:
    sns.confirm_subscription(f"{loopback}/?Action=ConfirmSubscription")
    assert _Handler.seen == ["/?Action=ConfirmSubscription"]
    with pytest.raises(OSError):
        sns.confirm_subscription(f"{loopback}/gone")
    with pytest.raises(OSError):
        sns.confirm_subscription("http://127.0.0.1:9/")


def test_receiving_imports_neither_cryptography_nor_httpx_until_a_message_comes() -> None:
    """``newsletter serve`` and the CLI start without them: they load on the first signature."""
    code = "import sys, newsletter.web.app; print(sorted({'cryptography', 'httpx'} & set(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert result.stdout.strip() == "[]"
