"""SendGrid's v3 ``POST /v3/mail/send`` in the fake (``Authorization: Bearer`` with the token).

A body is validated as SendGrid does (400 with ``{"errors": [{"message", "field"}]}``, every
problem listed, nothing recorded), else answered 202 with an ``X-Message-Id``, each
personalization's ``substitutions`` applied to subject and content for the record. The
``inactive`` and ``invalid`` faults do not apply: SendGrid accepts such recipients (202) and
reports the bounce or drop later, through its event webhook.
"""

from __future__ import annotations

import base64
import re
import time
import uuid
from functools import lru_cache
from typing import TYPE_CHECKING, Any, Final

import orjson

from newsletter.devtools.fake_esp.asgi import ASGIApp, Receive, Scope, Send, bearer, drain, respond
from newsletter.devtools.fake_esp.faults import FaultAnswers, retry_after, send_with_faults
from newsletter.devtools.fake_esp.record import Substituted

if TYPE_CHECKING:
    from newsletter.devtools.fake_esp.account import FakeAccount
    from newsletter.devtools.fake_esp.app import FakeESP

__all__ = ["MAX_PERSONALIZATIONS", "PATH", "SendGridAPI"]

PATH: Final = "/v3/mail/send"
#: The read-only account calls, each with the scope an API key needs for it.
_ACCOUNT_PATHS: Final = {
    "/v3/scopes": "",
    "/v3/user/webhooks/event/settings/all": "user.webhooks.event.settings.read",
    "/v3/whitelabel/domains": "whitelabel.read",
}
#: SendGrid's limit of personalizations per request.
MAX_PERSONALIZATIONS: Final = 1000

_UNAUTHORIZED: Final = "The provided authorization grant is invalid, expired, or revoked"
_ADDRESS = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+")


def _error(message: str, field: str | None = None) -> bytes:
    return orjson.dumps({"errors": [{"message": message, "field": field, "help": None}]})


FAULTS: Final = FaultAnswers(
    unauthorized=(401, _error(_UNAUTHORIZED), None),
    rate_limited=lambda f: (
        429,
        _error("too many requests"),
        {**retry_after(f), "X-RateLimit-Reset": str(int(time.time() + f.retry_after))},
    ),
    failed=(500, _error("internal server error"), None),
    unavailable=lambda f: (503, _error("service unavailable"), retry_after(f)),
)


