"""Amazon SES (API v2): a batch of up to 500 is up to ten ``SendBulkEmail`` requests of 50
destinations each (SES's limit), the body sent once per send.

:meth:`SesAdapter.prepare` stores the rendered issue once as an SES email template
(``CreateEmailTemplate``, or ``UpdateEmailTemplate`` when the name exists: another process, an
earlier run), named after the send and a digest of its content so that every process and re-run of
the send uses the same one (:func:`template_name`). Each request is then one
``POST /v2/email/outbound-bulk-emails`` naming the template, with one *entry* per recipient:
``Destination``, ``ReplacementTemplateData`` (the recipient's slot values, a JSON string),
``ReplacementHeaders`` (``List-Unsubscribe``) and ``ReplacementTags`` (``send_id``,
``delivery_id``: SES carries tags into every event of the message as ``mail.tags``, so the events
find the delivery). What every message shares (``FromEmailAddress``,
``ReplyToAddresses``, ``DefaultEmailTags``, the template's ``Headers`` such as ``List-Id``,
``ConfigurationSetName``) is encoded once per send and spliced into each request.
``Message-ID`` is not sent: SES replaces it with its own.

A batch (one claim in the ledger) is up to :data:`MAX_BATCH`, 500, sent as requests of
:data:`MAX_DESTINATIONS` one after another on the adapter's client, as Postmark's full bodies are:
the ledger's work per claim (claim, record) is paid once per 500 recipients rather than per 50.
Each request's answer is read on its own; a failure of the first request is the batch's (raised);
once a request was answered, a later failure (429, 5xx, a stop) is reported per recipient instead,
as ``retry`` for that request's recipients and those after it, so the outcomes already answered are
never lost. A request that left without an answer makes its own recipients ``unknown``; those after
it are not sent (``retry``).

Templates and escaping. SES renders templates with Handlebars, which HTML-escapes ``{{x}}``
everywhere, also in the subject and the text part, where ``&amp;`` would be wrong. So every tag we
write is the triple-stash ``{{{x}}}`` (inserted as it is) and the escaping is ours, as for
SendGrid: ``{{{name}}}`` in the subject and text with the raw value, ``{{{name_html}}}`` in the
HTML with the escaped one (:func:`~newsletter.render.slots.html_values`).

Editor text must never become a template expression. Handlebars reads ``{{`` anywhere, and a
backslash before it changes what it means (``\\{{`` is a literal, ``\\\\{{`` a backslash and then a
live tag), so escaping with backslashes cannot express every text. Instead each ``{`` or ``\\``
of editor text that would stand right before a ``{`` of the template becomes a tag itself,
``{{{lbrace}}}`` or ``{{{backslash}}}``, whose values every entry carries: the template then has
no literal ``{`` or ``\\`` next to a ``{``, and no ``{{`` that we did not write (:func:`handlebars`).

What SES answers, and what it becomes (see :mod:`newsletter.delivery.esp.base`):

* ``200`` with one ``BulkEmailEntryResults`` item per entry, in order: ``SUCCESS`` → ``accepted``
  with its ``MessageId`` (what SES events name); ``MESSAGE_REJECTED``, ``INVALID_PARAMETER``,
  ``FAILED`` and any status we do not know → ``failed``; ``ACCOUNT_THROTTLED``,
  ``ACCOUNT_DAILY_QUOTA_EXCEEDED``, ``TRANSIENT_FAILURE`` → ``retry``; ``TEMPLATE_NOT_FOUND`` →
  ``retry`` and the template is made again before the next request. Statuses that are the account's
  or the sender's (``MAIL_FROM_DOMAIN_NOT_VERIFIED``, ``ACCOUNT_SUSPENDED``, sending paused, the
  configuration set or IP pool missing) are no recipient's fault: they stop the send rather than
  fail a million recipients, as Postmark's sender errors do. An answer we cannot match to the
  entries → every recipient of the request ``unknown``, and the rest of the batch is not sent.
* ``400``: the request was refused whole. ``AccountSuspendedException``,
  ``SendingPausedException``, ``MailFromDomainNotVerifiedException`` and ``LimitExceededException``
  stop the send; anything else (``BadRequestException``, ``MessageRejected``) fails every
  recipient with SES's message. ``404``: the template is gone (made again, then retried) or the
  configuration set does not exist (stop).
* ``401``/``403`` (a bad key or signature, a denied permission) → :class:`AuthError`; ``429`` and
  ``5xx`` → :class:`RetryableError`; any other status stops the send.
* A request that left without an answer (read timeout, dropped connection) → every recipient of
  that request ``unknown``.

Requests are signed with SigV4 (httpx-auth's ``AWS4Auth``, service ``ses``) for the configured
region; the caller reads the credentials from ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY`` and
``AWS_SESSION_TOKEN``. The base URL is configurable so the fake ESP can stand in for SES.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.header import Header
from email.utils import formataddr
from typing import Any, Final
from urllib.parse import quote

import httpx
import orjson

from newsletter.delivery.esp.account import (
    Account,
    AccountError,
    ProviderDns,
    as_dict,
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
from newsletter.render.slots import SLOTS, html_values, slots_in, translate

__all__ = [
    "DNS",
    "MAX_BATCH",
    "MAX_DESTINATIONS",
    "SEND_PATH",
    "TEMPLATES_PATH",
    "SesAdapter",
    "handlebars",
    "ses_endpoint",
    "template_content",
    "template_name",
]

#: SES's documented limit for ``SendBulkEmail``: 50 destinations per call.
MAX_DESTINATIONS: Final = 50
#: Recipients per batch (one claim in the ledger): ten requests of :data:`MAX_DESTINATIONS`.
MAX_BATCH: Final = 10 * MAX_DESTINATIONS
SEND_PATH: Final = "/v2/email/outbound-bulk-emails"
#: SES's SPF include (for a custom MAIL FROM domain); its Easy DKIM hosts come from the identity.
DNS: Final = ProviderDns(spf_include="amazonses.com")
TEMPLATES_PATH: Final = "/v2/email/templates"
#: The SigV4 service name SES signs for.
SERVICE: Final = "ses"

#: The tags as :func:`~newsletter.render.slots.translate` patterns: triple-stash, never escaped by SES.
_TEXT_PATTERN: Final = "{{{%s}}}"
_HTML_PATTERN: Final = "{{{%s_html}}}"
#: Template data keys standing for a literal ``{`` and ``\\`` of editor text (see :func:`handlebars`).
LBRACE: Final = "lbrace"
BACKSLASH: Final = "backslash"
_LITERALS: Final = {LBRACE: "{", BACKSLASH: "\\"}
_MARKER = re.compile(r"%%(?:" + "|".join(SLOTS) + r")%%")
_BRACES_AND_BACKSLASHES = re.compile(r"[{\\]+")
_TAG_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]+")
_ANGLE_TAIL = re.compile(r"(.*?)(\s*<[\x21-\x7e]*>)", re.DOTALL)

_SUCCESS: Final = "SUCCESS"
#: Per-entry statuses after which the same message may go through later.
_RETRY_STATUSES: Final = frozenset({"ACCOUNT_THROTTLED", "ACCOUNT_DAILY_QUOTA_EXCEEDED", "TRANSIENT_FAILURE"})
#: Our template is gone: retried, after it is made again. (The API reference spells this status and
#: the configuration set's ``…_DOES_NOT_EXIST``, the service model ``…_NOT_FOUND``: both are known.)
_TEMPLATE_MISSING: Final = frozenset({"TEMPLATE_NOT_FOUND", "TEMPLATE_DOES_NOT_EXIST"})
#: Per-entry statuses that are the account's or the sender's: stop, fail nobody.
_STOP_STATUSES: Final = frozenset(
    {
        "MAIL_FROM_DOMAIN_NOT_VERIFIED",
        "ACCOUNT_SUSPENDED",
        "ACCOUNT_SENDING_PAUSED",
        "CONFIGURATION_SET_SENDING_PAUSED",
        "CONFIGURATION_SET_NOT_FOUND",
        "CONFIGURATION_SET_DOES_NOT_EXIST",
        "INVALID_SENDING_POOL_NAME",
    }
)
#: Whole-request 400 errors that no recipient caused and no retry fixes.
_STOP_ERRORS: Final = frozenset(
    {
        "AccountSuspendedException",
        "SendingPausedException",
        "MailFromDomainNotVerifiedException",
        "LimitExceededException",
    }
)


def ses_endpoint(region: str) -> str:
    """The SES API of an AWS region: ``https://email.eu-west-1.amazonaws.com``."""
    return f"https://email.{region}.amazonaws.com"


