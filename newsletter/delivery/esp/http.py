"""What every HTTP provider adapter needs: one client with explicit timeouts, and the honest
reading of what a failed request means.

The one question that matters after a failure is *did the request reach the provider?*

* It never left (connection refused, DNS, connect/pool timeout, an error while the body was still
  being written): nothing can have been processed, so the whole batch is retried
  (:class:`~newsletter.delivery.esp.base.RetryableError`).
* It left and no answer came back (read timeout, connection reset or closed while waiting):
  the provider may have accepted every message. Resending could deliver twice, so the adapter
  reports every recipient as ``unknown`` (:class:`Unanswered` here) and the engine decides.

Status codes are read the same way by every provider: 401/403 stop the send, 429 and 5xx are
retried (honouring ``Retry-After``). Anything provider-specific (Postmark's ``ErrorCode``) stays in
the adapter.
"""

from __future__ import annotations

import datetime as dt
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Final

import httpx
import orjson

from newsletter.delivery.esp.base import AuthError, RetryableError

__all__ = [
    "Timeouts",
    "Unanswered",
    "check_status",
    "encode_json",
    "make_client",
    "parse_retry_after",
    "request_json",
    "send",
]

#: Statuses after which the same request may succeed later. 500 included: providers document it as
#: "the message was lost in processing", so nothing was accepted.
RETRY_STATUSES: Final = frozenset({408, 425, 429, 500, 502, 503, 504})


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Seconds. ``read`` bounds how long a batch may take on the provider's side: beyond it the
    batch becomes ``unknown``, so it should be well above the provider's worst normal latency."""

    connect: float = 5.0
    read: float = 30.0
    write: float = 30.0
    pool: float = 5.0

    def httpx(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect, read=self.read, write=self.write, pool=self.pool)


class Unanswered(Exception):
    """The request was sent and no usable answer came back: its effect is unknown."""


def make_client(
    base_url: str, headers: Mapping[str, str], timeouts: Timeouts, *, auth: httpx.Auth | None = None
) -> httpx.Client:
    """One pooled client per adapter: connections are kept alive across batches.

    ``auth`` signs each request as it leaves (SES's SigV4, which covers the body and the time);
    providers with a fixed credential pass it in ``headers`` instead.

    ``keepalive_expiry`` is short so that we drop an idle connection before the server does;
    a request written onto a connection the server has just closed would otherwise come back as
    a dropped connection, i.e. ``unknown``.
    """
    transport = httpx.HTTPTransport(
        limits=httpx.Limits(max_connections=4, max_keepalive_connections=2, keepalive_expiry=4.0),
        # Headers and body go out as two writes; without TCP_NODELAY the body can wait for the
        # server's delayed ACK (~40 ms a request).
        socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    )
    return httpx.Client(
        base_url=base_url,
        headers={"Accept": "application/json", **headers},
        auth=auth,
        timeout=timeouts.httpx(),
        transport=transport,
        follow_redirects=False,
    )


def request_json(client: httpx.Client, method: str, path: str, payload: Any = None) -> httpx.Response:
    """Send one request with a JSON body (or none); see :func:`send`."""
    return send(client, method, path, None if payload is None else encode_json(payload))


def send(
    client: httpx.Client,
    method: str,
    path: str,
    content: bytes | None,
    *,
    content_type: str = "application/json",
) -> httpx.Response:
    """Send one request; network failures become :class:`RetryableError` or :class:`Unanswered`.

    ``content`` is the body already encoded (JSON by :func:`encode_json` unless ``content_type``
    says otherwise: Mailgun's form data), so an adapter can measure a batch, or join messages it
    encoded one by one, before sending.
    """
    headers = {"Content-Type": content_type} if content is not None else None
    try:
        return client.request(method, path, content=content, headers=headers)
    except (httpx.ConnectError, httpx.ConnectTimeout, httpx.PoolTimeout) as exc:
        raise RetryableError(f"{method} {path}: could not connect: {_describe(exc)}") from exc
    except (httpx.WriteError, httpx.WriteTimeout) as exc:
        # The body did not get through: the server cannot have a complete request to act on.
        raise RetryableError(f"{method} {path}: request not sent: {_describe(exc)}") from exc
    except httpx.TransportError as exc:
        # ReadTimeout, ReadError, RemoteProtocolError ("Server disconnected without sending a
        # response"), and anything else after the request left: the provider may have acted on it.
        raise Unanswered(f"{method} {path}: no answer: {_describe(exc)}") from exc


def json_object(response: httpx.Response) -> dict[str, Any]:
    """A response's JSON object, or {} when the body is not one (a proxy's HTML error page)."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def encode_json(payload: Any) -> bytes:
    """Compact UTF-8 JSON, by orjson: a batch is encoded per message, a million times a send,
    where the standard library's encoder took a fifth of the sender's time."""
    return orjson.dumps(payload)


def check_status(
    response: httpx.Response, what: str, describe: Callable[[httpx.Response], str] | None = None
) -> None:
    """Raise for the whole-request conditions every provider shares; return for the rest.

    ``describe`` words the error for the message (default: the start of the body); SES's, for
    one, names the error in a header.
    """
    status = response.status_code
    if status in (401, 403):
        raise AuthError(f"{what}: HTTP {status}: {(describe or short_body)(response)}")
    if status in RETRY_STATUSES:
        raise RetryableError(
            f"{what}: HTTP {status}: {(describe or short_body)(response)}",
            retry_after=parse_retry_after(response.headers.get("Retry-After")),
        )


def parse_retry_after(value: str | None, *, now: dt.datetime | None = None) -> float | None:
    """``Retry-After`` in seconds: either delta-seconds or an HTTP date (RFC 9110 §10.2.3)."""
    if not value:
        return None
    value = value.strip()
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        seconds = (when - (now or dt.datetime.now(dt.UTC))).total_seconds()
    if seconds != seconds:  # NaN
        return None
    return max(0.0, seconds)


def short_body(response: httpx.Response, limit: int = 300) -> str:
    """The start of an error body, for messages and logs (never the whole of a large page)."""
    text = response.text.strip().replace("\n", " ")
    return text if len(text) <= limit else text[:limit] + "…"


def _describe(exc: Exception) -> str:
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
