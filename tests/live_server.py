"""A real live-preview server for tests: uvicorn in a thread on a free 127.0.0.1 port."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from newsletter.config import NewsletterSettings
from newsletter.live import LivePreview
from newsletter.web.preview import bind, create_preview_app, preview_server


@dataclass
class Running:
    url: str
    live: LivePreview
    port: int


@contextmanager
def live_server(path: Path, settings: NewsletterSettings, port: int = 0) -> Iterator[Running]:
    live = LivePreview(path, settings)
    sock = bind(port)
    server = preview_server(create_preview_app(live))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the preview server did not start")
        time.sleep(0.01)
    bound = sock.getsockname()[1]
    try:
        yield Running(f"http://127.0.0.1:{bound}", live, bound)
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()


def events(lines: Iterator[str]) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(event name, data)`` for each server-sent event read from a streamed response's lines."""
    name, data = "message", ""
    for line in lines:
        if line == "":
            if data:
                yield name, json.loads(data)
            name, data = "message", ""
        elif line.startswith("event:"):
            name = line[6:].strip()
        elif line.startswith("data:"):
            data += line[5:].strip()
