"""One fixture per HTTP provider for the adapter contract (``test_adapter_contract.py``).

A :class:`Provider` says how to make the adapter (against the fake ESP, or on a scripted
transport), and how the provider differs where the contract lets it: its limit, how its ids and
its record lines look, how it words a refusal, what it refuses a recipient for, where the body
travels. Adding a provider to the contract is one more entry in :data:`PROVIDERS`.

SMTP is not here: it is a dialogue per message with a real SMTP server (``test_smtp.py``), with
none of the HTTP failures (status codes, Retry-After, a request that may or may not have arrived)
that the contract is about.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import httpx

from newsletter.delivery.esp.base import Adapter, Outcome, Outgoing, Recipient
from newsletter.delivery.esp.mailgun import MailgunAdapter
from newsletter.delivery.esp.postmark import PostmarkAdapter
from newsletter.delivery.esp.sendgrid import SendGridAdapter
from newsletter.delivery.esp.ses import TEMPLATES_PATH, SesAdapter
from newsletter.devtools.fake_esp import FakeESP
from tests.delivery.conftest import make_recipient

Handler = Callable[[httpx.Request], httpx.Response]

#: The key a whole send's fake takes (every provider's secret in the environment).
KEY = "AKIDWHOLESEND"
DOMAIN = "mg.example.org"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
REGION = "eu-west-1"


def _transport(base_url: str, handler: Handler) -> httpx.Client:
    return httpx.Client(base_url=base_url, transport=httpx.MockTransport(handler))


def _ses_scripted(handler: Handler) -> SesAdapter:
    """SES on a mock transport that makes templates and hands sends to ``handler``."""

    def route(request: httpx.Request) -> httpx.Response:
        if request.url.path.startswith(TEMPLATES_PATH):
            return httpx.Response(200, json={})
        return handler(request)

    client = _transport("https://email.eu-west-1.amazonaws.test", route)
    return SesAdapter("AKIDEXAMPLE", SECRET, REGION, client=client)


def _bad_address(fake: FakeESP) -> list[Recipient]:
    """The middle recipient's address is not one (the provider refuses it, not a fault)."""
    return [make_recipient(0), make_recipient(1, email="not-an-address"), make_recipient(2)]


def _inactive(fake: FakeESP) -> list[Recipient]:
    fake.set_faults(inactive=["reader1@example.com"])
    return [make_recipient(i) for i in range(3)]


def _rejected(fake: FakeESP) -> list[Recipient]:
    fake.set_faults(statuses={"READER1@example.com": "MESSAGE_REJECTED"})  # matched without case
    return [make_recipient(i) for i in range(3)]


def _message_headers(message: Outgoing, recipient: Recipient) -> dict[str, str]:
    return {**message.headers, **recipient.headers}


