"""The loopback site the link check's tests ask: one path per case the check must tell apart."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

PNG = b"\x89PNG\r\n\x1a\n" + b"\0" * 64


class LinkSite:
    """A Starlette app counting the requests it gets per path; ``release()`` ends the slow ones."""

    def __init__(self) -> None:
        self.hits: Counter[str] = Counter()
        self.methods: Counter[str] = Counter()
        self.released: asyncio.Event | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.app = Starlette(routes=[Route("/{path:path}", self.answer, methods=["GET", "HEAD", "POST"])])

    def release(self) -> None:
        if self.loop is not None and self.released is not None:
            self.loop.call_soon_threadsafe(self.released.set)

    async def answer(self, request: Request) -> Response:
        path = request.url.path
        self.hits[path] += 1
        self.methods[f"{request.method} {path}"] += 1
        if self.released is None:
            self.loop, self.released = asyncio.get_running_loop(), asyncio.Event()
        head = request.method == "HEAD"
        if path.startswith(("/ok", "/issues/")) or path == "/":
            return PlainTextResponse("fine", headers={"content-type": "text/html"})
        if path.startswith("/chain/"):  # /chain/3 -> /chain/2 -> /chain/1 -> /chain/0 -> /ok
            left = int(path.rsplit("/", 1)[1])
            return RedirectResponse("/ok" if left == 0 else f"/chain/{left - 1}", status_code=301)
        if path == "/found":
            return RedirectResponse("/ok", status_code=302)
        if path == "/away":
            port = request.url.port
            return RedirectResponse(f"http://localhost:{port}/ok", status_code=302)
        if path.startswith("/endless-chain/"):
            n = int(path.rsplit("/", 1)[1])
            return RedirectResponse(f"/endless-chain/{n + 1}", status_code=302)
        if path == "/loop-a":
            return RedirectResponse("/loop-b", status_code=302)
        if path == "/loop-b":
            return RedirectResponse("/loop-a", status_code=302)
        if path == "/missing":
            return PlainTextResponse("no", status_code=404)
        if path == "/broken":
            return PlainTextResponse("oops", status_code=500)
        if path == "/slow":
            await self.released.wait()
            return PlainTextResponse("late")
        if path == "/no-head":  # HEAD refused; GET answers with a body that never ends
            if head:
                return PlainTextResponse("", status_code=405)
            return StreamingResponse(_endless(), media_type="text/html")
        if path == "/image.png":
            return Response(PNG, media_type="image/png")
        if path == "/page.png":
            return PlainTextResponse("<html>not a picture</html>", headers={"content-type": "text/html"})
        if path == "/huge.png":  # only its headers: 2 MiB announced
            if head:
                return Response(headers={"content-type": "image/png", "content-length": str(2 * 1024 * 1024)})
            return Response(b"\0" * (2 * 1024 * 1024), media_type="image/png")
        return PlainTextResponse("unknown", status_code=404)


async def _endless() -> AsyncIterator[bytes]:
    chunk = b"x" * 65536
    while True:
        yield chunk
        await asyncio.sleep(0)
