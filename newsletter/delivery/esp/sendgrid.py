"""SendGrid: one ``POST /v3/mail/send`` per batch of up to 1,000 recipients, the body sent once.

A request carries the issue once (``content``: ``text/plain`` then ``text/html``) and one
*personalization* per recipient: ``to``, ``substitutions`` (the recipient's slot values), the
per-recipient ``headers`` and ``custom_args`` (``send_id``, ``delivery_id``, which SendGrid carries
into every event of the message, so webhooks find the delivery by them). What every message shares
(``from``, ``reply_to``, ``subject``, ``headers`` such as ``List-Id``, ``categories``) is at the top
level, encoded once per send and spliced into each batch's request.

Substitutions and escaping. SendGrid replaces each substitution key, as plain text, wherever it
appears in the subject and in both content parts: the same value everywhere. A name such as
``<b>Ana</b>`` must be escaped in the HTML and must not be in the text, so each slot gets two tags:
``%%name%%`` in the subject and text, ``%%name_html%%`` in the HTML, and each personalization
carries the raw value for the first and the HTML-escaped one
(:func:`~newsletter.render.slots.html_values`) for the second. Neither tag can occur by accident:
rendering neutralises every ``%%`` of editor text (:mod:`newsletter.render.slots`), and no tag is
a part of another (the closing ``%%`` follows the whole name). Only the tags the bodies use are
sent.

What SendGrid answers, and what it becomes (see :mod:`newsletter.delivery.esp.base`):

* ``202``: every recipient ``accepted``. SendGrid answers one ``X-Message-Id`` per request, not per
  message; it is stored as each recipient's provider id (events carry it as the start of
  ``sg_message_id``), and events are matched to deliveries by ``custom_args.delivery_id``.
* ``400``: the request was refused whole and nothing was sent. When every error names a
  personalization (``personalizations.3.to.0.email``: one bad address), those recipients are
  ``failed`` with SendGrid's message and the others ``retry`` (a later batch sends them without
  the bad one); otherwise every recipient is ``failed`` with the messages.
* ``401``/``403`` → :class:`AuthError`; ``429`` and ``5xx`` → :class:`RetryableError`, waiting as
  ``Retry-After`` or SendGrid's ``X-RateLimit-Reset`` (a Unix time) says; ``413`` (request too
  large) and any other status (a wrong base URL: 404) cannot be fixed by a retry or blamed on a
  recipient: they stop the send (:class:`AuthError`), as for Postmark.
* A request that left without an answer (read timeout, dropped connection) → every recipient
  ``unknown``.

There is nothing to make at SendGrid first: :meth:`SendGridAdapter.prepare` and
:meth:`~SendGridAdapter.finish` do nothing. The key is passed in (the caller reads
``SENDGRID_API_KEY``); the base URL is configurable so the fake ESP can stand in for SendGrid.
"""

from __future__ import annotations

import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, Final

import httpx
import orjson

from newsletter.delivery.esp.account import (
    BOUNCE,
    COMPLAINT,
    Account,
    AccountError,
    ProviderDns,
    Webhook,
    as_dict,
    as_list,
    get_json,
)
from newsletter.delivery.esp.base import (
    AuthError,
    Outcome,
    Outgoing,
    Recipient,
    Result,
    RetryableError,
    every,
)
from newsletter.delivery.esp.http import (
    Timeouts,
    Unanswered,
    check_status,
    encode_json,
    make_client,
    parse_retry_after,
    send,
    short_body,
)
from newsletter.render.slots import html_values, slots_in, translate

__all__ = ["DNS", "MAX_PERSONALIZATIONS", "SENDGRID_API", "SendGridAdapter", "html_tag", "text_tag"]

SENDGRID_API: Final = "https://api.sendgrid.com"
PATH: Final = "/v3/mail/send"
#: An authenticated domain's SPF include and its two DKIM selectors (CNAMEs to SendGrid's keys).
DNS: Final = ProviderDns(spf_include="sendgrid.net", dkim_selectors=("s1", "s2"))
#: The scopes ``account`` needs beyond sending to see webhooks and authenticated domains.
_WEBHOOK_SCOPE: Final = "user.webhooks.event.settings.read"
_DOMAINS_SCOPE: Final = "whitelabel.read"
#: SendGrid's documented limit: 1,000 personalizations (and 1,000 recipients) per request.
MAX_PERSONALIZATIONS: Final = 1000
#: The tags as :func:`~newsletter.render.slots.translate` patterns (``%`` doubled for ``%``-formatting).
_TEXT_PATTERN: Final = "%%%%%s%%%%"
_HTML_PATTERN: Final = "%%%%%s_html%%%%"
_FIELD_INDEX = re.compile(r"^personalizations\.(\d+)\b")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


def text_tag(slot: str) -> str:
    """The substitution key for ``slot`` in the subject and the text part: ``%%name%%``."""
    return f"%%{slot}%%"


def html_tag(slot: str) -> str:
    """The substitution key for ``slot`` in the HTML part, whose value is escaped: ``%%name_html%%``."""
    return f"%%{slot}_html%%"