@dataclass(frozen=True)
class Provider:
    """What the contract needs to know of one provider."""

    name: str
    #: The adapter against the fake: ``make(key, base_url, timeout)``.
    make: Callable[[str, str, float], Adapter]
    #: The adapter on a mock transport answering with ``handler``.
    scripted: Callable[[Handler], Adapter]
    #: Recipients per batch, and sending requests a full batch takes.
    limit: int
    requests_per_full_batch: int = 1
    #: One message id per request (the record's ids are it plus ``.`` and the place), not per recipient.
    shared_id: bool = False
    #: What the fake answers a batch over the limit that the adapter was wrongly let send (each
    #: recipient failed with it); None where the adapter splits such a batch itself.
    over_limit_refusal: str | None = None
    #: The ``retry_after`` of a 429 sent with ``Retry-After: 7``, and of a 503 with 2.5.
    retry_after_429: float | None = 7
    retry_after_503: float | None = 2.5
    #: What the error of a 429 says, and of a refused key (a pattern: 401, or SES's 403 and why).
    rate_limited: str = "429"
    auth_error: str = "401"
    #: A wrong key for the fake.
    wrong_key: str = "wrong-key"
    #: Sets up the refusal of the middle one of three recipients; its outcomes and error.
    refusal: Callable[[FakeESP], list[Recipient]] = _bad_address
    refused: tuple[Outcome, Outcome, Outcome] = (Outcome.ACCEPTED, Outcome.FAILED, Outcome.ACCEPTED)
    refused_error: str = ""
    #: A refused request (a response) and the error every recipient fails with.
    refused_requests: tuple[tuple[httpx.Response, str], ...] = ()
    #: Answers no retry can fix: the send stops.
    fatal: tuple[httpx.Response, ...] = (httpx.Response(404, text="nope"), httpx.Response(413, text="nope"))
    #: The record's field holding the send and delivery ids, and the headers each message carries.
    ids_field: str = "metadata"
    headers: Callable[[Outgoing, Recipient], dict[str, str]] = _message_headers
    #: Where the HTML body travels: once per send (a template), once per request, once per message.
    body_travels: Literal["send", "request", "message"] = "request"
    #: A whole ``newsletter send``: the environment choosing this provider (with the fake's key,
    #: :data:`KEY`), how many subscribers, and what else its record must show (or None).
    env: dict[str, str] = field(default_factory=dict)
    audience: int = 3_000
    check_send: Callable[[list[dict[str, Any]], dict[str, int]], None] | None = None


def _postmark(templates: bool) -> Provider:
    def make(key: str, url: str, timeout: float) -> Adapter:
        return PostmarkAdapter(key, base_url=url, templates=templates, timeout=timeout)

    def scripted(handler: Handler) -> Adapter:
        return PostmarkAdapter("key", templates=False, client=_transport("https://postmark.test", handler))

    def headers(message: Outgoing, recipient: Recipient) -> dict[str, str]:
        # The Message-ID is Postmark's to set; ours goes as the record's metadata only.
        return {**message.headers, "List-Unsubscribe": recipient.headers["List-Unsubscribe"]}

    invalid = {"ErrorCode": 300, "Message": "Invalid email request"}
    return Provider(
        name="postmark-templates" if templates else "postmark-plain",
        make=make,
        scripted=scripted,
        limit=500,
        requests_per_full_batch=1 if templates else 10,  # full bodies go as requests of 50
        refusal=_inactive,
        refused_error="ErrorCode 406",
        refused_requests=((httpx.Response(422, json=invalid), "ErrorCode 300: Invalid email request"),),
        headers=headers,
        body_travels="send" if templates else "message",
        env={
            "NEWSLETTER_ESP_PROVIDER": "postmark",
            "NEWSLETTER_ESP_TEMPLATES": "true" if templates else "false",
            "POSTMARK_TOKEN": KEY,
        },
    )


def _sendgrid() -> Provider:
    def make(key: str, url: str, timeout: float) -> Adapter:
        return SendGridAdapter(key, base_url=url, timeout=timeout)

    def scripted(handler: Handler) -> Adapter:
        return SendGridAdapter("key", client=_transport("https://api.sendgrid.test", handler))

    errors = {
        "errors": [{"message": "The from email does not contain a valid address.", "field": "from.email"}]
    }
    return Provider(
        name="sendgrid",
        make=make,
        scripted=scripted,
        limit=1000,
        shared_id=True,
        over_limit_refusal="limited to 1000 personalizations",
        # One bad address refuses the whole request: that one fails, the others wait for the next.
        refused=(Outcome.RETRY, Outcome.FAILED, Outcome.RETRY),
        refused_error="Does not contain a valid address. (personalizations.1.to.0.email)",
        refused_requests=(
            (
                httpx.Response(400, json=errors),
                "The from email does not contain a valid address. (from.email)",
            ),
        ),
        ids_field="custom_args",
        env={"NEWSLETTER_ESP_PROVIDER": "sendgrid", "SENDGRID_API_KEY": KEY},
    )


