"""The one place that knows which adapter each ``[esp] provider`` names and where its secret is.

Adding a provider touches this table, its module and its tests. Secrets come from environment
variables: each HTTP provider's own (:data:`TOKEN_ENV`) unless ``[esp] token_env`` names another;
SES's are AWS's standard ones (:data:`AWS_ENV`). A missing one is a configuration error before
anything is sent. So is a ``[esp] region`` the provider does not have: what a region is, is each
provider's own business (Mailgun ``us``/``eu``, SES an AWS region name).
"""

from __future__ import annotations

import importlib
import os
import re
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

from newsletter.config import EspSettings
from newsletter.delivery.esp.base import Adapter
from newsletter.errors import ConfigError

if TYPE_CHECKING:  # account.py brings httpx, which the web app must not pay for at start-up
    from newsletter.delivery.esp.account import ProviderDns

__all__ = ["AWS_ENV", "TOKEN_ENV", "adapter_factory", "provider_dns", "providers", "token_env"]

AdapterFactory = Callable[[], Adapter]

#: The environment variable holding each HTTP provider's API token when ``[esp] token_env`` is empty.
TOKEN_ENV: Final = {
    "postmark": "POSTMARK_TOKEN",
    "sendgrid": "SENDGRID_API_KEY",
    "mailgun": "MAILGUN_API_KEY",
}
#: Where SES's credentials come from: the variables every AWS SDK reads (the session token only
#: for temporary credentials).
AWS_ENV: Final = {
    "access_key_id": "AWS_ACCESS_KEY_ID",
    "secret_access_key": "AWS_SECRET_ACCESS_KEY",
    "session_token": "AWS_SESSION_TOKEN",
}
MAILGUN_REGIONS: Final = ("us", "eu")
#: An AWS region name: ``eu-west-1``, ``us-gov-west-1``, ``ap-southeast-2``.
_AWS_REGION = re.compile(r"[a-z]{2}(?:-[a-z]+)+-\d{1,2}")


def token_env(esp: EspSettings) -> str:
    """The variable the configured provider's token comes from: ``token_env`` if set, else its own."""
    return esp.token_env.strip() or TOKEN_ENV.get(esp.provider, "")


def _secret(name: str, environ: Mapping[str, str], what: str, where: str = " (esp.*_env)") -> str:
    value = environ.get(name, "")
    if not value:
        raise ConfigError(f"{name} is not set: the {what} comes from that environment variable{where}")
    return value


def _outbox(esp: EspSettings, environ: Mapping[str, str]) -> AdapterFactory:
    from newsletter.delivery.esp.outbox import OutboxAdapter

    return lambda: OutboxAdapter(esp.outbox_dir)


def _smtp(esp: EspSettings, environ: Mapping[str, str]) -> AdapterFactory:
    from newsletter.delivery.esp.smtp import SmtpAdapter

    password = _secret(esp.password_env, environ, "SMTP password") if esp.username else ""
    return lambda: SmtpAdapter(
        host=esp.host,
        port=esp.port,
        tls=esp.tls,
        username=esp.username,
        password=password,
        timeout=esp.timeout,
    )


def _postmark(esp: EspSettings, environ: Mapping[str, str]) -> AdapterFactory:
    from newsletter.delivery.esp.postmark import PostmarkAdapter

    token = _secret(token_env(esp), environ, "Postmark server token")
    return lambda: PostmarkAdapter(
        token=token,
        base_url=esp.base_url or None,
        timeout=esp.timeout,
        message_stream=esp.message_stream,
        templates=esp.templates,
    )


def _sendgrid(esp: EspSettings, environ: Mapping[str, str]) -> AdapterFactory:
    from newsletter.delivery.esp.sendgrid import SendGridAdapter

    api_key = _secret(token_env(esp), environ, "SendGrid API key")
    return lambda: SendGridAdapter(api_key, base_url=esp.base_url or None, timeout=esp.timeout)


def _mailgun(esp: EspSettings, environ: Mapping[str, str]) -> AdapterFactory:
    from newsletter.delivery.esp.mailgun import MAILGUN_API, MAILGUN_EU_API, MailgunAdapter

    if not esp.domain:
        raise ConfigError("esp.domain: the Mailgun sending domain is required (e.g. mg.example.org)")
    if esp.region not in ("", *MAILGUN_REGIONS):
        raise ConfigError(f"esp.region: Mailgun's region must be us or eu, not {esp.region!r}")
    api_key = _secret(token_env(esp), environ, "Mailgun API key")
    base_url = esp.base_url or (MAILGUN_EU_API if esp.region == "eu" else MAILGUN_API)
    return lambda: MailgunAdapter(api_key, esp.domain, base_url=base_url, timeout=esp.timeout)


def _ses(esp: EspSettings, environ: Mapping[str, str]) -> AdapterFactory:
    from newsletter.delivery.esp.ses import SesAdapter

    if not esp.region:
        raise ConfigError("esp.region: SES needs the AWS region to send from (e.g. eu-west-1)")
    if not _AWS_REGION.fullmatch(esp.region):
        raise ConfigError(f"esp.region: {esp.region!r} is not an AWS region name (e.g. eu-west-1)")
    access_key_id = _secret(AWS_ENV["access_key_id"], environ, "AWS access key id for SES", "")
    secret_access_key = _secret(AWS_ENV["secret_access_key"], environ, "AWS secret access key for SES", "")
    session_token = environ.get(AWS_ENV["session_token"], "")
    return lambda: SesAdapter(
        access_key_id,
        secret_access_key,
        esp.region,
        session_token=session_token,
        configuration_set=esp.configuration_set,
        base_url=esp.base_url or None,
        timeout=esp.timeout,
    )


_BUILDERS: dict[str, Callable[[EspSettings, Mapping[str, str]], AdapterFactory]] = {
    "outbox": _outbox,
    "smtp": _smtp,
    "postmark": _postmark,
    "sendgrid": _sendgrid,
    "mailgun": _mailgun,
    "ses": _ses,
}


def adapter_factory(esp: EspSettings, environ: Mapping[str, str] | None = None) -> AdapterFactory:
    """A callable making a fresh adapter (one per worker thread) for the configured provider."""
    builder = _BUILDERS.get(esp.provider)
    if builder is None:
        known = ", ".join(_BUILDERS)
        raise ConfigError(f"esp.provider: unknown provider {esp.provider!r} (expected one of: {known})")
    return builder(esp, os.environ if environ is None else environ)


def providers() -> list[str]:
    return list(_BUILDERS)


def provider_dns(provider: str) -> ProviderDns:
    """What ``provider`` needs in DNS, as its adapter module declares (``DNS``)."""
    if provider not in _BUILDERS:
        raise ConfigError(f"esp.provider: unknown provider {provider!r}")
    dns: ProviderDns = importlib.import_module(f"newsletter.delivery.esp.{provider}").DNS
    return dns
