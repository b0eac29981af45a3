"""The SMTP adapter against a real SMTP server (aiosmtpd) on 127.0.0.1.

The server's handler records every envelope and can be told to refuse a recipient (550 or 451),
refuse the sender, drop the connection while idle, or die in the middle of a message, so each
outcome comes from a real SMTP dialogue, not from a mock of smtplib.
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from newsletter.delivery.esp.base import AuthError, Outcome, Outgoing, RetryableError
from newsletter.delivery.esp.smtp import SmtpAdapter, _dot_stuffed
from newsletter.render.slots import html_values
from tests.delivery.conftest import make_message, make_recipient, make_recipients

# aiosmtpd warns when AUTH is allowed without TLS; here that is the point (a local test server).
pytestmark = pytest.mark.filterwarnings("ignore:Requiring AUTH while not requiring TLS:UserWarning")


@dataclass
class Handler:
    """What the server does; tests change the fields between batches."""

    envelopes: list[tuple[str, list[str], bytes]] = field(default_factory=list)
    #: Address → reply to its RCPT (``"550 …"``, ``"451 …"``).
    refuse: dict[str, str] = field(default_factory=dict)
    #: Reply to MAIL FROM instead of 250.
    mail_reply: str | None = None
    #: Recipients whose message is stored, then the connection closed before the reply.
    die_after_data: set[str] = field(default_factory=set)
    sessions: list[SMTP] = field(default_factory=list)

    async def handle_EHLO(
        self, server: SMTP, session: Session, envelope: Envelope, hostname: str, responses: list[str]
    ) -> list[str]:
        session.host_name = hostname
        self.sessions.append(server)
        return responses

    async def handle_MAIL(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if self.mail_reply:
            return self.mail_reply
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        content = envelope.content if isinstance(envelope.content, bytes) else b""
        self.envelopes.append((str(envelope.mail_from), list(envelope.rcpt_tos), content))
        if self.die_after_data & set(envelope.rcpt_tos):
            transport = server.transport
            assert isinstance(transport, asyncio.Transport)
            transport.abort()
        return "250 2.0.0 Ok: queued"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Server:
    def __init__(self, handler: Handler, **kwargs: Any) -> None:
        self.handler = handler
        self.port = _free_port()
        self.controller = Controller(handler, hostname="127.0.0.1", port=self.port, **kwargs)

    def drop_idle_connections(self) -> None:
        """Close every open connection from the server side, as an idle timeout would."""
        loop = self.controller.loop
        for session in self.handler.sessions:
            if session.transport is not None:
                loop.call_soon_threadsafe(session.transport.close)

    def adapter(self, **kwargs: Any) -> SmtpAdapter:
        return SmtpAdapter("127.0.0.1", self.port, tls="none", timeout=5, **kwargs)


@pytest.fixture
def server() -> Iterator[Server]:
    server = Server(Handler())
    server.controller.start()
    yield server
    server.controller.stop()


@pytest.fixture
def adapter(server: Server) -> Iterator[SmtpAdapter]:
    adapter = server.adapter()
    yield adapter
    adapter.close()


def delivered_to(server: Server) -> list[str]:
    return [rcpt for _, rcpts, _ in server.handler.envelopes for rcpt in rcpts]


def test_each_recipient_gets_their_own_message_over_one_connection(
    server: Server, adapter: SmtpAdapter, message: Outgoing
) -> None:
    first, second = make_recipients(3), make_recipients(3, start=3)
    adapter.prepare(message)
    results = adapter.send_batch(message, first) + adapter.send_batch(message, second)
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 6
    assert [r.message_id for r in results] == [r.headers["Message-ID"] for r in first + second]
    assert adapter.connections == 1 and len(server.handler.sessions) == 1

    for (sender, rcpts, content), recipient in zip(server.handler.envelopes, first + second, strict=True):
        assert sender == "news@example.org" and rcpts == [recipient.email]
        parsed = email.message_from_bytes(content, policy=email.policy.default)
        assert isinstance(parsed, EmailMessage)
        assert parsed["To"].addresses[0].addr_spec == recipient.email
        assert parsed["Message-ID"] == recipient.headers["Message-ID"]
        assert parsed["List-Unsubscribe"] == recipient.headers["List-Unsubscribe"]
        text, html = parsed.iter_parts()
        assert isinstance(text, EmailMessage) and isinstance(html, EmailMessage)
        assert f"Unsubscribe: {recipient.values['unsubscribe_url']}" in text.get_content()
        assert f"Hello {html_values(recipient.values)['name']}," in html.get_content()


def test_a_refused_recipient_fails_alone(server: Server, adapter: SmtpAdapter, message: Outgoing) -> None:
    server.handler.refuse["reader1@example.com"] = "550 5.1.1 No such user"
    results = adapter.send_batch(message, make_recipients(3))
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.FAILED, Outcome.ACCEPTED]
    assert "550 5.1.1 No such user" in (results[1].error or "")
    assert delivered_to(server) == ["reader0@example.com", "reader2@example.com"]
    assert adapter.connections == 1


def test_a_temporarily_refused_recipient_is_retried(
    server: Server, adapter: SmtpAdapter, message: Outgoing
) -> None:
    server.handler.refuse["reader0@example.com"] = "451 4.7.1 Greylisted, try later"
    results = adapter.send_batch(message, make_recipients(2))
    assert [r.outcome for r in results] == [Outcome.RETRY, Outcome.ACCEPTED]
    assert "451" in (results[0].error or "")


def test_a_connection_dropped_between_batches_is_reopened(
    server: Server, adapter: SmtpAdapter, message: Outgoing
) -> None:
    assert {r.outcome for r in adapter.send_batch(message, make_recipients(2))} == {Outcome.ACCEPTED}
    server.drop_idle_connections()
    results = adapter.send_batch(message, make_recipients(2, start=2))
    assert [r.outcome for r in results] == [Outcome.ACCEPTED] * 2
    assert adapter.connections == 2
    assert delivered_to(server) == [f"reader{i}@example.com" for i in range(4)]


def test_a_connection_dying_mid_message_leaves_that_one_unknown_and_the_rest_for_later(
    server: Server, adapter: SmtpAdapter, message: Outgoing
) -> None:
    """The server stored reader1's message and hung up before saying so: we cannot know."""
    server.handler.die_after_data.add("reader1@example.com")
    results = adapter.send_batch(message, make_recipients(4))
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.UNKNOWN, Outcome.RETRY, Outcome.RETRY]
    assert delivered_to(server) == ["reader0@example.com", "reader1@example.com"]
    server.handler.die_after_data.clear()
    retried = adapter.send_batch(message, make_recipients(2, start=2))
    assert [r.outcome for r in retried] == [Outcome.ACCEPTED] * 2


