"""TXT records as the doctor reads them: through dnspython, at ``[doctor] nameservers`` when set.

"No such record" and "could not ask" are different answers: an empty list is the first (the name
does not exist, or has no TXT record); :class:`DnsError` the second (a timeout, SERVFAIL, no
resolver), which the doctor reports as a failure to check, never as a missing record.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from newsletter.config import nameserver_address

__all__ = ["MAX_TXT_CHARS", "DnsError", "DnsReader"]

#: A TXT record is read up to this many characters (a DNS message holds at most 64 KB).
MAX_TXT_CHARS: Final = 16_384


class DnsError(Exception):
    """DNS could not be asked or did not answer; says which name and why."""


class DnsReader:
    """Reads TXT records, each name once per run (SPF's includes are often shared)."""

    def __init__(self, nameservers: Sequence[str] = (), *, timeout: float = 5.0) -> None:
        import dns.nameserver
        import dns.resolver

        try:
            self._resolver = dns.resolver.Resolver(configure=not nameservers)
        except dns.resolver.NoResolverConfiguration as exc:
            raise DnsError(
                f"no DNS resolver configured on this machine ({exc}): set [doctor] nameservers"
            ) from exc
        if nameservers:
            self._resolver.nameservers = [
                dns.nameserver.Do53Nameserver(*nameserver_address(server)) for server in nameservers
            ]
        self._resolver.timeout = timeout
        self._resolver.lifetime = timeout
        self._cache: dict[str, list[str] | DnsError] = {}
        #: Names asked of DNS (not counting the cache): the SPF walk's cost, for tests.
        self.queries = 0

    def txt(self, name: str) -> list[str]:
        """Every TXT record at ``name``, each joined from its strings; [] if there is none."""
        key = name.rstrip(".").lower()
        cached = self._cache.get(key)
        if cached is None:
            cached = self._cache[key] = self._ask(key)
        if isinstance(cached, DnsError):
            raise cached
        return cached

    def _ask(self, name: str) -> list[str] | DnsError:
        import dns.exception
        import dns.name
        import dns.resolver

        self.queries += 1
        try:
            answer = self._resolver.resolve(name, "TXT", search=False, raise_on_no_answer=False)
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except dns.resolver.NoNameservers as exc:
            return DnsError(f"{name}: no DNS server answered ({_first_line(exc)})")
        except dns.exception.Timeout:
            return DnsError(f"{name}: DNS did not answer in time")
        except (dns.name.NameTooLong, dns.name.LabelTooLong, dns.name.EmptyLabel) as exc:
            return DnsError(f"{name}: not a DNS name ({exc})")
        except dns.exception.DNSException as exc:
            return DnsError(f"{name}: {_first_line(exc)}")
        records = []
        for rdata in answer.rrset or ():
            text = b"".join(rdata.strings).decode("utf-8", "replace")
            records.append(text[:MAX_TXT_CHARS])
        return records


def _first_line(exc: Exception) -> str:
    return (str(exc).splitlines() or [type(exc).__name__])[0][:300]
