"""Postmark: up to 500 messages per API call, through a per-send template or as full bodies.

Two modes:

* ``templates`` (default): :meth:`PostmarkAdapter.prepare` stores the rendered issue once as a
  Postmark template (markers translated to Mustachio ``{{name}}``), and each batch sends only
  ``/email/batchWithTemplates`` with a small ``TemplateModel`` per recipient: a 500-recipient batch
  is a few hundred kilobytes instead of 500 copies of the HTML. Postmark escapes ``{{…}}`` values in
  the HTML body, exactly as :func:`~newsletter.render.slots.html_values` does.
* ``plain``: ``/email/batch`` with the bodies filled per recipient here. No provider-side state;
  each message carries the whole HTML, so requests are split to stay under Postmark's 50 MB limit.

What Postmark answers, and what it becomes (see :mod:`newsletter.delivery.esp.base`):

* per message ``ErrorCode 0`` → ``accepted`` with Postmark's ``MessageID`` (what its webhooks
  name); ``406`` inactive recipient, ``300`` invalid address and other message errors → ``failed``;
  ``429``/``100`` (rate limit, maintenance) → ``retry``; ``1101`` (our template is gone) →
  ``retry`` and the template is made again before the next batch;
* account or sender problems (bad token, unconfirmed sender signature, account may not send,
  unknown message stream, a batch above Postmark's limit) are not any recipient's fault: they stop
  the send (:class:`AuthError`) rather than mark a million recipients failed; so does an HTTP
  status no retry can fix (400, 404, 413: a wrong base URL or a bug of ours);
* HTTP 401/403 → :class:`AuthError`; 429/5xx and connections that never carried the request →
  :class:`RetryableError` (with ``Retry-After``); any other 422 → every recipient ``failed`` with
  Postmark's message; a request that left without an answer (read timeout, dropped connection)
  or an answer we cannot read → every recipient ``unknown``.

The token is passed in (the caller reads ``POSTMARK_TOKEN``); the base URL is configurable so the
fake ESP (:mod:`newsletter.devtools.fake_esp`) can stand in for Postmark.
"""

from __future__ import annotations

import contextlib
import enum
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
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
    ESPError,
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
    json_object,
    make_client,
    request_json,
    send,
    short_body,
)
from newsletter.render.slots import SLOTS, fill, fill_html, html_values, pieces, translate

__all__ = ["DNS", "POSTMARK_API", "Mode", "PostmarkAdapter", "mustachio", "template_alias"]

POSTMARK_API: Final = "https://api.postmarkapp.com"
#: Postmark's SPF include; its DKIM selector is dated and per sender signature, so it is asked for.
DNS: Final = ProviderDns(
    spf_include="spf.mtasv.net",
    dkim_note="Postmark's DKIM selector is dated (like 20240101000000pm._domainkey): copy it from the "
    "domain's DNS settings in Postmark into [esp] dkim_selectors",
)
#: Postmark's documented limits for one batch call: 500 messages, 50 MB. We keep headroom below the
#: byte limit for JSON framing and our own estimate of it.
MAX_MESSAGES: Final = 500
#: Messages per request with full bodies (a batch of 500 goes as ten; see ``PostmarkAdapter.__init__``).
PLAIN_MESSAGES: Final = 50
MAX_BATCH_BYTES: Final = 45 * 1024 * 1024

#: Per-message codes after which the same message may go through later.
_RETRY_CODES: Final = frozenset({100, 429, 1101})
#: Codes that mean *we* (the account, the sender, the stream, the batch size) cannot send: stop,
#: fail nobody. 10 bad token, 400/401 sender signature missing/unconfirmed, 405 not allowed to
#: send, 410 too many batch messages, 412 account pending, 413 account may not send, 1235/1236
#: message stream missing/unusable.
_STOP_CODES: Final = frozenset({10, 400, 401, 405, 410, 412, 413, 1235, 1236})
_TEMPLATE_NOT_FOUND: Final = 1101

#: Model key whose value is a literal ``{``: see :func:`mustachio`.
_LBRACE: Final = "lbrace"
_LITERAL_BRACE = re.compile(r"\{(?=\{|%%(?:" + "|".join(SLOTS) + r")%%)")
_ALIAS_UNSAFE = re.compile(r"[^A-Za-z0-9._-]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")


