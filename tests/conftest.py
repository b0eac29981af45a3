"""Shared fixtures: settings on embedded defaults and the sample issues kept in ``issues/``."""

from __future__ import annotations

from pathlib import Path

import pytest

from newsletter.config import NewsletterSettings, Settings

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_ISSUES = sorted((ROOT / "issues").glob("*.yaml"))


@pytest.fixture
def settings() -> NewsletterSettings:
    return Settings().newsletter


@pytest.fixture
def write_issue(tmp_path: Path):
    """Write YAML text to an issue file in a temporary folder and return its path."""

    def write(text: str, name: str = "2026-11-27.yaml") -> Path:
        path = tmp_path / name
        path.write_text(text, encoding="utf-8")
        return path

    return write
