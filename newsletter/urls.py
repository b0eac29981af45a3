"""The one rule for every URL we emit: issue links and images, and the configured base and logo URLs.

Kept apart from ``content`` and ``render`` so ``config`` can use it without importing either. Every
URL ends up in an ``href`` or ``src`` of an email, so the rule is strict: absolute http(s) with a
host, no whitespace or invisible characters (a space is encoded as ``%20``, the one slip editors
make when pasting), a numeric port, and ``%`` only as a percent-escape.
"""

from __future__ import annotations

import re
import unicodedata
from typing import Annotated
from urllib.parse import urlsplit

from pydantic import AfterValidator

_BAD_PERCENT = re.compile(r"%(?![0-9A-Fa-f]{2})")
# Categories no URL needs: controls, format characters (zero-width, bidi overrides), surrogates.
_REFUSED_CATEGORIES = {"Cc", "Cf", "Cs"}
PORT_MAX = 65535


def http_url(value: str) -> str:
    """Return ``value`` cleaned (surrounding white space stripped, inner spaces as ``%20``) or raise.

    A ``%`` must start a percent-escape (RFC 3986): besides being invalid, a bare ``%%`` could
    spell a per-recipient slot such as ``%%unsubscribe_url%%`` and leak it to another site.
    """
    value = value.strip()
    try:
        parts = urlsplit(value)
    except ValueError:  # an unclosed IPv6 bracket, a host that normalises to '/' or '@'
        parts = urlsplit("")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"must be an absolute http(s) URL, got {value!r}")
    _refuse_invisible(value)
    if " " in parts.netloc:
        raise ValueError(f"must not have spaces in the host, got {value!r}")
    if not parts.hostname:
        raise ValueError(f"must name a host, got {value!r}")
    _check_port(parts.netloc, value)
    value = value.replace(" ", "%20")
    if _BAD_PERCENT.search(value):
        raise ValueError(f"must use '%' only to start a percent-escape like %20, got {value!r}")
    return value


def _refuse_invisible(value: str) -> None:
    """White space other than a plain space, and control or format characters, hide what a link does."""
    for index, char in enumerate(value):
        if char == " ":
            continue
        if char.isspace() or unicodedata.category(char) in _REFUSED_CATEGORIES:
            raise ValueError(
                f"must not contain white space or control characters (U+{ord(char):04X} "
                f"at character {index + 1}), got {value!r}"
            )


def _check_port(netloc: str, value: str) -> None:
    """``urlsplit`` accepts any text after the host's colon; browsers do not, so neither do we."""
    host_port = netloc.rpartition("@")[2].rpartition("]")[2]  # skip user info and an IPv6 literal
    if ":" not in host_port:
        return
    port = host_port.partition(":")[2]
    if port and not (port.isascii() and port.isdigit() and len(port) <= 5 and int(port) <= PORT_MAX):
        raise ValueError(f"must have a numeric port from 0 to {PORT_MAX}, got {value!r}")


HttpUrl = Annotated[str, AfterValidator(http_url)]
