"""Mailgun: one ``POST /v3/{domain}/messages`` per batch of up to 1,000 recipients, the body sent once.

Mailgun's *batch sending*: a request names up to 1,000 recipients (one ``to`` field each) and a
``recipient-variables`` JSON object keyed by address; Mailgun sends each recipient a message of
their own, with every ``%recipient.KEY%`` in the subject, the bodies and the headers replaced by
that recipient's value. The request is ``multipart/form-data`` with HTTP basic auth ``api:KEY``.
What every message shares (``from``, ``subject``, ``text``, ``html``, ``h:Reply-To``, ``h:List-Id``,
``h:List-Unsubscribe-Post``, ``o:tag``, ``v:send_id``) is encoded once per send and spliced into
each batch's request; per batch come the ``to`` fields and the ``recipient-variables``.

Per-recipient headers travel as variables: ``h:List-Unsubscribe: %recipient.list_unsubscribe%``
(and ``h:Message-ID: %recipient.message_id%``: a resent ``unknown`` delivery keeps its first
Message-ID, which mailbox providers deduplicate on). ``v:delivery_id: %recipient.delivery_id%``
is a custom variable: Mailgun carries ``v:`` variables into every event of the message
(``user-variables``), so webhooks find the delivery by it.

Substitutions and escaping. Mailgun replaces a variable as plain text wherever it appears, so each
slot gets two variables: ``%recipient.name%`` in the subject and text, ``%recipient.name_html%`` in
the HTML, the first with the raw value and the second with the HTML-escaped one
(:func:`~newsletter.render.slots.html_values`). Only the variables the bodies use are sent.
Editor text cannot forge one: rendering writes every ``%`` of editor HTML as ``&#37;``, and in the
subject and text a zero-width joiner is put after the ``%`` of anything Mailgun would read as a
variable of its own (``%recipient.``, ``%unsubscribe_url%`` and its kin), before the slot markers
are translated.

What Mailgun answers, and what it becomes (see :mod:`newsletter.delivery.esp.base`):

* ``200`` (``{"id": "<…@domain>", "message": "Queued. Thank you."}``): every recipient
  ``accepted``. Mailgun answers one id per request; it is stored, without its angle brackets (as
  events carry it), as each recipient's provider id; events are matched to deliveries by
  ``v:delivery_id``.
* ``400``: the request was refused whole and nothing was sent; Mailgun names no recipient, so every
  recipient is ``failed`` with its ``message``.
* ``401``/``403`` → :class:`AuthError`; ``429`` and ``5xx`` → :class:`RetryableError` (honouring
  ``Retry-After``); any other status (``404``: a wrong domain or base URL, ``413``: too large)
  cannot be fixed by a retry or blamed on a recipient: it stops the send (:class:`AuthError`).
* A request that left without an answer (read timeout, dropped connection) → every recipient
  ``unknown``.

There is nothing to make at Mailgun first: :meth:`MailgunAdapter.prepare` and
:meth:`~MailgunAdapter.finish` do nothing. The key is passed in (the caller reads
``MAILGUN_API_KEY``); the sending domain is ``[esp] domain``, the API ``[esp] region``'s (US or EU),
and the base URL is configurable so the fake ESP can stand in for Mailgun.
"""

from __future__ import annotations

import base64
import re
import uuid
from collections.abc import Sequence
from typing import Any, Final
from urllib.parse import quote

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
from newsletter.delivery.esp.base import AuthError, Outcome, Outgoing, Recipient, Result, every
from newsletter.delivery.esp.http import (
    Timeouts,
    Unanswered,
    check_status,
    json_object,
    make_client,
    send,
    short_body,
)
from newsletter.render.slots import SLOTS, html_values, slots_in, translate

__all__ = [
    "DNS",
    "MAILGUN_API",
    "MAILGUN_EU_API",
    "MAX_RECIPIENTS",
    "MailgunAdapter",
    "html_variable",
    "variable",
]