class Mode(enum.StrEnum):
    TEMPLATES = "templates"
    PLAIN = "plain"


def template_alias(key: str, send_id: int) -> str:
    """``newsletter-<send>-<key[:16]>``: every process of a send, and its resumes, find the same
    template. The send is in it because the content alone is not enough: a ``--test`` copy of the
    issue (send 0, a "[TEST]" subject) made while the send runs would otherwise update the send's
    template, and delete it when done."""
    safe = _ALIAS_UNSAFE.sub("", key)[:16]
    return f"newsletter-{max(send_id, 0)}-{safe or 'issue'}"


def mustachio(body: str) -> tuple[str, bool]:
    """Slot markers as Mustachio tags, and whether the text needs the ``lbrace`` model value.

    Rendered content is the editor's text: a ``{{`` in it (a code sample, a template snippet)
    would be read by Postmark as a tag, and a ``{`` right before a marker would turn ``{{x}}`` into
    the unescaped ``{{{x}}}``. Mustachio has no way to quote braces, so each such ``{`` becomes
    ``{{lbrace}}`` with ``lbrace = "{"`` in every model. CSS braces (``a { … }``) are left alone.
    """
    escaped, count = _LITERAL_BRACE.subn("{{" + _LBRACE + "}}", body)
    return translate(escaped, "{{%s}}"), count > 0


def _mailbox(name: str, email: str) -> str:
    """``"Name" <email>``, the name always quoted: Postmark splits ``To`` on commas."""
    if name.isprintable() and '"' not in name and "\\" not in name:  # most names: no work
        name = name.strip()
        return f'"{name}" <{email}>' if name else email
    name = _CONTROL.sub(" ", name).strip()
    if not name:
        return email
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}" <{email}>'


@dataclass(frozen=True, slots=True)
class _Prepared:
    alias: str
    #: Model values every recipient gets besides their slots (``lbrace``).
    extra: Mapping[str, str]


