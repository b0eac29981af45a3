"""The live preview app (``newsletter preview ISSUE --watch``): one page, updated as the file is saved.

Routes, all for the one editor on this machine:

- ``GET /`` the page (``newsletter.web.preview_page``): the email at 375 and 600 px, a light/dark
  switch, the plain-text part and ``check``'s findings;
- ``GET /events`` server-sent events: a ``render`` event carrying the state, once on connecting and
  again after every rebuild, so the page updates without a reload;
- ``GET /state`` the same state as JSON; ``GET /email/light`` and ``/email/dark`` the last good
  HTML (links open in a new tab); ``GET /source`` the issue file with numbered lines, where each
  finding's ``file:line:column`` points (``/source#L12``).

It listens on 127.0.0.1 only and answers only requests addressed to ``127.0.0.1`` or
``localhost``: another machine cannot reach it, and a web page cannot reach it through a DNS name
it rebinds to 127.0.0.1 (the Host header would be that name).
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import socket
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from newsletter.config import NewsletterSettings
from newsletter.content.loader import Problem
from newsletter.live import LivePreview, Snapshot, force_dark
from newsletter.web.preview_page import NO_RENDER_YET, page, source_page

if TYPE_CHECKING:
    import uvicorn

__all__ = ["HOST", "bind", "create_preview_app", "preview_server", "serve_preview", "state"]

HOST = "127.0.0.1"
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
#: Seconds between keep-alive comments on an idle event stream (a closed tab is noticed then).
KEEPALIVE_SECONDS = 15.0
_NO_STORE = {"Cache-Control": "no-store"}
_NEW_TAB = '<base target="_blank">'


def state(snapshot: Snapshot, path: Path) -> dict[str, Any]:
    """What the page shows, as JSON: the last good render's text and findings, and any break."""
    good = snapshot.good
    return {
        "version": snapshot.version,
        "good_version": snapshot.good_version,
        "file": str(path),
        "broken": [_problem(problem) for problem in snapshot.problems],
        "findings": [_problem(problem) for problem in good.findings] if good else [],
        "subject": good.rendered.subject if good else "",
        "preheader": good.rendered.preheader if good else "",
        "text": good.text if good else "",
        "html_bytes": good.rendered.html_bytes if good else 0,
        "render_ms": round(snapshot.render_ms, 1),
        "finished_at": snapshot.finished_at,
    }


def _problem(problem: Problem) -> dict[str, Any]:
    return {**problem.as_dict(), "where": f"{problem.path}:{problem.line}:{problem.column}"}


def _with_new_tab_links(body: str) -> str:
    """Links in the previewed email open in a new tab instead of replacing the frame."""
    head = body.find("<head>")
    return body if head < 0 else body[: head + 6] + _NEW_TAB + body[head + 6 :]


def create_preview_app(live: LivePreview, *, watch: bool = True) -> Starlette:
    """The app; ``watch`` starts following the file for the app's lifetime (tests may not want it)."""

    async def index(request: Request) -> HTMLResponse:
        return HTMLResponse(page(live.path.name), headers=_NO_STORE)

    async def current_state(request: Request) -> JSONResponse:
        return JSONResponse(state(live.snapshot, live.path), headers=_NO_STORE)

    async def email(request: Request) -> Response:
        theme = request.path_params["theme"]
        if theme not in ("light", "dark"):
            return Response("unknown theme", status_code=404)
        good = live.snapshot.good
        if good is None:
            return HTMLResponse(NO_RENDER_YET, headers=_NO_STORE)
        body = good.html if theme == "light" else force_dark(good.html)
        return HTMLResponse(_with_new_tab_links(body), headers=_NO_STORE)

    async def source(request: Request) -> HTMLResponse:
        try:
            text = live.path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            text = f"(cannot read {live.path}: {exc.strerror or exc})"
        return HTMLResponse(source_page(str(live.path), text), headers=_NO_STORE)

    async def events(request: Request) -> StreamingResponse:
        async def stream() -> AsyncIterator[str]:
            seen = -1
            while True:
                snapshot = live.snapshot if seen < 0 else await live.changed_since(seen, KEEPALIVE_SECONDS)
                if snapshot is None:
                    yield ": keep-alive\n\n"
                    continue
                seen = snapshot.version
                data = json.dumps(state(snapshot, live.path), separators=(",", ":"))
                yield f"event: render\nid: {seen}\ndata: {data}\n\n"

        headers = {**_NO_STORE, "X-Accel-Buffering": "no"}
        return StreamingResponse(stream(), media_type="text/event-stream", headers=headers)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if live.snapshot.version == 0:
            await live.refresh()
        task = asyncio.create_task(live.follow()) if watch else None
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task

    return Starlette(
        routes=[
            Route("/", index),
            Route("/state", current_state),
            Route("/events", events),
            Route("/email/{theme}", email),
            Route("/source", source),
        ],
        middleware=[Middleware(TrustedHostMiddleware, allowed_hosts=ALLOWED_HOSTS)],
        lifespan=lifespan,
    )


def bind(port: int) -> socket.socket:
    """A listening socket on 127.0.0.1: ``port`` if it is free, else any free port."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((HOST, port))
    except OSError as exc:
        if exc.errno != errno.EADDRINUSE:
            sock.close()
            raise
        sock.bind((HOST, 0))
    sock.listen(64)
    sock.setblocking(False)
    return sock


def preview_server(app: Starlette) -> uvicorn.Server:
    """A uvicorn server for ``app``; ``server.run(sockets=[bind(port)])`` serves until stopped."""
    import uvicorn  # loaded only by the commands that serve

    config = uvicorn.Config(
        app,
        log_level="warning",
        lifespan="on",
        # Open event streams never end by themselves: give them a second, then close them.
        timeout_graceful_shutdown=1,
    )
    return uvicorn.Server(config)


def serve_preview(
    issue: Path,
    settings: NewsletterSettings,
    values: Mapping[str, str] | None,
    *,
    port: int,
    announce: Callable[[str], object] = print,
) -> None:
    """Serve the live preview until Ctrl-C (which reaches the caller as ``KeyboardInterrupt``)."""
    live = LivePreview(issue, settings, values)
    sock = bind(port)
    url = f"http://{HOST}:{sock.getsockname()[1]}/"
    announce(f"Live preview of {issue} at {url}  (Ctrl-C to stop)")
    server = preview_server(create_preview_app(live))
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
