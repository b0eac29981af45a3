"""SPF, DMARC and DKIM records read as receivers read them (RFC 7208, RFC 7489, RFC 6376).

Pure functions over a TXT lookup, so that the rules can be tested without DNS: what counts
against SPF's limit of 10 DNS lookups, which DMARC policy applies to a subdomain, whether a DKIM
key is there, revoked, or too short to be trusted.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

__all__ = [
    "SPF_LOOKUP_LIMIT",
    "DkimKey",
    "Dmarc",
    "Spf",
    "parse_dkim",
    "parse_dmarc",
    "read_spf",
    "spf_records",
]

#: RFC 7208 §4.6.4: more DNS-querying terms than this while evaluating is a permanent error,
#: and receivers treat the mail as if it had no SPF at all.
SPF_LOOKUP_LIMIT: Final = 10
#: Terms that cost a DNS lookup (``redirect=`` too).
_LOOKUP_MECHANISMS: Final = frozenset({"include", "a", "mx", "ptr", "exists"})
_OTHER_MECHANISMS: Final = frozenset({"all", "ip4", "ip6"})
#: How deep includes are followed: beyond the lookup limit nothing more can change the verdict.
_MAX_DEPTH: Final = 12

Txt = Callable[[str], list[str]]


def spf_records(records: list[str]) -> list[str]:
    return [r for r in records if r.lower() == "v=spf1" or r.lower().startswith("v=spf1 ")]


@dataclass
class Spf:
    """What an SPF walk found. ``errors`` make SPF fail for every message (a permerror, or an
    ``all`` that lets anyone pass); ``warnings`` are worth fixing."""

    domain: str
    record: str | None = None
    lookups: int = 0
    #: Every domain reached through ``include:`` and ``redirect=``, at any depth.
    reached: set[str] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def includes(self, domain: str) -> bool:
        """Whether ``domain`` is reached, itself or as a subdomain of an include."""
        wanted = domain.lower()
        return any(d == wanted or d.endswith("." + wanted) for d in self.reached)


def read_spf(domain: str, txt: Txt) -> Spf:
    """Walk ``domain``'s SPF record and every include, counting lookups as a receiver would."""
    result = Spf(domain)
    records = spf_records(txt(domain))
    if not records:
        return result
    result.record = records[0]
    if len(records) > 1:
        result.errors.append(
            f"{domain} has {len(records)} SPF records: receivers treat that as an error (permerror)"
        )
        return result
    _walk(domain, records[0], txt, result, depth=0, top=True)
    if result.lookups > SPF_LOOKUP_LIMIT:
        result.errors.append(
            f"it needs more than {SPF_LOOKUP_LIMIT} DNS lookups, SPF's limit: receivers give up (permerror)"
        )
    return result


def _walk(domain: str, record: str, txt: Txt, result: Spf, *, depth: int, top: bool) -> None:
    terms = record.split()[1:]
    has_all = redirect = None
    for term in terms:
        if result.lookups > SPF_LOOKUP_LIMIT:
            return
        if "=" in term and ":" not in term.split("=", 1)[0]:
            name, _, value = term.partition("=")
            if name.lower() == "redirect":
                redirect = value
            continue  # exp= and unknown modifiers are ignored (RFC 7208 §6)
        qualifier = term[0] if term[0] in "+-~?" else "+"
        body = term[1:] if term[0] in "+-~?" else term
        mechanism, _, target = body.partition(":")
        mechanism = mechanism.split("/", 1)[0].lower()
        if mechanism in _LOOKUP_MECHANISMS:
            result.lookups += 1
        elif mechanism not in _OTHER_MECHANISMS:
            result.errors.append(f"{domain}: unknown SPF term {term[:60]!r} (permerror)")
            return
        if mechanism == "ptr":
            result.warnings.append(f"{domain} uses ptr, which RFC 7208 says not to use (slow, often ignored)")
        if mechanism == "all":
            has_all = qualifier
        if mechanism == "include":
            if not target:
                result.errors.append(f"{domain}: include without a domain (permerror)")
                return
            _follow(target, txt, result, depth=depth, how="include")
    if redirect and has_all is None and result.lookups <= SPF_LOOKUP_LIMIT:
        result.lookups += 1
        _follow(redirect, txt, result, depth=depth, how="redirect")
        return
    if top:
        if has_all == "+":
            result.errors.append("the record ends in +all: anyone may send as this domain")
        elif has_all == "?":
            result.warnings.append(
                "the record ends in ?all (neutral): forged mail is not marked; use ~all or -all"
            )
        elif has_all is None and not redirect:
            result.warnings.append(
                "the record has no all: mail from other servers is neutral; end it with ~all or -all"
            )