def template_content(message: Outgoing) -> tuple[dict[str, str], set[str]]:
    """The template SES stores for ``message`` (``Subject``, ``Text``, ``Html``), and the literal
    keys (:func:`handlebars`) its data must carry."""
    subject, in_subject = handlebars(message.subject, _TEXT_PATTERN)
    text, in_text = handlebars(message.text, _TEXT_PATTERN)
    html, in_html = handlebars(message.html, _HTML_PATTERN)
    return {"Subject": subject, "Text": text, "Html": html}, in_subject | in_text | in_html


def template_name(send_id: int, content: Mapping[str, str]) -> str:
    """``newsletter-<send>-<digest of the content>``: every process and re-run of a send finds the
    same template, and nothing else shares it. A test copy (send 0, a ``[TEST]`` subject) or another
    send of the same issue gets its own, so neither can overwrite the template a send is using, nor
    delete it when it finishes."""
    digest = hashlib.sha256(encode_json(content)).hexdigest()[:16]
    return f"newsletter-{max(send_id, 0)}-{digest}"


def handlebars(body: str, pattern: str) -> tuple[str, set[str]]:
    """A rendered body as an SES template: slot markers as ``pattern`` tags, editor text inert.

    Returns the template and the literal keys (:data:`LBRACE`, :data:`BACKSLASH`) its data must
    carry. Reading each run of ``{`` and ``\\`` from its end: a ``{`` followed by a ``{`` (literal
    or the start of a tag) becomes ``{{{lbrace}}}``; a ``\\`` followed by a tag becomes
    ``{{{backslash}}}``. Every other character stays as it is, so ``p { color: red }`` and
    ``C:\\path`` cost nothing, and no ``{{`` of editor text survives.
    """
    used: set[str] = set()

    def inert(match: re.Match[str]) -> str:
        next_is = "tag" if _MARKER.match(body, match.end()) else "other"
        out = []
        for char in reversed(match.group(0)):
            if (char == "{" and next_is != "other") or (char == "\\" and next_is == "tag"):
                key = LBRACE if char == "{" else BACKSLASH
                used.add(key)
                out.append("{{{" + key + "}}}")
                next_is = "tag"
            else:
                out.append(char)
                next_is = "brace" if char == "{" else "other"
        return "".join(reversed(out))

    return translate(_BRACES_AND_BACKSLASHES.sub(inert, body), pattern), used


