"""The From domain's DNS, as mailbox providers judge a bulk sender (Gmail and Yahoo, since 2024):
SPF that passes for the provider, a DMARC policy, DKIM keys where the provider signs, and a
DKIM or bounce domain aligned with the From address so that DMARC passes.

The provider's account (when it could be read) says where it signs and bounces; ``[esp]
dkim_selectors`` overrides; else the adapter module's usual selectors are tried.
"""

from __future__ import annotations

from typing import Final

from newsletter.config import Settings
from newsletter.content.links import registrable_domain
from newsletter.delivery.esp.account import Account, ProviderDns
from newsletter.doctor.model import Check, fail, ok, warn
from newsletter.doctor.records import SPF_LOOKUP_LIMIT, parse_dkim, parse_dmarc, read_spf
from newsletter.doctor.resolver import DnsError, DnsReader

__all__ = ["SECTION", "check_domain", "from_domain"]

SECTION: Final = "DNS of the From domain"
#: RSA keys shorter than this are ignored by receivers (RFC 8301); Gmail asks for 2048.
_MIN_BITS: Final = 1024
_GOOD_BITS: Final = 2048


def from_domain(settings: Settings) -> str:
    return str(settings.newsletter.from_address).rpartition("@")[2].lower()


def _aligned(domain: str, other: str) -> bool:
    """DMARC's relaxed alignment: both under the same registrable domain."""
    return registrable_domain(f"http://{domain}/") == registrable_domain(f"http://{other}/")


def _short(record: str, limit: int = 160) -> str:
    return record if len(record) <= limit else record[:limit] + f"… ({len(record)} characters)"


def check_domain(
    settings: Settings, facts: ProviderDns, account: Account | None, reader: DnsReader
) -> list[Check]:
    domain = from_domain(settings)
    if settings.esp.provider == "outbox":
        return [
            warn(
                SECTION,
                domain,
                "the provider is the outbox: nothing leaves this machine, so DNS is not checked",
                "set [esp] provider to the provider you send with",
            )
        ]
    return_path = account.return_path_domain if account else None
    checks = [
        _spf(settings, facts, domain, return_path, reader),
        _dmarc(domain, reader),
    ]
    dkim_checks, signing_domains = _dkim(settings, facts, account, domain, reader)
    checks += dkim_checks
    checks.append(_alignment(domain, signing_domains, return_path))
    return checks


def _spf(
    settings: Settings, facts: ProviderDns, domain: str, return_path: str | None, reader: DnsReader
) -> Check:
    """SPF is checked where the envelope sender is: the provider's bounce domain when it is ours,
    else the From domain."""
    where = return_path if return_path and _aligned(return_path, domain) else domain
    name = f"SPF ({where})"
    include = settings.doctor.spf_include or facts.spf_include
    try:
        spf = read_spf(where, reader.txt)
    except DnsError as exc:
        return fail(SECTION, name, f"could not read: {exc}", "check [doctor] nameservers and the network")
    add = f'"v=spf1 include:{include} ~all"' if include else '"v=spf1 include:<your relay> ~all"'
    if spf.record is None:
        return fail(SECTION, name, f"no SPF record at {where}", f"add the TXT record {add} at {where}")
    if spf.errors:
        fix = "remove what receivers cannot evaluate"
        if spf.lookups > SPF_LOOKUP_LIMIT:
            fix = (
                "drop includes you no longer send through, or replace some by the ip4:/ip6: ranges they list"
            )
        return fail(SECTION, name, "; ".join(spf.errors[:3]) + f": {_short(spf.record)}", fix)
    if include and not spf.includes(include):
        return fail(
            SECTION,
            name,
            f"{_short(spf.record)} does not include {include}",
            f"add include:{include} before the all of the record at {where}",
        )
    found = f"{_short(spf.record)} ({spf.lookups} of {SPF_LOOKUP_LIMIT} lookups)"
    if not include:
        return warn(
            SECTION, name, found + "; the provider's include is not known", "set [doctor] spf_include"
        )
    if spf.warnings:
        return warn(SECTION, name, found + "; " + "; ".join(spf.warnings), "")
    return ok(SECTION, name, found)


