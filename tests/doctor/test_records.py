"""SPF, DMARC and DKIM rules on records given by hand (no DNS): what receivers would conclude."""

from __future__ import annotations

import pytest

from newsletter.doctor.records import SPF_LOOKUP_LIMIT, parse_dkim, parse_dmarc, read_spf
from tests.doctor.keys import ed25519_record, rsa_record


def lookup(zone: dict[str, list[str]]):
    asked: list[str] = []

    def txt(name: str) -> list[str]:
        asked.append(name)
        return zone.get(name, [])

    txt.asked = asked  # type: ignore[attr-defined]
    return txt


def test_a_good_record_with_nested_includes_counts_every_lookup() -> None:
    txt = lookup(
        {
            "example.org": ["v=spf1 include:_spf.example.org mx -all"],
            "_spf.example.org": ["v=spf1 include:spf.mtasv.net a ip4:192.0.2.0/24 ~all"],
            "spf.mtasv.net": ["v=spf1 ip4:50.31.156.0/23 -all"],
        }
    )
    spf = read_spf("example.org", txt)
    assert (spf.errors, spf.warnings, spf.lookups) == ([], [], 4)
    assert spf.includes("spf.mtasv.net") and not spf.includes("sendgrid.net")


def test_fifty_includes_break_the_ten_lookup_limit_without_asking_fifty_times() -> None:
    zone = {"example.org": ["v=spf1 " + " ".join(f"include:s{i}.example.net" for i in range(50)) + " -all"]}
    zone |= {f"s{i}.example.net": ["v=spf1 ip4:192.0.2.1 -all"] for i in range(50)}
    txt = lookup(zone)
    spf = read_spf("example.org", txt)
    assert any(f"more than {SPF_LOOKUP_LIMIT} DNS lookups" in error for error in spf.errors)
    assert len(txt.asked) <= SPF_LOOKUP_LIMIT + 2  # the walk stops at the limit


def test_an_include_loop_ends_at_the_limit() -> None:
    txt = lookup(
        {"a.example": ["v=spf1 include:b.example -all"], "b.example": ["v=spf1 include:a.example -all"]}
    )
    spf = read_spf("a.example", txt)
    assert any("lookups" in error for error in spf.errors)


@pytest.mark.parametrize(
    ("records", "expected"),
    [
        (["v=spf1 -all", "v=spf1 ~all"], "2 SPF records"),
        (["v=spf1 include:missing.example -all"], "include:missing.example has no SPF record"),
        (["v=spf1 +all"], "+all"),
        (["v=spf1 all"], "+all"),
        (["v=spf1 foo:bar -all"], "unknown SPF term"),
        (["v=spf1 include: -all"], "include without a domain"),
    ],
)
def test_broken_records_are_errors(records: list[str], expected: str) -> None:
    spf = read_spf("example.org", lookup({"example.org": records}))
    assert any(expected in error for error in spf.errors), spf.errors


@pytest.mark.parametrize(
    ("record", "expected"),
    [("v=spf1 ip4:192.0.2.1 ?all", "?all"), ("v=spf1 ip4:192.0.2.1", "no all"), ("v=spf1 ptr -all", "ptr")],
)
def test_weak_records_are_warnings(record: str, expected: str) -> None:
    spf = read_spf("example.org", lookup({"example.org": [record]}))
    assert not spf.errors and any(expected in w for w in spf.warnings)


def test_redirect_is_followed_and_counted() -> None:
    txt = lookup(
        {
            "example.org": ["v=spf1 redirect=_spf.example.net"],
            "_spf.example.net": ["v=spf1 include:sendgrid.net -all"],
            "sendgrid.net": ["v=spf1 -all"],
        }
    )
    spf = read_spf("example.org", txt)
    assert spf.includes("sendgrid.net") and spf.lookups == 2 and not spf.warnings


def test_no_spf_among_other_txt_records_including_a_4kb_one() -> None:
    spf = read_spf("example.org", lookup({"example.org": ["google-site-verification=abc", "x" * 4096]}))
    assert spf.record is None and not spf.errors


@pytest.mark.parametrize(
    ("record", "policy", "sub", "error"),
    [
        ("v=DMARC1; p=reject; rua=mailto:d@example.org", "reject", "reject", ""),
        ("v=DMARC1; p=none; sp=quarantine", "none", "quarantine", ""),
        ("v=DMARC1;p=quarantine;pct=50", "quarantine", "quarantine", ""),
        ("v=DMARC1; rua=mailto:d@example.org", "", "", "no valid p= tag"),
        ("v=DMARC1; p=maybe", "maybe", "", "no valid p= tag"),
    ],
)
def test_dmarc_records(record: str, policy: str, sub: str, error: str) -> None:
    dmarc = parse_dmarc("example.org", ["unrelated", record])
    assert dmarc is not None and (dmarc.policy, dmarc.subdomain_policy, dmarc.error[:15]) == (
        policy,
        sub,
        error[:15],
    )


def test_two_dmarc_records_are_unusable_and_none_is_none() -> None:
    assert parse_dmarc("example.org", []) is None
    double = parse_dmarc("example.org", ["v=DMARC1; p=none", "v=DMARC1; p=reject"])
    assert double is not None and "2 DMARC records" in double.error


def test_dkim_keys() -> None:
    assert parse_dkim("s1._domainkey.example.org", []) is None
    good = parse_dkim("s", [rsa_record(2048)])
    assert good is not None and (good.key_type, good.bits, good.error) == ("rsa", 2048, "")
    ed = parse_dkim("s", [ed25519_record()])
    assert ed is not None and (ed.key_type, ed.bits, ed.error) == ("ed25519", 256, "")
    revoked = parse_dkim("s", ["v=DKIM1; k=rsa; p="])
    assert revoked is not None and "revoked" in revoked.error
    assert "not base64" in (parse_dkim("s", ["v=DKIM1; p=***"]) or revoked).error
    assert "not a public key" in (parse_dkim("s", ["v=DKIM1; p=AAAA"]) or revoked).error