MAILGUN_API: Final = "https://api.mailgun.net"
#: Mailgun's SPF include; its DKIM hosts are read from the domain's records (``account``).
DNS: Final = ProviderDns(spf_include="mailgun.org", dkim_selectors=("k1", "smtp", "mx", "pic", "krs"))
MAILGUN_EU_API: Final = "https://api.eu.mailgun.net"
#: Mailgun's documented limit for batch sending: 1,000 recipients per request.
MAX_RECIPIENTS: Final = 1000
#: The variables as :func:`~newsletter.render.slots.translate` patterns (``%`` doubled).
_TEXT_PATTERN: Final = "%%recipient.%s%%"
_HTML_PATTERN: Final = "%%recipient.%s_html%%"
#: What Mailgun would substitute in editor text: its recipient variables and its own unsubscribe
#: links. Not a ``%`` right after another one: that is one of our slot markers, ``%%name%%``.
_MAILGUN_VARIABLE = re.compile(
    r"(?<!%)%(?=recipient\.|unsubscribe_url%|tag_unsubscribe_url%|mailing_list_unsubscribe_url%)"
)
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
#: Characters that make a display name need quoting in an address (RFC 5322 specials).
_SPECIALS = re.compile(r'[()<>\[\]:;@\\,."]')


def variable(slot: str) -> str:
    """The variable for ``slot`` in the subject and the text part: ``%recipient.name%``."""
    return f"%recipient.{slot}%"


def html_variable(slot: str) -> str:
    """The variable for ``slot`` in the HTML part, whose value is escaped: ``%recipient.name_html%``."""
    return f"%recipient.{slot}_html%"


def _header_key(name: str) -> str:
    """The recipient variable carrying a per-recipient header: ``List-Unsubscribe`` → ``list_unsubscribe``."""
    key = name.lower().replace("-", "_")
    assert key not in SLOTS and key != "delivery_id", name
    return key


def _neutralised(text: str) -> str:
    return _MAILGUN_VARIABLE.sub("%\u200d", text)


def _address(email: str, name: str) -> str:
    """``Name <email>``; a name with specials (a comma would split it in two) is quoted."""
    name = _CONTROL.sub(" ", name).strip() if name else ""
    if not name:
        return email
    if _SPECIALS.search(name):
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{email}>"


class _Shared:
    """What one send's requests have in common, encoded once per send for one boundary."""

    def __init__(self, message: Outgoing, boundary: bytes) -> None:
        self.boundary = boundary
        self.text_slots = sorted(slots_in(message.subject) | slots_in(message.text))
        self.html_slots = sorted(slots_in(message.html))
        self.send_id = str(message.send_id)
        fields: list[tuple[str, str]] = [
            ("from", message.from_header),
            ("subject", translate(_neutralised(message.subject), _TEXT_PATTERN)),
            ("text", translate(_neutralised(message.text), _TEXT_PATTERN)),
            ("html", translate(message.html, _HTML_PATTERN)),
        ]
        if message.reply_to:
            fields.append(("h:Reply-To", message.reply_to))
        fields.extend((f"h:{name}", value) for name, value in message.headers.items())
        if message.tag:
            fields.append(("o:tag", message.tag[:128]))
        fields.append(("v:send_id", self.send_id))
        fields.append(("v:delivery_id", "%recipient.delivery_id%"))
        #: The fields before the recipients; the per-recipient header fields are added per batch,
        #: from the headers the batch's recipients carry.
        self.head = b"".join(self.part(name, value) for name, value in fields)
        self.head_parts = len(fields)
        self.to_prefix = self._prefix("to")
        self.end = b"--" + boundary + b"--\r\n"
        self._html_names = {slot: f"{slot}_html" for slot in self.html_slots}
        self._header_keys: dict[str, str] = {}

    def _prefix(self, name: str) -> bytes:
        disposition = b'\r\nContent-Disposition: form-data; name="' + name.encode() + b'"\r\n\r\n'
        return b"--" + self.boundary + disposition

    def part(self, name: str, value: str) -> bytes:
        return self._prefix(name) + value.encode("utf-8") + b"\r\n"

    def variables(self, recipient: Recipient) -> dict[str, str]:
        """The recipient's ``recipient-variables``: a million of these per send, so each name is
        worked out once per send (``_html_names``, ``_header_keys``) rather than per recipient."""
        values = recipient.values
        out = {slot: values.get(slot, "") for slot in self.text_slots}
        if self.html_slots:
            escaped = html_values({slot: values.get(slot, "") for slot in self.html_slots})
            html_names = self._html_names
            out.update((html_names[slot], value) for slot, value in escaped.items())
        keys = self._header_keys
        for name, value in recipient.headers.items():
            key = keys.get(name)
            if key is None:
                key = keys[name] = _header_key(name)
            out[key] = value
        out["delivery_id"] = str(recipient.delivery_id)
        return out


