"""Postmark's sending API in the fake (``X-Postmark-Server-Token`` checked).

* ``POST /email/batch``: a JSON list of messages with bodies;
* ``POST /email/batchWithTemplates``: ``{"Messages": [...]}`` naming a template by
  ``TemplateAlias``/``TemplateId`` with a ``TemplateModel``; the template is really rendered
  (Mustachio's ``{{x}}`` HTML-escaped in the HTML body, raw in text and subject; ``{{{x}}}`` raw);
* ``POST /templates``, ``GET|PUT|DELETE /templates/{idOrAlias}``, ``GET /templates``.

A batch of the wrong shape, or over ``Faults.max_batch`` messages, is refused whole (422); every
other message is answered on its own inside a 200, refused with Postmark's ErrorCode where Postmark
would (a ``To`` that does not parse, no ``From``, an unknown template, and the ``inactive`` and
``invalid`` faults). Postmark was the fake's first API: it answers every path no other API claims.
"""

from __future__ import annotations

import datetime as dt
import html
import re
from collections import Counter
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any, Final

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from newsletter.devtools.fake_esp.addresses import ONE_MAILBOX, first_address
from newsletter.devtools.fake_esp.asgi import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    drain,
    header,
    json_body,
    respond,
)
from newsletter.devtools.fake_esp.faults import FaultAnswers, retry_after, send_with_faults
from newsletter.devtools.fake_esp.record import Body, CompiledBody, Part, Recorder

if TYPE_CHECKING:
    from collections.abc import Sequence

    from newsletter.devtools.fake_esp.app import FakeESP

__all__ = ["SEND_PATHS", "PostmarkAPI", "Template", "compile_mustachio", "render_mustachio"]

#: The sending endpoints, by path: the name :meth:`PostmarkAPI.answer` takes.
SEND_PATHS: Final = {"/email/batch": "batch", "/email/batchWithTemplates": "batchWithTemplates"}

_INACTIVE: Final = (
    "You tried to send to recipient(s) that have been marked as inactive. Found inactive addresses: "
    "{}. Inactive recipients are ones that have generated a hard bounce, a spam complaint, "
    "or a manual suppression."
)


# -- Mustachio, as much of it as a newsletter template uses ---------------------------------------

_TAG = re.compile(r"\{\{\{\s*([^{}]+?)\s*\}\}\}|\{\{\s*([^{}]+?)\s*\}\}")


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


_RAW = partial(render_mustachio, escape=False)
_ESCAPED = partial(render_mustachio, escape=True)


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
            CompiledBody(self.subject, compile_mustachio, _RAW),
            CompiledBody(self.html_body, compile_mustachio, _ESCAPED),
            CompiledBody(self.text_body, compile_mustachio, _RAW),
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


def _error(code: int, message: str) -> dict[str, Any]:
    return {"ErrorCode": code, "Message": message}


def _error_json(code: int, message: str) -> bytes:
    return orjson.dumps(_error(code, message))


def _unprocessable(code: int, message: str) -> Response:
    return JSONResponse(_error(code, message), status_code=422)


_UNAUTHORIZED: Final = _error_json(10, "Bad or missing API token.")
FAULTS: Final = FaultAnswers(
    unauthorized=(401, _UNAUTHORIZED, None),
    rate_limited=lambda f: (429, _error_json(429, "Rate limit exceeded."), retry_after(f)),
    failed=(500, _error_json(500, "Internal server error."), None),
    unavailable=lambda f: (503, _error_json(503, "Service unavailable."), retry_after(f)),
)


class _Screen:
    """The ``invalid`` and ``inactive`` faults, matched without regard to case."""

    def __init__(self, invalid: list[str], inactive: list[str]) -> None:
        self.invalid = {address.lower() for address in invalid}
        self.inactive = {address.lower() for address in inactive}

    def refusal(self, to: str) -> dict[str, Any] | None:
        """The error answer for a message to ``to`` (which parses), or None if it may be sent."""
        email = first_address(to) or ""
        if email.lower() in self.invalid:
            return _error(300, f"Error parsing 'To': Illegal email address '{email}'.")
        if email.lower() in self.inactive:
            return _error(406, _INACTIVE.format(email))
        return None


