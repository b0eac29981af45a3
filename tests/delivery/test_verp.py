"""VERP: which messages carry a delivery's token in their envelope sender and mailto, and which not."""

from __future__ import annotations

import pytest

from newsletter.config import Settings
from newsletter.delivery.engine import Personaliser, verp_address
from newsletter.delivery.runner import personaliser_for
from newsletter.delivery.tokens import TokenSigner
from newsletter.store.ledger import Claimed

SECRET = "test-secret-key-0123456789"
ROWS = [Claimed(1001, 7, "a@example.net", "A", 0), Claimed(1002, 8, "b@example.net", "B", 0)]


def test_each_delivery_gets_its_own_signed_envelope_sender_and_mailto() -> None:
    signer = TokenSigner(SECRET)
    personaliser = Personaliser(
        signer,
        "https://news.example.org",
        "editors@example.org",
        "example.org",
        bounce_address="bounces@news.example.org",
    )
    first, second = personaliser.recipients(3, ROWS)
    local, _, domain = first.envelope_from.partition("@")
    assert domain == "news.example.org" and local.startswith("bounces+")
    assert signer.read_verp_token(local.partition("+")[2]) == ("b", 3, 1001)
    mailto = f"mailto:{verp_address('bounces@news.example.org', signer.verp_token('u', 3, 1001))}"
    assert mailto in first.headers["List-Unsubscribe"]
    assert first.envelope_from != second.envelope_from


def test_test_copies_and_unconfigured_sends_carry_no_token() -> None:
    plain = Personaliser(TokenSigner(SECRET), "https://n.example.org", "editors@example.org", "example.org")
    assert {r.envelope_from for r in plain.recipients(3, ROWS)} == {""}
    verp = Personaliser(
        TokenSigner(SECRET),
        "https://n.example.org",
        "editors@example.org",
        "example.org",
        bounce_address="bounces@news.example.org",
    )
    copies = verp.recipients(0, ROWS, test=True)
    assert {r.envelope_from for r in copies} == {""}
    assert all("mailto:editors@example.org?" in r.headers["List-Unsubscribe"] for r in copies)


@pytest.mark.parametrize(("provider", "verp"), [("smtp", True), ("postmark", False), ("outbox", False)])
def test_only_the_smtp_provider_sends_verp_addresses(provider: str, verp: bool) -> None:
    settings = Settings.model_validate(
        {"esp": {"provider": provider}, "bounces": {"address": "bounces@news.example.org"}}
    )
    personaliser = personaliser_for(settings, {"NEWSLETTER_SECRET_KEY": SECRET})
    assert bool(personaliser.recipients(3, ROWS)[0].envelope_from) is verp


@pytest.mark.parametrize("address", ["bounces+x@news.example.org", "no-at-sign", "a b@news.example.org"])
def test_a_bounce_address_that_cannot_take_a_token_is_refused(address: str) -> None:
    with pytest.raises(ValueError, match="plain address"):
        Settings.model_validate({"bounces": {"address": address}})