def _mailgun() -> Provider:
    def make(key: str, url: str, timeout: float) -> Adapter:
        return MailgunAdapter(key, DOMAIN, base_url=url, timeout=timeout)

    def scripted(handler: Handler) -> Adapter:
        return MailgunAdapter("key", DOMAIN, client=_transport("https://api.mailgun.test", handler))

    def headers(message: Outgoing, recipient: Recipient) -> dict[str, str]:
        return {"Reply-To": "editors@example.org", **message.headers, **recipient.headers}

    refused = "'from' parameter is not a valid address. please check documentation"
    return Provider(
        name="mailgun",
        make=make,
        scripted=scripted,
        limit=1000,
        shared_id=True,
        over_limit_refusal="Too many recipients",
        # Mailgun refuses the whole request and names no recipient: every one fails.
        refused=(Outcome.FAILED, Outcome.FAILED, Outcome.FAILED),
        refused_error="not a valid address",
        refused_requests=((httpx.Response(400, json={"message": refused}), refused),),
        headers=headers,
        env={"NEWSLETTER_ESP_PROVIDER": "mailgun", "NEWSLETTER_ESP_DOMAIN": DOMAIN, "MAILGUN_API_KEY": KEY},
    )


def _ses_send(entries: list[dict[str, Any]], stats: dict[str, int]) -> None:
    assert "ses_rendering_failures" not in stats
    assert stats["ses_templates_created"] + stats.get("ses_templates_updated", 0) >= 1
    assert {entry["configuration_set"] for entry in entries} == {"newsletter-events"}
    one = next(entry for entry in entries if entry["recipient"] == "reader7@example.org")
    assert one["to"] == ['"Reader {{evil}} <7>" <reader7@example.org>']  # a name is only a value


def _ses() -> Provider:
    def make(key: str, url: str, timeout: float) -> Adapter:
        return SesAdapter(key, SECRET, REGION, base_url=url, timeout=timeout)

    def headers(message: Outgoing, recipient: Recipient) -> dict[str, str]:
        # The Message-ID is SES's to set; ours goes as a message tag.
        return {**message.headers, "List-Unsubscribe": recipient.headers["List-Unsubscribe"]}

    def refusal(kind: str, status: int = 400) -> tuple[httpx.Response, str]:
        answer = httpx.Response(
            status, json={"message": "Illegal address"}, headers={"x-amzn-ErrorType": kind}
        )
        return answer, f"{kind}: Illegal address"

    return Provider(
        name="ses",
        make=make,
        scripted=_ses_scripted,
        limit=500,
        requests_per_full_batch=10,  # SendBulkEmail takes 50 destinations: a batch is ten requests
        # SES names no wait: the engine's backoff applies.
        retry_after_429=None,
        retry_after_503=None,
        rate_limited="TooManyRequests",
        auth_error="403: UnrecognizedClientException: The security token included in the request is invalid",
        refusal=_rejected,
        refused_error="MESSAGE_REJECTED",
        refused_requests=(refusal("BadRequestException"), refusal("MessageRejected")),
        # A 404 means a template to make again (test_ses.py); what stops the send is SES's own list.
        fatal=(
            httpx.Response(
                413, json={"message": "nope"}, headers={"x-amzn-ErrorType": "RequestEntityTooLarge"}
            ),
        ),
        ids_field="tags",
        headers=headers,
        body_travels="send",
        env={
            "NEWSLETTER_ESP_PROVIDER": "ses",
            "NEWSLETTER_ESP_REGION": REGION,
            "NEWSLETTER_ESP_CONFIGURATION_SET": "newsletter-events",
            "AWS_ACCESS_KEY_ID": KEY,
            "AWS_SECRET_ACCESS_KEY": SECRET,
        },
        audience=20_000,  # 40 batches of 500, 400 requests of 50, on four workers
        check_send=_ses_send,
    )


PROVIDERS: tuple[Provider, ...] = (_postmark(True), _postmark(False), _sendgrid(), _mailgun(), _ses())
