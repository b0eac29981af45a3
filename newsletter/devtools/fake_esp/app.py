"""The fake itself: the state every provider's API shares, the ASGI app that mounts the APIs and
the control endpoints, and ways to run it (a background thread for tests, the foreground for
``newsletter dev fake-esp``)."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path
from typing import Any, Final, Protocol, cast

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from newsletter.devtools.fake_esp.account import FakeAccount
from newsletter.devtools.fake_esp.asgi import ASGIApp, Receive, Scope, Send, json_body
from newsletter.devtools.fake_esp.faults import MAX_BATCH, Faults, FaultScript
from newsletter.devtools.fake_esp.mailgun import MailgunAPI
from newsletter.devtools.fake_esp.postmark import PostmarkAPI, Template
from newsletter.devtools.fake_esp.record import RecordBodies, Recorder
from newsletter.devtools.fake_esp.sendgrid import SendGridAPI
from newsletter.devtools.fake_esp.ses import SesAPI, SesTemplate

__all__ = ["API", "APIS", "FakeESP", "RunningFakeESP", "running", "serve"]


class API(Protocol):
    """One provider's API in the fake: a module of its own, listed in :data:`APIS`."""

    @property
    def name(self) -> str:
        """The provider's name (``[esp] provider``), and the API's key in :attr:`FakeESP.apis`."""

    def route(self, path: str) -> ASGIApp | None:
        """The ASGI app that answers ``path``, or None if it is not one of this API's."""

    def gauges(self) -> dict[str, int]:
        """What ``GET /_stats`` shows of the API's state besides the counters (templates kept)."""


#: The providers' APIs, each made with the fake it belongs to. A path goes to the first that
#: claims it; Postmark, the first API the fake had, claims every path left, so it comes last.
APIS: Final[tuple[Callable[[FakeESP], API], ...]] = (SendGridAPI, MailgunAPI, SesAPI, PostmarkAPI)

#: The place part of MessageIDs (:meth:`FakeESP.message_ids`) for a full batch, made once.
_PLACES: Final = [f"{place:05x}" for place in range(MAX_BATCH)]


def _places(count: int) -> list[str]:
    if count <= len(_PLACES):
        return _PLACES[:count]
    return _PLACES + [f"{place:05x}" for place in range(len(_PLACES), count)]


class FakeESP:
    """The shared state (token, faults, counters, record), the providers' APIs over it, and
    :attr:`app`, the ASGI application that serves them.

    Control endpoints (no token): ``GET|POST /_faults`` read or change the faults (a POST merges
    the given fields), ``POST /_reset`` restores the start-up faults and clears the counters,
    ``GET /_stats`` counts requests, messages and faults.
    """

    def __init__(
        self,
        *,
        token: str = "fake-token",
        faults: Faults | None = None,
        record: Path | None = None,
        record_bodies: RecordBodies = "text",
        account: FakeAccount | None = None,
    ) -> None:
        self.token = token
        #: What the providers' read-only account calls answer (``newsletter doctor``).
        self.account = account or FakeAccount()
        self.script = FaultScript(faults)
        self.recorder = Recorder(record, record_bodies) if record else None
        self.stats: Counter[str] = Counter()
        #: Guards the counters and the APIs' state (templates) against the server's threads.
        self.lock = threading.Lock()
        #: Sending requests answered, the middle of a MessageID (see :meth:`message_ids`).
        self.requests = 0
        # MessageIDs shaped like Postmark's UUIDs: a random prefix per fake, then a request number
        # and the message's place in the request (see ``message_ids``), since uuid4() per message
        # was a fifth of the fake's time in the million-recipient benchmark.
        self._id_prefix = str(uuid.uuid4())[:24]
        self.apis: dict[str, API] = {}
        for make in APIS:
            api = make(self)
            self.apis[api.name] = api
        control = Starlette(
            routes=[
                Route("/_faults", self._faults, methods=["GET", "POST"]),
                Route("/_reset", self._reset, methods=["POST"]),
                Route("/_stats", self._stats, methods=["GET"]),
            ]
        )
        self.app: ASGIApp = _Router(list(self.apis.values()), control)

    # -- what the APIs share -----------------------------------------------------------------

    @property
    def faults(self) -> Faults:
        """The faults in force."""
        return self.script.faults

    def set_faults(self, **changes: Any) -> Faults:
        """Merge ``changes`` into the current faults (also what ``POST /_faults`` does)."""
        return self.script.change(changes)

    def reset(self) -> None:
        """The start-up faults again, and the counters cleared (``POST /_reset``)."""
        self.script.reset()
        with self.lock:
            self.stats.clear()

    def count(self, key: str, n: int = 1) -> None:
        with self.lock:
            self.stats[key] += n

    def authorised(self, token: str | None) -> bool:
        """Whether a request bearing this token (each provider carries it its own way) may go on."""
        return not self.faults.unauthorized and token == self.token

    def message_ids(self, count: int) -> list[str]:
        """A MessageID for each place in a request of ``count`` messages.

        UUID-shaped: the fake's random prefix, seven hex digits of request number, five of place.
        Joining two strings is a quarter of the cost of formatting one counter per message.
        """
        with self.lock:
            self.requests += 1
            head = f"{self._id_prefix}{self.requests:07x}"
        return [head + place for place in _places(count)]

    # -- the first two APIs' state, as the tests read it --------------------------------------

    @property
    def postmark(self) -> PostmarkAPI:
        return cast(PostmarkAPI, self.apis["postmark"])

    @property
    def ses(self) -> SesAPI:
        return cast(SesAPI, self.apis["ses"])

    @property
    def templates(self) -> dict[int, Template]:
        """Postmark's templates, by id."""
        return self.postmark.templates

    @property
    def ses_templates(self) -> dict[str, SesTemplate]:
        """SES's templates, by name."""
        return self.ses.templates

    def answer(self, endpoint: str, body: bytes) -> tuple[int, bytes]:
        """Postmark's answer to one sending request's body (:meth:`PostmarkAPI.answer`)."""
        return self.postmark.answer(endpoint, body)

    def create_template(self, body: dict[str, Any]) -> Template:
        """A Postmark template, as ``POST /templates`` makes it."""
        return self.postmark.create_template(body)

    # -- HTTP --------------------------------------------------------------------------------

    async def _faults(self, request: Request) -> Response:
        if request.method == "POST":
            changes = await json_body(request)
            if not isinstance(changes, dict):
                return JSONResponse({"error": "send a JSON object of fault settings"}, status_code=400)
            try:
                self.set_faults(**changes)
            except (TypeError, ValueError) as exc:
                return JSONResponse({"error": str(exc)}, status_code=400)
        return JSONResponse(asdict(self.faults))

    async def _reset(self, request: Request) -> Response:
        self.reset()
        return JSONResponse(asdict(self.faults))

    async def _stats(self, request: Request) -> Response:
        with self.lock:
            gauges = {name: value for api in self.apis.values() for name, value in api.gauges().items()}
            return JSONResponse({**self.stats, **gauges})

    def close(self) -> None:
        if self.recorder is not None:
            self.recorder.close()


