"""The account behind the fake's APIs, as their read-only calls describe it (``newsletter doctor``).

One state for every provider, since a test sets up one provider at a time: the domain the account
may send for, whether it is a sandbox, the webhook registered for bounces and complaints, the
DKIM selectors it signs with. Each provider's module answers its own calls from it, shaped as that
provider documents (Postmark ``GET /server``, SendGrid ``GET /v3/scopes``, Mailgun
``GET /v3/domains/{domain}``, SES ``GetAccount``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["FakeAccount"]


@dataclass
class FakeAccount:
    #: The From domain the account is set up for (SendGrid's authenticated domain, SES's identity).
    domain: str = "example.org"
    #: Mailgun's sending domain (a subdomain of ``domain``, as Mailgun advises).
    mailgun_domain: str = "mg.example.org"
    #: The webhook registered at the provider, empty for none.
    webhook_url: str = ""
    #: Which of bounce and complaint it carries.
    webhook_kinds: tuple[str, ...] = ("bounce", "complaint")
    #: A sandbox (Postmark) / SES sandbox / unverified (Mailgun, SendGrid, SES identity) account.
    sandbox: bool = False
    verified: bool = True
    #: The DKIM selectors the provider signs ``domain`` with.
    dkim_selectors: tuple[str, ...] = ("s1", "s2")
    #: SendGrid's API key scopes.
    scopes: tuple[str, ...] = field(
        default=("mail.send", "user.webhooks.event.settings.read", "whitelabel.read")
    )
    #: SES's quota.
    max_send_rate: float = 14.0
    max_24_hour_send: float = 50_000.0
    sent_last_24_hours: float = 0.0
    #: A custom MAIL FROM / return-path subdomain of ``domain`` ("" for the provider's own).
    return_path: str = "bounces"

    def has(self, kind: str) -> bool:
        return bool(self.webhook_url) and kind in self.webhook_kinds
