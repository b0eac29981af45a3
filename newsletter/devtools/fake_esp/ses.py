"""SES v2's ``SendBulkEmail`` and email templates in the fake, signed with SigV4.

* ``POST /v2/email/outbound-bulk-emails`` (SendBulkEmail): at most 50 entries, answered per entry
  in ``BulkEmailEntryResults``, each entry's ``ReplacementTemplateData`` rendered into the template
  as SES's Handlebars would for the record (:mod:`newsletter.devtools.fake_esp.handlebars`);
* ``POST /v2/email/templates``, ``GET|PUT|DELETE /v2/email/templates/{name}``.

The signature's access key id must be the fake's token; the signature itself is not checked (403
with SES's error shape otherwise). ``inactive`` and ``invalid`` do not apply; per-entry failures
come from :attr:`~newsletter.devtools.fake_esp.faults.Faults.statuses`.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import orjson

from newsletter.devtools.fake_esp.addresses import first_address
from newsletter.devtools.fake_esp.asgi import (
    ASGIApp,
    Headers,
    Receive,
    Scope,
    Send,
    drain,
    header,
    read_body,
    respond,
)
from newsletter.devtools.fake_esp.faults import FaultAnswers, send_with_faults
from newsletter.devtools.fake_esp.handlebars import (
    TemplateSyntaxError,
    compile_handlebars,
    render_handlebars,
    variables,
)
from newsletter.devtools.fake_esp.record import Body, CompiledBody, Recorder

if TYPE_CHECKING:
    from newsletter.devtools.fake_esp.app import FakeESP

__all__ = ["MAX_ENTRIES", "SEND_PATH", "TEMPLATES_PATH", "SesAPI", "SesTemplate"]

SEND_PATH: Final = "/v2/email/outbound-bulk-emails"
#: SES's limit of destinations per SendBulkEmail call.
MAX_ENTRIES: Final = 50
#: The templates' endpoints; the group is the template's name.
#: The read-only account calls: ``GetAccount`` and ``GetEmailIdentity``.
ACCOUNT_PATH: Final = "/v2/email/account"
IDENTITY_PATH: Final = re.compile(r"/v2/email/identities/([^/]+)")
TEMPLATES_PATH: Final = re.compile(r"/v2/email/templates(?:/([^/]*))?")


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
        """Raises :class:`~newsletter.devtools.fake_esp.handlebars.TemplateSyntaxError` for what
        SES would not render (or this fake cannot)."""
        used: set[str] = set()
        parts = []
        for source in (subject, html, text):
            used |= variables(compile_handlebars(source))
            parts.append(CompiledBody(source, compile_handlebars, render_handlebars))
        return cls(name, subject, text, html, (parts[0], parts[1], parts[2]), frozenset(used))

    def render(self, model: dict[str, Any]) -> tuple[str, Body, Body]:
        """Subject, HTML and text as SES would send them with this data."""
        subject, body_html, text = self.parts
        return subject.render(model).text(), body_html.render(model), text.render(model)


_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_TAG = re.compile(r"[A-Za-z0-9_-]{1,256}")
_HEADER_NAME = re.compile(r"[\x21-\x39\x3b-\x7e]{1,126}")
_HEADER_VALUE = re.compile(r"[\x20-\x7e]{0,870}")
#: ``AWS4-HMAC-SHA256 Credential=KEY/DATE/REGION/ses/aws4_request, SignedHeaders=…, Signature=…``
_AWS4 = re.compile(
    r"AWS4-HMAC-SHA256 Credential=([^/\s,]+)/(\d{8})/([a-z0-9-]+)/ses/aws4_request,\s*"
    r"SignedHeaders=([a-z0-9;-]+),\s*Signature=[0-9a-f]{64}"
)


def _error(status: int, kind: str, message: str) -> tuple[int, bytes, dict[str, str]]:
    """An error as SES's REST-JSON protocol answers it: the type in ``x-amzn-ErrorType``, the
    message in the body (which is what botocore reads back)."""
    return status, orjson.dumps({"message": message}), {"x-amzn-ErrorType": kind}


def _auth_problem(esp: FakeESP, headers: Headers) -> tuple[str, str] | None:
    """Why SES would refuse this request's signature (error type, message), or None.

    The access key id must be the fake's token; the signature itself is not checked (the fake
    has no secret key): the adapter's signing is held to botocore's in the tests instead.
    """
    value = header(headers, b"authorization")
    if not value:
        return "MissingAuthenticationTokenException", "Missing Authentication Token"
    match = _AWS4.fullmatch(value.strip())
    date = header(headers, b"x-amz-date") or ""
    if match is None or not date.startswith(match.group(2)) or "host" not in match.group(4).split(";"):
        return (
            "IncompleteSignatureException",
            "Authorization header requires 'Credential', 'Signature', 'SignedHeaders' and 'X-Amz-Date'.",
        )
    if not esp.authorised(match.group(1)):
        return "UnrecognizedClientException", "The security token included in the request is invalid."
    return None


def _tags_ok(tags: Any) -> bool:
    return tags is None or (
        isinstance(tags, list)
        and all(
            isinstance(tag, dict)
            and isinstance(tag.get("Name"), str)
            and isinstance(tag.get("Value"), str)
            and _TAG.fullmatch(tag["Name"])
            and _TAG.fullmatch(tag["Value"])
            for tag in tags
        )
    )


def _headers_ok(headers: Any) -> bool:
    return headers is None or (
        isinstance(headers, list)
        and len(headers) <= 15
        and all(
            isinstance(header, dict)
            and isinstance(header.get("Name"), str)
            and isinstance(header.get("Value"), str)
            and _HEADER_NAME.fullmatch(header["Name"])
            and _HEADER_VALUE.fullmatch(header["Value"])
            for header in headers
        )
    )


def _problem(data: Any) -> str:
    """What SES would refuse the whole SendBulkEmail request for; empty if nothing."""
    if not isinstance(data, dict):
        return "The request body must be a JSON object."
    entries = data.get("BulkEmailEntries")
    if not isinstance(entries, list) or not entries:
        return "BulkEmailEntries must hold at least one entry."
    if len(entries) > MAX_ENTRIES:
        return f"Too many BulkEmailEntries: {len(entries)} (at most {MAX_ENTRIES} per request)."
    sender = data.get("FromEmailAddress")
    if not isinstance(sender, str) or first_address(sender) is None or not sender.isascii():
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
    if not _headers_ok(template.get("Headers")):
        return "DefaultContent.Template.Headers: at most 15 printable ASCII headers."
    if not _tags_ok(data.get("DefaultEmailTags")):
        return "DefaultEmailTags: names and values may hold only ASCII letters, digits, _ and -."
    for index, entry in enumerate(entries):
        where = f"BulkEmailEntries[{index}]"
        destination = entry.get("Destination") if isinstance(entry, dict) else None
        to = destination.get("ToAddresses") if isinstance(destination, dict) else None
        if not isinstance(to, list) or not to:
            return f"{where}.Destination.ToAddresses is required."
        if not _tags_ok(entry.get("ReplacementTags")):
            return f"{where}.ReplacementTags: names and values may hold only ASCII letters, digits, _ and -."
        if not _headers_ok(entry.get("ReplacementHeaders")):
            return f"{where}.ReplacementHeaders: at most 15 printable ASCII headers."
    return ""


def _model(entry: dict[str, Any]) -> dict[str, Any] | None:
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


_INVALID_TOKEN: Final = "The security token included in the request is invalid."
FAULTS: Final = FaultAnswers(
    unauthorized=_error(403, "UnrecognizedClientException", _INVALID_TOKEN),
    rate_limited=lambda f: _error(429, "TooManyRequestsException", "Too Many Requests"),
    failed=_error(500, "InternalFailure", "Internal server error"),
    unavailable=lambda f: _error(503, "ServiceUnavailable", "Service unavailable"),
)
_NOT_ALLOWED: Final = _error(405, "MethodNotAllowedException", "Method Not Allowed")


class SesAPI:
    """SES's state in the fake (its templates, by name) and its endpoints."""

    name: Final = "ses"

    def __init__(self, esp: FakeESP) -> None:
        self.esp = esp
        self.templates: dict[str, SesTemplate] = {}

    def route(self, path: str) -> ASGIApp | None:
        if path == SEND_PATH:
            return self._send
        if path == ACCOUNT_PATH or IDENTITY_PATH.fullmatch(path):
            return self._account
        match = TEMPLATES_PATH.fullmatch(path)
        if match is None:
            return None
        name = match.group(1)

        async def handle(scope: Scope, receive: Receive, send: Send) -> None:
            await self._templates(scope, receive, send, name)

        return handle

    def gauges(self) -> dict[str, int]:
        return {"ses_templates": len(self.templates)}

    async def _refused(self, scope: Scope, receive: Receive, send: Send) -> bool:
        """Answer 403 as SES does, and say so, if the request's signature names the wrong key."""
        problem = _auth_problem(self.esp, scope["headers"])
        if problem is None:
            return False
        self.esp.count("fault_401")
        await drain(receive)
        await respond(send, *_error(403, *problem))
        return True

    async def _account(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``GetAccount`` (quota, sandbox) and ``GetEmailIdentity`` of the account's domain."""
        esp, account = self.esp, self.esp.account
        esp.count("requests")
        if await self._refused(scope, receive, send):
            return
        await drain(receive)
        if scope["method"] != "GET":
            await respond(send, *_NOT_ALLOWED)
            return
        identity = IDENTITY_PATH.fullmatch(scope["path"])
        if identity is None:
            answer: dict[str, Any] = {
                "EnforcementStatus": "HEALTHY",
                "ProductionAccessEnabled": not account.sandbox,
                "SendingEnabled": True,
                "SendQuota": {
                    "Max24HourSend": account.max_24_hour_send,
                    "MaxSendRate": account.max_send_rate,
                    "SentLast24Hours": account.sent_last_24_hours,
                },
            }
        elif identity.group(1) != account.domain:
            missing = f"Email identity {identity.group(1)} does not exist."
            await respond(send, *_error(404, "NotFoundException", missing))
            return
        else:
            mail_from = f"{account.return_path}.{account.domain}" if account.return_path else ""
            answer = {
                "IdentityType": "DOMAIN",
                "VerifiedForSendingStatus": account.verified,
                "DkimAttributes": {
                    "SigningEnabled": True,
                    "Status": "SUCCESS" if account.verified else "PENDING",
                    "Tokens": list(account.dkim_selectors),
                    "SigningAttributesOrigin": "AWS_SES",
                },
                "MailFromAttributes": {
                    "MailFromDomain": mail_from,
                    "MailFromDomainStatus": "SUCCESS" if mail_from else "FAILED",
                    "BehaviorOnMxFailure": "USE_DEFAULT_VALUE",
                },
            }
        await respond(send, 200, orjson.dumps(answer))

    async def _templates(self, scope: Scope, receive: Receive, send: Send, name: str | None) -> None:
        """SES's ``CreateEmailTemplate`` (POST), and ``Get``/``Update``/``DeleteEmailTemplate``
        (GET, PUT, DELETE with a name). Faults other than a refused key leave them alone."""
        esp = self.esp
        esp.count("requests")
        if await self._refused(scope, receive, send):
            return
        method = scope["method"]
        if (name is None) != (method == "POST") or method not in ("POST", "GET", "PUT", "DELETE"):
            await drain(receive)
            await respond(send, *_NOT_ALLOWED)
            return
        body = await read_body(receive)
        if body is None:
            return
        if method in ("POST", "PUT"):
            try:
                data = orjson.loads(body)
            except ValueError:
                data = None
            await respond(send, *self.template(name or "", data, create=method == "POST"))
            return
        template = self.templates.get(name or "")
        if template is None:
            await respond(send, *_error(404, "NotFoundException", f"Template {name} does not exist."))
        elif method == "GET":
            content = {"Subject": template.subject, "Text": template.text, "Html": template.html}
            await respond(send, 200, orjson.dumps({"TemplateName": name, "TemplateContent": content}))
        else:
            self.delete_template(template.name)
            await respond(send, 200, b"{}")

    async def _send(self, scope: Scope, receive: Receive, send: Send) -> None:
        """``SendBulkEmail`` with the same faults as the other endpoints, SES's answers
        (403 ``UnrecognizedClientException`` for ``401``, ``TooManyRequestsException`` for 429)."""
        esp = self.esp
        esp.count("requests")
        if await self._refused(scope, receive, send):
            return
        if scope["method"] != "POST":
            await drain(receive)
            await respond(send, *_NOT_ALLOWED)
            return
        await send_with_faults(esp, receive, send, FAULTS, self.answer)

    def template(self, name: Any, body: Any, *, create: bool) -> tuple[int, bytes, dict[str, str]]:
        """``CreateEmailTemplate`` (``create``) or ``UpdateEmailTemplate`` of the template ``name``.

        The template is compiled as SES's Handlebars would read it; one this fake cannot render
        (a block helper, an unclosed tag) is refused with a 400, so a test never sends it.
        """
        esp = self.esp
        content = body.get("TemplateContent") if isinstance(body, dict) else None
        if create:
            name = body.get("TemplateName") if isinstance(body, dict) else None
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            return _error(400, "BadRequestException", "TemplateName must be 1-64 letters, digits, _ or -")
        if not isinstance(content, dict) or not all(
            isinstance(content.get(part, ""), str) for part in ("Subject", "Text", "Html")
        ):
            return _error(
                400, "BadRequestException", "TemplateContent must hold Subject, Text and Html strings"
            )
        if not content.get("Subject") or not (content.get("Text") or content.get("Html")):
            return _error(400, "BadRequestException", "A template needs a Subject and a Text or Html part")
        with esp.lock:
            exists = name in self.templates
        if create and exists:
            return _error(400, "AlreadyExistsException", f"Template {name} already exists.")
        if not create and not exists:
            return _error(404, "NotFoundException", f"Template {name} does not exist.")
        try:
            template = SesTemplate.compiled(
                name, content["Subject"], content.get("Text", ""), content.get("Html", "")
            )
        except TemplateSyntaxError as exc:
            return _error(400, "BadRequestException", f"Template {name} is not valid: {exc}")
        with esp.lock:
            self.templates[name] = template
        esp.count("ses_templates_created" if create else "ses_templates_updated")
        return 200, b"{}", {}

    def delete_template(self, name: str) -> None:
        with self.esp.lock:
            self.templates.pop(name, None)
        self.esp.count("ses_templates_deleted")

    def answer(self, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        """Status, body and headers answering one ``SendBulkEmail`` body.

        A request of the wrong shape, or with more than 50 entries, is refused whole (400
        ``BadRequestException``, nothing recorded). Otherwise each entry is answered on its own in
        ``BulkEmailEntryResults``, in order: ``SUCCESS`` with a ``MessageId``, or the ``Status`` a
        fault gives the address (:attr:`Faults.statuses`), ``INVALID_PARAMETER`` for an address
        or template data SES would not take, ``TEMPLATE_NOT_FOUND`` for an unknown template. An
        entry whose data lacks a variable the template uses is accepted, as by SES, but not
        recorded: SES reports such a message later as a rendering failure and never sends it
        (counted as ``ses_rendering_failures``).
        """
        esp = self.esp
        try:
            data = orjson.loads(body)
        except ValueError:
            data = None
        problem = _problem(data)
        if problem:
            if "at most" in problem:
                esp.count("refused_too_many")
            esp.count("refused_400")
            return _error(400, "BadRequestException", problem)
        entries: list[dict[str, Any]] = data["BulkEmailEntries"]
        template_name = data["DefaultContent"]["Template"].get("TemplateName")
        with esp.lock:
            template = self.templates.get(template_name) if isinstance(template_name, str) else None
        statuses = {address.lower(): status for address, status in esp.faults.statuses.items()}
        recorder = esp.recorder
        results: list[dict[str, Any]] = []
        records: list[dict[str, Any]] = []
        counts: Counter[str] = Counter()
        for entry, message_id in zip(entries, esp.message_ids(len(entries)), strict=True):
            to = entry["Destination"]["ToAddresses"]
            address = first_address(to[0]) if len(to) == 1 and isinstance(to[0], str) else None
            model = _model(entry)
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
                        _entry(recorder, data, entry, template, model, address, result["MessageId"])
                    )
            counts["accepted" if result["Status"] == "SUCCESS" else f"ses_{result['Status']}"] += 1
            results.append(result)
        with esp.lock:
            esp.stats["messages"] += len(entries)
            esp.stats.update(counts)
        if recorder is not None:
            recorder.write(records)
        return 200, orjson.dumps({"BulkEmailEntryResults": results}), {}


def _entry(
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
