"""Delivery fixtures: one send's message, its recipients, and a fake Postmark on 127.0.0.1.

The message carries what makes escaping and encoding mistakes visible: a non-ASCII subject and
sender name, HTML that must not be read as a template (``{{``, CSS braces, a ``{`` just before a
slot), and recipients whose names hold markup, quotes, commas and accents.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from newsletter.delivery.esp.base import Outgoing, Recipient
from newsletter.delivery.message import list_unsubscribe, new_message_id
from newsletter.devtools.fake_esp import FakeESP, RunningFakeESP, running

TOKEN = "test-server-token"

HTML = (
    "<html><head><style>p { color: #333; } a{{ margin: 0 }}</style></head><body>"
    "<p>Hello %%name%%,</p>"
    "<p>Literal braces stay: {{not a tag}} and {%%name%%} and {{{raw}}}.</p>"
    '<p><a href="%%unsubscribe_url%%">Unsubscribe</a> (sent to %%email%%)</p>'
    "</body></html>"
)
TEXT = "Hello %%name%%,\n\nLiteral braces: {{not a tag}}\n\nUnsubscribe: %%unsubscribe_url%%\n"


#: A non-ASCII subject: an en dash and a numero sign must survive encoding.
SUBJECT = "Die Woche \u2013 Ausgabe \u211612"


def make_message(**changes: Any) -> Outgoing:
    fields: dict[str, Any] = {
        "send_id": 7,
        "key": "0123456789abcdef" * 4,
        "subject": SUBJECT,
        "html": HTML,
        "text": TEXT,
        "from_address": "news@example.org",
        "from_name": "Wöchentliche Rundschau",
        "reply_to": "editors@example.org",
        "list_id": "weekly.example.org",
        "headers": {
            "List-Id": "Weekly <weekly.example.org>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
    }
    fields.update(changes)
    return Outgoing(**fields)


NAMES = ['<b>Ana</b> & "Bo"', "Zoë Ünal", "Smith, John", "Plain", ""]


def make_recipient(index: int, name: str | None = None, email: str | None = None) -> Recipient:
    name = NAMES[index % len(NAMES)] if name is None else name
    email = email or f"reader{index}@example.com"
    url = f"https://news.example.org/u/{index}.tok?x=1&y=2"
    return Recipient(
        delivery_id=1000 + index,
        email=email,
        name=name,
        values={"unsubscribe_url": url, "email": email, "name": name},
        headers={
            "Message-ID": new_message_id("example.org"),
            "List-Unsubscribe": list_unsubscribe(url, "unsubscribe@example.org"),
        },
    )


def make_recipients(count: int, start: int = 0) -> list[Recipient]:
    return [make_recipient(i) for i in range(start, start + count)]


def read_record(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


@pytest.fixture
def message() -> Outgoing:
    return make_message()


@pytest.fixture
def record_path(tmp_path: Path) -> Path:
    return tmp_path / "record.jsonl"


@pytest.fixture
def fake(record_path: Path) -> Iterator[RunningFakeESP]:
    """A fake Postmark recording every accepted message (HTML included) for the test to read."""
    with running(FakeESP(token=TOKEN, record=record_path, record_bodies="all")) as server:
        yield server
