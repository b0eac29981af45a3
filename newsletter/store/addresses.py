"""Checking and normalising e-mail addresses with email-validator.

The identity of a subscriber is ``email_normalized``: email-validator's ``normalized`` form (domain
lower-cased and IDNA-decoded, local part NFC-normalised), then lower-cased as a whole, because
almost every real mailbox treats the local part case-insensitively and a list must not mail
``Ann@x.org`` and ``ann@x.org`` twice.

Speed: a full ``validate_email`` costs about 57 µs, a minute for a million rows, and two thirds of
that is the domain check. Real lists reuse a few thousand domains, so :func:`normalize` validates
each distinct domain once with email-validator and caches the result; a plain ASCII dot-atom local
part is then checked by the same regular expression email-validator uses. Everything else (quoted
local parts, Unicode, over-long addresses, any domain the cache rejects) takes the full
``validate_email`` path. ``tests/store/test_addresses.py`` checks with Hypothesis that both paths
agree.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

from email_validator import EmailNotValidError, validate_email

from newsletter.errors import BadInput

__all__ = ["InvalidAddress", "NormalizedAddress", "normalize", "normalize_slow"]

# email_validator.rfc_constants.DOT_ATOM_TEXT, restated so a private module is not imported.
_ATEXT = r"a-zA-Z0-9_!#\$%&'\*\+\-/=\?\^`\{\|\}~"
_DOT_ATOM = re.compile("[" + _ATEXT + "]+(?:\\.[" + _ATEXT + "]+)*")
_MAX_LENGTH = 254  # RFC 5321 path limit, as enforced by email-validator


class InvalidAddress(BadInput):
    """The address is not a syntactically valid e-mail address; the message says why."""


@dataclass(frozen=True, slots=True)
class NormalizedAddress:
    email: str  #: as given, stripped of surrounding white space
    normalized: str  #: email-validator's normalised form, lower-cased: the unique key


def normalize_slow(raw: str) -> NormalizedAddress:
    """The reference implementation: the whole of email-validator for every address."""
    email = raw.strip()
    if not email:
        raise InvalidAddress("no email address")
    try:
        result = validate_email(email, check_deliverability=False)
    except EmailNotValidError as exc:
        raise InvalidAddress(str(exc)) from None
    return NormalizedAddress(email, result.normalized.lower())


@lru_cache(maxsize=100_000)
def _domain(domain: str) -> tuple[str, str] | None:
    """(normalised, ASCII) form of a domain that email-validator accepts, else None."""
    try:
        result = validate_email("x@" + domain, check_deliverability=False)
    except EmailNotValidError:
        return None
    return result.domain, result.ascii_domain


def normalize(raw: str) -> NormalizedAddress:
    """Validate ``raw`` and return it with its normalised key; raise :class:`InvalidAddress`."""
    email = raw.strip()
    local, at, domain = email.rpartition("@")
    if at and len(email) <= _MAX_LENGTH and _DOT_ATOM.fullmatch(local) and email.isascii():
        known = _domain(domain.lower())  # ASCII here, so lower() is exact
        if known is not None:
            normalized = f"{local}@{known[0]}"
            if len(normalized.encode()) <= _MAX_LENGTH and len(local) + 1 + len(known[1]) <= _MAX_LENGTH:
                return NormalizedAddress(email, normalized.lower())
    return normalize_slow(email)
