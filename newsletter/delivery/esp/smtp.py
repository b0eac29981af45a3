"""Any SMTP server or relay: one connection, reused, and one envelope per recipient.

The envelope sender is the adapter's own (``envelope_from``, else the From address) unless a
recipient brings one: with ``[bounces]`` configured the engine gives each message a VERP address
naming its delivery, so the bounce comes back saying which message it is about. The adapter only
puts it in ``MAIL FROM``; what it means is the engine's business.

SMTP answers at each step of a message, and *where* a failure happens decides what it means:

* before the message content was sent (``MAIL``, ``RCPT``, the ``DATA`` command itself): nothing was
  delivered. A refused recipient (5xx) is ``failed``; a temporary refusal (4xx) is ``retry``; a
  connection lost here is simply reconnected once and the message sent again;
* after the content was sent and before the server's final reply: the server may have queued the
  message. That recipient is ``unknown``; the rest of the batch was never attempted: ``retry``.

Failures of the whole connection: a refused connection (before anything was sent) is
:class:`RetryableError`; bad credentials, a server that will not take our sender, or a server that
offers no STARTTLS when we require it are :class:`AuthError` (stop the send: every message would
meet the same answer).

The commands are issued one by one (``mail``, ``rcpt``, ``DATA``) rather than through
``smtplib.SMTP.sendmail``, whose single exception cannot say whether the content had left.

``max_batch = 100``: SMTP costs several round trips per message, so a batch of 100 is already a
second or more of work; keeping it there means the engine records outcomes often, and a crash or
lost connection leaves at most one small batch to sort out. Relays commonly cap messages per
connection at about that order too; if one closes earlier, the adapter reconnects.
"""

from __future__ import annotations

import contextlib
import re
import smtplib
import ssl
from collections.abc import Sequence
from typing import Final, Literal, cast

from newsletter.delivery.esp.account import Account, AccountError, ProviderDns
from newsletter.delivery.esp.base import (
    AuthError,
    Outcome,
    Outgoing,
    Recipient,
    Result,
    RetryableError,
    every,
)
from newsletter.delivery.message import MimeTemplate

__all__ = ["DNS", "SmtpAdapter", "TlsMode"]

TlsMode = Literal["starttls", "tls", "none"]

_DOT_AT_LINE_START: Final = re.compile(rb"(?m)^\.")
_CLOSING: Final = 421


class _NotSent(Exception):
    """The connection failed before the message content left: safe to send it again."""


#: A relay's SPF include and DKIM selectors are its own: ``[doctor] spf_include`` and
#: ``[esp] dkim_selectors`` name them.
DNS: Final = ProviderDns(
    dkim_note="an SMTP relay's DKIM selector is its own: name it in [esp] dkim_selectors"
)

class _Lost(Exception):
    """The connection failed after the content left: the server may have the message."""


class _Throttled(Exception):
    """The server refuses our sender for now (4xx on ``MAIL``): stop this batch, retry later."""


class _SenderRefused(Exception):
    """The server refuses our sender for good (5xx on ``MAIL``): no message of the send can go."""