def _name(name: str) -> str:
    """A display name SendGrid reads as one: a comma or semicolon would otherwise split it into
    two addresses (sendgrid-python issue 578), so such names are quoted, as SendGrid's libraries do."""
    name = _CONTROL.sub(" ", name).strip()
    if "," in name or ";" in name:
        return '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return name


def _address(email: str, name: str) -> dict[str, str]:
    name = _name(name) if name else ""
    return {"email": email, "name": name} if name else {"email": email}


class _Shared:
    """What one send's requests have in common, worked out once per send."""

    def __init__(self, message: Outgoing) -> None:
        self.text_slots = sorted(slots_in(message.subject) | slots_in(message.text))
        self.html_slots = sorted(slots_in(message.html))
        fields: dict[str, Any] = {"from": _address(message.from_address, message.from_name)}
        if message.reply_to:
            fields["reply_to"] = {"email": message.reply_to}
        fields["subject"] = message.subject  # its markers are already text tags: %%name%%
        fields["content"] = [
            {"type": "text/plain", "value": translate(message.text, _TEXT_PATTERN)},
            {"type": "text/html", "value": translate(message.html, _HTML_PATTERN)},
        ]
        if message.headers:
            fields["headers"] = dict(message.headers)
        if message.tag:
            fields["categories"] = [message.tag[:255]]
        #: ``"from":…}``: the top-level fields as JSON, after ``"personalizations":[…],``.
        self.tail = encode_json(fields)[1:]
        self.send_id = str(message.send_id)

    def personalization(self, recipient: Recipient) -> dict[str, Any]:
        values = recipient.values
        substitutions = {text_tag(slot): values.get(slot, "") for slot in self.text_slots}
        if self.html_slots:
            escaped = html_values({slot: values.get(slot, "") for slot in self.html_slots})
            substitutions.update((html_tag(slot), value) for slot, value in escaped.items())
        out: dict[str, Any] = {"to": [_address(recipient.email, recipient.name)]}
        if substitutions:
            out["substitutions"] = substitutions
        # Our Message-ID goes along (SendGrid does not reserve it): a resent ``unknown`` delivery
        # keeps the first attempt's id, which mailbox providers deduplicate on.
        if recipient.headers:
            out["headers"] = dict(recipient.headers)
        out["custom_args"] = {"send_id": self.send_id, "delivery_id": str(recipient.delivery_id)}
        return out


