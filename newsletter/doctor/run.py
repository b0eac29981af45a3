"""Every check, in the order a reader fixes things: DNS, the provider account, the subscriber
links, webhooks, the service, the list's health. The account is read first (the DNS checks use
what it says about selectors and bounce domains), the database once."""

from __future__ import annotations

import os
from collections.abc import Mapping

from newsletter.config import Settings
from newsletter.delivery.esp.account import ProviderDns
from newsletter.doctor import domain, health, provider, service, site
from newsletter.doctor.model import Check, Report, fail
from newsletter.doctor.resolver import DnsError, DnsReader
from newsletter.errors import NewsletterError

__all__ = ["run_doctor"]


def run_doctor(settings: Settings, environ: Mapping[str, str] | None = None) -> Report:
    environ = os.environ if environ is None else environ
    database, engine = service.check_database(settings)
    try:
        state = service.read_state(engine, settings) if engine is not None else None
        account_checks, account = provider.check_account(settings, environ, state.audience if state else None)
        dns_checks = _dns(settings, account)
        site_checks = site.check_site(settings, environ, state.latest_issue if state else None)
        webhook_checks = provider.check_webhooks(settings, environ, account)
        service_checks = [*database, service.check_secret(settings, environ)]
        if state is not None:
            service_checks += service.check_worker(settings, state)
        health_checks = health.check_health(settings, engine) if engine is not None else []
    finally:
        if engine is not None:
            engine.dispose()
    return Report(
        [*dns_checks, *account_checks, *site_checks, *webhook_checks, *service_checks, *health_checks]
    )


def _dns(settings: Settings, account: provider.Account | None) -> list[Check]:
    from newsletter.delivery.esp.registry import provider_dns

    try:
        facts = provider_dns(settings.esp.provider)
    except NewsletterError:
        facts = ProviderDns()  # the account line already says the provider is unknown
    try:
        reader = DnsReader(settings.doctor.nameservers, timeout=settings.doctor.timeout)
    except DnsError as exc:
        return [fail(domain.SECTION, domain.from_domain(settings), str(exc), "set [doctor] nameservers")]
    return domain.check_domain(settings, facts, account, reader)
