"""Archive fixtures: issues really sent through the outbox, on SQLite and PostgreSQL.

Four issues go out (three in 2026, one in 2025, so the index has two years); a fifth file in the
issues folder is a draft nobody sent, which must never appear.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import Engine
from starlette.testclient import TestClient

from newsletter.config import Settings
from newsletter.delivery import runner
from newsletter.store.db import make_engine, session_scope
from newsletter.store.subscribers import SubscriberRepository
from newsletter.web.app import create_app
from tests.conftest import FIXTURE_ISSUES_DIR

BASE_URL = "https://news.example.org"
SENT = ("2025-12-26", "2026-11-13", "2026-11-20", "2026-11-27")
DRAFT = "2026-12-04"
#: Recipients with names no issue text contains, so a page that showed one would be caught.
READERS = {"zebulon.q@example.org": "Zebulon Quimbyx", "yolanda.w@example.org": "Yolanda Wexlerq",
           "xavier.t@example.org": "Xavier Tumbrellz"}


def write_issue(folder: Path, day: str, source: str = "2026-11-13.yaml") -> Path:
    """An issue file for ``day``: a fixture as it is, or another one re-dated."""
    text = (FIXTURE_ISSUES_DIR / source).read_text(encoding="utf-8")
    path = folder / f"{day}.yaml"
    if source == f"{day}.yaml":
        shutil.copy(FIXTURE_ISSUES_DIR / source, path)
    else:
        old = source.removesuffix(".yaml")
        path.write_text(text.replace(f"date: {old}", f"date: {day}"), encoding="utf-8")
    return path


@dataclass
class Archive:
    settings: Settings
    engine: Engine
    issues: Path
    outbox: Path
    client: TestClient

    def send(self, path: Path) -> runner.SendOutcome:
        prepared = runner.prepare_issue(path, self.settings)
        outcome = runner.execute(runner.plan(prepared, self.settings, "", start=True), self.settings)
        assert outcome.exit_code == 0, outcome.summary()
        return outcome


def make_settings(db_url: str, tmp_path: Path, **newsletter: str) -> Settings:
    return Settings.model_validate(
        {
            "newsletter": {"base_url": BASE_URL, **newsletter},
            "database": {"url": db_url},
            "paths": {"issues": str(tmp_path / "issues")},
            "esp": {"outbox_dir": str(tmp_path / "outbox")},
        }
    )


@pytest.fixture
def make_archive(db_url: str, tmp_path: Path) -> Iterator[Callable[..., Archive]]:
    engines: list[Engine] = []

    def make(send: tuple[str, ...] = SENT, **newsletter: str) -> Archive:
        issues = tmp_path / "issues"
        issues.mkdir(exist_ok=True)
        settings = make_settings(db_url, tmp_path, **newsletter)
        engine = make_engine(db_url)
        engines.append(engine)
        with session_scope(engine) as session:
            repo = SubscriberRepository(session)
            for address, name in READERS.items():
                repo.add(address, name=name)
        client = TestClient(create_app(settings, engine))
        archive = Archive(settings, engine, issues, tmp_path / "outbox", client)
        for day in SENT:
            path = write_issue(issues, day, f"{day}.yaml" if day != "2025-12-26" else "2026-11-13.yaml")
            if day in send:
                archive.send(path)
        write_issue(issues, DRAFT, "2026-11-20.yaml")
        return archive

    yield make
    for engine in engines:
        engine.dispose()


@pytest.fixture
def archive(make_archive: Callable[..., Archive]) -> Archive:
    return make_archive()
