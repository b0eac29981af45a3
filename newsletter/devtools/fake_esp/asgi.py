"""Raw ASGI for the sending endpoints: read a request, answer it, or drop the connection.

The sending endpoints are answered straight from the body's bytes, without a Starlette ``Request``
and ``Response`` (which cost more per batch than the fake's own work on a few hundred messages),
and a fault must be able to close the connection with no status line at all.
"""

from __future__ import annotations

import asyncio
import base64
import gc
from collections.abc import Awaitable, Callable, Iterator, MutableMapping, Sequence
from contextlib import contextmanager
from typing import Any

import orjson
from starlette.requests import Request

__all__ = [
    "ASGIApp",
    "Headers",
    "Message",
    "Receive",
    "Scope",
    "Send",
    "basic_password",
    "bearer",
    "collector_paused",
    "delayed",
    "drain",
    "drop",
    "header",
    "json_body",
    "read_body",
    "respond",
]

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
#: A request's headers as ASGI gives them (names lower-cased by the servers).
Headers = Sequence[tuple[bytes, bytes]]


@contextmanager
def collector_paused() -> Iterator[None]:
    """The cyclic garbage collector off for one synchronous stretch of work.

    A 500-message batch parses into a few thousand dicts and lists, all acyclic and all freed by
    reference counting as soon as the request is answered; left on, the collector walks them over
    and over while they are alive (a young collection every 700 allocations, and the full ones
    their survival sets off), which cost as much as all the rest of the fake's own work per message.
    The collector is global to the process, so it is turned back on only if it was on: a caller
    that keeps it off stays in charge.
    """
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def delayed(send: Send, seconds: float) -> Send:
    """``send``, with the answer's start held back ``seconds``."""

    async def late(message: Message) -> None:
        if message["type"] == "http.response.start":
            await asyncio.sleep(seconds)
        await send(message)

    return late


async def drop(send: Send) -> None:
    """Close the connection without an answer.

    uvicorn gives an application no handle on the socket, but its ``send`` is a bound method of
    the request cycle, which holds the transport; closing that transport after reading the whole
    request is exactly "request delivered, no answer" (httpx: ``RemoteProtocolError: Server
    disconnected without sending a response``).
    """
    cycle = getattr(send, "__self__", None)
    transport = getattr(cycle, "transport", None)
    if transport is not None:
        transport.close()
        for _ in range(3):  # let connection_lost run, so the server stays quiet about it
            await asyncio.sleep(0)
        return
    # Not uvicorn: start an answer and never finish it; the server closes the connection.
    await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"100")]})
    await send({"type": "http.response.body", "body": b"[", "more_body": True})


def header(headers: Headers, wanted: bytes) -> str | None:
    """The value of the header named ``wanted`` (lower case), or None."""
    for name, value in headers:
        if name.lower() == wanted:
            return value.decode("latin-1")
    return None


def bearer(headers: Headers) -> str | None:
    """The token of an ``Authorization: Bearer …`` header (SendGrid's)."""
    for name, value in headers:
        if name.lower() == b"authorization":
            scheme, _, token = value.decode("latin-1").partition(" ")
            return token.strip() if scheme.lower() == "bearer" else None
    return None


def basic_password(headers: Headers, user: str) -> str | None:
    """The password of an ``Authorization: Basic`` header naming ``user`` (Mailgun's ``api:KEY``)."""
    value = header(headers, b"authorization")
    if value is None:
        return None
    scheme, _, encoded = value.partition(" ")
    if scheme.lower() != "basic":
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (ValueError, UnicodeDecodeError):
        return None
    name, colon, password = decoded.partition(":")
    return password if colon and name == user else None


async def drain(receive: Receive) -> None:
    """Read and discard the request body (closing a socket with unread data sends a reset)."""
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            return


async def read_body(receive: Receive) -> bytes | None:
    """The whole request body, or None if the client disconnected first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return None
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return chunks[0] if len(chunks) == 1 else b"".join(chunks)


async def respond(
    send: Send,
    status: int,
    data: bytes,
    headers: dict[str, str] | None = None,
    content_type: str = "application/json",
) -> None:
    """One whole answer; a ``Content-Type`` in ``headers`` wins over ``content_type``."""
    headers = dict(headers or {})
    content_type = next((headers.pop(k) for k in list(headers) if k.lower() == "content-type"), content_type)
    raw = [(b"content-type", content_type.encode()), (b"content-length", str(len(data)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in headers.items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": data})


async def json_body(request: Request) -> Any:
    """A Starlette request's JSON body, or None if it is not JSON."""
    try:
        return orjson.loads(await request.body())
    except ValueError:
        return None
