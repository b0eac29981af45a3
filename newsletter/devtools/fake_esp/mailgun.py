"""Mailgun's ``POST /v3/{domain}/messages`` in the fake (HTTP basic auth ``api:`` and the token).

Form data (``multipart/form-data`` or urlencoded) is validated (400 with ``{"message": ...}``,
nothing recorded), else answered 200 with ``{"id": "<…@domain>", "message": "Queued. Thank
you."}``, each recipient's ``recipient-variables`` applied to subject, bodies, ``h:`` headers and
``v:`` variables for the record. As for SendGrid, ``inactive`` and ``invalid`` do not apply:
Mailgun accepts such recipients and reports the bounce or drop later, through its webhooks.
"""

from __future__ import annotations

import re
import uuid
from email.utils import getaddresses
from functools import partial
from typing import TYPE_CHECKING, Any, Final
from urllib.parse import parse_qsl

import orjson

from newsletter.devtools.fake_esp.addresses import ONE_ADDRESS
from newsletter.devtools.fake_esp.asgi import (
    ASGIApp,
    Receive,
    Scope,
    Send,
    basic_password,
    drain,
    header,
    respond,
)
from newsletter.devtools.fake_esp.faults import FaultAnswers, retry_after, send_with_faults
from newsletter.devtools.fake_esp.record import Substituted

if TYPE_CHECKING:
    from newsletter.devtools.fake_esp.app import FakeESP

__all__ = ["MAX_RECIPIENTS", "PATH", "MailgunAPI"]

#: The sending endpoint; its group is the domain.
PATH: Final = re.compile(r"/v3/([^/]+)/messages")
#: The read-only account calls: a domain, and its webhooks.
DOMAIN_PATH: Final = re.compile(r"/v3/domains/([^/]+)(/webhooks)?")
#: Mailgun's limit of recipients per request (batch sending).
MAX_RECIPIENTS: Final = 1000

#: A recipient variable as Mailgun reads it in the subject, bodies and header values.
_VARIABLE = re.compile(r"%recipient\.[A-Za-z0-9_.\-]+%")
_BOUNDARY = re.compile(r'boundary="?([^";]+)"?', re.I)
_PART_NAME = re.compile(rb'\bname="([^"]*)"')


def _message(message: str) -> bytes:
    return orjson.dumps({"message": message})


FAULTS: Final = FaultAnswers(
    unauthorized=(401, b"Forbidden", {"Content-Type": "text/plain; charset=utf-8"}),
    rate_limited=lambda f: (429, _message("Too many requests"), retry_after(f)),
    failed=(500, _message("Internal server error"), None),
    unavailable=lambda f: (503, _message("Service unavailable"), retry_after(f)),
)


