"""What a provider says about our account when asked, read-only: ``newsletter doctor``'s view.

Each adapter answers :meth:`~newsletter.delivery.esp.base.Adapter.account` with one call or two
that change nothing at the provider (Postmark's server, SendGrid's scopes, Mailgun's domain, SES's
account), and each adapter module declares what DNS its provider needs (:class:`ProviderDns`), so
the doctor knows what to look for without knowing any provider.

A credential the provider refuses is :class:`~newsletter.delivery.esp.base.AuthError`; anything
else that stops the answer (no connection, a 5xx, a body that is not what the API documents) is
:class:`AccountError`. Either becomes one line of the doctor's report, not a traceback.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Final

import httpx

from newsletter.delivery.esp.base import AuthError, ESPError
from newsletter.delivery.esp.http import Unanswered, check_status, send, short_body

__all__ = [
    "BOUNCE",
    "COMPLAINT",
    "Account",
    "AccountError",
    "ProviderDns",
    "Webhook",
    "as_dict",
    "as_list",
    "get_json",
]

#: The event kinds a webhook must carry for the list to stay clean (the doctor asks for both).
BOUNCE: Final = "bounce"
COMPLAINT: Final = "complaint"


class AccountError(ESPError):
    """The provider's account could not be read (not a refused credential: see ``AuthError``)."""


@dataclass(frozen=True, slots=True)
class Webhook:
    """One webhook the provider has registered: where it posts, and which of our kinds it sends."""

    url: str
    kinds: frozenset[str]
    enabled: bool = True


@dataclass(frozen=True, slots=True)
class Account:
    """The provider's answer, reduced to what the doctor reports.

    ``problems`` are findings that make sending fail or go nowhere (a sandbox server, a missing
    scope, an unverified domain); ``notes`` are worth knowing. ``webhooks`` is None where the API
    does not list them (or this credential may not); ``dkim_hosts`` and ``return_path_domain`` are
    what the provider says it signs with and bounces to, where it says.
    """

    summary: str
    problems: tuple[str, ...] = ()
    notes: tuple[str, ...] = ()
    #: Messages per second the provider allows this account (SES's ``MaxSendRate``).
    rate_per_second: float | None = None
    #: Messages the account may still send in the provider's current 24-hour window.
    remaining_today: int | None = None
    webhooks: tuple[Webhook, ...] | None = None
    dkim_hosts: tuple[str, ...] = ()
    return_path_domain: str | None = None


@dataclass(frozen=True, slots=True)
class ProviderDns:
    """What a provider needs in the From domain's DNS, declared once in its adapter module.

    ``spf_include``: the domain our SPF record must include (``include:spf.mtasv.net``), empty where
    the provider has none (SMTP: the relay's own). ``dkim_selectors``: the selectors it signs with
    at the From domain when the API does not say (SendGrid's ``s1``/``s2``); ``dkim_note`` says
    where to find them when they are per account (Postmark's dated selector).
    """

    spf_include: str = ""
    dkim_selectors: tuple[str, ...] = ()
    dkim_note: str = ""


def get_json(
    client: httpx.Client,
    path: str,
    what: str,
    *,
    describe: Callable[[httpx.Response], str] | None = None,
) -> Any:
    """``GET path``'s JSON (an object or a list); :class:`AuthError` or :class:`AccountError` if not.

    ``describe`` words an error answer as the provider does (SES names it in a header)."""
    try:
        response = send(client, "GET", path, None)
        check_status(response, what, describe)
    except AuthError:
        raise
    except (ESPError, Unanswered) as exc:
        raise AccountError(str(exc)) from exc
    if response.status_code >= 300:
        raise AccountError(f"{what}: HTTP {response.status_code}: {(describe or short_body)(response)}")
    try:
        return response.json()
    except ValueError:
        raise AccountError(f"{what}: the answer was not JSON: {short_body(response)}") from None


def as_dict(value: Any) -> dict[str, Any]:
    """``value`` if it is a JSON object, else {}: providers' answers are read, never trusted."""
    return value if isinstance(value, dict) else {}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []
