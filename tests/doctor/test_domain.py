"""The From domain's DNS through a real resolver (dnspython) and a DNS server on loopback."""

from __future__ import annotations

import pytest

from newsletter.config import DoctorSettings, EspSettings, NewsletterSettings, Settings
from newsletter.delivery.esp.account import Account
from newsletter.delivery.esp.registry import provider_dns
from newsletter.doctor.domain import check_domain
from newsletter.doctor.model import Check, Status
from newsletter.doctor.resolver import DnsReader
from tests.dns_server import Zones
from tests.doctor.keys import rsa_record

GOOD = {
    "example.org": ["v=spf1 include:sendgrid.net -all", "google-site-verification=x"],
    "sendgrid.net": ["v=spf1 ip4:167.89.0.0/17 -all"],
    "_dmarc.example.org": ["v=DMARC1; p=quarantine; rua=mailto:dmarc@example.org"],
    "s1._domainkey.example.org": [rsa_record(2048)],
    "s2._domainkey.example.org": [rsa_record(2048)],
}


@pytest.fixture
def zones(dns: tuple[str, Zones]) -> tuple[str, Zones]:
    dns[1].records.update(GOOD)
    return dns


def run(
    zones: tuple[str, Zones],
    *,
    provider: str = "sendgrid",
    account: Account | None = None,
    selectors: tuple[str, ...] = (),
    sender: str = "news@example.org",
) -> dict[str, Check]:
    address, _ = zones
    settings = Settings(
        newsletter=NewsletterSettings(from_address=sender),
        esp=EspSettings(provider=provider, dkim_selectors=selectors, domain="mg.example.org"),
        doctor=DoctorSettings(nameservers=(address,), timeout=2),
    )
    reader = DnsReader(settings.doctor.nameservers, timeout=2)
    checks = check_domain(settings, provider_dns(provider), account, reader)
    return {check.name: check for check in checks}


def test_a_good_domain_is_all_ticks(zones) -> None:
    checks = run(zones)
    assert {name: c.status for name, c in checks.items()} == {
        "SPF (example.org)": Status.OK,
        "DMARC": Status.OK,
        "DKIM (s1._domainkey.example.org)": Status.OK,
        "DKIM (s2._domainkey.example.org)": Status.OK,
        "DMARC alignment": Status.OK,
    }
    assert "1 of 10 lookups" in checks["SPF (example.org)"].found
    assert (
        "p=quarantine" in checks["DMARC"].found
        and "2048-bit rsa" in checks["DKIM (s1._domainkey.example.org)"].found
    )


@pytest.mark.parametrize(
    ("change", "name", "status", "words"),
    [
        ({"example.org": ["google-site-verification=x"]}, "SPF (example.org)", Status.FAIL, "no SPF record"),
        ({"example.org": ["v=spf1 include:spf.mtasv.net -all"], "spf.mtasv.net": ["v=spf1 -all"]},
         "SPF (example.org)", Status.FAIL, "does not include sendgrid.net"),
        ({"example.org": ["v=spf1 -all", "v=spf1 include:sendgrid.net -all"]}, "SPF (example.org)",
         Status.FAIL, "2 SPF records"),
        ({"example.org": ["v=spf1 include:sendgrid.net ?all"]}, "SPF (example.org)", Status.WARN, "?all"),
        ({"_dmarc.example.org": []}, "DMARC", Status.FAIL, "no DMARC record"),
        ({"_dmarc.example.org": ["v=DMARC1; p=none"]}, "DMARC", Status.WARN, "monitoring only"),
        ({"_dmarc.example.org": ["v=DMARC1; p=bogus"]}, "DMARC", Status.FAIL, "no valid p="),
        ({"s1._domainkey.example.org": ["v=DKIM1; k=rsa; p="]}, "DKIM (s1._domainkey.example.org)",
         Status.FAIL, "revoked"),
        ({"s2._domainkey.example.org": [rsa_record(1024)]}, "DKIM (s2._domainkey.example.org)", Status.WARN,
         "1024-bit"),
    ],
)  # fmt: skip
def test_broken_and_weak_records(zones, change, name, status, words) -> None:
    zones[1].records.update({key: value for key, value in change.items() if value})
    for key in [key for key, value in change.items() if not value]:
        del zones[1].records[key]
    checks = run(zones)
    assert checks[name].status is status and words in checks[name].found, checks[name]
    if status is Status.FAIL:
        assert checks[name].fix