class MailgunAPI:
    """Mailgun's endpoint; it keeps no state of its own."""

    name: Final = "mailgun"

    def __init__(self, esp: FakeESP) -> None:
        self.esp = esp

    def route(self, path: str) -> ASGIApp | None:
        account = DOMAIN_PATH.fullmatch(path)
        if account is not None:
            return partial(self._account, name=account.group(1), webhooks=bool(account.group(2)))
        match = PATH.fullmatch(path)
        if match is None:
            return None
        domain = match.group(1)

        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            await self._handle(scope, receive, send, domain)

        return handle

    def gauges(self) -> dict[str, int]:
        return {}

    async def _account(
        self, scope: Scope, receive: Receive, send: Send, *, name: str, webhooks: bool
    ) -> None:
        """``GET /v3/domains/{name}`` (state and sending DNS records) and ``…/webhooks``."""
        esp, account = self.esp, self.esp.account
        esp.count("requests")
        await drain(receive)
        if not esp.authorised(basic_password(scope["headers"], "api")):
            esp.count("fault_401")
            await respond(send, 401, b"Forbidden", content_type="text/plain; charset=utf-8")
            return
        if scope["method"] != "GET":
            await respond(send, 405, _message("Method Not Allowed"), {"Allow": "GET"})
            return
        if name != account.mailgun_domain:
            await respond(send, 404, _message("Domain not found"))
            return
        if webhooks:
            hooks = {}
            for event, kind in (("permanent_fail", "bounce"), ("complained", "complaint")):
                if account.has(kind):
                    hooks[event] = {"urls": [account.webhook_url]}
            await respond(send, 200, orjson.dumps({"webhooks": hooks}))
            return
        valid = "valid" if account.verified else "unverified"
        records = [
            {"record_type": "TXT", "name": name, "value": "v=spf1 include:mailgun.org ~all", "valid": valid},
            *(
                {"record_type": "TXT", "name": f"{s}._domainkey.{name}", "value": "p=MIG", "valid": valid}
                for s in account.dkim_selectors
            ),
            {"record_type": "CNAME", "name": f"email.{name}", "value": "mailgun.org", "valid": valid},
        ]
        state = "active" if account.verified and not account.sandbox else "unverified"
        domain = {"name": name, "state": state, "type": "custom", "spam_action": "disabled"}
        await respond(send, 200, orjson.dumps({"domain": domain, "sending_dns_records": records}))

    async def _handle(self, scope: Scope, receive: Receive, send: Send, domain: str) -> None:
        esp = self.esp
        esp.count("requests")
        if not esp.authorised(basic_password(scope["headers"], "api")):
            esp.count("fault_401")
            await drain(receive)
            await respond(send, 401, b"Forbidden", content_type="text/plain; charset=utf-8")
            return
        if scope["method"] != "POST":
            await drain(receive)
            await respond(send, 405, _message("Method Not Allowed"), {"Allow": "POST"})
            return
        content_type = header(scope["headers"], b"content-type") or ""
        await send_with_faults(
            esp, receive, send, FAULTS, lambda body: (*self.answer(domain, content_type, body), None)
        )

    def answer(self, domain: str, content_type: str, body: bytes) -> tuple[int, bytes]:
        """Status and JSON body answering one ``POST /v3/{domain}/messages`` with form data.

        Refused whole (400 ``{"message"}``, nothing recorded) unless it is what Mailgun takes;
        otherwise 200 with one id for the request, and one record line per recipient, its message
        id the request's (without angle brackets) plus ``.`` and its place.
        """
        esp = self.esp
        form = _form_fields(content_type, body)
        if form is None:
            esp.count("refused_400")
            return 400, _message("Invalid form data: send multipart/form-data or urlencoded fields")
        problem, recipients, variables = _problem(form)
        if problem:
            if "Too many recipients" in problem:
                esp.count("refused_too_many")
            esp.count("refused_400")
            return 400, _message(problem)
        message_id = f"{uuid.uuid4().hex}@{domain}"
        entries = []
        if esp.recorder is not None:
            entries = self._entries(form, recipients, variables, message_id)
        with esp.lock:
            esp.requests += 1
            esp.stats["messages"] += len(recipients)
            esp.stats["accepted"] += len(recipients)
        if esp.recorder is not None:
            esp.recorder.write(entries)
        return 200, orjson.dumps({"id": f"<{message_id}>", "message": "Queued. Thank you."})

    def _entries(
        self,
        form: dict[str, list[str]],
        recipients: list[tuple[str, str]],
        variables: dict[str, Any],
        message_id: str,
    ) -> list[dict[str, Any]]:
        """The record's lines: each recipient's variables applied as Mailgun would."""
        recorder = self.esp.recorder
        assert recorder is not None
        pattern = _VARIABLE
        body_html = Substituted(_first(form, "html"), pattern)
        text = Substituted(_first(form, "text"), pattern)
        subject = Substituted(_first(form, "subject"), pattern)
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
                recorder.entry(
                    base,
                    subject.render(substitutions).text(),
                    body_html.render(substitutions),
                    text.render(substitutions),
                )
            )
        return entries


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


def _problem(form: dict[str, list[str]]) -> tuple[str, list[tuple[str, str]], dict[str, Any]]:
    """What Mailgun would refuse (its 400 message, empty if nothing), the recipients as
    (``to`` value, address) pairs, and the recipient variables."""
    if not _first(form, "from"):
        return "from parameter is missing", [], {}
    recipients: list[tuple[str, str]] = []
    for to in form.get("to", []):
        match = ONE_ADDRESS.fullmatch(to)
        addresses = [match.group(1) or match.group(2)] if match else [a for _, a in getaddresses([to]) if a]
        if not addresses or any("@" not in address for address in addresses):
            return f"'to' parameter is not a valid address. please check documentation ({to!r})", [], {}
        recipients.extend((to, address) for address in addresses)
    if not recipients:
        return "to parameter is missing", [], {}
    if len(recipients) > MAX_RECIPIENTS:
        return f"Too many recipients: {len(recipients)} (at most {MAX_RECIPIENTS} per request)", [], {}
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