def _address(email: str, name: str = "") -> str | None:
    """``Name <email>`` as SES takes it: ASCII only, a non-ASCII name RFC 2047-encoded and an
    internationalised domain in its IDNA form. None for a local part SES cannot send to."""
    local, _, domain = email.rpartition("@")
    if not local.isascii():
        return None
    if not domain.isascii():
        try:
            domain = domain.encode("idna").decode("ascii")
        except UnicodeError:
            return None
    email = f"{local}@{domain}"
    name = _CONTROL.sub(" ", name).strip() if name else ""
    return formataddr((name, email), charset="utf-8") if name else email


def _headers(headers: Mapping[str, str]) -> list[dict[str, str]]:
    """Headers as SES's ``MessageHeader`` list, without ``Message-ID`` (SES sets its own)."""
    return [
        {"Name": name, "Value": _header_value(value)}
        for name, value in headers.items()
        if name.lower() != "message-id"
    ]


def _header_value(value: str) -> str:
    """A header value SES takes (printable ASCII): a non-ASCII phrase, such as the newsletter's name
    in ``List-Id: Wöchentliche Rundschau <weekly.example.org>``, RFC 2047-encoded and the
    angle-bracketed part after it kept as it is."""
    value = _CONTROL.sub(" ", value)
    if value.isascii():
        return value
    match = _ANGLE_TAIL.fullmatch(value)
    phrase, tail = (match.group(1), match.group(2)) if match else (value, "")
    return Header(phrase.strip(), "utf-8").encode(linesep="\n").replace("\n", "") + tail


