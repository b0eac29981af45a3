"""``newsletter serve`` for real: uvicorn in a process of its own, a webhook over a socket."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

from newsletter.store.db import make_engine, session_scope, upgrade
from newsletter.store.models import SubscriberStatus
from newsletter.store.subscribers import SubscriberRepository
from tests.conftest import clean_environment
from tests.events.providers import PASSWORD, USER, basic, sample


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_serve_takes_a_postmark_bounce_off_the_list(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'newsletter.db'}"
    engine = make_engine(url)
    upgrade(engine)
    with session_scope(engine) as session:
        SubscriberRepository(session).add("reader0@example.org")
    port = _free_port()
    env = {
        **clean_environment(),
        "NEWSLETTER_DATABASE_URL": url,
        "POSTMARK_WEBHOOK_USER": USER,
        "POSTMARK_WEBHOOK_PASSWORD": PASSWORD,
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "newsletter", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            assert server.poll() is None, server.communicate()
            try:
                httpx.get(base + "/", timeout=1)
                break
            except httpx.TransportError:
                assert time.monotonic() < deadline, "newsletter serve did not start"
                time.sleep(0.1)
        body = json.dumps(sample("bounce_hard")).encode()
        hook = base + "/webhooks/postmark"
        refused = httpx.post(hook, content=body, headers={"Content-Type": "application/json"})
        assert refused.status_code == 401
        taken = httpx.post(hook, content=body, headers={**basic(), "Content-Type": "application/json"})
        assert taken.status_code == 200, taken.text
        assert taken.json() == {"received": 1, "new": 1}
        again = httpx.post(hook, content=body, headers={**basic(), "Content-Type": "application/json"})
        assert again.json() == {"received": 1, "new": 0}
    finally:
        server.send_signal(signal.SIGINT)
        out, err = server.communicate(timeout=30)
    assert server.returncode == 0, out + err
    with session_scope(engine) as session:
        reader = SubscriberRepository(session).get_by_email("reader0@example.org")
        assert reader is not None and reader.status is SubscriberStatus.BOUNCED
    engine.dispose()