class SendGridAdapter:
    """Send batches through SendGrid's v3 Mail Send endpoint. One instance per process and send."""

    name = "sendgrid"
    max_batch = MAX_PERSONALIZATIONS

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str | None = None,
        timeout: float = 30.0,
        timeouts: Timeouts | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        """``timeout``: seconds to wait for an answer, past which a batch is ``unknown``
        (``timeouts`` sets connect/read/write/pool separately). ``client``: for tests only."""
        if not api_key:
            raise AuthError("no SendGrid API key (set SENDGRID_API_KEY)")
        self._client = client or make_client(
            (base_url or SENDGRID_API).rstrip("/"),
            {"Authorization": f"Bearer {api_key}"},
            timeouts or Timeouts(read=timeout, write=timeout),
        )
        self._shared: dict[str, _Shared] = {}

    # -- the Adapter protocol ------------------------------------------------------------------

    def prepare(self, message: Outgoing) -> None:
        """Nothing to make at SendGrid: the body travels in each batch's request."""

    def finish(self, message: Outgoing) -> None:
        """Nothing to remove at SendGrid."""

    def close(self) -> None:
        self._shared.clear()
        self._client.close()

    def account(self, from_domain: str) -> Account:
        """``GET /v3/scopes``; with the scopes for them, the event webhooks and the From domain's
        authentication (its DKIM hosts and the return-path subdomain)."""
        answer = as_dict(get_json(self._client, "/v3/scopes", "SendGrid scopes"))
        scopes = {str(scope) for scope in as_list(answer.get("scopes"))}
        problems = []
        if "mail.send" not in scopes:
            problems.append("the API key lacks the mail.send scope: every send is refused")
        notes: list[str] = []
        webhooks: tuple[Webhook, ...] | None = None
        if _WEBHOOK_SCOPE in scopes:
            try:
                path = "/v3/user/webhooks/event/settings/all"
                listing = as_dict(get_json(self._client, path, "SendGrid event webhooks"))
                webhooks = tuple(_webhook(as_dict(item)) for item in as_list(listing.get("webhooks")))
            except AccountError as exc:
                notes.append(f"webhooks not listed: {exc}")
        else:
            notes.append(f"webhooks not listed: the API key lacks the {_WEBHOOK_SCOPE} scope")
        dkim_hosts: tuple[str, ...] = ()
        return_path: str | None = None
        if _DOMAINS_SCOPE in scopes:
            try:
                domains = as_list(get_json(self._client, "/v3/whitelabel/domains", "authenticated domains"))
            except AccountError as exc:
                domains = []
                notes.append(f"authenticated domains not listed: {exc}")
            ours = [as_dict(d) for d in domains if str(as_dict(d).get("domain", "")).lower() == from_domain]
            if not ours:
                problems.append(f"{from_domain} is not an authenticated domain of this account")
            else:
                domain = ours[0]
                if domain.get("valid") is not True:
                    problems.append(f"SendGrid has not validated the DNS records of {from_domain}")
                dns = as_dict(domain.get("dns"))
                hosts = (as_dict(dns.get(key)).get("host") for key in ("dkim1", "dkim2"))
                dkim_hosts = tuple(str(host) for host in hosts if host)
                if domain.get("subdomain"):
                    return_path = f"{domain['subdomain']}.{from_domain}"
        return Account(
            summary=f"SendGrid API key with {len(scopes)} scopes",
            problems=tuple(problems),
            notes=tuple(notes),
            webhooks=webhooks,
            dkim_hosts=dkim_hosts,
            return_path_domain=return_path,
        )

    def send_batch(self, message: Outgoing, recipients: Sequence[Recipient]) -> list[Result]:
        if not recipients:
            return []
        if len(recipients) > self.max_batch:
            raise ValueError(f"SendGrid takes at most {self.max_batch} personalizations per request")
        body = self.encode(message, recipients)
        try:
            response = send(self._client, "POST", PATH, body)
        except Unanswered as exc:
            return every(recipients, Outcome.UNKNOWN, str(exc))
        return self._read(response, recipients)

    # -- beyond the protocol -------------------------------------------------------------------

    def encode(self, message: Outgoing, recipients: Sequence[Recipient]) -> bytes:
        """The request body for one batch: the personalizations, then the shared fields."""
        shared = self._shared.get(message.key)
        if shared is None:
            shared = self._shared[message.key] = _Shared(message)
        dumps = orjson.dumps
        personal = b",".join(dumps(shared.personalization(r)) for r in recipients)
        return b'{"personalizations":[' + personal + b"]," + shared.tail

    def _read(self, response: httpx.Response, recipients: Sequence[Recipient]) -> list[Result]:
        status = response.status_code
        if status == 429 and not response.headers.get("Retry-After"):
            raise RetryableError(
                f"SendGrid {PATH}: HTTP 429: {short_body(response)}",
                retry_after=_rate_limit_reset(response.headers.get("X-RateLimit-Reset")),
            )
        check_status(response, f"SendGrid {PATH}")
        if status in (200, 202):
            message_id = response.headers.get("X-Message-Id") or None
            accepted = Outcome.ACCEPTED
            return [Result(r.delivery_id, accepted, message_id) for r in recipients]
        if status == 400:
            return _refused(response, recipients)
        raise AuthError(f"SendGrid {PATH}: HTTP {status}: {short_body(response)}")


def _refused(response: httpx.Response, recipients: Sequence[Recipient]) -> list[Result]:
    """A 400: nothing was sent. Failed: the recipients the errors name, or all if some error
    names no personalization (then the request itself was wrong for everyone)."""
    errors = _errors(response)
    if not errors:
        return every(recipients, Outcome.FAILED, f"HTTP 400: {short_body(response)}")
    named: dict[int, list[str]] = {}
    for text, field in errors:
        match = _FIELD_INDEX.match(field or "")
        if match is None or int(match.group(1)) >= len(recipients):
            summary = "; ".join(f"{text} ({field})" if field else text for text, field in errors)
            return every(recipients, Outcome.FAILED, summary)
        named.setdefault(int(match.group(1)), []).append(f"{text} ({field})")
    results = []
    for index, recipient in enumerate(recipients):
        if index in named:
            results.append(Result(recipient.delivery_id, Outcome.FAILED, error="; ".join(named[index])))
        else:
            results.append(
                Result(recipient.delivery_id, Outcome.RETRY, error="not sent: another recipient was refused")
            )
    return results


def _errors(response: httpx.Response) -> list[tuple[str, str | None]]:
    """SendGrid's ``{"errors": [{"message", "field", "help"}]}`` as (message, field) pairs."""
    try:
        body = response.json()
    except ValueError:
        return []
    errors = body.get("errors") if isinstance(body, dict) else None
    if not isinstance(errors, list):
        return []
    out = []
    for error in errors:
        if isinstance(error, Mapping):
            field = error.get("field")
            out.append((str(error.get("message") or "invalid request"), str(field) if field else None))
    return out


def _rate_limit_reset(value: str | None) -> float | None:
    """SendGrid's ``X-RateLimit-Reset`` (the Unix time the limit resets) as seconds from now."""
    if not value:
        return None
    try:
        return max(0.0, float(value) - time.time())
    except ValueError:
        return parse_retry_after(value)


def _webhook(item: dict[str, Any]) -> Webhook:
    """One event webhook's settings: its URL, whether it is on, and our kinds it sends."""
    kinds = frozenset(
        kind for flag, kind in (("bounce", BOUNCE), ("spam_report", COMPLAINT)) if item.get(flag) is True
    )
    return Webhook(str(item.get("url") or ""), kinds, enabled=item.get("enabled") is True)