class PostmarkAPI:
    """Postmark's state in the fake (its templates) and its endpoints."""

    name: Final = "postmark"

    def __init__(self, esp: FakeESP) -> None:
        self.esp = esp
        self.templates: dict[int, Template] = {}
        self._next_template_id = 1000
        self._routes = Starlette(
            routes=[
                Route("/templates", self._list_templates, methods=["GET"]),
                Route("/templates", self._create_template, methods=["POST"]),
                Route("/templates/{ref}", self._template, methods=["GET", "PUT", "DELETE"]),
                Route("/server", self._server, methods=["GET"]),
                Route("/webhooks", self._webhooks, methods=["GET"]),
            ]
        )

    def route(self, path: str) -> ASGIApp:
        """Every path: Postmark answers what no other API claims (401 without its token)."""
        return self._handle

    def gauges(self) -> dict[str, int]:
        return {"templates": len(self.templates)}

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        esp = self.esp
        esp.count("requests")
        if not esp.authorised(header(scope["headers"], b"x-postmark-server-token")):
            esp.count("fault_401")
            await drain(receive)
            await respond(send, 401, _UNAUTHORIZED)
            return
        endpoint = SEND_PATHS.get(scope["path"])
        if endpoint is None:
            await self._routes(scope, receive, send)
            return
        if scope["method"] != "POST":
            await drain(receive)
            await respond(send, 405, b"Method Not Allowed", {"Allow": "POST"}, "text/plain; charset=utf-8")
            return
        await send_with_faults(esp, receive, send, FAULTS, lambda body: (*self.answer(endpoint, body), None))

    # -- templates ---------------------------------------------------------------------------

    def find_template(self, id_or_alias: str | int | None) -> Template | None:
        if id_or_alias is None:
            return None
        for template in self.templates.values():
            if str(template.template_id) == str(id_or_alias) or template.alias == id_or_alias:
                return template
        return None

    def create_template(self, body: dict[str, Any]) -> Template:
        with self.esp.lock:
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

    async def _list_templates(self, request: Request) -> Response:
        templates = [t.summary() for t in self.templates.values()]
        return JSONResponse({"TotalCount": len(templates), "Templates": templates})

    async def _create_template(self, request: Request) -> Response:
        body = await json_body(request)
        if not isinstance(body, dict) or not body.get("Name"):
            return _unprocessable(1120, "A required template field is missing: Name.")
        if not body.get("Subject"):
            return _unprocessable(1120, "A required template field is missing: Subject.")
        alias = body.get("Alias")
        if alias and self.find_template(alias) is not None:
            return _unprocessable(1122, f"The alias '{alias}' is already in use by another template.")
        template = self.create_template(body)
        self.esp.count("templates_created")
        return JSONResponse(template.summary())

    async def _template(self, request: Request) -> Response:
        ref = request.path_params["ref"]
        template = self.find_template(ref)
        if template is None:
            return _unprocessable(1101, f"The template '{ref}' was not found.")
        if request.method == "GET":
            return JSONResponse(template.detail())
        if request.method == "DELETE":
            with self.esp.lock:
                self.templates.pop(template.template_id, None)
            return JSONResponse({"ErrorCode": 0, "Message": f"Template {template.template_id} removed."})
        body = await json_body(request)
        if not isinstance(body, dict):
            return _unprocessable(1109, "No template data received.")
        with self.esp.lock:
            template.name = str(body.get("Name", template.name))
            template.alias = body.get("Alias", template.alias)
            template.subject = str(body.get("Subject", template.subject))
            template.html_body = str(body.get("HtmlBody", template.html_body))
            template.text_body = str(body.get("TextBody", template.text_body))
            template.compile()
        self.esp.count("templates_updated")
        return JSONResponse(template.summary())

    # -- the account (read-only) --------------------------------------------------------------

    async def _server(self, request: Request) -> Response:
        """``GET /server``: the server the token belongs to."""
        account = self.esp.account
        delivery = "Sandbox" if account.sandbox else "Live"
        return JSONResponse({"ID": 1, "Name": "Fake server", "DeliveryType": delivery})

    async def _webhooks(self, request: Request) -> Response:
        """``GET /webhooks?MessageStream=``: the registered webhook with its triggers."""
        account = self.esp.account
        stream = request.query_params.get("MessageStream", "outbound")
        hooks = []
        if account.webhook_url:
            triggers = {
                "Open": {"Enabled": False},
                "Click": {"Enabled": False},
                "Delivery": {"Enabled": True},
                "Bounce": {"Enabled": account.has("bounce"), "IncludeContent": False},
                "SpamComplaint": {"Enabled": account.has("complaint"), "IncludeContent": False},
                "SubscriptionChange": {"Enabled": True},
            }
            hooks.append({"ID": 1, "Url": account.webhook_url, "MessageStream": stream, "Triggers": triggers})
        return JSONResponse({"Webhooks": hooks})

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
        max_batch = self.esp.faults.max_batch
        if len(messages) > max_batch:
            self.esp.count("refused_too_many")
            return 422, _error_json(410, f"Too many batch messages: {len(messages)} (at most {max_batch}).")
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
        esp = self.esp
        submitted = dt.datetime.now(dt.UTC).isoformat()
        faults = esp.faults
        screen = _Screen(faults.invalid, faults.inactive) if faults.invalid or faults.inactive else None
        recorder = esp.recorder
        templated = endpoint == "batchWithTemplates"
        templates: dict[str | int, Template | None] = {}
        one_mailbox = ONE_MAILBOX.fullmatch
        answers: list[dict[str, Any]] = []
        entries: list[dict[str, Any]] = []
        refused: Counter[int] = Counter()
        for message, message_id in zip(messages, esp.message_ids(len(messages)), strict=True):
            refusal: dict[str, Any] | None = None
            template: Template | None = None
            template_ref: Any = None
            if not isinstance(message, dict):
                refusal = _error(402, "Invalid JSON: a message must be an object.")
            else:
                raw_to = message.get("To")
                to = raw_to if isinstance(raw_to, str) else str(raw_to or "")
                if one_mailbox(to) is None and first_address(to) is None:
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
                entries.append(_entry(recorder, endpoint, message, message_id, to, template, template_ref))
        with esp.lock:
            esp.stats["messages"] += len(messages)
            accepted = len(messages) - sum(refused.values())
            if accepted:
                esp.stats["accepted"] += accepted
            for code, count in refused.items():
                esp.stats[f"error_{code}"] += count
        if recorder is not None:
            recorder.write(entries)
        return answers

    def _find_template_once(self, ref: Any, cache: dict[str | int, Template | None]) -> Template | None:
        """:meth:`find_template`, remembered in ``cache`` for the rest of the request; a reference
        that is neither a name nor a number (JSON lets a client send a list) names no template."""
        if not isinstance(ref, str | int):
            return None
        template = cache[ref] = self.find_template(ref)
        return template


def _entry(
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
        "recipient": first_address(to),
        "to": to,
        "from": message.get("From"),
        "reply_to": message.get("ReplyTo"),
        "stream": message.get("MessageStream"),
        "template": template_ref,
        "headers": {h.get("Name"): h.get("Value") for h in headers if isinstance(h, dict)},
        "metadata": message.get("Metadata") or {},
    }
    return recorder.entry(base, subject, body_html, text)