def test_fifty_spf_includes_are_reported_over_the_lookup_limit(zones) -> None:
    records = zones[1].records
    records["example.org"] = [
        "v=spf1 include:sendgrid.net " + " ".join(f"include:i{n}.example.net" for n in range(50)) + " -all"
    ]
    records.update({f"i{n}.example.net": ["v=spf1 ip4:192.0.2.1 -all"] for n in range(50)})
    check = run(zones)["SPF (example.org)"]
    assert check.status is Status.FAIL and "more than 10 DNS lookups" in check.found
    assert sum(name.endswith(".example.net") for name in zones[1].asked) <= 10


def test_a_4kb_txt_record_comes_over_tcp_and_is_shortened_in_the_report(zones) -> None:
    zones[1].records["example.org"] = [
        "v=spf1 include:sendgrid.net "
        + " ".join(f"ip4:10.0.{n // 250}.{n % 250}" for n in range(300))
        + " -all"
    ]
    check = run(zones)["SPF (example.org)"]
    assert check.status is Status.OK and "characters)" in check.found and len(check.found) < 400


def test_a_subdomain_without_dmarc_takes_the_organisation_s_subdomain_policy(zones) -> None:
    zones[1].records["_dmarc.example.org"] = ["v=DMARC1; p=reject; sp=none"]
    zones[1].records["news.example.org"] = ["v=spf1 include:sendgrid.net -all"]
    check = run(zones, sender="a@news.example.org")["DMARC"]
    assert check.status is Status.WARN and "p=none at _dmarc.example.org (the organisation's" in check.found


def test_dkim_hosts_the_provider_names_and_the_return_path_it_reports(zones) -> None:
    records = {
        "mg.example.org": ["v=spf1 include:mailgun.org ~all"],
        "mailgun.org": ["v=spf1 ip4:198.61.254.0/23 ~all"],
        "_dmarc.example.org": ["v=DMARC1; p=reject"],
        "k1._domainkey.mg.example.org": [rsa_record(2048)],
    }
    account = Account(
        "Mailgun", dkim_hosts=("k1._domainkey.mg.example.org",), return_path_domain="mg.example.org"
    )
    zones[1].records.clear()
    zones[1].records.update(records)
    checks = run(zones, provider="mailgun", account=account)
    assert checks["SPF (mg.example.org)"].status is Status.OK
    assert checks["DKIM (k1._domainkey.mg.example.org)"].status is Status.OK
    alignment = checks["DMARC alignment"]
    assert (
        alignment.status is Status.OK
        and "mg.example.org" in alignment.found
        and "(aligned)" in alignment.found
    )


def test_no_aligned_dkim_fails_alignment_and_a_known_selector_must_exist(zones) -> None:
    checks = run(zones, selectors=("20240101000000pm",), provider="postmark")
    assert (
        checks["DKIM"].status is Status.FAIL
        and "20240101000000pm._domainkey.example.org" in checks["DKIM"].found
    )
    assert checks["DMARC alignment"].status is Status.FAIL


def test_postmark_without_a_selector_says_where_to_find_it(zones) -> None:
    checks = run(zones, provider="postmark")
    assert checks["DKIM"].status is Status.WARN and "[esp] dkim_selectors" in checks["DKIM"].fix


def test_dns_that_fails_is_a_failure_to_check_not_a_missing_record(zones) -> None:
    zones[1].failing.update({"example.org", "_dmarc.example.org"})
    checks = run(zones)
    assert (
        checks["SPF (example.org)"].status is Status.FAIL
        and "could not read" in checks["SPF (example.org)"].found
    )
    assert "could not read" in checks["DMARC"].found


def test_the_outbox_skips_dns(zones) -> None:
    checks = run(zones, provider="outbox")
    assert [c.status for c in checks.values()] == [Status.WARN] and not zones[1].asked
