"""Address normalisation: the cached fast path must agree with email-validator everywhere."""

from __future__ import annotations

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from newsletter.store.addresses import InvalidAddress, normalize, normalize_slow
from newsletter.store.privacy import address_hash

LOCAL = st.text(
    alphabet=st.sampled_from([*"abcXYZ019.+-_!#'~\"@ ", "é", "ß", "İ", "\u0301", "ǅ"]),
    min_size=0,
    max_size=70,
)
DOMAIN = st.one_of(
    st.sampled_from(
        [
            "example.com",
            "EXAMPLE.org",
            "xn--bcher-kva.example",
            "localhost",
            "a..b.com",
            "-bad.com",
            "bücher.de",
            "x.y",
            "sub.Example.CO.uk",
            "[127.0.0.1]",
            "a" * 64 + ".com",
            "b" * 63 + "." + "c" * 200 + ".com",
        ]
    ),
    st.from_regex(r"[A-Za-z0-9-]{1,20}(\.[A-Za-z0-9-]{1,10}){1,3}", fullmatch=True),
)


def _outcome(function, raw: str) -> str:
    try:
        return function(raw).normalized
    except InvalidAddress as exc:
        return f"invalid: {exc}"


@settings(max_examples=1500, deadline=None)
@given(local=LOCAL, domain=DOMAIN)
@example(local="Postmaster", domain="Example.com")
@example(local="a" * 65, domain="example.com")
@example(local="a" * 64, domain="b" * 60 + "." + "c" * 60 + "." + "d" * 60 + ".com")
def test_fast_path_agrees_with_email_validator(local: str, domain: str) -> None:
    raw = f"{local}@{domain}"
    assert _outcome(normalize, raw) == _outcome(normalize_slow, raw)


@pytest.mark.parametrize(
    ("raw", "normalized"),
    [
        ("Ann@Example.COM", "ann@example.com"),
        ("  bob@example.com\t", "bob@example.com"),
        ("x@xn--bcher-kva.example", "x@bücher.example"),
        # NFD (e + combining acute) and NFC spellings are one address.
        ("rene\u0301@example.com", "ren\u00e9@example.com"),
        ("REN\u00c9@example.com", "ren\u00e9@example.com"),
    ],
)
def test_normalisation(raw: str, normalized: str) -> None:
    assert normalize(raw).normalized == normalized
    assert normalize(raw).email == raw.strip()


@pytest.mark.parametrize(
    "raw",
    ["", "plain", "a@b", "a..b@example.com", "a@@example.com", "Ann <ann@example.com>", "ann@localhost"],
)
def test_invalid_addresses(raw: str) -> None:
    with pytest.raises(InvalidAddress):
        normalize(raw)


def test_hash_is_stable_sha256_of_the_normalised_address() -> None:
    digest = address_hash(normalize("Ann@Example.com").normalized)
    assert digest == address_hash("ann@example.com")
    assert digest == "71d4f55f72fa128dfb468a1a3901507c804b74316488744d769d7f4b16696476"