class SmtpAdapter:
    name = "smtp"
    max_batch = 100

    def __init__(
        self,
        host: str,
        port: int = 587,
        *,
        tls: TlsMode | str = "starttls",
        username: str | None = None,
        password: str | None = None,
        timeout: float = 30.0,
        envelope_from: str | None = None,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
    ) -> None:
        if tls not in ("starttls", "tls", "none"):
            raise ValueError(f"tls must be starttls, tls or none, not {tls!r}")
        self.host = host
        self.port = port
        self.tls = cast(TlsMode, tls)
        self.username = username
        self.password = password
        self.timeout = timeout
        self.envelope_from = envelope_from
        self.ssl_context = ssl_context
        self.local_hostname = local_hostname
        self._smtp: smtplib.SMTP | None = None
        self._templates: dict[str, MimeTemplate] = {}
        #: Connections opened so far (tests and logs: how often the server dropped us).
        self.connections = 0

    # -- the Adapter protocol ------------------------------------------------------------------

    def prepare(self, message: Outgoing) -> None:
        self._templates[message.key] = MimeTemplate(message)

    def send_batch(self, message: Outgoing, recipients: Sequence[Recipient]) -> list[Result]:
        template = self._templates.get(message.key)
        if template is None:
            self.prepare(message)
            template = self._templates[message.key]
        default_sender = self.envelope_from or message.from_address
        results: list[Result] = []
        reconnects_without_progress = 0
        index = 0
        while index < len(recipients):
            recipient = recipients[index]
            sender = recipient.envelope_from or default_sender
            try:
                smtp = self._connection()
                results.append(self._send_one(smtp, sender, template, recipient))
            except (RetryableError, AuthError) as exc:
                if not results:
                    raise
                return results + every(recipients[index:], Outcome.RETRY, str(exc))
            except _NotSent as exc:
                self._drop()
                reconnects_without_progress += 1
                if reconnects_without_progress > 1:
                    if not results:
                        raise RetryableError(f"SMTP connection lost twice: {exc}") from exc
                    return results + every(recipients[index:], Outcome.RETRY, f"connection lost: {exc}")
                continue  # reconnect and send the same message again
            except _Lost as exc:
                self._drop()
                results.append(Result(recipient.delivery_id, Outcome.UNKNOWN, error=str(exc)))
                return results + every(
                    recipients[index + 1 :], Outcome.RETRY, "not attempted: connection lost"
                )
            except _Throttled as exc:
                if not results:
                    raise RetryableError(str(exc)) from exc
                return results + every(recipients[index:], Outcome.RETRY, str(exc))
            except _SenderRefused as exc:
                if not results:
                    raise AuthError(str(exc)) from exc
                return results + every(recipients[index:], Outcome.RETRY, str(exc))
            reconnects_without_progress = 0
            index += 1
        return results

    def finish(self, message: Outgoing) -> None:
        """Nothing was made at a provider."""

    def account(self, from_domain: str) -> Account:
        """Connect, greet, start TLS and log in as a send would, then quit: nothing is sent.
        A relay says nothing of its DKIM or bounce domain, so those come from config."""
        try:
            smtp = self._connection()
            size = smtp.esmtp_features.get("size", "")
        except RetryableError as exc:
            raise AccountError(str(exc)) from exc
        finally:
            self.close()
        security = {"tls": "TLS", "starttls": "STARTTLS", "none": "no TLS"}[self.tls]
        login = f", logged in as {self.username}" if self.username else ""
        limit = f", messages up to {int(size) // 1_000_000} MB" if size.isdigit() and int(size) else ""
        notes = () if self.tls != "none" else ("the relay is reached without TLS: fine on this machine only",)
        return Account(summary=f"SMTP relay {self.host}:{self.port} ({security}{login}{limit})", notes=notes)

    def close(self) -> None:
        self._templates.clear()
        if self._smtp is not None:
            with contextlib.suppress(smtplib.SMTPException, OSError):
                self._smtp.quit()
            self._drop()

    # -- one message ---------------------------------------------------------------------------

    def _send_one(
        self, smtp: smtplib.SMTP, sender: str, template: MimeTemplate, recipient: Recipient
    ) -> Result:
        rid = recipient.delivery_id
        try:
            data = template.build(recipient)
        except ValueError as exc:  # e.g. a line break in a header value: this message can never go
            return Result(rid, Outcome.FAILED, error=f"message not built: {exc}")
        options: list[str] = []
        if not (sender.isascii() and recipient.email.isascii()):
            if not smtp.has_extn("smtputf8"):
                return Result(rid, Outcome.FAILED, error="non-ASCII address and the server has no SMTPUTF8")
            options.append("SMTPUTF8")

        try:
            code, reply = smtp.mail(sender, options)
            if code == _CLOSING:
                raise _NotSent(_say(code, reply))
            if code != 250:
                self._reset(smtp)
                if 400 <= code < 500:
                    raise _Throttled(f"sender refused for now: {_say(code, reply)}")
                raise _SenderRefused(f"sender {sender} refused: {_say(code, reply)}")
            code, reply = smtp.rcpt(recipient.email)
            if code == _CLOSING:
                raise _NotSent(_say(code, reply))
            if code not in (250, 251):
                self._reset(smtp)
                return Result(rid, _outcome_for(code), error=f"recipient refused: {_say(code, reply)}")
            code, reply = smtp.docmd("DATA")
            if code == _CLOSING:
                raise _NotSent(_say(code, reply))
            if code != 354:
                self._reset(smtp)
                return Result(rid, _outcome_for(code), error=f"DATA refused: {_say(code, reply)}")
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise _NotSent(f"{type(exc).__name__}: {exc}") from exc

        try:
            smtp.send(_dot_stuffed(data))
            code, reply = smtp.getreply()
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise _Lost(f"connection lost after the message was sent: {exc}") from exc
        if code == 250:
            return Result(rid, Outcome.ACCEPTED, recipient.message_id or None)
        if code == _CLOSING:
            self._drop()
        return Result(rid, _outcome_for(code), error=f"message refused: {_say(code, reply)}")

    # -- the connection ------------------------------------------------------------------------

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is None:
            self._smtp = self._connect()
        return self._smtp

    def _connect(self) -> smtplib.SMTP:
        context = self.ssl_context or ssl.create_default_context()
        smtp: smtplib.SMTP | None = None
        try:
            if self.tls == "tls":
                smtp = smtplib.SMTP_SSL(
                    self.host,
                    self.port,
                    timeout=self.timeout,
                    context=context,
                    local_hostname=self.local_hostname,
                )
            else:
                smtp = smtplib.SMTP(
                    self.host, self.port, timeout=self.timeout, local_hostname=self.local_hostname
                )
            smtp.ehlo()
            if self.tls == "starttls":
                if not smtp.has_extn("starttls"):
                    raise AuthError(
                        f"{self.host}:{self.port} offers no STARTTLS; refusing to send in the clear "
                        "(set tls to 'none' for a local relay)"
                    )
                smtp.starttls(context=context)
                smtp.ehlo()
            if self.username:
                smtp.login(self.username, self.password or "")
        except AuthError:
            _close_quietly(smtp)
            raise
        except smtplib.SMTPAuthenticationError as exc:
            _close_quietly(smtp)
            raise AuthError(f"SMTP login refused: {_say(exc.smtp_code, exc.smtp_error)}") from exc
        except smtplib.SMTPNotSupportedError as exc:
            _close_quietly(smtp)
            raise AuthError(f"SMTP server cannot log us in: {exc}") from exc
        except ssl.SSLCertVerificationError as exc:
            _close_quietly(smtp)
            raise AuthError(f"SMTP server certificate not trusted: {exc}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            _close_quietly(smtp)
            raise RetryableError(f"cannot connect to SMTP {self.host}:{self.port}: {exc}") from exc
        self.connections += 1
        return smtp

    def _reset(self, smtp: smtplib.SMTP) -> None:
        """Abort the current envelope; a connection that cannot even do that is dropped."""
        try:
            code, _ = smtp.rset()
        except (smtplib.SMTPException, OSError):
            code = 0
        if code != 250:
            self._drop()

    def _drop(self) -> None:
        _close_quietly(self._smtp)
        self._smtp = None


def _dot_stuffed(data: bytes) -> bytes:
    """RFC 5321 §4.5.2: a line starting with ``.`` gets a second one; then the end marker."""
    data = _DOT_AT_LINE_START.sub(b"..", data)
    if not data.endswith(b"\r\n"):
        data += b"\r\n"
    return data + b".\r\n"


def _outcome_for(code: int) -> Outcome:
    return Outcome.RETRY if 400 <= code < 500 else Outcome.FAILED


def _say(code: int, reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return f"{code} {text}".strip()


def _close_quietly(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        with contextlib.suppress(OSError):
            smtp.close()
