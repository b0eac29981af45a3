"""Pseudonymous address hashes for suppressions.

A suppression must outlive the person's data (``forget`` erases everything else) and still match the
same address when an old list is imported again, so the hash is a plain SHA-256 of the normalised
address: stable across runs and machines, with no secret to lose. It is pseudonymous, not anonymous:
whoever holds a candidate address can test it against the table, which is exactly the use we need.
"""

from __future__ import annotations

import hashlib

__all__ = ["address_hash"]


def address_hash(email_normalized: str) -> str:
    """Hex SHA-256 of the normalised (lower-cased) address."""
    return hashlib.sha256(email_normalized.encode("utf-8")).hexdigest()