def _tag_value(value: str) -> str:
    """A message tag value SES accepts: ASCII letters, digits, ``_`` and ``-``, at most 256."""
    return _TAG_UNSAFE.sub("_", value)[:256]


@dataclass(frozen=True, slots=True)
class _Prepared:
    name: str
    send_id: str
    #: The slots each part uses, and the literal values every entry's data carries.
    text_slots: tuple[str, ...]
    html_slots: tuple[str, ...]
    literals: dict[str, str]
    #: ``"DefaultContent":…}``: the request's shared fields as JSON, after the entries.
    tail: bytes


class SesAdapter:
    """Send batches through SES v2 ``SendBulkEmail``. One instance per process and send."""

    name = "ses"
    max_batch = MAX_BATCH

    def __init__(
        self,
        access_key_id: str,
        secret_access_key: str,
        region: str,
        *,
        session_token: str = "",
        configuration_set: str = "",
        base_url: str | None = None,
        timeout: float = 30.0,
        timeouts: Timeouts | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        """``region``: the AWS region the requests are signed for (and, without ``base_url``, sent
        to). ``timeout``: seconds to wait for an answer, past which a batch is ``unknown``
        (``timeouts`` sets connect/read/write/pool separately). ``client``: for tests only."""
        if not access_key_id or not secret_access_key:
            raise AuthError("no AWS credentials (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)")
        if not region:
            raise ValueError("no AWS region for SES (set [esp] region, e.g. eu-west-1)")
        from httpx_auth import AWS4Auth

        auth = AWS4Auth(
            access_key_id,
            secret_access_key,
            region,
            SERVICE,
            **({"security_token": session_token} if session_token else {}),
        )
        self.configuration_set = configuration_set
        self.region = region
        if client is not None:
            client.auth = auth
        self._client = client or make_client(
            (base_url or ses_endpoint(region)).rstrip("/"),
            {},
            timeouts or Timeouts(read=timeout, write=timeout),
            auth=auth,
        )
        self._prepared: dict[tuple[int, str, str], _Prepared] = {}

    # -- the Adapter protocol ------------------------------------------------------------------

    def prepare(self, message: Outgoing) -> None:
        """Create (or bring up to date) this send's template.

        Safe in several processes at once: the name comes from the send and its content, and a
        create that finds the name taken updates it instead. A failure here (SES down, throttled) is not
        raised: the first :meth:`send_batch` tries again and raises it there, where the engine's
        retries and stop rules apply.
        """
        with contextlib.suppress(ESPError):
            self._prepare(message)

    def send_batch(self, message: Outgoing, recipients: Sequence[Recipient]) -> list[Result]:
        if not recipients:
            return []
        if len(recipients) > self.max_batch:
            raise ValueError(
                f"SES takes at most {self.max_batch} recipients per batch "
                f"({MAX_DESTINATIONS} destinations per SendBulkEmail call)"
            )
        results: list[Result] = []
        for start in range(0, len(recipients), MAX_DESTINATIONS):
            end = start + MAX_DESTINATIONS
            try:
                answered, complete = self._send_request(message, recipients[start:end])
            except ESPError as exc:
                # The first request's failure is the batch's; after it, what was answered stays.
                if not results:
                    raise
                results += every(recipients[start:], Outcome.RETRY, str(exc))
                return results
            results += answered
            if not complete:
                results += every(recipients[end:], Outcome.RETRY, "not sent: an earlier request failed")
                return results
        return results

    def finish(self, message: Outgoing) -> None:
        """Delete the send's template (templates count against a per-region account quota: a weekly
        newsletter would keep one a week forever); a later ``--retry-unknown`` makes it again."""
        prepared = self._prepared.pop(_cache_key(message), None)
        name = prepared.name if prepared else template_name(message.send_id, template_content(message)[0])
        try:
            response = request_json(self._client, "DELETE", f"{TEMPLATES_PATH}/{quote(name, safe='')}")
        except Unanswered as exc:
            raise RetryableError(str(exc)) from exc
        check_status(response, "SES delete template", _describe)
        if response.status_code not in (200, 404):
            raise ESPError(f"SES refused to delete template {name}: {short_body(response)}")

    def close(self) -> None:
        self._prepared.clear()
        self._client.close()

    def account(self, from_domain: str) -> Account:
        """``GetAccount`` (sending enabled, sandbox, quota and rate) and ``GetEmailIdentity`` of
        the From domain (verified, its Easy DKIM tokens, its custom MAIL FROM domain)."""
        account = as_dict(get_json(self._client, "/v2/email/account", "SES GetAccount", describe=_describe))
        quota = as_dict(account.get("SendQuota"))
        problems: list[str] = []
        notes: list[str] = []
        if account.get("SendingEnabled") is False:
            problems.append("sending is disabled for this account in this region")
        if account.get("ProductionAccessEnabled") is False:
            problems.append("the account is in the SES sandbox: only verified addresses receive mail")
        status = account.get("EnforcementStatus")
        if status not in (None, "HEALTHY"):
            problems.append(f"SES enforcement status is {status}")
        rate = _number(quota.get("MaxSendRate"))
        daily, sent = _number(quota.get("Max24HourSend")), _number(quota.get("SentLast24Hours"))
        remaining = None if daily is None else int(daily - (sent or 0))
        dkim_hosts: tuple[str, ...] = ()
        return_path: str | None = None
        try:
            path = f"/v2/email/identities/{quote(from_domain, safe='')}"
            identity = as_dict(get_json(self._client, path, "SES GetEmailIdentity", describe=_describe))
        except AccountError as exc:
            problems.append(f"{from_domain} is not a verified SES identity in this region ({exc})")
        else:
            if identity.get("VerifiedForSendingStatus") is not True:
                problems.append(f"SES has not verified {from_domain} for sending")
            dkim = as_dict(identity.get("DkimAttributes"))
            if dkim.get("SigningAttributesOrigin", "AWS_SES") == "AWS_SES":
                tokens = [str(t) for t in dkim.get("Tokens") or () if isinstance(t, str)]
                dkim_hosts = tuple(f"{token}._domainkey.{from_domain}" for token in tokens)
            if dkim.get("Status") not in (None, "SUCCESS"):
                problems.append(f"SES's DKIM status for {from_domain} is {dkim.get('Status')}")
            mail_from = as_dict(identity.get("MailFromAttributes"))
            if mail_from.get("MailFromDomain") and mail_from.get("MailFromDomainStatus") == "SUCCESS":
                return_path = str(mail_from["MailFromDomain"])
            else:
                notes.append("no custom MAIL FROM domain: bounces go to amazonses.com, so only DKIM aligns")
        return Account(
            summary=f"SES in {self.region}",
            problems=tuple(problems),
            notes=tuple(notes),
            rate_per_second=rate,
            remaining_today=remaining,
            dkim_hosts=dkim_hosts,
            return_path_domain=return_path,
        )

    # -- beyond the protocol -------------------------------------------------------------------

    def encode(self, message: Outgoing, recipients: Sequence[Recipient]) -> bytes:
        """The ``SendBulkEmail`` body for one request of at most :data:`MAX_DESTINATIONS` (the
        template made first, if need be)."""
        return self._encode(self._prepare(message), recipients)[0]

    def _prepare(self, message: Outgoing) -> _Prepared:
        prepared = self._prepared.get(_cache_key(message))
        if prepared is None:
            try:
                prepared = self._prepared[_cache_key(message)] = self._ensure_template(message)
            except Unanswered as exc:
                # Creating or updating a template by name is idempotent: simply try again.
                raise RetryableError(str(exc)) from exc
        return prepared

    def _ensure_template(self, message: Outgoing) -> _Prepared:
        content, literal_keys = template_content(message)
        name = template_name(message.send_id, content)

        created = request_json(
            self._client, "POST", TEMPLATES_PATH, {"TemplateName": name, "TemplateContent": content}
        )
        check_status(created, "SES create template", _describe)
        if created.status_code != 200:
            if _error_type(created) != "AlreadyExistsException":
                raise AuthError(f"SES: create template {name}: {_describe(created)}")
            # Made already (another process, an earlier run): make sure it holds this content.
            path = f"{TEMPLATES_PATH}/{quote(name, safe='')}"
            updated = request_json(self._client, "PUT", path, {"TemplateContent": content})
            check_status(updated, "SES update template", _describe)
            if updated.status_code != 200:
                raise AuthError(f"SES: update template {name}: {_describe(updated)}")
        literals = {key: _LITERALS[key] for key in sorted(literal_keys)}
        return _Prepared(
            name=name,
            send_id=str(message.send_id),
            text_slots=tuple(sorted(slots_in(message.subject) | slots_in(message.text))),
            html_slots=tuple(sorted(slots_in(message.html))),
            literals=literals,
            tail=self._tail(message, name),
        )

    def _tail(self, message: Outgoing, name: str) -> bytes:
        from_address = _address(message.from_address, message.from_name)
        if from_address is None:
            raise AuthError(f"SES cannot send from {message.from_address!r}: the address is not ASCII")
        fields: dict[str, Any] = {"FromEmailAddress": from_address}
        reply_to = _address(message.reply_to) if message.reply_to else None
        if reply_to:
            fields["ReplyToAddresses"] = [reply_to]
        tags = [{"Name": "send_id", "Value": str(message.send_id)}]
        if message.tag:
            tags.append({"Name": "tag", "Value": _tag_value(message.tag)})
        fields["DefaultEmailTags"] = tags
        template: dict[str, Any] = {"TemplateName": name, "TemplateData": "{}"}
        headers = _headers(message.headers)
        if headers:
            template["Headers"] = headers
        fields["DefaultContent"] = {"Template": template}
        if self.configuration_set:
            fields["ConfigurationSetName"] = self.configuration_set
        return encode_json(fields)[1:]

    def _encode(
        self, prepared: _Prepared, recipients: Sequence[Recipient]
    ) -> tuple[bytes, list[Recipient], list[Result]]:
        """The body, the recipients in it (in order), and results for those SES cannot take."""
        dumps = orjson.dumps
        entries: list[bytes] = []
        sendable: list[Recipient] = []
        refused: list[Result] = []
        for r in recipients:
            to = _address(r.email, r.name)
            if to is None:
                error = "SES takes only ASCII addresses (no SMTPUTF8): the local part is not ASCII"
                refused.append(Result(r.delivery_id, Outcome.FAILED, error=error))
                continue
            values = r.values
            data = {slot: values.get(slot, "") for slot in prepared.text_slots}
            if prepared.html_slots:
                escaped = html_values({slot: values.get(slot, "") for slot in prepared.html_slots})
                data.update((f"{slot}_html", value) for slot, value in escaped.items())
            data.update(prepared.literals)
            delivery_id = str(r.delivery_id)
            entry: dict[str, Any] = {
                "Destination": {"ToAddresses": [to]},
                "ReplacementEmailContent": {
                    "ReplacementTemplate": {"ReplacementTemplateData": dumps(data).decode("utf-8")}
                },
                "ReplacementTags": [
                    {"Name": "send_id", "Value": prepared.send_id},
                    {"Name": "delivery_id", "Value": delivery_id},
                ],
            }
            headers = _headers(r.headers)
            if headers:
                entry["ReplacementHeaders"] = headers
            entries.append(dumps(entry))
            sendable.append(r)
        return b'{"BulkEmailEntries":[' + b",".join(entries) + b"]," + prepared.tail, sendable, refused

    def _send_request(self, message: Outgoing, chunk: Sequence[Recipient]) -> tuple[list[Result], bool]:
        """One ``SendBulkEmail`` of at most :data:`MAX_DESTINATIONS`: its results, in the order of
        ``chunk``, and False when it left without a usable answer (its recipients ``unknown``).

        The template is looked up for each request, so one that an answer found missing is made
        again before the next request of the same batch.
        """
        prepared = self._prepare(message)
        body, sendable, refused = self._encode(prepared, chunk)
        if not sendable:
            return refused, True
        try:
            response = send(self._client, "POST", SEND_PATH, body)
            results, complete = self._read(message, response, sendable), True
        except Unanswered as exc:
            results, complete = every(sendable, Outcome.UNKNOWN, str(exc)), False
        if refused:  # rare (a non-ASCII local part): put them back in their places
            by_id = {r.delivery_id: r for r in (*refused, *results)}
            results = [by_id[r.delivery_id] for r in chunk]
        return results, complete

    def _read(self, message: Outgoing, response: httpx.Response, batch: Sequence[Recipient]) -> list[Result]:
        status = response.status_code
        check_status(response, f"SES {SEND_PATH}", _describe)
        if status == 200:
            return self._read_entries(message, response, batch)
        kind = _error_type(response)
        if status == 404:
            if "configuration set" in _error_message(response).lower():
                raise AuthError(f"SES: {_describe(response)}")
            self._prepared.pop(_cache_key(message), None)
            raise RetryableError(f"SES: template missing, will be made again: {_describe(response)}")
        if status == 400 and kind not in _STOP_ERRORS:
            return every(batch, Outcome.FAILED, _describe(response))
        raise AuthError(f"SES {SEND_PATH}: HTTP {status}: {_describe(response)}")

    def _read_entries(
        self, message: Outgoing, response: httpx.Response, batch: Sequence[Recipient]
    ) -> list[Result]:
        """SES answers in the order of the request: the n-th result is the n-th entry's."""
        try:
            answers = orjson.loads(response.content).get("BulkEmailEntryResults")
        except (ValueError, AttributeError):
            answers = None
        if not isinstance(answers, list) or len(answers) != len(batch):
            raise Unanswered(f"SES {SEND_PATH}: unreadable answer: {short_body(response)}")
        results: list[Result] = []
        stopped: str | None = None
        accepted = Outcome.ACCEPTED
        for recipient, answer in zip(batch, answers, strict=True):
            if type(answer) is dict and answer.get("Status") == _SUCCESS and answer.get("MessageId"):
                results.append(Result(recipient.delivery_id, accepted, str(answer["MessageId"])))
                continue
            status = answer.get("Status") if isinstance(answer, dict) else None
            if not isinstance(status, str) or status == _SUCCESS:
                error = f"odd answer: {answer!r}"
                results.append(Result(recipient.delivery_id, Outcome.UNKNOWN, error=error))
                continue
            error = f"{status}: {answer.get('Error') or ''}".rstrip(": ")
            if status in _STOP_STATUSES:
                stopped = f"SES: {error}"
                results.append(Result(recipient.delivery_id, Outcome.RETRY, error=error))
            elif status in _RETRY_STATUSES or status in _TEMPLATE_MISSING:
                if status in _TEMPLATE_MISSING:
                    self._prepared.pop(_cache_key(message), None)
                results.append(Result(recipient.delivery_id, Outcome.RETRY, error=error))
            else:
                results.append(Result(recipient.delivery_id, Outcome.FAILED, error=error))
        if stopped and not any(r.outcome is Outcome.ACCEPTED for r in results):
            raise AuthError(stopped)
        return results


def _cache_key(message: Outgoing) -> tuple[int, str, str]:
    """What tells one send's template from another's in an adapter's cache (a test copy shares
    the key of the issue's content but not its send or subject)."""
    return message.send_id, message.key, message.subject


def _error_type(response: httpx.Response) -> str:
    """The exception SES names: the ``x-amzn-ErrorType`` header (``Name:uri``), else the body's
    ``__type`` or ``code`` (``…#Name``), as AWS's REST-JSON protocol puts it."""
    value = response.headers.get("x-amzn-ErrorType") or ""
    if not value:
        body = json_object(response)
        value = str(body.get("__type") or body.get("code") or "")
    return value.split(":", 1)[0].rpartition("#")[2].strip()


def _error_message(response: httpx.Response) -> str:
    body = json_object(response)
    return str(body.get("message") or body.get("Message") or "")


def _describe(response: httpx.Response) -> str:
    """``Type: message`` from an SES error answer, else the start of its body."""
    kind, text = _error_type(response), _error_message(response)
    if kind or text:
        return f"{kind}: {text}" if kind and text else kind or text
    return f"HTTP {response.status_code}: {short_body(response)}"



def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None
