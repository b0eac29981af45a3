"""A local stand-in for Postmark's sending API (and SendGrid's, Mailgun's and SES's), with faults on demand.

It exists so that the delivery engine can be run, tested and benchmarked end to end on
127.0.0.1: the adapter talks real HTTP to it, exactly as it would to Postmark, and the fake can be
told to misbehave in every way that changes what the engine must do (rate limits, outages, slow
answers, dropped connections, refused recipients, a revoked token).

Endpoints (Postmark's shapes, ``X-Postmark-Server-Token`` checked):

* ``POST /email/batch``: a JSON list of messages with bodies;
* ``POST /email/batchWithTemplates``: ``{"Messages": [...]}`` naming a template by
  ``TemplateAlias``/``TemplateId`` with a ``TemplateModel``; the template is really rendered
  (Mustachio's ``{{x}}`` HTML-escaped in the HTML body, raw in text and subject; ``{{{x}}}`` raw);
* ``POST /templates``, ``GET|PUT|DELETE /templates/{idOrAlias}``, ``GET /templates``;
* SendGrid's ``POST /v3/mail/send`` (``Authorization: Bearer`` with the same token): validated as
  SendGrid does (400 with ``{"errors": [{"message", "field"}]}``), answered 202 with an
  ``X-Message-Id``, each personalization's ``substitutions`` applied to subject and content for the
  record (:meth:`FakeESP.answer_sendgrid`).
* SES v2's ``POST /v2/email/outbound-bulk-emails`` (SendBulkEmail) and ``/v2/email/templates``
  (create, get, update, delete), signed with SigV4 whose access key id is the same token (the
  signature itself is not checked; 403 with SES's error shape otherwise): at most 50 entries,
  answered per entry in ``BulkEmailEntryResults``, each entry's ``ReplacementTemplateData``
  rendered into the template as SES's Handlebars would for the record
  (:meth:`FakeESP.answer_ses`, :mod:`newsletter.delivery.handlebars`).
* Mailgun's ``POST /v3/{domain}/messages`` (HTTP basic auth ``api:`` and the same token), form
  data (``multipart/form-data`` or urlencoded): validated (400 with ``{"message": ...}``), answered
  200 with ``{"id": "<…@domain>", "message": "Queued. Thank you."}``, each recipient's
  ``recipient-variables`` applied to subject, bodies, ``h:`` headers and ``v:`` variables for the
  record (:meth:`FakeESP.answer_mailgun`).

Control endpoints (no token): ``GET|POST /_faults`` read or change the faults (a POST merges
the given fields), ``POST /_reset`` restores the start-up faults and clears the counters,
``GET /_stats`` counts requests, messages and faults.

Faults apply to the sending endpoints (``unauthorized`` applies to every Postmark endpoint), so a
test can script "the next two batches get 503" without the template calls of ``prepare`` using
up the script.

Faults are scripted (``{"next": ["503", "503", "drop"]}``: the next three sending requests, in
order, deterministic) or drawn at seeded rates (``rate_429``, ``rate_500``, ``rate_503``,
``rate_drop``); see :class:`Faults` for each one.

``record``: one JSON line per accepted message: provider, recipient, ``to``, subject, headers (a
name → value object), ``message_id`` (the ``MessageID`` answered), stream, metadata, template, the
sizes and SHA-256 of both bodies, and the text body itself (``record_bodies="text"``, the default;
``"all"`` adds the HTML, ``"none"`` keeps only the hashes: about 0.8 KB a line instead of the text's
size, the setting for a million-recipient benchmark). Lines go through a 1 MiB buffer, flushed
once per request. The part of a template before its first tag is hashed once, so a message's
SHA-256 costs only its personal tail.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import gc
import hashlib
import html
import json
import random
import re
import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from email.utils import getaddresses
from functools import lru_cache
from pathlib import Path
from typing import IO, Any, Final, Literal
from urllib.parse import parse_qsl

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from newsletter.delivery.handlebars import (
    TemplateSyntaxError,
    compile_handlebars,
    render_handlebars,
    variables,
)

__all__ = ["FakeESP", "Faults", "RecordBodies", "RunningFakeESP", "render_mustachio", "running", "serve"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
RecordBodies = Literal["none", "text", "all"]

#: What a scripted fault (``Faults.next``) may say for one sending request.
ACTIONS: Final = frozenset({"ok", "401", "429", "500", "503", "drop", "drop_after", "slow"})
#: The sending endpoints, by path: the name :meth:`FakeESP.answer` takes.
SEND_PATHS: Final = {"/email/batch": "batch", "/email/batchWithTemplates": "batchWithTemplates"}
MAX_BATCH: Final = 500
#: SendGrid's sending endpoint, and its limit of personalizations per request.
SENDGRID_PATH: Final = "/v3/mail/send"
SENDGRID_MAX: Final = 1000
#: Mailgun's sending endpoint, and its limit of recipients per request (batch sending).
MAILGUN_PATH: Final = re.compile(r"/v3/([^/]+)/messages")
MAILGUN_MAX: Final = 1000
#: SES v2's sending endpoint and its limit of destinations per SendBulkEmail call; its templates.
SES_SEND_PATH: Final = "/v2/email/outbound-bulk-emails"
SES_MAX: Final = 50
SES_TEMPLATES_PATH: Final = re.compile(r"/v2/email/templates(?:/([^/]*))?")
#: The ``Status`` values of a ``BulkEmailEntryResult`` (SES's service model).
SES_STATUSES: Final = frozenset(
    {
        "SUCCESS",
        "MESSAGE_REJECTED",
        "MAIL_FROM_DOMAIN_NOT_VERIFIED",
        "CONFIGURATION_SET_NOT_FOUND",
        "TEMPLATE_NOT_FOUND",
        "ACCOUNT_SUSPENDED",
        "ACCOUNT_THROTTLED",
        "ACCOUNT_DAILY_QUOTA_EXCEEDED",
        "INVALID_SENDING_POOL_NAME",
        "ACCOUNT_SENDING_PAUSED",
        "CONFIGURATION_SET_SENDING_PAUSED",
        "INVALID_PARAMETER",
        "TRANSIENT_FAILURE",
        "FAILED",
    }
)

_INACTIVE: Final = (
    "You tried to send to recipient(s) that have been marked as inactive. Found inactive addresses: "
    "{}. Inactive recipients are ones that have generated a hard bounce, a spam complaint, "
    "or a manual suppression."
)


@dataclass
class Faults:
    """How the fake misbehaves. Rates are probabilities per sending request (seeded, so a run
    repeats); ``next`` is a script consumed one entry per sending request before any rate is drawn.
    """

    #: Answer 401 (ErrorCode 10) to every request, as if the token had been revoked.
    unauthorized: bool = False
    rate_429: float = 0.0
    rate_500: float = 0.0
    rate_503: float = 0.0
    #: Close the connection without any answer, after reading the request (nothing is processed).
    rate_drop: float = 0.0
    #: ``Retry-After`` seconds sent with 429 and 503.
    retry_after: float = 1.0
    #: Seconds every sending request waits before answering (after processing it).
    delay: float = 0.0
    #: Seconds a scripted ``slow`` answer waits (processed and recorded, then answered late).
    slow_seconds: float = 10.0
    #: Scripted answers for the next sending requests, one each: ``ok``, ``401``, ``429``, ``500``,
    #: ``503``, ``drop`` (close, unprocessed), ``drop_after`` (processed, recorded, then close),
    #: ``slow``.
    next: list[str] = field(default_factory=list)
    #: Recipients answered with ErrorCode 406 (inactive) inside a 200 answer.
    inactive: list[str] = field(default_factory=list)
    #: Recipients answered with ErrorCode 300 (invalid email request) inside a 200 answer.
    invalid: list[str] = field(default_factory=list)
    #: SES: recipients whose entry comes back with this ``Status`` inside a 200, e.g.
    #: ``{"a@example.com": "MESSAGE_REJECTED", "b@example.com": "ACCOUNT_THROTTLED"}``.
    statuses: dict[str, str] = field(default_factory=dict)
    seed: int | None = 0
    max_batch: int = MAX_BATCH

    def merged(self, changes: dict[str, Any]) -> Faults:
        """A copy with ``changes`` applied; unknown names or bad values raise ``ValueError``."""
        known = {f.name for f in fields(self)}
        unknown = set(changes) - known
        if unknown:
            raise ValueError(f"unknown fault settings: {', '.join(sorted(unknown))}")
        new = Faults(**{**asdict(self), **changes})
        new.validate()
        return new

    def validate(self) -> None:
        for name in ("rate_429", "rate_500", "rate_503", "rate_drop"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be between 0 and 1")
        if self.rate_429 + self.rate_500 + self.rate_503 + self.rate_drop > 1:
            raise ValueError("the fault rates add up to more than 1")
        bad = [action for action in self.next if action not in ACTIONS]
        if bad:
            raise ValueError(f"unknown scripted answers: {bad}; use {sorted(ACTIONS)}")
        for name in ("delay", "slow_seconds", "retry_after"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative")
        if not isinstance(self.statuses, dict) or not all(
            isinstance(address, str) and status in SES_STATUSES and status != "SUCCESS"
            for address, status in self.statuses.items()
        ):
            raise ValueError(f"statuses maps addresses to one of {sorted(SES_STATUSES - {'SUCCESS'})}")


# -- Mustachio, as much of it as a newsletter template uses ---------------------------------------

_TAG = re.compile(r"\{\{\{\s*([^{}]+?)\s*\}\}\}|\{\{\s*([^{}]+?)\s*\}\}")
Part = str | tuple[str, bool]


def compile_mustachio(source: str) -> list[Part]:
    """Literal strings and ``(path, escape)`` pairs; sections and comments render as nothing."""
    parts: list[Part] = []
    position = 0
    for match in _TAG.finditer(source):
        if match.start() > position:
            parts.append(source[position : match.start()])
        raw, plain = match.group(1), match.group(2)
        if raw is not None:
            parts.append((raw, False))
        elif plain[0] not in "#^/!>":
            parts.append((plain.lstrip("&").strip(), plain[0] != "&"))
        position = match.end()
    if position < len(source):
        parts.append(source[position:])
    return parts


def render_mustachio(parts: Sequence[Part], model: dict[str, Any], *, escape: bool) -> str:
    """``escape``: HTML-escape ``{{x}}`` values (the HTML body); text and subject stay raw."""
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        path, escaped = part
        value: Any = model
        for key in path.split("."):
            value = value.get(key) if isinstance(value, dict) else None
        text = "" if value is None else str(value)
        out.append(html.escape(text, quote=True) if escape and escaped else text)
    return "".join(out)


@dataclass(slots=True)
class Body:
    """A rendered body as ``head + tail``: ``head`` is the template's text before its first tag,
    shared by every message and hashed once, so recording a message's SHA-256 costs only the
    tail (for a newsletter, the footer with the unsubscribe link)."""

    head: str
    head_size: int
    head_hash: Any  # a hashlib object over ``head``, or None when ``head`` is empty
    tail: str

    @classmethod
    def plain(cls, text: str) -> Body:
        return cls("", 0, None, text)

    def text(self) -> str:
        return self.head + self.tail

    def digest(self) -> tuple[int, str]:
        """``(size in UTF-8 bytes, SHA-256 hex)`` of the whole body."""
        data = self.tail.encode("utf-8")
        hasher = self.head_hash.copy() if self.head_hash is not None else hashlib.sha256()
        hasher.update(data)
        return self.head_size + len(data), hasher.hexdigest()


class CompiledBody:
    """One template field compiled once: its literal head, and the parts from the first tag on."""

    def __init__(
        self,
        source: str,
        *,
        escape: bool,
        compiler: Callable[[str], list[Part]] = compile_mustachio,
        renderer: Callable[[Sequence[Part], dict[str, Any]], str] | None = None,
    ) -> None:
        """``compiler`` and ``renderer``: Mustachio's by default (Postmark), Handlebars' for SES."""
        parts = compiler(source)
        self.renderer = renderer
        first_tag = next((i for i, part in enumerate(parts) if not isinstance(part, str)), len(parts))
        self.head = "".join(part for part in parts[:first_tag] if isinstance(part, str))
        head_bytes = self.head.encode("utf-8")
        self.head_size = len(head_bytes)
        self.head_hash = hashlib.sha256(head_bytes) if head_bytes else None
        self.tail = parts[first_tag:]
        self.escape = escape

    def render(self, model: dict[str, Any]) -> Body:
        if self.renderer is not None:
            tail = self.renderer(self.tail, model)
        else:
            tail = render_mustachio(self.tail, model, escape=self.escape)
        return Body(self.head, self.head_size, self.head_hash, tail)


@dataclass
class Template:
    template_id: int
    name: str
    alias: str | None
    subject: str
    html_body: str
    text_body: str
    template_type: str = "Standard"
    compiled: tuple[CompiledBody, CompiledBody, CompiledBody] | None = None

    def compile(self) -> None:
        self.compiled = (
            CompiledBody(self.subject, escape=False),
            CompiledBody(self.html_body, escape=True),
            CompiledBody(self.text_body, escape=False),
        )

    def render(self, model: dict[str, Any]) -> tuple[str, Body, Body]:
        """Subject, HTML and text as Postmark would send them with this model."""
        if self.compiled is None:
            self.compile()
        assert self.compiled is not None
        subject, body_html, text = self.compiled
        return subject.render(model).text(), body_html.render(model), text.render(model)

    def summary(self) -> dict[str, Any]:
        return {
            "TemplateId": self.template_id,
            "Name": self.name,
            "Alias": self.alias,
            "Active": True,
            "TemplateType": self.template_type,
            "LayoutTemplate": None,
        }

    def detail(self) -> dict[str, Any]:
        return {
            **self.summary(),
            "Subject": self.subject,
            "HtmlBody": self.html_body,
            "TextBody": self.text_body,
            "AssociatedServerId": 1,
        }


@dataclass
class SesTemplate:
    """An SES email template, compiled once as Handlebars (every part escapes ``{{x}}``)."""

    name: str
    subject: str
    text: str
    html: str
    parts: tuple[CompiledBody, CompiledBody, CompiledBody]
    #: The names the data of every message must hold, or SES would not render it.
    variables: frozenset[str]

    @classmethod
    def compiled(cls, name: str, subject: str, text: str, html: str) -> SesTemplate:
        """Raises :class:`~newsletter.delivery.handlebars.TemplateSyntaxError` for what SES
        would not render (or this fake cannot)."""
        used: set[str] = set()
        parts = []
        for source in (subject, html, text):
            used |= variables(compile_handlebars(source))
            parts.append(
                CompiledBody(source, escape=True, compiler=compile_handlebars, renderer=render_handlebars)
            )
        return cls(name, subject, text, html, (parts[0], parts[1], parts[2]), frozenset(used))

    def render(self, model: dict[str, Any]) -> tuple[str, Body, Body]:
        """Subject, HTML and text as SES would send them with this data."""
        subject, body_html, text = self.parts
        return subject.render(model).text(), body_html.render(model), text.render(model)


# -- recording ------------------------------------------------------------------------------------


class Recorder:
    """Appends JSON lines through a 1 MiB buffer; :meth:`flush` once per request."""

    def __init__(self, path: Path, bodies: RecordBodies = "text") -> None:
        self.path = path
        self.bodies = bodies
        self._file: IO[str] = path.open("a", encoding="utf-8", buffering=1 << 20)
        self._lock = threading.Lock()

    def entry(self, base: dict[str, Any], subject: str, body_html: Body, text: Body) -> dict[str, Any]:
        html_size, html_sha256 = body_html.digest()
        text_size, text_sha256 = text.digest()
        entry = {
            **base,
            "subject": subject,
            "html_size": html_size,
            "html_sha256": html_sha256,
            "text_size": text_size,
            "text_sha256": text_sha256,
        }
        if self.bodies != "none":
            entry["text"] = text.text()
        if self.bodies == "all":
            entry["html"] = body_html.text()
        return entry

    def write(self, entries: list[dict[str, Any]]) -> None:
        if not entries:
            return
        lines = "".join(
            json.dumps(entry, ensure_ascii=False, separators=(",", ":")) + "\n" for entry in entries
        )
        with self._lock:
            self._file.write(lines)
            self._file.flush()

    def close(self) -> None:
        with self._lock:
            self._file.close()


# -- the fake itself ------------------------------------------------------------------------------


class FakeESP:
    """The state (templates, faults, counters, recording) and the ASGI application over it."""

    def __init__(
        self,
        *,
        token: str = "fake-token",
        faults: Faults | None = None,
        record: Path | None = None,
        record_bodies: RecordBodies = "text",
    ) -> None:
        self.token = token
        self.initial_faults = faults or Faults()
        self.initial_faults.validate()
        self.faults = self.initial_faults.merged({})
        self.recorder = Recorder(record, record_bodies) if record else None
        self.stats: Counter[str] = Counter()
        self.templates: dict[int, Template] = {}
        self.ses_templates: dict[str, SesTemplate] = {}
        self._next_template_id = 1000
        self._lock = threading.Lock()
        self._random = random.Random(self.faults.seed)
        # MessageIDs shaped like Postmark's UUIDs: a random prefix per fake, then a request number
        # and the message's place in the request (see ``_message_ids``), since uuid4() per message
        # was a fifth of the fake's time in the million-recipient benchmark.
        self._id_prefix = str(uuid.uuid4())[:24]
        self._requests = 0
        self.app = _FaultLayer(self, self._routes())

    # -- faults ------------------------------------------------------------------------------

    def set_faults(self, **changes: Any) -> Faults:
        """Merge ``changes`` into the current faults (also what ``POST /_faults`` does)."""
        with self._lock:
            self.faults = self.faults.merged(changes)
            if "seed" in changes:
                self._random = random.Random(self.faults.seed)
            return self.faults

    def reset(self) -> None:
        with self._lock:
            self.faults = self.initial_faults.merged({})
            self._random = random.Random(self.faults.seed)
            self.stats.clear()

    def decide(self) -> str:
        """The answer for one sending request: the script first, then the seeded rates."""
        with self._lock:
            faults = self.faults
            if faults.unauthorized:
                return "401"
            if faults.next:
                return faults.next.pop(0)
            draw = self._random.random()
            for action, rate in (
                ("429", faults.rate_429),
                ("500", faults.rate_500),
                ("503", faults.rate_503),
                ("drop", faults.rate_drop),
            ):
                if draw < rate:
                    return action
                draw -= rate
            return "ok"

    def count(self, key: str, n: int = 1) -> None:
        with self._lock:
            self.stats[key] += n

    def authorised(self, token: str | None) -> bool:
        """Whether a request with this ``X-Postmark-Server-Token`` may go on."""
        return not self.faults.unauthorized and token == self.token

    # -- templates ---------------------------------------------------------------------------

    def find_template(self, id_or_alias: str | int | None) -> Template | None:
        if id_or_alias is None:
            return None
        for template in self.templates.values():
            if str(template.template_id) == str(id_or_alias) or template.alias == id_or_alias:
                return template
        return None

    def create_template(self, body: dict[str, Any]) -> Template:
        with self._lock:
            self._next_template_id += 1
            template = Template(
                template_id=self._next_template_id,
                name=str(body.get("Name") or ""),
                alias=body.get("Alias") or None,
                subject=str(body.get("Subject") or ""),
                html_body=str(body.get("HtmlBody") or ""),
                text_body=str(body.get("TextBody") or ""),
                template_type=str(body.get("TemplateType") or "Standard"),
            )
            template.compile()
            self.templates[template.template_id] = template
        return template

    # -- sending -----------------------------------------------------------------------------

    def answer(self, endpoint: str, body: bytes) -> tuple[int, bytes]:
        """The status and JSON body that answer one sending request's raw body.

        ``endpoint`` is ``batch`` or ``batchWithTemplates``. A body of the wrong shape, or with more
        than ``max_batch`` messages, is refused whole (422); otherwise each message is answered on
        its own inside a 200 (:meth:`process`).
        """
        try:
            data = orjson.loads(body)
        except ValueError:
            data = None
        if endpoint == "batch":
            messages = data if isinstance(data, list) else None
            if messages is None:
                return 422, _error_json(402, "Invalid JSON: the batch must be a list of messages.")
        else:
            messages = data.get("Messages") if isinstance(data, dict) else None
            if not isinstance(messages, list):
                return 422, _error_json(403, 'Incompatible JSON: expected {"Messages": [...]}.')
        if len(messages) > self.faults.max_batch:
            self.count("refused_too_many")
            return 422, _error_json(
                410, f"Too many batch messages: {len(messages)} (at most {self.faults.max_batch})."
            )
        return 200, orjson.dumps(self.process(endpoint, messages))

    def process(self, endpoint: str, messages: list[Any]) -> list[dict[str, Any]]:
        """Answer each message in order, record the accepted ones; one flush for the request.

        This loop is the fake's cost per message, which a benchmark's sender is measured against,
        so per message it does only what Postmark's answer depends on: ``To`` parses (one regular
        expression for the usual single mailbox), ``From`` is there, the template exists (looked up
        once per request). The recipient's address, which only the ``inactive`` and ``invalid``
        faults and the record need, is picked out only when they are set; templates are rendered
        only when recording, since without a record nobody sees the result. MessageIDs are made
        as one block and the counters updated once, per request.
        """
        submitted = dt.datetime.now(dt.UTC).isoformat()
        faults = self.faults
        screen = _Screen(faults.invalid, faults.inactive) if faults.invalid or faults.inactive else None
        recorder = self.recorder
        templated = endpoint == "batchWithTemplates"
        templates: dict[str | int, Template | None] = {}
        one_mailbox = _ONE_MAILBOX.fullmatch
        answers: list[dict[str, Any]] = []
        entries: list[dict[str, Any]] = []
        refused: Counter[int] = Counter()
        for message, message_id in zip(messages, self._message_ids(len(messages)), strict=True):
            refusal: dict[str, Any] | None = None
            template: Template | None = None
            template_ref: Any = None
            if not isinstance(message, dict):
                refusal = _error(402, "Invalid JSON: a message must be an object.")
            else:
                raw_to = message.get("To")
                to = raw_to if isinstance(raw_to, str) else str(raw_to or "")
                if one_mailbox(to) is None and _first_address(to) is None:
                    refusal = _error(300, f"Error parsing 'To': Illegal email address '{to}'.")
                elif not message.get("From"):
                    refusal = _error(300, "Invalid 'From' address: ''.")
                elif screen is not None:
                    refusal = screen.refusal(to)
                if refusal is None and templated:
                    template_ref = message.get("TemplateAlias") or message.get("TemplateId")
                    try:
                        template = templates[template_ref]
                    except (KeyError, TypeError):  # not looked up yet, or unhashable (a list)
                        template = self._find_template_once(template_ref, templates)
                    if template is None:
                        refusal = _error(1101, f"The template '{template_ref}' was not found.")
            if refusal is not None:
                answers.append(refusal)
                refused[refusal["ErrorCode"]] += 1
                continue
            answers.append(
                {"ErrorCode": 0, "Message": "OK", "MessageID": message_id, "SubmittedAt": submitted, "To": to}
            )
            if recorder is not None:
                entries.append(
                    self._entry(recorder, endpoint, message, message_id, to, template, template_ref)
                )
        with self._lock:
            self.stats["messages"] += len(messages)
            accepted = len(messages) - sum(refused.values())
            if accepted:
                self.stats["accepted"] += accepted
            for code, count in refused.items():
                self.stats[f"error_{code}"] += count
        if recorder is not None:
            recorder.write(entries)
        return answers

    def _message_ids(self, count: int) -> list[str]:
        """A MessageID for each place in a request of ``count`` messages.

        UUID-shaped: the fake's random prefix, seven hex digits of request number, five of place.
        Joining two strings is a quarter of the cost of formatting one counter per message.
        """
        with self._lock:
            self._requests += 1
            head = f"{self._id_prefix}{self._requests:07x}"
        return [head + place for place in _places(count)]

    def _find_template_once(self, ref: Any, cache: dict[str | int, Template | None]) -> Template | None:
        """:meth:`find_template`, remembered in ``cache`` for the rest of the request; a reference
        that is neither a name nor a number (JSON lets a client send a list) names no template."""
        if not isinstance(ref, str | int):
            return None
        template = cache[ref] = self.find_template(ref)
        return template

    def _entry(
        self,
        recorder: Recorder,
        endpoint: str,
        message: dict[str, Any],
        message_id: str,
        to: str,
        template: Template | None,
        template_ref: Any,
    ) -> dict[str, Any]:
        """The record's line for one accepted message, its template rendered as Postmark would."""
        if template is not None:
            model = message.get("TemplateModel")
            subject, body_html, text = template.render(model if isinstance(model, dict) else {})
        else:
            subject = str(message.get("Subject") or "")
            body_html = Body.plain(str(message.get("HtmlBody") or ""))
            text = Body.plain(str(message.get("TextBody") or ""))
        headers = message.get("Headers") or []
        base = {
            "provider": "postmark",
            "endpoint": endpoint,
            "message_id": message_id,
            "recipient": _first_address(to),
            "to": to,
            "from": message.get("From"),
            "reply_to": message.get("ReplyTo"),
            "stream": message.get("MessageStream"),
            "template": template_ref,
            "headers": {h.get("Name"): h.get("Value") for h in headers if isinstance(h, dict)},
            "metadata": message.get("Metadata") or {},
        }
        return recorder.entry(base, subject, body_html, text)

    # -- SendGrid ----------------------------------------------------------------------------

    def answer_sendgrid(self, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        """Status, body and headers answering one ``POST /v3/mail/send`` body.

        Refused whole (400, every problem listed, nothing recorded) unless it is what SendGrid
        takes; otherwise 202 with one ``X-Message-Id`` for the request, and one record line per
        personalization, its message id the request's plus ``.`` and its place.
        """
        try:
            data = orjson.loads(body)
        except ValueError:
            data = None
        problems = _sendgrid_problems(data)
        if problems:
            if any(p["field"] == "personalizations" and "limited" in p["message"] for p in problems):
                self.count("refused_too_many")
            self.count("refused_400")
            return 400, orjson.dumps({"errors": problems}), {}
        personalizations: list[dict[str, Any]] = data["personalizations"]
        message_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        entries = self._sendgrid_entries(data, message_id) if self.recorder is not None else []
        with self._lock:
            self._requests += 1
            self.stats["messages"] += len(personalizations)
            self.stats["accepted"] += len(personalizations)
        if self.recorder is not None:
            self.recorder.write(entries)
        return 202, b"", {"X-Message-Id": message_id}

    def _sendgrid_entries(self, data: dict[str, Any], message_id: str) -> list[dict[str, Any]]:
        """The record's lines: each personalization's substitutions applied as SendGrid would."""
        assert self.recorder is not None
        content = {part["type"]: part["value"] for part in data["content"]}
        shared_headers = data.get("headers") or {}
        shared_args = data.get("custom_args") or {}
        compiled: dict[tuple[str, ...], tuple[_Substituted, _Substituted]] = {}
        entries = []
        for index, personal in enumerate(data["personalizations"]):
            substitutions: dict[str, str] = personal.get("substitutions") or {}
            keys = tuple(sorted(substitutions))
            parts = compiled.get(keys)
            if parts is None:
                pattern = _substitution_pattern(keys)
                parts = compiled[keys] = (
                    _Substituted(content.get("text/html", ""), pattern),
                    _Substituted(content.get("text/plain", ""), pattern),
                )
            body_html, text = (part.render(substitutions) for part in parts)
            subject_source = str(personal.get("subject") or data.get("subject") or "")
            subject = _Substituted(subject_source, parts[0].pattern)
            base = {
                "provider": "sendgrid",
                "endpoint": "mail/send",
                "message_id": f"{message_id}.{index}",
                "recipient": personal["to"][0]["email"],
                "to": personal["to"],
                "from": data.get("from"),
                "reply_to": personal.get("reply_to") or data.get("reply_to"),
                "categories": data.get("categories") or [],
                "headers": {**shared_headers, **(personal.get("headers") or {})},
                "custom_args": {**shared_args, **(personal.get("custom_args") or {})},
            }
            entries.append(self.recorder.entry(base, subject.render(substitutions).text(), body_html, text))
        return entries

    # -- Mailgun -----------------------------------------------------------------------------

    def answer_mailgun(self, domain: str, content_type: str, body: bytes) -> tuple[int, bytes]:
        """Status and JSON body answering one ``POST /v3/{domain}/messages`` with form data.

        Refused whole (400 ``{"message"}``, nothing recorded) unless it is what Mailgun takes;
        otherwise 200 with one id for the request, and one record line per recipient, its message
        id the request's (without angle brackets) plus ``.`` and its place.
        """
        form = _form_fields(content_type, body)
        if form is None:
            self.count("refused_400")
            return 400, _mg_message("Invalid form data: send multipart/form-data or urlencoded fields")
        problem, recipients, variables = _mailgun_problem(form)
        if problem:
            if "Too many recipients" in problem:
                self.count("refused_too_many")
            self.count("refused_400")
            return 400, _mg_message(problem)
        message_id = f"{uuid.uuid4().hex}@{domain}"
        entries = []
        if self.recorder is not None:
            entries = self._mailgun_entries(form, recipients, variables, message_id)
        with self._lock:
            self._requests += 1
            self.stats["messages"] += len(recipients)
            self.stats["accepted"] += len(recipients)
        if self.recorder is not None:
            self.recorder.write(entries)
        return 200, orjson.dumps({"id": f"<{message_id}>", "message": "Queued. Thank you."})

    def _mailgun_entries(
        self,
        form: dict[str, list[str]],
        recipients: list[tuple[str, str]],
        variables: dict[str, Any],
        message_id: str,
    ) -> list[dict[str, Any]]:
        """The record's lines: each recipient's variables applied as Mailgun would."""
        assert self.recorder is not None
        pattern = _MG_VARIABLE
        body_html = _Substituted(_first(form, "html"), pattern)
        text = _Substituted(_first(form, "text"), pattern)
        subject = _Substituted(_first(form, "subject"), pattern)
        headers = {name[2:]: values[-1] for name, values in form.items() if name.startswith("h:")}
        custom = {name[2:]: values[-1] for name, values in form.items() if name.startswith("v:")}
        entries = []
        for index, (to, address) in enumerate(recipients):
            own = variables.get(address) or {}
            substitutions = {
                f"%recipient.{key}%": value if isinstance(value, str) else orjson.dumps(value).decode()
                for key, value in own.items()
            }

            def sub(value: str, substitutions: dict[str, str] = substitutions) -> str:
                return pattern.sub(lambda m: substitutions.get(m.group(0), m.group(0)), value)

            base = {
                "provider": "mailgun",
                "endpoint": "messages",
                "message_id": f"{message_id}.{index}",
                "recipient": address,
                "to": to,
                "from": _first(form, "from"),
                "reply_to": headers.get("Reply-To"),
                "tags": form.get("o:tag", []),
                "headers": {name: sub(value) for name, value in headers.items()},
                "metadata": {name: sub(value) for name, value in custom.items()},
            }
            entries.append(
                self.recorder.entry(
                    base,
                    subject.render(substitutions).text(),
                    body_html.render(substitutions),
                    text.render(substitutions),
                )
            )
        return entries

    # -- SES -----------------------------------------------------------------------------------

    def ses_template(self, name: Any, body: Any, *, create: bool) -> tuple[int, bytes, dict[str, str]]:
        """``CreateEmailTemplate`` (``create``) or ``UpdateEmailTemplate`` of the template ``name``.

        The template is compiled as SES's Handlebars would read it; one this fake cannot render
        (a block helper, an unclosed tag) is refused with a 400, so a test never sends it.
        """
        content = body.get("TemplateContent") if isinstance(body, dict) else None
        if create:
            name = body.get("TemplateName") if isinstance(body, dict) else None
        if not isinstance(name, str) or not _SES_NAME.fullmatch(name):
            return _ses_error(400, "BadRequestException", "TemplateName must be 1-64 letters, digits, _ or -")
        if not isinstance(content, dict) or not all(
            isinstance(content.get(part, ""), str) for part in ("Subject", "Text", "Html")
        ):
            return _ses_error(
                400, "BadRequestException", "TemplateContent must hold Subject, Text and Html strings"
            )
        if not content.get("Subject") or not (content.get("Text") or content.get("Html")):
            return _ses_error(
                400, "BadRequestException", "A template needs a Subject and a Text or Html part"
            )
        with self._lock:
            exists = name in self.ses_templates
        if create and exists:
            return _ses_error(400, "AlreadyExistsException", f"Template {name} already exists.")
        if not create and not exists:
            return _ses_error(404, "NotFoundException", f"Template {name} does not exist.")
        try:
            template = SesTemplate.compiled(
                name, content["Subject"], content.get("Text", ""), content.get("Html", "")
            )
        except TemplateSyntaxError as exc:
            return _ses_error(400, "BadRequestException", f"Template {name} is not valid: {exc}")
        with self._lock:
            self.ses_templates[name] = template
        self.count("ses_templates_created" if create else "ses_templates_updated")
        return 200, b"{}", {}

    def delete_ses_template(self, name: str) -> None:
        with self._lock:
            self.ses_templates.pop(name, None)
        self.count("ses_templates_deleted")

    def answer_ses(self, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        """Status, body and headers answering one ``SendBulkEmail`` (``POST /v2/email/outbound-bulk-emails``).

        A request of the wrong shape, or with more than 50 entries, is refused whole (400
        ``BadRequestException``, nothing recorded). Otherwise each entry is answered on its own in
        ``BulkEmailEntryResults``, in order: ``SUCCESS`` with a ``MessageId``, or the ``Status`` a
        fault gives the address (:attr:`Faults.statuses`), ``INVALID_PARAMETER`` for an address
        or template data SES would not take, ``TEMPLATE_NOT_FOUND`` for an unknown template. An
        entry whose data lacks a variable the template uses is accepted, as by SES, but not
        recorded: SES reports such a message later as a rendering failure and never sends it
        (counted as ``ses_rendering_failures``).
        """
        try:
            data = orjson.loads(body)
        except ValueError:
            data = None
        problem = _ses_problem(data)
        if problem:
            if "at most" in problem:
                self.count("refused_too_many")
            self.count("refused_400")
            return _ses_error(400, "BadRequestException", problem)
        entries: list[dict[str, Any]] = data["BulkEmailEntries"]
        template_name = data["DefaultContent"]["Template"].get("TemplateName")
        with self._lock:
            template = self.ses_templates.get(template_name) if isinstance(template_name, str) else None
        statuses = {address.lower(): status for address, status in self.faults.statuses.items()}
        recorder = self.recorder
        results: list[dict[str, Any]] = []
        records: list[dict[str, Any]] = []
        counts: Counter[str] = Counter()
        for entry, message_id in zip(entries, self._message_ids(len(entries)), strict=True):
            to = entry["Destination"]["ToAddresses"]
            address = _first_address(to[0]) if len(to) == 1 and isinstance(to[0], str) else None
            model = _ses_model(entry)
            if address is None or not address.isascii():
                result = {"Status": "INVALID_PARAMETER", "Error": f"Illegal address: {to!r}"}
            elif model is None:
                result = {
                    "Status": "INVALID_PARAMETER",
                    "Error": "ReplacementTemplateData is not a JSON object",
                }
            elif template is None:
                result = {
                    "Status": "TEMPLATE_NOT_FOUND",
                    "Error": f"Template {template_name} does not exist.",
                }
            elif address.lower() in statuses:
                status = statuses[address.lower()]
                result = {"Status": status, "Error": f"{status} (a fault of the fake ESP)"}
            else:
                result = {"Status": "SUCCESS", "MessageId": f"{message_id}-000000"}
                if not template.variables <= model.keys():
                    counts["ses_rendering_failures"] += 1
                elif recorder is not None:
                    records.append(
                        self._ses_entry(recorder, data, entry, template, model, address, result["MessageId"])
                    )
            counts["accepted" if result["Status"] == "SUCCESS" else f"ses_{result['Status']}"] += 1
            results.append(result)
        with self._lock:
            self.stats["messages"] += len(entries)
            self.stats.update(counts)
        if recorder is not None:
            recorder.write(records)
        return 200, orjson.dumps({"BulkEmailEntryResults": results}), {}

    def _ses_entry(
        self,
        recorder: Recorder,
        data: dict[str, Any],
        entry: dict[str, Any],
        template: SesTemplate,
        model: dict[str, Any],
        address: str,
        message_id: str,
    ) -> dict[str, Any]:
        """The record's line for one accepted entry, its template rendered as SES would."""
        subject, body_html, text = template.render(model)
        shared = data["DefaultContent"]["Template"]
        headers = {h["Name"]: h["Value"] for h in shared.get("Headers") or []}
        headers.update((h["Name"], h["Value"]) for h in entry.get("ReplacementHeaders") or [])
        tags = {t["Name"]: t["Value"] for t in data.get("DefaultEmailTags") or []}
        tags.update((t["Name"], t["Value"]) for t in entry.get("ReplacementTags") or [])
        base = {
            "provider": "ses",
            "endpoint": "outbound-bulk-emails",
            "message_id": message_id,
            "recipient": address,
            "to": entry["Destination"]["ToAddresses"],
            "from": data.get("FromEmailAddress"),
            "reply_to": data.get("ReplyToAddresses") or [],
            "configuration_set": data.get("ConfigurationSetName"),
            "template": template.name,
            "headers": headers,
            "tags": tags,
        }
        return recorder.entry(base, subject, body_html, text)

    # -- HTTP --------------------------------------------------------------------------------

    def _routes(self) -> Starlette:
        """The template and control endpoints; the two sending ones are served by :class:`_FaultLayer`."""
        return Starlette(
            routes=[
                Route("/templates", self._list_templates, methods=["GET"]),
                Route("/templates", self._create_template, methods=["POST"]),
                Route("/templates/{ref}", self._template, methods=["GET", "PUT", "DELETE"]),
                Route("/_faults", self._faults, methods=["GET", "POST"]),
                Route("/_reset", self._reset, methods=["POST"]),
                Route("/_stats", self._stats, methods=["GET"]),
            ]
        )

    async def _list_templates(self, request: Request) -> Response:
        templates = [t.summary() for t in self.templates.values()]
        return JSONResponse({"TotalCount": len(templates), "Templates": templates})

    async def _create_template(self, request: Request) -> Response:
        body = await _json(request)
        if not isinstance(body, dict) or not body.get("Name"):
            return _unprocessable(1120, "A required template field is missing: Name.")
        if not body.get("Subject"):
            return _unprocessable(1120, "A required template field is missing: Subject.")
        alias = body.get("Alias")
        if alias and self.find_template(alias) is not None:
            return _unprocessable(1122, f"The alias '{alias}' is already in use by another template.")
        template = self.create_template(body)
        self.count("templates_created")
        return JSONResponse(template.summary())

    async def _template(self, request: Request) -> Response:
        ref = request.path_params["ref"]
        template = self.find_template(ref)
        if template is None:
            return _unprocessable(1101, f"The template '{ref}' was not found.")
        if request.method == "GET":
            return JSONResponse(template.detail())
        if request.method == "DELETE":
            with self._lock:
                self.templates.pop(template.template_id, None)
            return JSONResponse({"ErrorCode": 0, "Message": f"Template {template.template_id} removed."})
        body = await _json(request)
        if not isinstance(body, dict):
            return _unprocessable(1109, "No template data received.")
        with self._lock:
            template.name = str(body.get("Name", template.name))
            template.alias = body.get("Alias", template.alias)
            template.subject = str(body.get("Subject", template.subject))
            template.html_body = str(body.get("HtmlBody", template.html_body))
            template.text_body = str(body.get("TextBody", template.text_body))
            template.compile()
        self.count("templates_updated")
        return JSONResponse(template.summary())

    async def _faults(self, request: Request) -> Response:
        if request.method == "POST":
            changes = await _json(request)
            if not isinstance(changes, dict):
                return JSONResponse({"error": "send a JSON object of fault settings"}, status_code=400)
            try:
                self.set_faults(**changes)
            except (TypeError, ValueError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(asdict(self.faults))

    async def _reset(self, request: Request) -> Response:
        self.reset()
        return JSONResponse(asdict(self.faults))

    async def _stats(self, request: Request) -> Response:
        with self._lock:
            templates = {"templates": len(self.templates), "ses_templates": len(self.ses_templates)}
            return JSONResponse({**self.stats, **templates})

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()


#: A response as the fault layer writes it: status, body, extra headers (JSON unless they say).
Answer = tuple[int, bytes, dict[str, str] | None]


@dataclass(frozen=True)
class _FaultAnswers:
    """How one provider words the injected faults: the one place that knows each provider's
    error bodies and rate-limit headers, so every sending endpoint runs the same fault script."""

    unauthorized: Answer
    rate_limited: Callable[[Faults], Answer]
    failed: Answer
    unavailable: Callable[[Faults], Answer]

    def for_fault(self, action: str, faults: Faults) -> Answer | None:
        """The canned answer for ``action``, or None when the fault is not an error response."""
        if action == "401":
            return self.unauthorized
        if action == "429":
            return self.rate_limited(faults)
        if action == "500":
            return self.failed
        if action == "503":
            return self.unavailable(faults)
        return None


class _FaultLayer:
    """Pure ASGI in front of the routes: faults need the raw connection, which routes never see.

    A dropped connection must look to the client like one: no status line at all. uvicorn gives an
    application no handle on the socket, but its ``send`` is a bound method of the request cycle,
    which holds the transport; closing that transport after reading the whole request is exactly
    "request delivered, no answer" (httpx: ``RemoteProtocolError: Server disconnected without
    sending a response``). Reading the body first matters: closing a socket with unread data sends
    a reset, which the client may see while still writing, i.e. as a request that never left.

    The two sending endpoints are answered here too, straight from the body's bytes
    (:meth:`FakeESP.answer`): a Starlette ``Request`` and ``Response`` around them cost more per
    batch than the fake's own work on a few hundred messages.
    """

    def __init__(self, esp: FakeESP, routes: Starlette) -> None:
        self.esp = esp
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_"):
            await self.routes(scope, receive, send)
            return
        if scope["path"] == SENDGRID_PATH:
            await self._sendgrid(scope, receive, send)
            return
        mailgun = MAILGUN_PATH.fullmatch(scope["path"])
        if mailgun is not None:
            await self._mailgun(scope, receive, send, mailgun.group(1))
            return
        if scope["path"] == SES_SEND_PATH:
            await self._ses_send(scope, receive, send)
            return
        ses_template = SES_TEMPLATES_PATH.fullmatch(scope["path"])
        if ses_template is not None:
            await self._ses_templates(scope, receive, send, ses_template.group(1))
            return
        self.esp.count("requests")
        if not self.esp.authorised(_token(scope["headers"])):
            self.esp.count("fault_401")
            await _drain(receive)
            await _respond(send, 401, _error_json(10, "Bad or missing API token."))
            return
        endpoint = SEND_PATHS.get(scope["path"])
        if endpoint is None:
            await self.routes(scope, receive, send)
            return
        if scope["method"] != "POST":
            await _drain(receive)
            await _respond(send, 405, b"Method Not Allowed", {"Allow": "POST"}, "text/plain; charset=utf-8")
            return

        await self._send_with_faults(
            receive, send, _POSTMARK_FAULTS, lambda body: (*self.esp.answer(endpoint, body), None)
        )

    async def _send_with_faults(
        self,
        receive: Receive,
        send: Send,
        answers: _FaultAnswers,
        answer: Callable[[bytes], Answer],
    ) -> None:
        """One sending request, after its provider's authentication: the next fault, if any,
        answered in the provider's words (``answers``), else the provider's answer to the body.

        ``drop_after`` processes the body (the messages count as sent) and then closes the
        connection without a status line: the client cannot tell whether anything was sent.
        """
        esp = self.esp
        esp.count("send_requests")
        action = esp.decide()
        if action != "ok":
            esp.count(f"fault_{action}")
        faults = esp.faults
        canned = answers.for_fault(action, faults)
        if canned is not None:
            await _drain(receive)
            await _respond(send, *canned)
            return
        if action == "drop":
            await _drain(receive)
            await _drop(send)
            return
        body = await _read_body(receive)
        if body is None:
            return  # the client went away before the whole request arrived: nothing to answer
        with _collector_paused():
            status, data, headers = answer(body)
        if action == "drop_after":
            await _drop(send)
            return
        wait = faults.delay + (faults.slow_seconds if action == "slow" else 0.0)
        await _respond(_delayed(send, wait) if wait else send, status, data, headers)

    async def _sendgrid(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``POST /v3/mail/send`` with the same faults as Postmark's endpoints, SendGrid's answers.

        The ``inactive`` and ``invalid`` faults do not apply: SendGrid accepts such recipients
        (202) and reports the bounce or drop later, through its event webhook.
        """
        esp = self.esp
        esp.count("requests")
        if not esp.authorised(_bearer(scope["headers"])):
            esp.count("fault_401")
            await _drain(receive)
            await _respond(send, 401, _sg_error(_SG_UNAUTHORIZED))
            return
        if scope["method"] != "POST":
            await _drain(receive)
            await _respond(send, 405, _sg_error("method not allowed"), {"Allow": "POST"})
            return
        await self._send_with_faults(receive, send, _SENDGRID_FAULTS, esp.answer_sendgrid)

    async def _mailgun(self, scope: Scope, receive: Receive, send: Send, domain: str) -> None:
        """``POST /v3/{domain}/messages`` with the same faults as the other endpoints, Mailgun's
        answers. As for SendGrid, ``inactive`` and ``invalid`` do not apply: Mailgun accepts such
        recipients and reports the bounce or drop later, through its webhooks."""
        esp = self.esp
        esp.count("requests")
        if not esp.authorised(_basic_password(scope["headers"], "api")):
            esp.count("fault_401")
            await _drain(receive)
            await _respond(send, 401, b"Forbidden", content_type="text/plain; charset=utf-8")
            return
        if scope["method"] != "POST":
            await _drain(receive)
            await _respond(send, 405, _mg_message("Method Not Allowed"), {"Allow": "POST"})
            return
        content_type = _header(scope["headers"], b"content-type") or ""
        await self._send_with_faults(
            receive,
            send,
            _MAILGUN_FAULTS,
            lambda body: (*esp.answer_mailgun(domain, content_type, body), None),
        )

    async def _ses_refused(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer 403 as SES does, and say so, if the request's signature names the wrong key."""
        problem = _ses_auth_problem(self.esp, scope["headers"])
        if problem is None:
            return False
        self.esp.count("fault_401")
        await _drain(receive)
        status, data, headers = _ses_error(403, *problem)
        await _respond(send, status, data, headers)
        return True

    async def _ses_templates(self, scope: Scope, receive: Receive, send: Send, name: str | None) -> None:
        """SES's ``CreateEmailTemplate`` (POST), and ``Get``/``Update``/``DeleteEmailTemplate``
        (GET, PUT, DELETE with a name). Faults other than a refused key leave them alone."""
        esp = self.esp
        esp.count("requests")
        if await self._ses_refused(scope, receive, send):
            return
        method = scope["method"]
        if (name is None) != (method == "POST") or method not in ("POST", "GET", "PUT", "DELETE"):
            await _drain(receive)
            await _respond(send, *_ses_error(405, "MethodNotAllowedException", "Method Not Allowed"))
            return
        body = await _read_body(receive)
        if body is None:
            return
        if method in ("POST", "PUT"):
            try:
                data = orjson.loads(body)
            except ValueError:
                data = None
            await _respond(send, *esp.ses_template(name or "", data, create=method == "POST"))
            return
        template = esp.ses_templates.get(name or "")
        if template is None:
            await _respond(send, *_ses_error(404, "NotFoundException", f"Template {name} does not exist."))
        elif method == "GET":
            content = {"Subject": template.subject, "Text": template.text, "Html": template.html}
            await _respond(send, 200, orjson.dumps({"TemplateName": name, "TemplateContent": content}))
        else:
            esp.delete_ses_template(template.name)
            await _respond(send, 200, b"{}")

    async def _ses_send(self, scope: Scope, receive: Receive, send: Send) -> None:
        """SES's ``SendBulkEmail`` with the same faults as the other endpoints, SES's answers
        (403 ``UnrecognizedClientException`` for ``401``, ``TooManyRequestsException`` for 429).
        ``inactive`` and ``invalid`` do not apply; per-entry failures come from ``statuses``."""
        esp = self.esp
        esp.count("requests")
        if await self._ses_refused(scope, receive, send):
            return
        if scope["method"] != "POST":
            await _drain(receive)
            await _respond(send, *_ses_error(405, "MethodNotAllowedException", "Method Not Allowed"))
            return
        await self._send_with_faults(receive, send, _SES_FAULTS, esp.answer_ses)


@contextmanager
def _collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off for one synchronous stretch of work.

    A 500-message batch parses into a few thousand dicts and lists, all acyclic and all freed by
    reference counting as soon as the request is answered; left on, the collector walks them over
    and over while they are alive (a young collection every 700 allocations, and the full ones
    their survival sets off), which cost as much as all the rest of the fake's own work per message.
    The collector is global to the process, so it is turned back on only if it was on: a caller
    that keeps it off stays in charge.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


async def _swallow(message: Message) -> None:
    """A ``send`` that discards the response (the connection is dropped after processing)."""


def _delayed(send: Send, seconds: float) -> Send:
    async def delayed(message: Message) -> None:
        if message["type"] == "http.response.start":
            await asyncio.sleep(seconds)
        await send(message)

    return delayed


async def _drop(send: Send) -> None:
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is not None:
        transport.close()
        for _ in range(3):  # let connection_lost run, so the server stays quiet about it
            await asyncio.sleep(0)
        return
    # Not uvicorn: start an answer and never finish it; the server closes the connection.
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]})
    await send({"type": "http.response.body", "body": b"[", "more_body": True})


def _bearer(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """The token of an ``Authorization: Bearer …`` header (SendGrid's)."""
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


def _header(headers: Sequence[tuple[bytes, bytes]], wanted: bytes) -> str | None:
    for name, value in headers:
        if name.lower() == wanted:
            return value.decode("latin-1")
    return None


def _basic_password(headers: Sequence[tuple[bytes, bytes]], user: str) -> str | None:
    """The password of an ``Authorization: Basic`` header naming ``user`` (Mailgun's ``api:KEY``)."""
    value = _header(headers, b"authorization")
    if value is None:
        return None
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    name, colon, password = decoded.partition(":")
    return password if colon and name == user else None


def _token(headers: Sequence[tuple[bytes, bytes]]) -> str | None:
    """The ``X-Postmark-Server-Token`` header's value (ASGI servers give header names lower-cased)."""
    for name, value in headers:
        if name.lower() == b"x-postmark-server-token":
            return value.decode("latin-1")
    return None


async def _drain(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return


async def _read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client disconnected first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def _respond(
    send: Send,
    status: int,
    data: bytes,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> None:
    headers = dict(headers or {})
    content_type = next((headers.pop(k) for k in list(headers) if k.lower() == "content-type"), content_type)
    raw = [(b"content-type", content_type.encode()), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


async def _json(request: Request) -> Any:
    try:
        return orjson.loads(await request.body())
    except ValueError:
        return None


#: A quoted display name, ``"..."`` with backslash escapes; unrolled (``a*(?:\\.a*)*`` rather than
#: ``(?:a|\\.)*``), which ``re`` runs as a tight loop instead of one alternation per character.
_QUOTED = r'"[^"\\]*(?:\\.[^"\\]*)*"'
#: ``"Name" <a@b>``, ``Name <a@b>`` or ``a@b``: one recipient, the common case, parsed without the
#: standard library's general (and twenty times slower) address parser.
_ONE_ADDRESS = re.compile(rf'\s*(?:(?:{_QUOTED}|[^<>",@]*)\s*<([^<>\s,]+)>|([^<>\s",]+))\s*')
#: :data:`_ONE_ADDRESS` with an ``@`` required in the address and nothing captured: whether ``To``
#: is one valid recipient, all that a message's answer asks of it unless a fault names recipients.
_ONE_MAILBOX = re.compile(
    rf'\s*(?:(?:{_QUOTED}|[^<>",@]*)\s*<[^<>\s,@]*@[^<>\s,]*>|[^<>\s",@]*@[^<>\s",]*)\s*'
)


def _first_address(to: str) -> str | None:
    """The first recipient's address in ``To``, or None unless ``To`` names at least one recipient
    and every address in it has an ``@`` (Postmark answers ErrorCode 300 then)."""
    match = _ONE_ADDRESS.fullmatch(to)
    if match:
        address: str = match.group(1) or match.group(2)
        return address if "@" in address else None
    addresses = [address for _, address in getaddresses([to]) if address]
    if not addresses or any("@" not in address for address in addresses):
        return None
    return addresses[0]


class _Screen:
    """The ``invalid`` and ``inactive`` faults, matched without regard to case."""

    def __init__(self, invalid: list[str], inactive: list[str]) -> None:
        self.invalid = {address.lower() for address in invalid}
        self.inactive = {address.lower() for address in inactive}

    def refusal(self, to: str) -> dict[str, Any] | None:
        """The error answer for a message to ``to`` (which parses), or None if it may be sent."""
        email = _first_address(to) or ""
        if email.lower() in self.invalid:
            return _error(300, f"Error parsing 'To': Illegal email address '{email}'.")
        if email.lower() in self.inactive:
            return _error(406, _INACTIVE.format(email))
        return None


# -- SendGrid's side ------------------------------------------------------------------------------

_SG_UNAUTHORIZED: Final = "The provided authorization grant is invalid, expired, or revoked"
_SG_ADDRESS = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+")


def _sg_error(message: str, field: str | None = None) -> bytes:
    return orjson.dumps({"errors": [{"message": message, "field": field, "help": None}]})


def _sg_problem(problems: list[dict[str, Any]], message: str, field: str | None) -> None:
    problems.append({"message": message, "field": field, "help": None})


def _strings(value: Any) -> bool:
    """Whether ``value`` is absent or an object of string values (substitutions, headers, args)."""
    return value is None or (isinstance(value, dict) and all(isinstance(v, str) for v in value.values()))


def _sendgrid_problems(data: Any) -> list[dict[str, Any]]:
    """What SendGrid would refuse in a mail/send body: its ``errors`` list, empty if none."""
    problems: list[dict[str, Any]] = []
    if not isinstance(data, dict):
        _sg_problem(problems, "Bad Request", None)
        return problems
    personalizations = data.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        _sg_problem(problems, "You must have at least one personalization.", "personalizations")
    elif len(personalizations) > SENDGRID_MAX:
        _sg_problem(
            problems,
            f"The personalization block is limited to {SENDGRID_MAX} personalizations per API request. "
            f"You have provided {len(personalizations)} personalizations.",
            "personalizations",
        )
    else:
        seen: set[str] = set()
        every_subject = True
        for i, personal in enumerate(personalizations):
            where = f"personalizations.{i}"
            if not isinstance(personal, dict):
                _sg_problem(problems, "A personalization must be an object.", where)
                continue
            every_subject = every_subject and bool(personal.get("subject"))
            to = personal.get("to")
            if not isinstance(to, list) or not to:
                _sg_problem(problems, "The to array is required for every personalization.", f"{where}.to")
                continue
            for j, address in enumerate(to):
                email = address.get("email") if isinstance(address, dict) else None
                if not isinstance(email, str) or not _SG_ADDRESS.fullmatch(email):
                    _sg_problem(problems, "Does not contain a valid address.", f"{where}.to.{j}.email")
                elif email.lower() in seen:
                    _sg_problem(
                        problems,
                        "Each email address in the personalization block should be unique between "
                        f"to, cc, and bcc. We found the first duplicate instance of [{email}].",
                        f"{where}.to.{j}.email",
                    )
                else:
                    seen.add(email.lower())
            for name in ("substitutions", "headers", "custom_args"):
                if not _strings(personal.get(name)):
                    _sg_problem(problems, f"The {name} values must be strings.", f"{where}.{name}")
        if not every_subject and not (isinstance(data.get("subject"), str) and data["subject"]):
            _sg_problem(
                problems,
                "The subject is required. You can get around this requirement if you use a template "
                "with a subject defined or if every personalization has a subject defined.",
                "subject",
            )
    sender = data.get("from")
    if not isinstance(sender, dict) or not isinstance(sender.get("email"), str):
        _sg_problem(problems, "The from object must be provided for every email send.", "from")
    elif not _SG_ADDRESS.fullmatch(sender["email"]):
        _sg_problem(problems, "The from email does not contain a valid address.", "from.email")
    content = data.get("content")
    if not isinstance(content, list) or not content:
        _sg_problem(problems, "The content parameter is required (no template_id).", "content")
    else:
        for k, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                _sg_problem(problems, "The content type must be a string.", f"content.{k}.type")
            elif not isinstance(part.get("value"), str) or not part["value"]:
                _sg_problem(
                    problems,
                    "The content value must be a string at least one character in length.",
                    f"content.{k}.value",
                )
        types = [part.get("type") for part in content if isinstance(part, dict)]
        if "text/plain" in types and types.index("text/plain") != 0:
            _sg_problem(problems, "If present, text/plain content must be first.", "content")
    for name in ("headers", "custom_args"):
        if not _strings(data.get(name)):
            _sg_problem(problems, f"The {name} values must be strings.", name)
    return problems


# -- Mailgun's side -------------------------------------------------------------------------------

#: A recipient variable as Mailgun reads it in the subject, bodies and header values.
_MG_VARIABLE = re.compile(r"%recipient\.[A-Za-z0-9_.\-]+%")
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.I)
_PART_NAME = re.compile(rb'\bname="([^"]*)"')


def _mg_message(message: str) -> bytes:
    return orjson.dumps({"message": message})


def _first(form: dict[str, list[str]], name: str) -> str:
    values = form.get(name)
    return values[0] if values else ""


def _form_fields(content_type: str, body: bytes) -> dict[str, list[str]] | None:
    """The form's fields, each name's values in order; None if the body is not a form.

    ``multipart/form-data`` is split on its boundary by hand (the standard library's email parser
    costs several times the rest of the fake's work on a 1,000-recipient request); urlencoded
    fields go through :func:`urllib.parse.parse_qsl`.
    """
    kind = content_type.split(";", 1)[0].strip().lower()
    pairs: list[tuple[str, str]] = []
    try:
        if kind == "application/x-www-form-urlencoded":
            pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, strict_parsing=bool(body))
        elif kind == "multipart/form-data":
            match = _BOUNDARY.search(content_type)
            if match is None:
                return None
            delimiter = b"--" + match.group(1).encode("latin-1")
            chunks = body.split(delimiter)
            if len(chunks) < 2 or not chunks[-1].startswith(b"--"):
                return None
            for chunk in chunks[1:-1]:
                if not chunk.startswith(b"\r\n") or not chunk.endswith(b"\r\n"):
                    return None
                head, separator, raw = chunk[2:-2].partition(b"\r\n\r\n")
                named = _PART_NAME.search(head)
                if not separator or named is None:
                    return None
                pairs.append((named.group(1).decode("utf-8"), raw.decode("utf-8")))
        else:
            return None
    except (UnicodeDecodeError, ValueError):
        return None
    form: dict[str, list[str]] = {}
    for name, value in pairs:
        form.setdefault(name, []).append(value)
    return form


def _mailgun_problem(form: dict[str, list[str]]) -> tuple[str, list[tuple[str, str]], dict[str, Any]]:
    """What Mailgun would refuse (its 400 message, empty if nothing), the recipients as
    (``to`` value, address) pairs, and the recipient variables."""
    if not _first(form, "from"):
        return "from parameter is missing", [], {}
    recipients: list[tuple[str, str]] = []
    for to in form.get("to", []):
        match = _ONE_ADDRESS.fullmatch(to)
        addresses = [match.group(1) or match.group(2)] if match else [a for _, a in getaddresses([to]) if a]
        if not addresses or any("@" not in address for address in addresses):
            return f"'to' parameter is not a valid address. please check documentation ({to!r})", [], {}
        recipients.extend((to, address) for address in addresses)
    if not recipients:
        return "to parameter is missing", [], {}
    if len(recipients) > MAILGUN_MAX:
        return f"Too many recipients: {len(recipients)} (at most {MAILGUN_MAX} per request)", [], {}
    if not _first(form, "subject"):
        return "subject parameter is missing", [], {}
    if not _first(form, "text") and not _first(form, "html"):
        return "Need at least one of 'text' or 'html' parameters specified", [], {}
    variables: dict[str, Any] = {}
    if "recipient-variables" in form:
        try:
            variables = orjson.loads(_first(form, "recipient-variables"))
        except ValueError:
            return "recipient-variables parameter is not a valid JSON", [], {}
        if not isinstance(variables, dict) or not all(isinstance(v, dict) for v in variables.values()):
            return "recipient-variables must be a JSON object of objects keyed by address", [], {}
        missing = [address for _, address in recipients if address not in variables]
        if missing:
            return f"recipient-variables has no entry for {missing[0]}", [], {}
    return "", recipients, variables


@lru_cache(maxsize=64)
def _substitution_pattern(keys: tuple[str, ...]) -> re.Pattern[str] | None:
    """One pattern for a personalization's keys, longest first (plain text, as SendGrid reads them)."""
    if not keys:
        return None
    return re.compile("|".join(re.escape(key) for key in sorted(keys, key=len, reverse=True)))


class _Substituted:
    """A content part split before its first substitution key: the head is hashed once per request,
    each personalization costs only its tail (as :class:`CompiledBody` for templates)."""

    def __init__(self, source: str, pattern: re.Pattern[str] | None) -> None:
        self.pattern = pattern
        match = pattern.search(source) if pattern is not None else None
        start = match.start() if match else len(source)
        self.head, self.tail = source[:start], source[start:]
        head_bytes = self.head.encode("utf-8")
        self.head_size = len(head_bytes)
        self.head_hash = hashlib.sha256(head_bytes) if head_bytes else None

    def render(self, substitutions: dict[str, str]) -> Body:
        tail = self.tail
        if self.pattern is not None and tail:
            tail = self.pattern.sub(lambda match: substitutions.get(match.group(0), match.group(0)), tail)
        return Body(self.head, self.head_size, self.head_hash, tail)


# -- SES's side -----------------------------------------------------------------------------------

_SES_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_SES_TAG = re.compile(r"[A-Za-z0-9_-]{1,256}")
_SES_HEADER_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]{1,126}")
_SES_HEADER_VALUE = re.compile(r"[\x20-\x7e]{0,870}")
#: ``AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/ses/aws4_request, SignedHeaders=…, Signature=…``
_AWS4 = re.compile(
    r"AWS4-HMAC-SHA256 Credential=([^/\s,]+)/(\d{8})/([a-z0-9-]+)/ses/aws4_request,\s*"
    r"SignedHeaders=([a-z0-9;-]+),\s*Signature=[0-9a-f]{64}"
)


def _ses_error(status: int, kind: str, message: str) -> tuple[int, bytes, dict[str, str]]:
    """An error as SES's REST-JSON protocol answers it: the type in ``x-amzn-ErrorType``, the
    message in the body (which is what botocore reads back)."""
    return status, orjson.dumps({"message": message}), {"x-amzn-ErrorType": kind}


def _ses_auth_problem(esp: FakeESP, headers: Sequence[tuple[bytes, bytes]]) -> tuple[str, str] | None:
    """Why SES would refuse this request's signature (error type, message), or None.

    The access key id must be the fake's token; the signature itself is not checked (the fake
    has no secret key): the adapter's signing is held to botocore's in the tests instead.
    """
    value = _header(headers, b"authorization")
    if not value:
        return "MissingAuthenticationTokenException", "Missing Authentication Token"
    match = _AWS4.fullmatch(value.strip())
    date = _header(headers, b"x-amz-date") or ""
    if match is None or not date.startswith(match.group(2)) or "host" not in match.group(4).split(";"):
        return (
            "IncompleteSignatureException",
            "Authorization header requires 'Credential', 'Signature', 'SignedHeaders' and 'X-Amz-Date'.",
        )
    if not esp.authorised(match.group(1)):
        return "UnrecognizedClientException", "The security token included in the request is invalid."
    return None


def _ses_tags_ok(tags: Any) -> bool:
    return tags is None or (
        isinstance(tags, list)
        and all(
            isinstance(tag, dict)
            and isinstance(tag.get("Name"), str)
            and isinstance(tag.get("Value"), str)
            and _SES_TAG.fullmatch(tag["Name"])
            and _SES_TAG.fullmatch(tag["Value"])
            for tag in tags
        )
    )


def _ses_headers_ok(headers: Any) -> bool:
    return headers is None or (
        isinstance(headers, list)
        and len(headers) <= 15
        and all(
            isinstance(header, dict)
            and isinstance(header.get("Name"), str)
            and isinstance(header.get("Value"), str)
            and _SES_HEADER_NAME.fullmatch(header["Name"])
            and _SES_HEADER_VALUE.fullmatch(header["Value"])
            for header in headers
        )
    )


def _ses_problem(data: Any) -> str:
    """What SES would refuse the whole SendBulkEmail request for; empty if nothing."""
    if not isinstance(data, dict):
        return "The request body must be a JSON object."
    entries = data.get("BulkEmailEntries")
    if not isinstance(entries, list) or not entries:
        return "BulkEmailEntries must hold at least one entry."
    if len(entries) > SES_MAX:
        return f"Too many BulkEmailEntries: {len(entries)} (at most {SES_MAX} per request)."
    sender = data.get("FromEmailAddress")
    if not isinstance(sender, str) or _first_address(sender) is None or not sender.isascii():
        return "FromEmailAddress must be an ASCII email address (names RFC 2047-encoded)."
    reply_to = data.get("ReplyToAddresses")
    if reply_to is not None and not (
        isinstance(reply_to, list) and all(isinstance(a, str) for a in reply_to)
    ):
        return "ReplyToAddresses must be a list of addresses."
    content = data.get("DefaultContent")
    template = content.get("Template") if isinstance(content, dict) else None
    if not isinstance(template, dict) or not isinstance(template.get("TemplateName"), str):
        return "DefaultContent.Template.TemplateName is required."
    if not isinstance(template.get("TemplateData", ""), str):
        return "DefaultContent.Template.TemplateData must be a string."
    if not _ses_headers_ok(template.get("Headers")):
        return "DefaultContent.Template.Headers: at most 15 printable ASCII headers."
    if not _ses_tags_ok(data.get("DefaultEmailTags")):
        return "DefaultEmailTags: names and values may hold only ASCII letters, digits, _ and -."
    for index, entry in enumerate(entries):
        where = f"BulkEmailEntries[{index}]"
        destination = entry.get("Destination") if isinstance(entry, dict) else None
        to = destination.get("ToAddresses") if isinstance(destination, dict) else None
        if not isinstance(to, list) or not to:
            return f"{where}.Destination.ToAddresses is required."
        if not _ses_tags_ok(entry.get("ReplacementTags")):
            return f"{where}.ReplacementTags: names and values may hold only ASCII letters, digits, _ and -."
        if not _ses_headers_ok(entry.get("ReplacementHeaders")):
            return f"{where}.ReplacementHeaders: at most 15 printable ASCII headers."
    return ""


def _ses_model(entry: dict[str, Any]) -> dict[str, Any] | None:
    """An entry's ``ReplacementTemplateData`` as an object; None if it is not one."""
    content = entry.get("ReplacementEmailContent")
    replacement = content.get("ReplacementTemplate") if isinstance(content, dict) else None
    raw = replacement.get("ReplacementTemplateData") if isinstance(replacement, dict) else None
    if raw is None:
        return {}
    if not isinstance(raw, str) or len(raw) > 262_144:
        return None
    try:
        model = orjson.loads(raw)
    except ValueError:
        return None
    return model if isinstance(model, dict) else None


#: The place part of MessageIDs (``FakeESP._message_ids``) for a full batch, made once.
_PLACES: Final = [f"{place:05x}" for place in range(MAX_BATCH)]


def _places(count: int) -> list[str]:
    if count <= len(_PLACES):
        return _PLACES[:count]
    return _PLACES + [f"{place:05x}" for place in range(len(_PLACES), count)]


def _error(code: int, message: str) -> dict[str, Any]:
    return {"ErrorCode": code, "Message": message}


def _error_json(code: int, message: str) -> bytes:
    return orjson.dumps(_error(code, message))


def _unprocessable(code: int, message: str) -> Response:
    return JSONResponse(_error(code, message), status_code=422)


def _seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


# -- running it -----------------------------------------------------------------------------------


class RunningFakeESP:
    """A fake ESP served by uvicorn in a background thread on a port of its own (tests, benches)."""

    def __init__(self, esp: FakeESP, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        self.esp = esp
        # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets whose ``proto`` says
        # TCP, and without it every answer waits ~40 ms for a delayed ACK (Nagle).
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        config = uvicorn.Config(
            esp.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            proxy_headers=False,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="fake-esp", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> RunningFakeESP:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake ESP did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()
        self.esp.close()


@contextmanager
def running(esp: FakeESP | None = None, host: str = "127.0.0.1", port: int = 0) -> Iterator[RunningFakeESP]:
    """``with running(FakeESP(...)) as fake: ... fake.url ...``; stopped on exit."""
    server = RunningFakeESP(esp or FakeESP(), host, port).start()
    try:
        yield server
    finally:
        server.stop()


def serve(
    host: str = "127.0.0.1",
    port: int = 8025,
    record: Path | None = None,
    faults: Faults | None = None,
    *,
    token: str = "fake-token",
    record_bodies: RecordBodies = "text",
) -> None:
    """Run the fake in the foreground until interrupted (``newsletter dev fake-esp``)."""
    import uvicorn

    esp = FakeESP(token=token, faults=faults, record=record, record_bodies=record_bodies)
    try:
        uvicorn.run(esp.app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
    finally:
        esp.close()


def _retry_after(faults: Faults) -> dict[str, str]:
    return {"Retry-After": _seconds(faults.retry_after)}


_POSTMARK_FAULTS = _FaultAnswers(
    unauthorized=(401, _error_json(10, "Bad or missing API token."), None),
    rate_limited=lambda f: (429, _error_json(429, "Rate limit exceeded."), _retry_after(f)),
    failed=(500, _error_json(500, "Internal server error."), None),
    unavailable=lambda f: (503, _error_json(503, "Service unavailable."), _retry_after(f)),
)
_SENDGRID_FAULTS = _FaultAnswers(
    unauthorized=(401, _sg_error(_SG_UNAUTHORIZED), None),
    rate_limited=lambda f: (
        429,
        _sg_error("too many requests"),
        {**_retry_after(f), "X-RateLimit-Reset": str(int(time.time() + f.retry_after))},
    ),
    failed=(500, _sg_error("internal server error"), None),
    unavailable=lambda f: (503, _sg_error("service unavailable"), _retry_after(f)),
)
_MAILGUN_FAULTS = _FaultAnswers(
    unauthorized=(401, b"Forbidden", {"Content-Type": "text/plain; charset=utf-8"}),
    rate_limited=lambda f: (429, _mg_message("Too many requests"), _retry_after(f)),
    failed=(500, _mg_message("Internal server error"), None),
    unavailable=lambda f: (503, _mg_message("Service unavailable"), _retry_after(f)),
)
_SES_FAULTS = _FaultAnswers(
    unauthorized=_ses_error(
        403, "UnrecognizedClientException", "The security token included in the request is invalid."
    ),
    rate_limited=lambda f: _ses_error(429, "TooManyRequestsException", "Too Many Requests"),
    failed=_ses_error(500, "InternalFailure", "Internal server error"),
    unavailable=lambda f: _ses_error(503, "ServiceUnavailable", "Service unavailable"),
)
