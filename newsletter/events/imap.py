"""The bounce mailbox over IMAP (IMAPClient): list, fetch in pages, move away what was processed.

Every request has ``timeout`` seconds (a socket timeout): a server that stops answering raises
:class:`MailboxUnavailable` and the next poll tries again. Messages are fetched with
``BODY.PEEK[]`` (nothing is marked read by fetching), and a message over ``max_bytes`` only up to
that many bytes, so a 20 MB attachment never comes over the wire whole. What was processed is moved
to ``done_folder`` (created if missing; ``MOVE`` where the server has it, else copy and expunge
those UIDs) or, with no ``done_folder``, flagged with :data:`DONE_FLAG` and skipped by later
searches. Nothing is ever deleted unseen.
"""

from __future__ import annotations

import contextlib
import imaplib
import socket
import ssl
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Any

from newsletter.errors import NewsletterError

__all__ = ["DONE_FLAG", "Fetched", "Mailbox", "MailboxUnavailable"]

#: The keyword a processed message gets when it stays in its folder.
DONE_FLAG = b"$NewsletterDone"


class MailboxUnavailable(NewsletterError):
    """The mailbox could not be read now (no connection, no answer, login refused)."""


@dataclass(frozen=True)
class Fetched:
    uid: int
    raw: bytes
    size: int  #: the whole message's size; ``raw`` holds at most ``max_bytes`` of it

    @property
    def truncated(self) -> bool:
        return len(self.raw) < self.size


class Mailbox:
    """One connection to one folder; use as a context manager."""

    def __init__(
        self,
        host: str,
        port: int,
        *,
        tls: str = "tls",
        username: str = "",
        password: str = "",
        folder: str = "INBOX",
        done_folder: str = "",
        timeout: float = 30.0,
        max_bytes: int = 4 * 1024 * 1024,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.host, self.port, self.tls = host, port, tls
        self.username, self.password = username, password
        self.folder, self.done_folder = folder, done_folder
        self.timeout, self.max_bytes = timeout, max_bytes
        self.ssl_context = ssl_context
        self._client: Any = None
        self._can_move = False

    def __enter__(self) -> Mailbox:
        from imapclient import IMAPClient

        context = self.ssl_context or ssl.create_default_context()
        try:
            client = IMAPClient(
                self.host,
                port=self.port,
                ssl=self.tls == "tls",
                ssl_context=context if self.tls == "tls" else None,
                timeout=self.timeout,
            )
        except (OSError, imaplib.IMAP4.error) as exc:
            if isinstance(exc, (socket.timeout, TimeoutError)):  # connected, but no greeting
                raise _unavailable(self, exc) from exc
            raise MailboxUnavailable(f"cannot connect to IMAP {self.host}:{self.port}: {exc}") from exc
        self._client = client
        try:
            if self.tls == "starttls":
                client.starttls(context)
            if self.username:
                client.login(self.username, self.password)
            client.select_folder(self.folder)
            self._can_move = client.has_capability("MOVE")
            if self.done_folder and not client.folder_exists(self.done_folder):
                client.create_folder(self.done_folder)
        except BaseException as exc:
            self._close()
            raise _unavailable(self, exc) from exc
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._close()

    def uids(self) -> list[int]:
        """The folder's messages not yet processed, oldest first."""
        criteria: list[Any] = ["NOT", "DELETED"]
        if not self.done_folder:
            criteria += ["NOT", "KEYWORD", DONE_FLAG.decode()]
        return sorted(self._call(self._client.search, criteria))

    def fetch(self, uids: Sequence[int]) -> Iterator[Fetched]:
        """The messages of ``uids`` (one page), each cut at ``max_bytes``; vanished ones skipped."""
        if not uids:
            return
        sizes = self._call(self._client.fetch, list(uids), ["RFC822.SIZE"])
        small = [uid for uid in uids if sizes.get(uid, {}).get(b"RFC822.SIZE", 0) <= self.max_bytes]
        large = [uid for uid in uids if uid in sizes and uid not in small]
        bodies: dict[int, bytes] = {}
        if small:
            for uid, data in self._call(self._client.fetch, small, ["BODY.PEEK[]"]).items():
                bodies[uid] = data.get(b"BODY[]") or b""
        if large:
            part = f"BODY.PEEK[]<0.{self.max_bytes}>"
            for uid, data in self._call(self._client.fetch, large, [part]).items():
                bodies[uid] = data.get(b"BODY[]<0>") or b""
        for uid in uids:
            if uid in bodies:
                yield Fetched(uid, bodies[uid], int(sizes[uid].get(b"RFC822.SIZE", len(bodies[uid]))))

    def done(self, uids: Sequence[int]) -> None:
        """Move (or flag) the processed messages out of the way of the next poll."""
        if not uids:
            return
        if not self.done_folder:
            self._call(self._client.add_flags, list(uids), [DONE_FLAG], True)
        elif self._can_move:
            self._call(self._client.move, list(uids), self.done_folder)
        else:
            self._call(self._client.copy, list(uids), self.done_folder)
            self._call(self._client.delete_messages, list(uids), True)
            self._call(self._client.uid_expunge, list(uids))

    def append(self, raw: bytes, folder: str | None = None) -> None:
        """Put a message in (tests and benchmarks fill a mailbox this way, with IMAP APPEND)."""
        self._call(self._client.append, folder or self.folder, raw)

    def _call(self, method: Any, *args: Any) -> Any:
        try:
            return method(*args)
        except BaseException as exc:
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            self._close()
            raise _unavailable(self, exc) from exc

    def _close(self) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        try:
            client.logout()
        except Exception:  # a connection that is gone already: the socket goes with the client
            with contextlib.suppress(Exception):
                client.shutdown()


def _unavailable(box: Mailbox, exc: BaseException) -> BaseException:
    """IMAP, socket and TLS failures as :class:`MailboxUnavailable`; anything else as it is."""
    from imapclient.exceptions import IMAPClientError

    where = f"IMAP {box.host}:{box.port}"
    if isinstance(exc, (socket.timeout, TimeoutError)):
        return MailboxUnavailable(f"{where} did not answer within {box.timeout:g} s")
    if isinstance(exc, (OSError, imaplib.IMAP4.error, IMAPClientError, ssl.SSLError)):
        return MailboxUnavailable(f"{where}: {exc}")
    return exc
