"""Signed unsubscribe tokens: ``/u/TOKEN`` in every message's footer and List-Unsubscribe header.

A token names one subscriber and the send it came with, signed with ``NEWSLETTER_SECRET_KEY`` by
itsdangerous, so the web side can unsubscribe with one click (RFC 8058) without a login and without a
lookup table, and nobody can forge a token for someone else's address. It carries ids, never the
address: a forwarded email leaks no more than the link itself does.

A plain :class:`itsdangerous.Signer` over ``"send.subscriber"`` rather than a JSON serializer
(about 35 µs a token): a million tokens per send is the normal case here. Signing reuses the
signer's derived key and a prepared HMAC (about 1.5 µs instead of 4.5 µs); the token is byte for
byte what ``Signer.sign`` makes (a test holds it to that), and verification is itsdangerous's own.
"""

from __future__ import annotations

import base64
import hashlib
import hmac

from itsdangerous import BadSignature, Signer

from newsletter.errors import BadInput

__all__ = ["BadToken", "TokenSigner"]

_SALT = "newsletter.unsubscribe"


class BadToken(BadInput):
    """A token that was not made with our key, or was altered."""


class TokenSigner:
    def __init__(self, secret: str) -> None:
        if len(secret) < 16:
            raise BadInput("NEWSLETTER_SECRET_KEY must be at least 16 characters long")
        self._signer = Signer(secret, salt=_SALT, digest_method=hashlib.sha256)
        self._mac = hmac.new(self._signer.derive_key(), digestmod=hashlib.sha256)
        #: A stable, non-secret tag of this installation (see ``message.delivery_message_id``).
        self.install_tag = hashlib.sha256(f"{_SALT}.message-id.{secret}".encode()).hexdigest()[:12]

    def unsubscribe_token(self, send_id: int, subscriber_id: int) -> str:
        payload = f"{send_id}.{subscriber_id}"
        mac = self._mac.copy()
        mac.update(payload.encode("ascii"))
        signature = base64.urlsafe_b64encode(mac.digest()).rstrip(b"=").decode("ascii")
        return f"{payload}.{signature}"

    def reference_token(self, send_id: int, subscriber_id: int) -> str:
        """The same token through ``Signer.sign``, the slow way (for tests of the fast one)."""
        return self._signer.sign(f"{send_id}.{subscriber_id}").decode("ascii")

    def read_unsubscribe_token(self, token: str) -> tuple[int, int]:
        """``(send_id, subscriber_id)`` of a token made by :meth:`unsubscribe_token`."""
        try:
            payload = self._signer.unsign(token).decode("ascii")
            send_id, subscriber_id = payload.split(".")
            return int(send_id), int(subscriber_id)
        except (BadSignature, ValueError, UnicodeDecodeError):
            raise BadToken("this unsubscribe link is not valid") from None
