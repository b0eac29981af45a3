"""What every page of ``newsletter serve`` needs against the internet: capped bodies, checked forms,
signed form fields instead of CSRF cookies, security headers, and the client's real address.

Forms carry a hidden ``csrf`` field: the form's own path signed with the time it was served
(itsdangerous, a salt of its own). Another site cannot make one for a subscriber's page, because
that page's path holds the subscriber's signed token, and a field made for one page is refused on
every other; it needs no cookie and no session, so the pages work without JavaScript and without
state on the server. The one-click POST of RFC 8058 carries none, as the RFC requires: it is
exempt by being its own route.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping

from itsdangerous import BadSignature, SignatureExpired, TimestampSigner
from starlette.datastructures import MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = [
    "BadForm",
    "FormGuard",
    "SecurityHeaders",
    "TooLarge",
    "client_ip",
    "read_body",
    "read_form",
]

_FORM_SALT = "newsletter.form"
#: Fields any of our forms has at most; a form with more is not one of ours.
MAX_FIELDS = 32
#: Characters of one field's value, unless the form says less.
MAX_VALUE = 2000

#: The policy of every page that does not set its own: our stylesheet, our forms, no script at all,
#: and never inside another site's frame.
DEFAULT_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' https: data:; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)


class TooLarge(Exception):
    """A body over the limit: answered 413 without reading the rest."""


class BadForm(Exception):
    """A form that is not one of ours: malformed, oversize fields, a missing or stale signed field."""


async def read_body(request: Request, limit: int) -> bytes:
    """The raw body, refused as soon as it passes ``limit`` (a lying Content-Length included)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise TooLarge
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise TooLarge
        chunks.append(chunk)
    return b"".join(chunks)


async def read_form(request: Request, limit: int) -> dict[str, str]:
    """A urlencoded or multipart form of text fields only, each given once, every value checked.

    The body is read whole under ``limit`` first, so the form parser never sees more than that;
    files, repeated or too many fields, NUL and other control characters are a :class:`BadForm`.
    """
    body = await read_body(request, limit)

    async def replay() -> Message:
        return {"type": "http.request", "body": body, "more_body": False}

    try:
        form = await Request(request.scope, replay).form(max_files=0, max_fields=MAX_FIELDS)
    except Exception as exc:  # the parsers raise their own kinds (HTTPException, MultiPartException)
        raise BadForm(f"not a form: {exc}") from None
    fields: dict[str, str] = {}
    for key, value in form.multi_items():
        if not isinstance(value, str) or key in fields or len(key) > 64:
            raise BadForm("a form of ours has each text field once")
        if len(value) > MAX_VALUE or any(ord(c) < 32 and c not in "\r\n\t" for c in value):
            raise BadForm(f"field {key[:64]!r} is too long or holds control characters")
        fields[key] = value
    return fields


class FormGuard:
    """Signs a form's path when the page is served and checks it when the form comes back."""

    def __init__(self, secret: str, max_age: int) -> None:
        self._signer = TimestampSigner(secret, salt=_FORM_SALT, digest_method=hashlib.sha256)
        self.max_age = max_age

    def field(self, action: str) -> str:
        """The hidden ``csrf`` value for a form posting to ``action`` (a path)."""
        digest = hashlib.sha256(action.encode()).hexdigest()[:32]
        return self._signer.sign(digest).decode("ascii")

    def check(self, action: str, fields: Mapping[str, str]) -> None:
        value = fields.get("csrf", "")
        try:
            signed = self._signer.unsign(value, max_age=self.max_age).decode("ascii")
        except SignatureExpired:
            raise BadForm("the page was open too long; reload it and try again") from None
        except (BadSignature, UnicodeDecodeError):
            raise BadForm("the form did not come from this page") from None
        if signed != hashlib.sha256(action.encode()).hexdigest()[:32]:
            raise BadForm("the form did not come from this page")


def _networks(values: Iterable[str]) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(value, strict=False) for value in values)


def client_ip(request: Request, trusted_proxies: Iterable[str]) -> str | None:
    """The client's address: the peer's, or, when the peer is a trusted proxy, the nearest address
    in ``X-Forwarded-For`` that is not one (a client can write anything to the left of it)."""
    peer = request.client.host if request.client else None
    networks = _networks(trusted_proxies)

    def trusted(address: str | None) -> bool:
        try:
            return address is not None and any(ipaddress.ip_address(address) in n for n in networks)
        except ValueError:
            return False

    if not networks or not trusted(peer):
        return peer
    hops = [hop.strip() for hop in request.headers.get("x-forwarded-for", "").split(",") if hop.strip()]
    for hop in reversed(hops):
        if not trusted(hop):
            try:
                return str(ipaddress.ip_address(hop))
            except ValueError:
                return peer
    return peer


class SecurityHeaders:
    """Adds the security headers to every answer that does not set its own (the archive sets its
    CSP; a second one would be enforced as well): a strict CSP, no sniffing, no referrer (personal
    pages hold a token in their URL), no framing, and HSTS when the site is served over https."""

    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        self.defaults = {
            "content-security-policy": DEFAULT_POLICY,
            "x-content-type-options": "nosniff",
            "referrer-policy": "no-referrer",
            "x-frame-options": "DENY",
        }
        if https:
            self.defaults["strict-transport-security"] = "max-age=31536000; includeSubDomains"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.defaults.items():
                    if name not in headers:
                        headers[name] = value
            await send(message)

        await self.app(scope, receive, send_with_headers)