class _Router:
    """Pure ASGI: the control endpoints, else the first API that claims the path.

    The APIs see the raw connection, which faults need (a dropped connection must look to the
    client like one: no status line at all), and answer their sending endpoints straight from
    the body's bytes.
    """

    def __init__(self, apis: list[API], control: ASGIApp) -> None:
        self.apis = apis
        self.control = control

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope["path"].startswith("/_"):
            for api in self.apis:
                handler = api.route(scope["path"])
                if handler is not None:
                    await handler(scope, receive, send)
                    return
        await self.control(scope, receive, send)


# -- running it -----------------------------------------------------------------------------------


class RunningFakeESP:
    """A fake ESP served by uvicorn in a background thread on a port of its own (tests, benches)."""

    def __init__(self, esp: FakeESP, host: str = "127.0.0.1", port: int = 0) -> None:
        import uvicorn

        self.esp = esp
        # IPPROTO_TCP spelled out: asyncio sets TCP_NODELAY only on sockets whose ``proto`` says
        # TCP, and without it every answer waits ~40 ms for a delayed ACK (Nagle).
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind((host, port))
        self.host, self.port = self._socket.getsockname()[:2]
        config = uvicorn.Config(
            esp.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            proxy_headers=False,
            timeout_graceful_shutdown=1,
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(
            target=self._server.run, kwargs={"sockets": [self._socket]}, name="fake-esp", daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 10.0) -> RunningFakeESP:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the fake ESP did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        self._socket.close()
        self.esp.close()


@contextmanager
def running(esp: FakeESP | None = None, host: str = "127.0.0.1", port: int = 0) -> Iterator[RunningFakeESP]:
    """``with running(FakeESP(...)) as fake: ... fake.url ...``; stopped on exit."""
    server = RunningFakeESP(esp or FakeESP(), host, port).start()
    try:
        yield server
    finally:
        server.stop()


def serve(
    host: str = "127.0.0.1",
    port: int = 8025,
    record: Path | None = None,
    faults: Faults | None = None,
    *,
    token: str = "fake-token",
    record_bodies: RecordBodies = "text",
) -> None:
    """Run the fake in the foreground until interrupted (``newsletter dev fake-esp``)."""
    import uvicorn

    esp = FakeESP(token=token, faults=faults, record=record, record_bodies=record_bodies)
    try:
        uvicorn.run(esp.app, host=host, port=port, log_level="warning", access_log=False, lifespan="off")
    finally:
        esp.close()
