"""A local stand-in for Postmark's sending API, with faults on demand.

It exists so that the delivery engine can be run, tested and benchmarked end to end on
127.0.0.1: the adapter talks real HTTP to it, exactly as it would to Postmark, and the fake can be
told to misbehave in every way that changes what the engine must do (rate limits, outages, slow
answers, dropped connections, refused recipients, a revoked token).

Endpoints (Postmark's shapes, ``X-Postmark-Server-Token`` checked):

* ``POST /email/batch``: a JSON list of messages with bodies;
* ``POST /email/batchWithTemplates``: ``{"Messages": [...]}`` naming a template by
  ``TemplateAlias``/``TemplateId`` with a ``TemplateModel``; the template is really rendered
  (Mustachio's ``{{x}}`` HTML-escaped in the HTML body, raw in text and subject; ``{{{x}}}`` raw);
* ``POST /templates``, ``GET|PUT|DELETE /templates/{idOrAlias}``, ``GET /templates``.

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
import datetime as dt
import hashlib
import html
import itertools
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
from pathlib import Path
from typing import IO, Any, Final, Literal

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

__all__ = ["FakeESP", "Faults", "RecordBodies", "RunningFakeESP", "render_mustachio", "running", "serve"]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
RecordBodies = Literal["none", "text", "all"]

#: What a scripted fault (``Faults.next``) may say for one sending request.
ACTIONS: Final = frozenset({"ok", "401", "429", "500", "503", "drop", "drop_after", "slow"})
SEND_PATHS: Final = frozenset({"/email/batch", "/email/batchWithTemplates"})
MAX_BATCH: Final = 500

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

    def __init__(self, source: str, *, escape: bool) -> None:
        parts = compile_mustachio(source)
        first_tag = next((i for i, part in enumerate(parts) if not isinstance(part, str)), len(parts))
        self.head = "".join(part for part in parts[:first_tag] if isinstance(part, str))
        head_bytes = self.head.encode("utf-8")
        self.head_size = len(head_bytes)
        self.head_hash = hashlib.sha256(head_bytes) if head_bytes else None
        self.tail = parts[first_tag:]
        self.escape = escape

    def render(self, model: dict[str, Any]) -> Body:
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
        self._next_template_id = 1000
        self._lock = threading.Lock()
        self._random = random.Random(self.faults.seed)
        # MessageIDs shaped like Postmark's UUIDs: a random prefix per fake and a counter, since
        # uuid4() per message was a fifth of the fake's time in the million-recipient benchmark.
        self._id_prefix = str(uuid.uuid4())[:24]
        self._ids = itertools.count(1)
        self.app = _FaultLayer(self, self._routes())

    # -- faults ------------------------------------------------------------------------------

    def _next_message_id(self) -> str:
        return f"{self._id_prefix}{next(self._ids):012x}"

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

    def authorised(self, headers: Any) -> bool:
        return not self.faults.unauthorized and headers.get("x-postmark-server-token") == self.token

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

    def process(self, endpoint: str, messages: list[Any]) -> list[dict[str, Any]]:
        """Answer each message in order, record the accepted ones; one flush for the request.

        Templates are rendered only when recording: without a record nobody can see the result,
        and the fake then keeps up with any client (benchmarks of the sender, not of the fake).
        """
        submitted = dt.datetime.now(dt.UTC).isoformat()
        answers: list[dict[str, Any]] = []
        entries: list[dict[str, Any]] = []
        inactive = {address.lower() for address in self.faults.inactive}
        invalid = {address.lower() for address in self.faults.invalid}
        templates: dict[Any, Template | None] = {}
        for message in messages:
            answer, entry = self._one(endpoint, message, inactive, invalid, submitted, templates)
            answers.append(answer)
            if entry is not None:
                entries.append(entry)
        with self._lock:
            self.stats["messages"] += len(messages)
            for answer in answers:
                code = answer["ErrorCode"]
                self.stats[f"error_{code}" if code else "accepted"] += 1
        if self.recorder is not None:
            self.recorder.write(entries)
        return answers

    def _one(
        self,
        endpoint: str,
        message: Any,
        inactive: set[str],
        invalid: set[str],
        submitted: str,
        templates: dict[Any, Template | None],
    ) -> tuple[dict[str, Any], dict[str, Any] | None]:
        if not isinstance(message, dict):
            return _error(402, "Invalid JSON: a message must be an object."), None
        to = str(message.get("To") or "")
        addresses = _addresses(to)
        if not addresses or any("@" not in address for address in addresses):
            return _error(300, f"Error parsing 'To': Illegal email address '{to}'."), None
        if not message.get("From"):
            return _error(300, "Invalid 'From' address: ''."), None
        email = addresses[0]
        if email.lower() in invalid:
            return _error(300, f"Error parsing 'To': Illegal email address '{email}'."), None
        if email.lower() in inactive:
            return _error(406, _INACTIVE.format(email)), None

        template: Template | None = None
        template_ref = None
        if endpoint == "batchWithTemplates":
            template_ref = message.get("TemplateAlias") or message.get("TemplateId")
            if template_ref not in templates:
                templates[template_ref] = self.find_template(template_ref)
            template = templates[template_ref]
            if template is None:
                return _error(1101, f"The template '{template_ref}' was not found."), None

        message_id = self._next_message_id()
        answer = {
            "ErrorCode": 0,
            "Message": "OK",
            "MessageID": message_id,
            "SubmittedAt": submitted,
            "To": to,
        }
        if self.recorder is None:
            return answer, None
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
            "recipient": email,
            "to": to,
            "from": message.get("From"),
            "reply_to": message.get("ReplyTo"),
            "stream": message.get("MessageStream"),
            "template": template_ref,
            "headers": {h.get("Name"): h.get("Value") for h in headers if isinstance(h, dict)},
            "metadata": message.get("Metadata") or {},
        }
        return answer, self.recorder.entry(base, subject, body_html, text)

    # -- HTTP --------------------------------------------------------------------------------

    def _routes(self) -> Starlette:
        return Starlette(
            routes=[
                Route("/email/batch", self._batch, methods=["POST"]),
                Route("/email/batchWithTemplates", self._batch_with_templates, methods=["POST"]),
                Route("/templates", self._list_templates, methods=["GET"]),
                Route("/templates", self._create_template, methods=["POST"]),
                Route("/templates/{ref}", self._template, methods=["GET", "PUT", "DELETE"]),
                Route("/_faults", self._faults, methods=["GET", "POST"]),
                Route("/_reset", self._reset, methods=["POST"]),
                Route("/_stats", self._stats, methods=["GET"]),
            ]
        )

    async def _batch(self, request: Request) -> Response:
        body = await _json(request)
        if not isinstance(body, list):
            return _unprocessable(402, "Invalid JSON: the batch must be a list of messages.")
        return self._send(request, "batch", body)

    async def _batch_with_templates(self, request: Request) -> Response:
        body = await _json(request)
        messages = body.get("Messages") if isinstance(body, dict) else None
        if not isinstance(messages, list):
            return _unprocessable(403, 'Incompatible JSON: expected {"Messages": [...]}.')
        return self._send(request, "batchWithTemplates", messages)

    def _send(self, request: Request, endpoint: str, messages: list[Any]) -> Response:
        if len(messages) > self.faults.max_batch:
            self.count("refused_too_many")
            return _unprocessable(
                410, f"Too many batch messages: {len(messages)} (at most {self.faults.max_batch})."
            )
        return Response(orjson.dumps(self.process(endpoint, messages)), media_type="application/json")

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
            return JSONResponse({**self.stats, "templates": len(self.templates)})

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()


class _FaultLayer:
    """Pure ASGI in front of the routes: faults need the raw connection, which routes never see.

    A dropped connection must look to the client like one: no status line at all. uvicorn gives an
    application no handle on the socket, but its ``send`` is a bound method of the request cycle,
    which holds the transport; closing that transport after reading the whole request is exactly
    "request delivered, no answer" (httpx: ``RemoteProtocolError: Server disconnected without
    sending a response``). Reading the body first matters: closing a socket with unread data sends
    a reset, which the client may see while still writing, i.e. as a request that never left.
    """

    def __init__(self, esp: FakeESP, routes: Starlette) -> None:
        self.esp = esp
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith("/_"):
            await self.routes(scope, receive, send)
            return
        self.esp.count("requests")
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        if not self.esp.authorised(headers):
            self.esp.count("fault_401")
            await _drain(receive)
            await _respond(send, 401, {"ErrorCode": 10, "Message": "Bad or missing API token."})
            return
        if scope["path"] not in SEND_PATHS or scope["method"] != "POST":
            await self.routes(scope, receive, send)
            return

        self.esp.count("send_requests")
        action = self.esp.decide()
        if action != "ok":
            self.esp.count(f"fault_{action}")
        faults = self.esp.faults
        retry_after = {"Retry-After": _seconds(faults.retry_after)}
        if action == "401":
            await _drain(receive)
            await _respond(send, 401, {"ErrorCode": 10, "Message": "Bad or missing API token."})
        elif action == "429":
            await _drain(receive)
            await _respond(send, 429, {"ErrorCode": 429, "Message": "Rate limit exceeded."}, retry_after)
        elif action == "500":
            await _drain(receive)
            await _respond(send, 500, {"ErrorCode": 500, "Message": "Internal server error."})
        elif action == "503":
            await _drain(receive)
            await _respond(send, 503, {"ErrorCode": 503, "Message": "Service unavailable."}, retry_after)
        elif action == "drop":
            await _drain(receive)
            await _drop(send)
        elif action == "drop_after":
            await self.routes(scope, receive, _swallow)
            await _drop(send)
        else:
            wait = faults.delay + (faults.slow_seconds if action == "slow" else 0.0)
            await self.routes(scope, receive, _delayed(send, wait) if wait else send)


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


async def _drain(receive: Receive) -> None:
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return


async def _respond(send: Send, status: int, body: Any, headers: dict[str, str] | None = None) -> None:
    data = json.dumps(body).encode()
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


async def _json(request: Request) -> Any:
    try:
        return orjson.loads(await request.body())
    except ValueError:
        return None


#: ``"Name" <a@b>``, ``Name <a@b>`` or ``a@b``: one recipient, the common case, parsed without the
#: standard library's general (and twenty times slower) address parser.
_ONE_ADDRESS = re.compile(r'\s*(?:(?:"(?:[^"\\]|\\.)*"|[^<>",@]*)\s*<([^<>\s,]+)>|([^<>\s",]+))\s*')


def _addresses(to: str) -> list[str]:
    match = _ONE_ADDRESS.fullmatch(to)
    if match:
        return [match.group(1) or match.group(2)]
    return [address for _, address in getaddresses([to]) if address]


def _error(code: int, message: str) -> dict[str, Any]:
    return {"ErrorCode": code, "Message": message}


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
