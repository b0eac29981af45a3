"""Benchmark: the unsubscribe token every message carries, against the ways it was and could be made.

A send signs one token per recipient, a million per send at the scale the send benchmark runs, so
each microsecond here is a second of CPU per million. Printed per token, best of several rounds,
all in the same run: ``TokenSigner.unsubscribe_token`` (prepared HMAC states), the copied
``hmac.HMAC`` it replaced, and itsdangerous's ``Signer.sign`` (what the token must equal).

    .venv/bin/python benchmarks/tokens.py
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import sys
import timeit
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from newsletter.delivery.tokens import TokenSigner

SECRET = "benchmark-secret-key-0123456789abcdef"
ROUNDS, NUMBER = 7, 100_000


def per_token(make: Callable[[int], str]) -> float:
    """Microseconds per token, the best of ``ROUNDS``."""
    ids = iter(range(10**9))
    return min(timeit.repeat(lambda: make(next(ids)), number=NUMBER, repeat=ROUNDS)) / NUMBER * 1e6


def main() -> int:
    signer = TokenSigner(SECRET)
    copied = hmac.new(signer._signer.derive_key(), digestmod=hashlib.sha256)

    def with_copied_hmac(subscriber_id: int) -> str:
        payload = f"7.{subscriber_id}"
        mac = copied.copy()
        mac.update(payload.encode("ascii"))
        return f"{payload}.{base64.urlsafe_b64encode(mac.digest()).rstrip(b'=').decode('ascii')}"

    assert signer.unsubscribe_token(7, 42) == with_copied_hmac(42) == signer.reference_token(7, 42)
    fast = per_token(lambda i: signer.unsubscribe_token(7, i))
    before = per_token(with_copied_hmac)
    reference = per_token(lambda i: signer.reference_token(7, i))
    print("unsubscribe token, microseconds each (best of 7 x 100,000):")
    print(f"  TokenSigner.unsubscribe_token  {fast:5.2f}")
    print(f"  a copied hmac.HMAC (before)    {before:5.2f}  ({before / fast:.2f}x)")
    print(f"  itsdangerous Signer.sign       {reference:5.2f}  ({reference / fast:.2f}x)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