def _follow(target: str, txt: Txt, result: Spf, *, depth: int, how: str) -> None:
    target = target.rstrip(".").lower()
    result.reached.add(target)
    if depth >= _MAX_DEPTH:
        return
    records = spf_records(txt(target))
    if len(records) != 1:
        problem = "no SPF record" if not records else f"{len(records)} SPF records"
        result.errors.append(f"{how}:{target} has {problem} (permerror)")
        return
    _walk(target, records[0], txt, result, depth=depth + 1, top=False)


def _tags(record: str) -> dict[str, str]:
    tags: dict[str, str] = {}
    for part in record.split(";"):
        name, sep, value = part.partition("=")
        if sep and name.strip():
            tags.setdefault(name.strip().lower(), value.strip())
    return tags


@dataclass(frozen=True)
class Dmarc:
    """A DMARC record: the policy for the domain itself and for its subdomains (``sp``, else ``p``)."""

    domain: str
    record: str
    policy: str
    subdomain_policy: str
    percent: int
    reports: bool
    error: str = ""


_POLICIES: Final = ("none", "quarantine", "reject")


def parse_dmarc(domain: str, records: list[str]) -> Dmarc | None:
    """``_dmarc.<domain>``'s record, or None if there is none; ``error`` says why one is unusable."""
    found = [r for r in records if r.replace(" ", "").lower().startswith("v=dmarc1")]
    if not found:
        return None
    record = found[0]
    if len(found) > 1:
        return Dmarc(
            domain, record, "", "", 100, False, f"{len(found)} DMARC records: receivers use none of them"
        )
    tags = _tags(record)
    policy = tags.get("p", "").lower()
    if policy not in _POLICIES:
        return Dmarc(domain, record, policy, "", 100, False, "no valid p= tag (none, quarantine or reject)")
    subdomain = tags.get("sp", policy).lower()
    if subdomain not in _POLICIES:
        subdomain = policy
    try:
        percent = max(0, min(100, int(tags.get("pct", "100"))))
    except ValueError:
        percent = 100
    return Dmarc(domain, record, policy, subdomain, percent, bool(tags.get("rua")))


@dataclass(frozen=True)
class DkimKey:
    """A DKIM key record: its type and size, or why it cannot verify anything."""

    host: str
    key_type: str
    bits: int | None
    error: str = ""


def parse_dkim(host: str, records: list[str]) -> DkimKey | None:
    """The key at ``selector._domainkey.domain``, or None if no record is there."""
    found = [r for r in records if "p=" in r.replace(" ", "")]
    if not found:
        return None
    tags = _tags(found[0])
    key_type = tags.get("k", "rsa").lower()
    data = "".join(tags.get("p", "").split())
    if not data:
        return DkimKey(host, key_type, None, "the key is empty (p=): the selector is revoked")
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        return DkimKey(host, key_type, None, "the key (p=) is not base64")
    if key_type == "ed25519":
        return DkimKey(
            host, key_type, 256 if len(raw) == 32 else None, "" if len(raw) == 32 else "not an Ed25519 key"
        )
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    try:
        key = load_der_public_key(raw)
    except ValueError:
        return DkimKey(host, key_type, None, "the key (p=) is not a public key")
    if not isinstance(key, rsa.RSAPublicKey):
        return DkimKey(host, key_type, None, "the key is not RSA, as k= says")
    return DkimKey(host, key_type, key.key_size)