class PostmarkAdapter:
    """Send batches through Postmark's batch endpoints. One instance per process and send."""

    name = "postmark"
    max_batch = MAX_MESSAGES

    def __init__(
        self,
        token: str,
        *,
        base_url: str | None = None,
        templates: bool = True,
        message_stream: str = "broadcast",
        timeout: float = 30.0,
        timeouts: Timeouts | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        """``timeout``: seconds to wait for an answer, past which a batch is ``unknown``
        (``timeouts`` sets connect/read/write/pool separately). ``client``: for tests only."""
        if not token:
            raise AuthError("no Postmark server token (set POSTMARK_TOKEN)")
        self.mode = Mode.TEMPLATES if templates else Mode.PLAIN
        # A batch is up to 500 messages either way (one claim in the ledger). With a full body per
        # message, 500 of a 70 KB issue would be a 35 MB request, held several times over while it
        # is built and sent, per worker (756 MB at peak with three): such a batch goes as requests
        # of fifty, 3.5 MB each, encoded one at a time (``_requests``).
        self.max_batch = MAX_MESSAGES
        self.message_stream = message_stream
        self._client = client or make_client(
            (base_url or POSTMARK_API).rstrip("/"),
            {"X-Postmark-Server-Token": token},
            timeouts or Timeouts(read=timeout, write=timeout),
        )
        self._prepared: dict[str, _Prepared] = {}
        self._fields: dict[str, tuple[dict[str, Any], list[dict[str, str]]]] = {}
        self._bodies: dict[str, tuple[_Spliced, _Spliced, _Spliced]] = {}

    # -- the Adapter protocol ------------------------------------------------------------------

    def prepare(self, message: Outgoing) -> None:
        """Templates mode: create (or bring up to date) this send's template. Plain mode: nothing.

        Safe to run in several processes at once: the alias is derived from the content key, and a
        create that finds the alias taken falls back to reading and, if needed, updating it.
        A failure here (Postmark down, rate limited) is not raised: the first :meth:`send_batch`
        tries again and raises it there, where the engine's retries and stop rules apply.
        """
        if self.mode is Mode.PLAIN:
            return
        with contextlib.suppress(ESPError):
            self._prepare(message)

    def _prepare(self, message: Outgoing) -> _Prepared:
        prepared = self._prepared.get(message.key)
        if prepared is None:
            try:
                prepared = self._prepared[message.key] = self._ensure_template(message)
            except Unanswered as exc:
                # Creating or updating a template by alias is idempotent: simply try again.
                raise RetryableError(str(exc)) from exc
        return prepared

    def send_batch(self, message: Outgoing, recipients: Sequence[Recipient]) -> list[Result]:
        if not recipients:
            return []
        if len(recipients) > self.max_batch:
            raise ValueError(f"Postmark takes at most {self.max_batch} messages per call")
        if self.mode is Mode.PLAIN:
            requests = self._requests(message, recipients, self._encode_plain, PLAIN_MESSAGES)
            return self._post_in_chunks(message, "/email/batch", recipients, requests)
        requests = self._requests(message, recipients, self._encode_templated, MAX_MESSAGES)
        return self._post_in_chunks(message, "/email/batchWithTemplates", recipients, requests)

    def finish(self, message: Outgoing) -> None:
        """Delete the send's template: a Postmark server keeps at most 100 (a weekly newsletter
        would run out in two years). A later ``--retry-unknown`` makes it again."""
        if self.mode is Mode.TEMPLATES:
            self.delete_template(message)

    def close(self) -> None:
        self._prepared.clear()
        self._client.close()

    def account(self, from_domain: str) -> Account:
        """``GET /server`` (name, sandbox or live) and ``GET /webhooks`` of our message stream.

        The From domain's DKIM selector and return path are on Postmark's account API, which a
        server token cannot read: the doctor asks for the selector in config instead."""
        server = as_dict(get_json(self._client, "/server", "Postmark server"))
        problems: list[str] = []
        notes: list[str] = []
        if server.get("DeliveryType") == "Sandbox":
            problems.append("the server is a sandbox: Postmark accepts every message and delivers none")
        webhooks: tuple[Webhook, ...] | None = None
        try:
            path = f"/webhooks?MessageStream={self.message_stream}"
            listing = as_dict(get_json(self._client, path, "Postmark webhooks"))
            webhooks = tuple(_webhook(as_dict(item)) for item in as_list(listing.get("Webhooks")))
        except AccountError as exc:
            notes.append(f"webhooks not listed: {exc}")
        name, delivery = str(server.get("Name") or "?"), server.get("DeliveryType") or "Live"
        return Account(
            summary=f"Postmark server {name!r} ({delivery}), stream {self.message_stream!r}",
            problems=tuple(problems),
            notes=tuple(notes),
            webhooks=webhooks,
        )

    # -- beyond the protocol -------------------------------------------------------------------

    def delete_template(self, message: Outgoing) -> None:
        """Remove the send's template once the send is finished (a server keeps at most 100)."""
        alias = template_alias(message.key, message.send_id)
        try:
            response = request_json(self._client, "DELETE", f"/templates/{alias}")
        except Unanswered as exc:
            raise RetryableError(str(exc)) from exc
        check_status(response, "delete template")
        self._prepared.pop(message.key, None)
        if response.status_code != 200 and _error_code(response) != _TEMPLATE_NOT_FOUND:
            raise ESPError(f"Postmark refused to delete template {alias}: {short_body(response)}")

    # -- templates -----------------------------------------------------------------------------

    def _ensure_template(self, message: Outgoing) -> _Prepared:
        alias = template_alias(message.key, message.send_id)
        subject, lb_subject = mustachio(message.subject)
        html, lb_html = mustachio(message.html)
        text, lb_text = mustachio(message.text)
        content = {"Subject": subject, "HtmlBody": html, "TextBody": text}
        prepared = _Prepared(alias, {_LBRACE: "{"} if (lb_subject or lb_html or lb_text) else {})

        body = {
            "Name": f"Newsletter send {message.send_id} ({alias})",
            "Alias": alias,
            "TemplateType": "Standard",
            **content,
        }
        created = request_json(self._client, "POST", "/templates", body)
        check_status(created, "create template")
        if created.status_code == 200:
            return prepared
        if created.status_code != 422:
            raise _stop(f"Postmark: create template: HTTP {created.status_code}: {short_body(created)}")

        # Most likely the alias exists already (another process, an earlier run): read it back.
        existing = request_json(self._client, "GET", f"/templates/{alias}")
        check_status(existing, "get template")
        if existing.status_code != 200:
            raise _stop(f"Postmark refused the template {alias}: {short_body(created)}")
        current = json_object(existing)
        if all(current.get(field) == value for field, value in content.items()):
            return prepared
        updated = request_json(self._client, "PUT", f"/templates/{alias}", {"Name": body["Name"], **content})
        check_status(updated, "update template")
        if updated.status_code != 200:
            raise _stop(f"Postmark refused to update template {alias}: {short_body(updated)}")
        return prepared

    # -- one message ---------------------------------------------------------------------------

    def _common(self, message: Outgoing, recipient: Recipient) -> dict[str, Any]:
        # Postmark assigns its own Message-ID (and reports it as MessageID); ours is not sent.
        shared, shared_headers = self._shared(message)
        return {
            **shared,
            "To": _mailbox(recipient.name, recipient.email),
            "Headers": [
                *shared_headers,
                *({"Name": k, "Value": v} for k, v in recipient.headers.items() if k != "Message-ID"),
            ],
            "Metadata": {"send_id": str(message.send_id), "delivery_id": str(recipient.delivery_id)},
        }

    def _shared(self, message: Outgoing) -> tuple[dict[str, Any], list[dict[str, str]]]:
        """The fields every message of the send has in common, made once per send, not per message."""
        cached = self._fields.get(message.key)
        if cached is None:
            fields: dict[str, Any] = {"From": message.from_header, "MessageStream": self.message_stream}
            if message.reply_to:
                fields["ReplyTo"] = message.reply_to
            if message.tag:
                fields["Tag"] = message.tag  # Postmark groups statistics by tag: one per issue
            headers = [
                {"Name": k, "Value": v} for k, v in message.headers.items() if k.lower() != "message-id"
            ]
            cached = self._fields[message.key] = (fields, headers)
        return cached

    def _templated(self, message: Outgoing, prepared: _Prepared, recipient: Recipient) -> dict[str, Any]:
        return {
            **self._common(message, recipient),
            "TemplateAlias": prepared.alias,
            "TemplateModel": {**recipient.values, **prepared.extra},
            # MJML output is inlined already; Postmark's inliner would only cost time.
            "InlineCss": False,
        }

    def _encode_templated(self, message: Outgoing, recipients: Sequence[Recipient]) -> list[bytes]:
        """Each message of a templates batch as JSON: :meth:`_templated`, a million times faster.

        Only ``To``, the per-recipient headers, ``Metadata`` and ``TemplateModel`` differ between
        messages: they are encoded per message and joined to the rest, encoded once per batch. The
        bytes are the JSON object :meth:`_templated` describes (a test holds them to it); building
        and merging that dict per message was a third of the sender's time.
        """
        prepared = self._prepare(message)
        shared, shared_headers = self._shared(message)
        tail = encode_json(
            {**shared, "TemplateAlias": prepared.alias, "InlineCss": False}
        )[1:]  # '"From":…}' : the fields every message has, after the per-recipient ones
        send_id, extra = str(message.send_id), prepared.extra
        dumps = orjson.dumps
        out = []
        for r in recipients:
            headers = [*shared_headers]
            headers += ({"Name": k, "Value": v} for k, v in r.headers.items() if k != "Message-ID")
            model = {**r.values, **extra} if extra else r.values
            head = dumps(
                {
                    "To": _mailbox(r.name, r.email),
                    "Headers": headers,
                    "Metadata": {"send_id": send_id, "delivery_id": str(r.delivery_id)},
                    "TemplateModel": model,
                }
            )
            out.append(head[:-1] + b"," + tail)
        return out

    def _encode_plain(self, message: Outgoing, recipients: Sequence[Recipient]) -> list[bytes]:
        """Each message of a full-body batch as JSON: :meth:`_plain`, spliced.

        The bodies are the same 70 KB for everyone but the slot values: their text is JSON-encoded
        once per send (:class:`_Spliced`), and each message joins those bytes around its own
        encoded values instead of filling and escaping the whole body again. A test holds the
        bytes to :meth:`_plain`.
        """
        bodies = self._bodies.get(message.key)
        if bodies is None:
            bodies = self._bodies[message.key] = (
                _Spliced(message.subject),
                _Spliced(message.html),
                _Spliced(message.text),
            )
        subject, body_html, text = bodies
        dumps = orjson.dumps
        out = []
        for r in recipients:
            values = r.values
            head = dumps(self._common(message, r))[:-1]
            out.append(
                b"".join(
                    (
                        head,
                        b',"Subject":',
                        subject.encode(values),
                        b',"HtmlBody":',
                        body_html.encode(html_values(values)),
                        b',"TextBody":',
                        text.encode(values),
                        b"}",
                    )
                )
            )
        return out

    def _plain(self, message: Outgoing, recipient: Recipient) -> dict[str, Any]:
        values = recipient.values
        return {
            **self._common(message, recipient),
            "Subject": fill(message.subject, values),
            "HtmlBody": fill_html(message.html, values),
            "TextBody": fill(message.text, values),
        }

    # -- one batch -----------------------------------------------------------------------------

    @staticmethod
    def _requests(
        message: Outgoing,
        recipients: Sequence[Recipient],
        encode: Callable[[Outgoing, Sequence[Recipient]], list[bytes]],
        per_request: int,
    ) -> Iterator[tuple[int, int, bytes]]:
        """``(start, end, body)`` of each request of a batch, encoded only when its turn comes.

        A claimed batch may hold more messages than one request carries (full bodies: 500 claimed,
        50 a request), so the ledger's work per batch is paid once for several requests, while
        only one request's bodies are in memory at a time.
        """
        for first in range(0, len(recipients), per_request):
            encoded = encode(message, recipients[first : first + per_request])
            for start, end in _chunks(encoded):
                yield first + start, first + end, b"[" + b",".join(encoded[start:end]) + b"]"

    def _post_in_chunks(
        self,
        message: Outgoing,
        path: str,
        recipients: Sequence[Recipient],
        requests: Iterator[tuple[int, int, bytes]],
    ) -> list[Result]:
        """Post each request of the batch in turn.

        A failure of the first request is the whole batch's (raised); once something was accepted,
        a later failure is reported per recipient instead, so accepted results are never lost. An
        unanswered request makes its own recipients ``unknown``; those after it were never sent.
        """
        results: list[Result] = []
        for start, end, body in requests:
            batch = recipients[start:end]
            if path.endswith("batchWithTemplates"):
                body = b'{"Messages":' + body + b"}"
            try:
                results += self._post(message, path, batch, body)
            except Unanswered as exc:
                results += [Result(r.delivery_id, Outcome.UNKNOWN, error=str(exc)) for r in batch]
                results += every(recipients[end:], Outcome.RETRY, "not sent: an earlier request failed")
                return results
            except ESPError as exc:
                if not results:
                    raise
                results += every(recipients[start:], Outcome.RETRY, str(exc))
                return results
        return results

    def _post(self, message: Outgoing, path: str, batch: Sequence[Recipient], body: bytes) -> list[Result]:
        response = send(self._client, "POST", path, body)
        check_status(response, f"Postmark {path}")
        if response.status_code == 422:
            code, text = _error_code(response), _error_message(response)
            if code in _STOP_CODES:
                raise _stop(f"Postmark: ErrorCode {code}: {text}")
            if code == _TEMPLATE_NOT_FOUND:
                self._prepared.pop(message.key, None)
                raise RetryableError(f"Postmark: template missing, will be made again: {text}")
            return every(batch, Outcome.FAILED, f"ErrorCode {code}: {text}")
        if response.status_code != 200:
            raise _stop(f"Postmark {path}: unexpected HTTP {response.status_code}: {short_body(response)}")
        try:
            answers = orjson.loads(response.content)
        except ValueError:
            answers = None
        if not isinstance(answers, list) or len(answers) != len(batch):
            raise Unanswered(f"Postmark {path}: unreadable answer: {short_body(response)}")
        return self._read_answers(message, batch, answers)

    def _read_answers(
        self, message: Outgoing, batch: Sequence[Recipient], answers: list[Any]
    ) -> list[Result]:
        """Postmark answers in the order of the request: the n-th answer is the n-th recipient's."""
        results: list[Result] = []
        stopped: str | None = None
        accepted = Outcome.ACCEPTED
        for recipient, answer in zip(batch, answers, strict=True):
            # The common case first, cheaply: a million answers per send.
            if type(answer) is dict and answer.get("ErrorCode") == 0 and answer.get("MessageID"):
                results.append(Result(recipient.delivery_id, accepted, str(answer["MessageID"])))
                continue
            code = answer.get("ErrorCode") if isinstance(answer, dict) else None
            text = str(answer.get("Message", "")) if isinstance(answer, dict) else ""
            if code == 0 and answer.get("MessageID"):
                results.append(Result(recipient.delivery_id, Outcome.ACCEPTED, str(answer["MessageID"])))
            elif not isinstance(code, int):
                results.append(
                    Result(recipient.delivery_id, Outcome.UNKNOWN, error=f"odd answer: {answer!r}")
                )
            elif code in _STOP_CODES:
                stopped = f"Postmark: ErrorCode {code}: {text}"
                results.append(Result(recipient.delivery_id, Outcome.RETRY, error=stopped))
            elif code in _RETRY_CODES:
                if code == _TEMPLATE_NOT_FOUND:
                    self._prepared.pop(message.key, None)
                results.append(
                    Result(recipient.delivery_id, Outcome.RETRY, error=f"ErrorCode {code}: {text}")
                )
            else:
                results.append(
                    Result(recipient.delivery_id, Outcome.FAILED, error=f"ErrorCode {code}: {text}")
                )
        if stopped and not any(r.outcome is Outcome.ACCEPTED for r in results):
            raise _stop(stopped)
        return results


def _chunks(encoded: list[bytes]) -> Iterator[tuple[int, int]]:
    """``(start, end)`` ranges of at most :data:`MAX_MESSAGES` messages and ~45 MB each."""
    start, size = 0, 0
    for index, item in enumerate(encoded):
        if index > start and (index - start >= MAX_MESSAGES or size + len(item) > MAX_BATCH_BYTES):
            yield start, index
            start, size = index, 0
        size += len(item) + 1
    if start < len(encoded):
        yield start, len(encoded)


def _stop(reason: str) -> AuthError:
    """A refusal that no retry and no recipient can fix (a template Postmark will not take, an
    endpoint that does not exist): stop the send, as for bad credentials, and let the editor read
    why. Marking every recipient failed would lose the send; retrying would never end."""
    return AuthError(reason)




def _error_code(response: httpx.Response) -> int | None:
    code = json_object(response).get("ErrorCode")
    return code if isinstance(code, int) else None


def _error_message(response: httpx.Response) -> str:
    return str(json_object(response).get("Message") or short_body(response))


class _Spliced:
    """One body as a JSON string, its text encoded once: literal pieces, then values per message.

    Escaping a JSON string is per character, so the encoded pieces joined around encoded values
    are exactly the encoding of the filled body.
    """

    __slots__ = ("literals", "slots")

    def __init__(self, body: str) -> None:
        parts = pieces(body)
        self.literals = [orjson.dumps(part)[1:-1] for part in parts[0::2]]
        self.slots = parts[1::2]

    def encode(self, values: Mapping[str, str]) -> bytes:
        """The body with ``values`` in its slots, as a JSON string (quotes included)."""
        literals = self.literals
        if not self.slots:
            return b'"' + literals[0] + b'"'
        out = [b'"', literals[0]]
        dumps = orjson.dumps
        for slot, literal in zip(self.slots, literals[1:], strict=True):
            out.append(dumps(values.get(slot, ""))[1:-1])
            out.append(literal)
        out.append(b'"')
        return b"".join(out)


def _webhook(item: dict[str, Any]) -> Webhook:
    """One of ``GET /webhooks``'s entries: its URL and which of its triggers we need are on."""
    triggers = as_dict(item.get("Triggers"))
    wanted = {"Bounce": BOUNCE, "SpamComplaint": COMPLAINT}
    kinds = frozenset(
        kind for trigger, kind in wanted.items() if as_dict(triggers.get(trigger)).get("Enabled") is True
    )
    return Webhook(str(item.get("Url") or ""), kinds)
