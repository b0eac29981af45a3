"""Provider events (bounces, complaints, unsubscribes, deliveries, opens, clicks) from webhooks.

Each provider module turns its webhook's body into provider-neutral
:class:`~newsletter.events.model.ProviderEvent` values; ``newsletter.store.events`` stores and
applies them, and ``newsletter.web.app`` receives them over HTTP.
"""

from __future__ import annotations

import importlib
from types import ModuleType
from typing import Final

__all__ = ["WEBHOOK_PROVIDERS", "webhook_module"]

#: The providers whose webhooks ``newsletter serve`` takes: each is a module of this package with
#: ``PROVIDER``, ``verify``, ``parse`` and ``missing_secrets``.
WEBHOOK_PROVIDERS: Final = ("postmark", "sendgrid", "mailgun", "ses")


def webhook_module(provider: str) -> ModuleType | None:
    """The module reading ``provider``'s webhooks, or None if it has none (outbox, SMTP)."""
    if provider not in WEBHOOK_PROVIDERS:
        return None
    return importlib.import_module(f"newsletter.events.{provider}")
