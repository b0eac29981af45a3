"""The provider account, read-only through its adapter, and the webhooks that bring its events back.

A credential the provider refuses, a missing token or an unreachable API is one ✘ line naming the
setting to fix; nothing here sends or changes anything at the provider.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Final
from urllib.parse import urlsplit, urlunsplit

from newsletter.config import Settings
from newsletter.delivery.esp.account import BOUNCE, COMPLAINT, Account, AccountError
from newsletter.delivery.esp.base import AuthError
from newsletter.delivery.esp.registry import adapter_factory, token_env
from newsletter.doctor.domain import from_domain
from newsletter.doctor.model import Check, fail, ok, warn
from newsletter.errors import NewsletterError
from newsletter.events import webhook_module

__all__ = ["ACCOUNT", "WEBHOOKS", "check_account", "check_webhooks", "list_duration"]

ACCOUNT: Final = "The provider account"
WEBHOOKS: Final = "Webhooks"


def check_account(
    settings: Settings, environ: Mapping[str, str], audience: int | None
) -> tuple[list[Check], Account | None]:
    """The account's lines, and the account itself for the DNS and webhook checks (None if unread)."""
    provider = settings.esp.provider
    name = f"{provider} account"
    try:
        adapter = adapter_factory(settings.esp, environ)()
    except (NewsletterError, AuthError, ValueError) as exc:
        return [fail(ACCOUNT, name, str(exc), "set what the message names, then run doctor again")], None
    try:
        account = adapter.account(from_domain(settings))
    except AuthError as exc:
        where = token_env(settings.esp) or "the provider's credentials"
        return [fail(ACCOUNT, name, f"the provider refused our credentials: {exc}", f"check {where}")], None
    except AccountError as exc:
        return [
            fail(ACCOUNT, name, f"could not read the account: {exc}", "check [esp] base_url and the network")
        ], None
    finally:
        adapter.close()
    checks = [ok(ACCOUNT, name, account.summary)]
    checks += [
        fail(ACCOUNT, name, problem, "fix it in the provider's dashboard") for problem in account.problems
    ]
    checks += [warn(ACCOUNT, name, note) for note in account.notes]
    checks += _pace(settings, account, audience)
    return checks, account


def list_duration(audience: int, rate: float) -> str:
    """``3 h 12 min``: how long ``audience`` messages take at ``rate`` per second."""
    seconds = round(audience / rate)
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"


def _pace(settings: Settings, account: Account, audience: int | None) -> list[Check]:
    if account.rate_per_second is None or audience is None:
        return []
    rate = account.rate_per_second
    if settings.esp.rate:
        rate = min(rate, settings.esp.rate)
    checks = []
    if rate > 0:
        checks.append(
            ok(
                ACCOUNT,
                "sending rate",
                f"{rate:g} messages/s: the list of {audience:,} takes {list_duration(audience, rate)}",
            )
        )
    else:
        checks.append(
            fail(ACCOUNT, "sending rate", "the provider allows 0 messages per second", "ask for a quota")
        )
    if account.remaining_today is not None and account.remaining_today < audience:
        checks.append(
            fail(
                ACCOUNT,
                "daily quota",
                f"{account.remaining_today:,} messages left in the 24-hour quota, the list has {audience:,}",
                "ask the provider for a higher quota, or send to a segment",
            )
        )
    return checks


def _normalised(url: str) -> str:
    """A webhook URL without credentials (Postmark's carry basic auth), query or trailing slash."""
    parts = urlsplit(url.strip())
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme.lower(), netloc.lower(), parts.path.rstrip("/"), "", ""))


def check_webhooks(settings: Settings, environ: Mapping[str, str], account: Account | None) -> list[Check]:
    provider = settings.esp.provider
    module = webhook_module(provider)
    if module is None:
        if provider == "smtp":
            if settings.bounces.mailbox:
                return [ok(WEBHOOKS, "bounces", f"read from the mailbox at {settings.bounces.imap_host}")]
            return [
                warn(
                    WEBHOOKS,
                    "bounces",
                    "SMTP has no webhooks and no bounce mailbox is configured: bounces are never seen",
                    "set [bounces] address and imap_host",
                )
            ]
        return [ok(WEBHOOKS, provider, "nothing to hear back from the outbox")]
    url = f"{settings.newsletter.base_url}/webhooks/{provider}"
    missing = module.missing_secrets(settings, environ)
    checks = [
        fail(
            WEBHOOKS,
            "secret",
            "; ".join(missing) + f": every request to {url} is refused",
            "set it in the environment of newsletter serve",
        )
        if missing
        else ok(WEBHOOKS, "secret", "set")
    ]
    if provider == "ses" and not settings.esp.configuration_set:
        checks.append(
            fail(
                WEBHOOKS,
                "registered",
                "no [esp] configuration_set: SES publishes events only through one",
                "make a configuration set with an SNS event destination; name it in [esp] configuration_set",
            )
        )
    if account is None:
        return checks
    if account.webhooks is None:
        checks.append(
            warn(
                WEBHOOKS,
                "registered",
                f"{provider}'s API does not list its webhooks here",
                f"make sure {url} receives bounces and complaints",
            )
        )
        return checks
    ours = [hook for hook in account.webhooks if _normalised(hook.url) == _normalised(url)]
    wanted = {BOUNCE, COMPLAINT}
    if not ours:
        others = ", ".join(sorted({_normalised(h.url) for h in account.webhooks})[:3]) or "none"
        checks.append(
            fail(
                WEBHOOKS,
                "registered",
                f"no webhook posts to {url} (registered: {others})",
                f"register {url} at {provider} for bounces and spam complaints",
            )
        )
        return checks
    kinds = set().union(*(hook.kinds for hook in ours if hook.enabled))
    if not any(hook.enabled for hook in ours):
        checks.append(
            fail(WEBHOOKS, "registered", f"the webhook to {url} is disabled", f"enable it at {provider}")
        )
    elif wanted - kinds:
        lacking = " and ".join(sorted(wanted - kinds))
        checks.append(
            fail(
                WEBHOOKS,
                "registered",
                f"the webhook to {url} does not send {lacking} events",
                f"turn on {lacking} events for it",
            )
        )
    else:
        checks.append(ok(WEBHOOKS, "registered", f"{url} receives bounces and complaints"))
    return checks
