"""Recipients in a ``To`` value, read the way the providers read them, fast for the usual case."""

from __future__ import annotations

import re
from email.utils import getaddresses

__all__ = ["ONE_ADDRESS", "ONE_MAILBOX", "first_address"]

#: A quoted display name, ``"..."`` with backslash escapes; unrolled (``a*(?:\\.a*)*`` rather than
#: ``(?:a|\\.)*``), which ``re`` runs as a tight loop instead of one alternation per character.
_QUOTED = r'"[^"\\]*(?:\\.[^"\\]*)*"'
#: ``"Name" <a@b>``, ``Name <a@b>`` or ``a@b``: one recipient, the common case, parsed without the
#: standard library's general (and twenty times slower) address parser.
ONE_ADDRESS = re.compile(rf'\s*(?:(?:{_QUOTED}|[^<>",@]*)\s*<([^<>\s,]+)>|([^<>\s",]+))\s*')
#: :data:`ONE_ADDRESS` with an ``@`` required in the address and nothing captured: whether ``To``
#: is one valid recipient, all that a message's answer asks of it unless a fault names recipients.
ONE_MAILBOX = re.compile(
    rf'\s*(?:(?:{_QUOTED}|[^<>",@]*)\s*<[^<>\s,@]*@[^<>\s,]*>|[^<>\s",@]*@[^<>\s",]*)\s*'
)


def first_address(to: str) -> str | None:
    """The first recipient's address in ``To``, or None unless ``To`` names at least one recipient
    and every address in it has an ``@`` (Postmark answers ErrorCode 300 then)."""
    match = ONE_ADDRESS.fullmatch(to)
    if match:
        address: str = match.group(1) or match.group(2)
        return address if "@" in address else None
    addresses = [address for _, address in getaddresses([to]) if address]
    if not addresses or any("@" not in address for address in addresses):
        return None
    return addresses[0]