def test_no_server_is_retryable() -> None:
    adapter = SmtpAdapter("127.0.0.1", _free_port(), tls="none", timeout=2)
    with pytest.raises(RetryableError, match="cannot connect"):
        adapter.send_batch(make_message(), make_recipients(2))
    adapter.close()


def test_a_refused_sender_stops_the_send(server: Server, adapter: SmtpAdapter, message: Outgoing) -> None:
    server.handler.mail_reply = "553 5.7.1 Sender not allowed"
    with pytest.raises(AuthError, match="553"):
        adapter.send_batch(message, make_recipients(2))
    assert server.handler.envelopes == []


def test_a_throttled_sender_is_retryable(server: Server, adapter: SmtpAdapter, message: Outgoing) -> None:
    server.handler.mail_reply = "450 4.7.0 Too many messages, slow down"
    with pytest.raises(RetryableError, match="450"):
        adapter.send_batch(message, make_recipients(2))


def test_a_message_that_cannot_be_built_fails_alone(
    server: Server, adapter: SmtpAdapter, message: Outgoing
) -> None:
    recipients = [
        make_recipient(0),
        make_recipient(1, name="Eve\r\nBcc: victim@example.com"),
        make_recipient(2),
    ]
    results = adapter.send_batch(message, recipients)
    assert [r.outcome for r in results] == [Outcome.ACCEPTED, Outcome.FAILED, Outcome.ACCEPTED]
    assert "line break" in (results[1].error or "")
    assert delivered_to(server) == ["reader0@example.com", "reader2@example.com"]


def test_starttls_required_but_not_offered_stops_the_send(server: Server, message: Outgoing) -> None:
    adapter = SmtpAdapter("127.0.0.1", server.port, tls="starttls", timeout=5)
    with pytest.raises(AuthError, match="STARTTLS"):
        adapter.send_batch(message, make_recipients(1))
    assert server.handler.envelopes == []


def _authenticator(
    server: SMTP, session: Session, envelope: Envelope, mechanism: str, auth_data: Any
) -> AuthResult:
    ok = isinstance(auth_data, LoginPassword) and (auth_data.login, auth_data.password) == (
        b"news",
        b"s3cret",
    )
    return AuthResult(success=ok, handled=False)


@pytest.fixture
def auth_server() -> Iterator[Server]:
    server = Server(Handler(), authenticator=_authenticator, auth_require_tls=False, auth_required=True)
    server.controller.start()
    yield server
    server.controller.stop()


def test_login_with_the_right_password(auth_server: Server, message: Outgoing) -> None:
    adapter = auth_server.adapter(username="news", password="s3cret")
    assert [r.outcome for r in adapter.send_batch(message, make_recipients(2))] == [Outcome.ACCEPTED] * 2
    adapter.close()


def test_a_wrong_password_stops_the_send(auth_server: Server, message: Outgoing) -> None:
    adapter = auth_server.adapter(username="news", password="wrong")
    with pytest.raises(AuthError, match="535"):
        adapter.send_batch(message, make_recipients(2))
    assert auth_server.handler.envelopes == []


def test_no_login_where_one_is_required_is_not_a_recipient_failure(
    auth_server: Server, message: Outgoing
) -> None:
    """530 on MAIL FROM: the sender is refused, for every message alike: stop, fail nobody."""
    adapter = auth_server.adapter()
    with pytest.raises(AuthError, match="530"):
        adapter.send_batch(message, make_recipients(2))
    adapter.close()


def test_dot_stuffing() -> None:
    assert _dot_stuffed(b".a\r\nb\r\n..c\r\n") == b"..a\r\nb\r\n...c\r\n.\r\n"
    assert _dot_stuffed(b"no newline") == b"no newline\r\n.\r\n"


def test_unknown_tls_mode_is_refused() -> None:
    with pytest.raises(ValueError, match="tls"):
        SmtpAdapter("127.0.0.1", 25, tls="ssl")


def test_the_doctor_s_account_call_logs_in_sends_nothing_and_quits(auth_server: Server) -> None:
    account = auth_server.adapter(username="news", password="s3cret").account("example.org")
    assert account.summary.startswith("SMTP relay 127.0.0.1:") and "logged in as news" in account.summary
    assert auth_server.handler.envelopes == []
    with pytest.raises(AuthError, match="535"):
        auth_server.adapter(username="news", password="wrong").account("example.org")


def test_the_doctor_s_account_call_without_a_server_is_an_account_error() -> None:
    from newsletter.delivery.esp.account import AccountError

    with pytest.raises(AccountError, match="cannot connect"):
        SmtpAdapter("127.0.0.1", _free_port(), tls="none", timeout=2).account("example.org")
