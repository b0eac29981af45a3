"""Postmark webhook samples (written from Postmark's documented payloads) and the app under test."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session
from starlette.testclient import TestClient

from newsletter.config import Settings
from newsletter.store.subscribers import SubscriberRepository
from newsletter.web.app import create_app

SAMPLES = Path(__file__).resolve().parents[1] / "fixtures" / "webhooks" / "postmark"
USER, PASSWORD = "postmark-hook", "s3cret-pass:word"
READERS = [f"reader{i}@example.org" for i in range(5)]


def sample(name: str, **changes: Any) -> dict[str, Any]:
    record: dict[str, Any] = json.loads((SAMPLES / f"{name}.json").read_text())
    record.update(changes)
    return record


def basic(user: str = USER, password: str = PASSWORD) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


@pytest.fixture
def credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSTMARK_WEBHOOK_USER", USER)
    monkeypatch.setenv("POSTMARK_WEBHOOK_PASSWORD", PASSWORD)


@pytest.fixture
def readers(repo: SubscriberRepository, session: Session) -> list[int]:
    ids = [repo.add(email).id for email in READERS]
    session.commit()
    return ids


@pytest.fixture
def client(engine: Engine, credentials: None) -> Iterator[TestClient]:
    with TestClient(create_app(Settings(), engine)) as test_client:
        yield test_client
