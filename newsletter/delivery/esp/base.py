"""The one small protocol every email service provider adapter speaks.

An adapter knows its provider both ways (later: verifying and parsing its webhooks) and nothing of
the ledger: it is handed a message that is the same for the whole send (:class:`Outgoing`, with slot
markers in its bodies) and one batch of :class:`Recipient` values, and it answers with one
:class:`Result` per recipient. The engine decides what each answer means for the ledger.

The outcomes are the four a provider's answer can honestly be reduced to:

* ``accepted``: the provider took the message (with its id, for matching later events);
* ``failed``: a permanent refusal for this recipient (inactive recipient, invalid address);
  never retried;
* ``retry``: refused for now (rate limited, a temporary error); the engine tries again later;
* ``unknown``: the request may or may not have been processed (a timeout after it left, a
  dropped connection). Resending could deliver twice, so the engine never does it silently.

Whole-batch conditions are exceptions: :class:`RetryableError` (429, 5xx, a connection that never
carried the request) is retried with backoff by the engine; :class:`AuthError` (401/403) stops the
whole send, since every further batch would fail the same way.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.utils import parseaddr
from functools import lru_cache
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:  # account.py builds on this module
    from newsletter.delivery.esp.account import Account

__all__ = [
    "Adapter",
    "AuthError",
    "ESPError",
    "Outcome",
    "Outgoing",
    "Recipient",
    "Result",
    "RetryableError",
    "every",
]


class Outcome(enum.StrEnum):
    ACCEPTED = "accepted"
    FAILED = "failed"
    RETRY = "retry"
    UNKNOWN = "unknown"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """What is the same for every recipient of one send: rendered once, sent once per batch.

    ``html`` and ``text`` carry slot markers (``%%unsubscribe_url%%``); ``key`` identifies the
    rendered content (the send's content hash), so an adapter can name a provider-side template
    after it and reuse it across batches and processes.
    """

    send_id: int
    key: str
    subject: str
    html: str
    text: str
    from_address: str
    from_name: str
    reply_to: str
    list_id: str
    #: Headers identical for every message (``List-Id``, ``List-Unsubscribe-Post``).
    headers: Mapping[str, str] = field(default_factory=dict)
    #: A stream/category/tag name for providers that group messages (Postmark MessageStream).
    tag: str = ""

    @property
    def from_header(self) -> str:
        """``Name <address>``, encoded as a header wants it; cached, since every message asks."""
        return _from_header(self.from_name, self.from_address)


@lru_cache(maxsize=16)
def _from_header(name: str, address: str) -> str:
    if not name:
        return address
    local, _, domain = parseaddr(address)[1].rpartition("@")
    return str(Address(name, local, domain))


@dataclass(slots=True)
class Recipient:
    """One message of a batch: who it goes to and the values that are only theirs.

    Not frozen, like :class:`Result`: a million of each are made per send, and a frozen
    dataclass's ``__init__`` costs three times as much. Nothing changes them after construction.
    """

    delivery_id: int
    email: str
    name: str
    #: Slot values (``unsubscribe_url``, ``email``, ``name``), filled into the bodies by the adapter
    #: or handed to the provider's substitution feature.
    values: Mapping[str, str]
    #: Per-recipient headers: ``Message-ID``, ``List-Unsubscribe``.
    headers: Mapping[str, str]
    #: The envelope sender (SMTP ``MAIL FROM``) of this message alone, when it names the delivery
    #: (VERP); empty for the adapter's own. Only SMTP has an envelope to put it in.
    envelope_from: str = ""

    @property
    def message_id(self) -> str:
        return self.headers.get("Message-ID", "")


@dataclass(slots=True)
class Result:
    delivery_id: int
    outcome: Outcome
    #: The provider's id for the message (ours, the Message-ID, where the provider has none).
    message_id: str | None = None
    error: str | None = None


class ESPError(Exception):
    """A whole batch could not be handled; subclasses say what the engine should do."""


class RetryableError(ESPError):
    """Nothing of the batch was accepted and trying again later may work (429, 5xx, no connection).

    ``retry_after``: seconds the provider asked us to wait (``Retry-After``), if it said.
    """

    def __init__(self, message: str, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class AuthError(ESPError):
    """The provider refused our credentials (401/403): stop the send and tell the editor."""


class Adapter(Protocol):
    """Send batches to one provider. Instances are used from one thread at a time."""

    #: The name used in config and the ledger (``outbox``, ``smtp``, ``postmark``).
    name: str
    #: The most recipients the provider takes in one call.
    max_batch: int

    def prepare(self, message: Outgoing) -> None:
        """Once per send and process, before the first batch (e.g. create a provider template)."""

    def send_batch(self, message: Outgoing, recipients: Sequence[Recipient]) -> list[Result]:
        """Send one personalised message per recipient; one :class:`Result` each, in any order.

        Raises :class:`RetryableError` or :class:`AuthError` for conditions of the whole batch.
        """
        ...

    def finish(self, message: Outgoing) -> None:
        """Once, after the whole send finished: drop what ``prepare`` made at the provider."""

    def close(self) -> None:
        """Release connections."""

    def account(self, from_domain: str) -> Account:
        """What the provider says of our account, read-only (``newsletter doctor``); see
        :mod:`newsletter.delivery.esp.account`."""
        ...


def every(recipients: Sequence[Recipient], outcome: Outcome, error: str) -> list[Result]:
    """The same outcome for each recipient of a batch: a request refused or unanswered whole."""
    return [Result(r.delivery_id, outcome, error=error) for r in recipients]
