"""``ProviderEvent``: what one provider's webhook event means, whoever sent it."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from newsletter.errors import BadInput
from newsletter.store.models import EventKind

__all__ = ["BadPayload", "EventKind", "ProviderEvent", "Verdict", "WebhookRequest"]


class BadPayload(BadInput):
    """A webhook body that is not the JSON a provider sends: answered with 400, nothing stored."""


@dataclass(frozen=True)
class ProviderEvent:
    """One event as the store needs it.

    ``email`` lives only in memory, long enough to suppress or unsubscribe the address; the store
    keeps its hash. ``event_id`` is unique per provider and stable across the provider's retries,
    so a replayed webhook is recognised.
    """

    provider: str
    event_id: str
    kind: EventKind
    occurred_at: dt.datetime
    delivery_id: int | None = None
    send_id: int | None = None
    email: str | None = field(default=None, repr=False)
    #: Small, non-identifying facts: the bounce type and description, the clicked URL.
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WebhookRequest:
    """One webhook POST as a provider module sees it: verification runs on the raw ``body``.

    ``headers`` looks names up case-insensitively (Starlette's ``Headers``; tests may pass a dict
    with lower-case names). ``received_at`` is the server's clock, for timestamp tolerances.
    """

    headers: Mapping[str, str]
    body: bytes
    received_at: dt.datetime

    def header(self, name: str) -> str:
        """A header's value, or "" when absent."""
        value = self.headers.get(name)
        if value is None:
            value = next((v for k, v in self.headers.items() if k.lower() == name.lower()), "")
        return value


@dataclass(frozen=True)
class Verdict:
    """Whether a request really comes from the provider.

    ``reason`` is logged, never sent back. ``nonce`` is a one-time value (Mailgun's token) that the
    store records with the events, in the same transaction: a second request with it is a replay.
    """

    trusted: bool
    reason: str = ""
    nonce: str | None = None