class SendGridAPI:
    """SendGrid's endpoint; it keeps no state of its own."""

    name: Final = "sendgrid"

    def __init__(self, esp: FakeESP) -> None:
        self.esp = esp

    def route(self, path: str) -> ASGIApp | None:
        if path in _ACCOUNT_PATHS:
            return self._account
        return self._handle if path == PATH else None

    async def _account(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The read-only calls: ``GET /v3/scopes``, the event webhooks, the authenticated domains."""
        esp, account = self.esp, self.esp.account
        esp.count("requests")
        await drain(receive)
        if not esp.authorised(bearer(scope["headers"])):
            esp.count("fault_401")
            await respond(send, 401, _error(_UNAUTHORIZED))
            return
        path = scope["path"]
        if scope["method"] != "GET":
            await respond(send, 405, _error("method not allowed"), {"Allow": "GET"})
            return
        needed = _ACCOUNT_PATHS[path]
        if needed and needed not in account.scopes:
            await respond(send, 403, _error("access forbidden"))
            return
        if path == "/v3/scopes":
            answer: Any = {"scopes": list(account.scopes)}
        elif path == "/v3/whitelabel/domains":
            answer = [_domain(account)]
        else:
            hooks = []
            if account.webhook_url:
                hooks.append(
                    {
                        "id": "77d4a5da-7015-11ed-a1eb-0242ac120002",
                        "url": account.webhook_url,
                        "enabled": True,
                        "bounce": account.has("bounce"),
                        "spam_report": account.has("complaint"),
                        "delivered": True,
                        "dropped": True,
                        "signed": True,
                    }
                )
            answer = {"max_allowed": 10, "webhooks": hooks}
        await respond(send, 200, orjson.dumps(answer))

    def gauges(self) -> dict[str, int]:
        return {}

    async def _handle(self, scope: Scope, receive: Receive, send: Send) -> None:
        esp = self.esp
        esp.count("requests")
        if not esp.authorised(bearer(scope["headers"])):
            esp.count("fault_401")
            await drain(receive)
            await respond(send, 401, _error(_UNAUTHORIZED))
            return
        if scope["method"] != "POST":
            await drain(receive)
            await respond(send, 405, _error("method not allowed"), {"Allow": "POST"})
            return
        await send_with_faults(esp, receive, send, FAULTS, self.answer)

    def answer(self, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        """Status, body and headers answering one ``POST /v3/mail/send`` body.

        Refused whole (400, every problem listed, nothing recorded) unless it is what SendGrid
        takes; otherwise 202 with one ``X-Message-Id`` for the request, and one record line per
        personalization, its message id the request's plus ``.`` and its place.
        """
        esp = self.esp
        try:
            data = orjson.loads(body)
        except ValueError:
            data = None
        problems = _problems(data)
        if problems:
            if any(p["field"] == "personalizations" and "limited" in p["message"] for p in problems):
                esp.count("refused_too_many")
            esp.count("refused_400")
            return 400, orjson.dumps({"errors": problems}), {}
        personalizations: list[dict[str, Any]] = data["personalizations"]
        message_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode("ascii")
        entries = self._entries(data, message_id) if esp.recorder is not None else []
        with esp.lock:
            esp.requests += 1
            esp.stats["messages"] += len(personalizations)
            esp.stats["accepted"] += len(personalizations)
        if esp.recorder is not None:
            esp.recorder.write(entries)
        return 202, b"", {"X-Message-Id": message_id}

    def _entries(self, data: dict[str, Any], message_id: str) -> list[dict[str, Any]]:
        """The record's lines: each personalization's substitutions applied as SendGrid would."""
        recorder = self.esp.recorder
        assert recorder is not None
        content = {part["type"]: part["value"] for part in data["content"]}
        shared_headers = data.get("headers") or {}
        shared_args = data.get("custom_args") or {}
        compiled: dict[tuple[str, ...], tuple[Substituted, Substituted]] = {}
        entries = []
        for index, personal in enumerate(data["personalizations"]):
            substitutions: dict[str, str] = personal.get("substitutions") or {}
            keys = tuple(sorted(substitutions))
            parts = compiled.get(keys)
            if parts is None:
                pattern = _substitution_pattern(keys)
                parts = compiled[keys] = (
                    Substituted(content.get("text/html", ""), pattern),
                    Substituted(content.get("text/plain", ""), pattern),
                )
            body_html, text = (part.render(substitutions) for part in parts)
            subject_source = str(personal.get("subject") or data.get("subject") or "")
            subject = Substituted(subject_source, parts[0].pattern)
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
            entries.append(recorder.entry(base, subject.render(substitutions).text(), body_html, text))
        return entries


@lru_cache(maxsize=64)
def _substitution_pattern(keys: tuple[str, ...]) -> re.Pattern[str] | None:
    """One pattern for a personalization's keys, longest first (plain text, as SendGrid reads them)."""
    if not keys:
        return None
    return re.compile("|".join(re.escape(key) for key in sorted(keys, key=len, reverse=True)))


def _problem(problems: list[dict[str, Any]], message: str, field: str | None) -> None:
    problems.append({"message": message, "field": field, "help": None})


def _strings(value: Any) -> bool:
    """Whether ``value`` is absent or an object of string values (substitutions, headers, args)."""
    return value is None or (isinstance(value, dict) and all(isinstance(v, str) for v in value.values()))


def _problems(data: Any) -> list[dict[str, Any]]:
    """What SendGrid would refuse in a mail/send body: its ``errors`` list, empty if none."""
    problems: list[dict[str, Any]] = []
    if not isinstance(data, dict):
        _problem(problems, "Bad Request", None)
        return problems
    personalizations = data.get("personalizations")
    if not isinstance(personalizations, list) or not personalizations:
        _problem(problems, "You must have at least one personalization.", "personalizations")
    elif len(personalizations) > MAX_PERSONALIZATIONS:
        _problem(
            problems,
            f"The personalization block is limited to {MAX_PERSONALIZATIONS} personalizations per API "
            "request. "
            f"You have provided {len(personalizations)} personalizations.",
            "personalizations",
        )
    else:
        seen: set[str] = set()
        every_subject = True
        for i, personal in enumerate(personalizations):
            where = f"personalizations.{i}"
            if not isinstance(personal, dict):
                _problem(problems, "A personalization must be an object.", where)
                continue
            every_subject = every_subject and bool(personal.get("subject"))
            to = personal.get("to")
            if not isinstance(to, list) or not to:
                _problem(problems, "The to array is required for every personalization.", f"{where}.to")
                continue
            for j, address in enumerate(to):
                email = address.get("email") if isinstance(address, dict) else None
                if not isinstance(email, str) or not _ADDRESS.fullmatch(email):
                    _problem(problems, "Does not contain a valid address.", f"{where}.to.{j}.email")
                elif email.lower() in seen:
                    _problem(
                        problems,
                        "Each email address in the personalization block should be unique between "
                        f"to, cc, and bcc. We found the first duplicate instance of [{email}].",
                        f"{where}.to.{j}.email",
                    )
                else:
                    seen.add(email.lower())
            for name in ("substitutions", "headers", "custom_args"):
                if not _strings(personal.get(name)):
                    _problem(problems, f"The {name} values must be strings.", f"{where}.{name}")
        if not every_subject and not (isinstance(data.get("subject"), str) and data["subject"]):
            _problem(
                problems,
                "The subject is required. You can get around this requirement if you use a template "
                "with a subject defined or if every personalization has a subject defined.",
                "subject",
            )
    sender = data.get("from")
    if not isinstance(sender, dict) or not isinstance(sender.get("email"), str):
        _problem(problems, "The from object must be provided for every email send.", "from")
    elif not _ADDRESS.fullmatch(sender["email"]):
        _problem(problems, "The from email does not contain a valid address.", "from.email")
    content = data.get("content")
    if not isinstance(content, list) or not content:
        _problem(problems, "The content parameter is required (no template_id).", "content")
    else:
        for k, part in enumerate(content):
            if not isinstance(part, dict) or not isinstance(part.get("type"), str):
                _problem(problems, "The content type must be a string.", f"content.{k}.type")
            elif not isinstance(part.get("value"), str) or not part["value"]:
                _problem(
                    problems,
                    "The content value must be a string at least one character in length.",
                    f"content.{k}.value",
                )
        types = [part.get("type") for part in content if isinstance(part, dict)]
        if "text/plain" in types and types.index("text/plain") != 0:
            _problem(problems, "If present, text/plain content must be first.", "content")
    for name in ("headers", "custom_args"):
        if not _strings(data.get(name)):
            _problem(problems, f"The {name} values must be strings.", name)
    return problems


def _domain(account: FakeAccount) -> dict[str, Any]:
    """The From domain as ``GET /v3/whitelabel/domains`` lists an authenticated domain."""
    selectors = list(account.dkim_selectors)[:2]
    dns: dict[str, Any] = {
        "mail_cname": {"valid": account.verified, "type": "cname", "host": f"em1.{account.domain}"},
    }
    for number, selector in enumerate(selectors, start=1):
        dns[f"dkim{number}"] = {
            "valid": account.verified,
            "type": "cname",
            "host": f"{selector}._domainkey.{account.domain}",
            "data": f"{selector}.domainkey.u1.wl.sendgrid.net",
        }
    return {
        "id": 1,
        "domain": account.domain,
        "subdomain": account.return_path or "em1",
        "valid": account.verified,
        "automatic_security": True,
        "dns": dns,
    }