class MailgunAdapter:
    """Send batches through Mailgun's messages endpoint. One instance per process and send."""

    name = "mailgun"
    max_batch = MAX_RECIPIENTS

    def __init__(
        self,
        api_key: str,
        domain: str,
        *,
        base_url: str | None = None,
        timeout: float = 30.0,
        timeouts: Timeouts | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        """``base_url``: the API's (``MAILGUN_API``, or ``MAILGUN_EU_API`` for an EU domain).
        ``timeout``: seconds to wait for an answer, past which a batch is ``unknown``
        (``timeouts`` sets connect/read/write/pool separately). ``client``: for tests only."""
        if not api_key:
            raise AuthError("no Mailgun API key (set MAILGUN_API_KEY)")
        if not domain:
            raise ValueError("no Mailgun sending domain (set [esp] domain)")
        self.domain = domain
        self.path = f"/v3/{quote(domain, safe='')}/messages"
        credentials = base64.b64encode(f"api:{api_key}".encode()).decode("ascii")
        self._client = client or make_client(
            (base_url or MAILGUN_API).rstrip("/"),
            {"Authorization": f"Basic {credentials}"},
            timeouts or Timeouts(read=timeout, write=timeout),
        )
        self._boundary = uuid.uuid4().hex.encode("ascii")
        self._shared: dict[str, _Shared] = {}

    # -- the Adapter protocol ------------------------------------------------------------------

    def prepare(self, message: Outgoing) -> None:
        """Nothing to make at Mailgun: the body travels in each batch's request."""

    def finish(self, message: Outgoing) -> None:
        """Nothing to remove at Mailgun."""

    def close(self) -> None:
        self._shared.clear()
        self._client.close()

    def account(self, from_domain: str) -> Account:
        """``GET /v3/domains/{domain}`` (its state and the DNS records Mailgun wants) and its
        webhooks. Mailgun's envelope sender is the sending domain, so that is the return path."""
        domain = quote(self.domain, safe="")
        answer = as_dict(get_json(self._client, f"/v3/domains/{domain}", f"Mailgun domain {self.domain}"))
        state = str(as_dict(answer.get("domain")).get("state") or "unknown")
        problems = [] if state == "active" else [f"Mailgun's domain {self.domain} is {state}, not active"]
        records = [as_dict(record) for record in as_list(answer.get("sending_dns_records"))]
        dkim_hosts = tuple(
            str(r["name"])
            for r in records
            if "._domainkey." in str(r.get("name", "")) and r.get("record_type") == "TXT"
        )
        problems += [
            f"Mailgun finds the {r.get('record_type')} record at {r.get('name')} {r.get('valid')}"
            for r in records
            if r.get("valid") not in (None, "valid")
        ]
        notes: list[str] = []
        webhooks: tuple[Webhook, ...] | None = None
        try:
            answer = as_dict(get_json(self._client, f"/v3/domains/{domain}/webhooks", "webhooks"))
            webhooks = _webhooks(as_dict(answer.get("webhooks")))
        except AccountError as exc:
            notes.append(f"webhooks not listed: {exc}")
        return Account(
            summary=f"Mailgun domain {self.domain} ({state})",
            problems=tuple(problems),
            notes=tuple(notes),
            webhooks=webhooks,
            dkim_hosts=dkim_hosts,
            return_path_domain=self.domain,
        )

    def send_batch(self, message: Outgoing, recipients: Sequence[Recipient]) -> list[Result]:
        if not recipients:
            return []
        if len(recipients) > self.max_batch:
            raise ValueError(f"Mailgun takes at most {self.max_batch} recipients per request")
        content_type, body = self.encode(message, recipients)
        try:
            response = send(self._client, "POST", self.path, body, content_type=content_type)
        except Unanswered as exc:
            return every(recipients, Outcome.UNKNOWN, str(exc))
        return self._read(response, recipients)

    # -- beyond the protocol -------------------------------------------------------------------

    def encode(self, message: Outgoing, recipients: Sequence[Recipient]) -> tuple[str, bytes]:
        """The content type and ``multipart/form-data`` body for one batch."""
        while True:
            shared = self._shared.get(message.key)
            if shared is None or shared.boundary != self._boundary:
                shared = self._shared[message.key] = _Shared(message, self._boundary)
            body, parts = self._body(shared, recipients)
            # A boundary is 32 random hex digits; should a value contain it, choose another.
            if body.count(shared.boundary) == parts + 1:
                return f"multipart/form-data; boundary={shared.boundary.decode()}", body
            self._boundary = uuid.uuid4().hex.encode("ascii")

    def _body(self, shared: _Shared, recipients: Sequence[Recipient]) -> tuple[bytes, int]:
        """The body and how many parts it has."""
        prefix = shared.to_prefix
        to = b"".join(prefix + _address(r.email, r.name).encode("utf-8") + b"\r\n" for r in recipients)
        names = dict.fromkeys(name for r in recipients for name in r.headers)
        headers = b"".join(shared.part(f"h:{name}", f"%recipient.{_header_key(name)}%") for name in names)
        variables: dict[str, Any] = {r.email: shared.variables(r) for r in recipients}
        tail = shared.part("recipient-variables", orjson.dumps(variables).decode("utf-8"))
        parts = shared.head_parts + len(names) + len(recipients) + 1
        return shared.head + headers + to + tail + shared.end, parts

    def _read(self, response: httpx.Response, recipients: Sequence[Recipient]) -> list[Result]:
        what = f"Mailgun {self.path}"
        check_status(response, what)
        status = response.status_code
        if status == 200:
            message_id = _message_id(response)
            accepted = Outcome.ACCEPTED
            return [Result(r.delivery_id, accepted, message_id) for r in recipients]
        if status == 400:
            error = _message(response) or f"HTTP 400: {short_body(response)}"
            return every(recipients, Outcome.FAILED, error)
        raise AuthError(f"{what}: HTTP {status}: {short_body(response)}")


def _message_id(response: httpx.Response) -> str | None:
    """Mailgun's ``id`` (``<…@domain>``) as events carry it: without the angle brackets."""
    value = json_object(response).get("id")
    if not isinstance(value, str):
        return None
    return value.strip().strip("<>") or None


def _message(response: httpx.Response) -> str:
    value = json_object(response).get("message")
    return str(value) if value else ""


#: Mailgun's webhook events that carry our kinds.
_HOOK_KINDS: Final = {"permanent_fail": BOUNCE, "complained": COMPLAINT}


def _webhooks(hooks: dict[str, Any]) -> tuple[Webhook, ...]:
    """Mailgun lists URLs per event (``{"complained": {"urls": [...]}}``; older domains ``"url"``):
    turned around into one :class:`Webhook` per URL with the kinds it receives."""
    kinds: dict[str, set[str]] = {}
    for event, kind in _HOOK_KINDS.items():
        entry = as_dict(hooks.get(event))
        urls = [str(u) for u in as_list(entry.get("urls"))]
        if not urls and entry.get("url"):
            urls = [str(entry["url"])]
        for url in urls:
            kinds.setdefault(url, set()).add(kind)
    return tuple(Webhook(url, frozenset(found)) for url, found in kinds.items())