def _dmarc(domain: str, reader: DnsReader) -> Check:
    organisation = registrable_domain(f"http://{domain}/")
    name = "DMARC"
    try:
        dmarc = parse_dmarc(domain, reader.txt(f"_dmarc.{domain}"))
        inherited = False
        if dmarc is None and organisation != domain:
            dmarc = parse_dmarc(organisation, reader.txt(f"_dmarc.{organisation}"))
            inherited = dmarc is not None
    except DnsError as exc:
        return fail(SECTION, name, f"could not read: {exc}", "check [doctor] nameservers and the network")
    if dmarc is None:
        return fail(
            SECTION,
            name,
            f"no DMARC record at _dmarc.{domain}: Gmail and Yahoo require one of bulk senders",
            f'add the TXT record "v=DMARC1; p=none; rua=mailto:dmarc@{organisation}" at '
            f"_dmarc.{organisation}, then move to p=quarantine once its reports show only your mail",
        )
    if dmarc.error:
        return fail(
            SECTION,
            name,
            f"_dmarc.{dmarc.domain}: {dmarc.error}: {_short(dmarc.record)}",
            "keep one valid record",
        )
    policy = dmarc.subdomain_policy if inherited else dmarc.policy
    where = f"_dmarc.{dmarc.domain}" + (" (the organisation's, for this subdomain)" if inherited else "")
    found = f"p={policy} at {where}" + ("" if dmarc.reports else ", no rua= (no aggregate reports)")
    if dmarc.percent < 100:
        found += f", applied to {dmarc.percent}% of failing mail"
    if policy == "none":
        return warn(
            SECTION,
            name,
            found + ": monitoring only, forged mail is still delivered",
            "move to p=quarantine, then p=reject, once the reports show only your own mail",
        )
    return ok(SECTION, name, found)


def _dkim_hosts(
    settings: Settings, facts: ProviderDns, account: Account | None, domain: str
) -> tuple[list[str], bool]:
    """The hosts to look at, and whether each must have a key (known) or any one may (guessed)."""
    if settings.esp.dkim_selectors:
        return [f"{selector}._domainkey.{domain}" for selector in settings.esp.dkim_selectors], True
    if account is not None and account.dkim_hosts:
        return list(account.dkim_hosts), True
    return [f"{selector}._domainkey.{domain}" for selector in facts.dkim_selectors], False


def _dkim(
    settings: Settings, facts: ProviderDns, account: Account | None, domain: str, reader: DnsReader
) -> tuple[list[Check], set[str]]:
    hosts, known = _dkim_hosts(settings, facts, account, domain)
    if not hosts:
        fix = facts.dkim_note or "name the provider's selectors in [esp] dkim_selectors"
        return [
            warn(SECTION, "DKIM", "no selector known for this provider, so no key was looked up", fix)
        ], set()
    checks: list[Check] = []
    signing: set[str] = set()
    missing: list[str] = []
    for host in hosts:
        name = f"DKIM ({host})"
        try:
            key = parse_dkim(host, reader.txt(host))
        except DnsError as exc:
            checks.append(fail(SECTION, name, f"could not read: {exc}", "check [doctor] nameservers"))
            continue
        if key is None:
            missing.append(host)
            continue
        if key.error:
            checks.append(
                fail(SECTION, name, key.error, "publish the key the provider shows for this selector")
            )
        elif key.bits is not None and key.bits < _MIN_BITS:
            checks.append(
                fail(
                    SECTION, name, f"{key.bits}-bit {key.key_type} key: receivers ignore it", "use 2048 bits"
                )
            )
        else:
            signing.add(host.partition("._domainkey.")[2])
            size = f"{key.bits}-bit {key.key_type} key" if key.bits else f"{key.key_type} key"
            if key.bits is not None and key.bits < _GOOD_BITS and key.key_type == "rsa":
                checks.append(
                    warn(SECTION, name, size + ": short by today's advice", "rotate to a 2048-bit key")
                )
            else:
                checks.append(ok(SECTION, name, size))
    if missing and (known or not signing):
        where = ", ".join(missing[:6])
        fix = "publish the DKIM records your provider shows (often CNAMEs) for " + where
        if not known and facts.dkim_note:
            fix = facts.dkim_note
        what = "no DKIM key at " if known else "no DKIM key at any of the provider's usual selectors: "
        checks.append(fail(SECTION, "DKIM", what + where, fix))
    return checks, signing


def _alignment(domain: str, signing: set[str], return_path: str | None) -> Check:
    name = "DMARC alignment"
    dkim = sorted(d for d in signing if _aligned(d, domain))
    spf = bool(return_path) and _aligned(return_path or "", domain)
    bounce = (
        f"bounces go to {return_path}" + (" (aligned)" if spf else " (not aligned)")
        if return_path
        else "the provider did not say where bounces go"
    )
    if dkim:
        return ok(SECTION, name, f"DKIM signs as {', '.join(dkim)}, aligned with {domain}; {bounce}")
    if spf:
        return warn(
            SECTION,
            name,
            f"only SPF aligns ({bounce}); no aligned DKIM key was found",
            "set up DKIM for the From domain: SPF alignment breaks when mail is forwarded",
        )
    return fail(
        SECTION,
        name,
        f"no aligned DKIM key and {bounce}: DMARC fails for every message",
        "publish the provider's DKIM records for the From domain",
    )
