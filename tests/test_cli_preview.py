"""``newsletter preview`` tells the truth: slots filled, findings printed, files before screenshots."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.preview import SAMPLE_EMAIL, render_preview, slot_values
from newsletter.render import screenshot
from tests.conftest import SAMPLE_ISSUES
from tests.issue_texts import EVERY_KIND

runner = CliRunner()
ISSUE = SAMPLE_ISSUES[-1]


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no newsletter.toml here: embedded defaults
    return tmp_path


def test_slots_are_filled_with_the_sample_subscriber(workdir):
    out = workdir / "out"
    result = runner.invoke(app, ["preview", str(ISSUE), "--out", str(out)])
    assert result.exit_code == 0, result.output
    html, text = (out / "email.html").read_text(), (out / "email.txt").read_text()
    for body in (html, text):
        assert "%%" not in body
        assert SAMPLE_EMAIL in body
        assert "/u/PREVIEW-this-is-not-a-real-unsubscribe-link" in body
    assert "check: 0 error(s), 0 warning(s)" in result.output


def test_slot_values_are_escaped_in_the_html_and_kept_in_the_text(settings):
    hostile = slot_values(settings, name="<b>Ann</b>", email='a&b"<script>@example.org')
    preview = render_preview(ISSUE, settings, hostile)
    assert "a&amp;b&quot;&lt;script&gt;@example.org" in preview.html
    assert "<script>@example.org" not in preview.html
    assert 'a&b"<script>@example.org' in preview.text


def test_findings_are_printed_and_the_files_still_written(workdir):
    issue = workdir / "2026-12-04.yaml"
    issue.write_text(EVERY_KIND.replace("alt: Marchers holding candles", 'alt: ""'), encoding="utf-8")
    out = workdir / "out"
    result = runner.invoke(app, ["preview", str(issue), "--out", str(out)])
    assert result.exit_code == 0, result.output
    line = EVERY_KIND[: EVERY_KIND.index("alt: Marchers")].count("\n") + 1
    assert f"error {issue}:{line}:" in result.output
    assert "sections[5].photos[0].alt" in result.output
    assert "check: 1 error(s), 0 warning(s); send would refuse this issue" in result.output
    assert (out / "email.html").exists() and (out / "email.txt").exists()


def test_html_is_written_before_screenshots_even_without_a_browser(workdir, monkeypatch):
    monkeypatch.setattr(screenshot, "CHROMIUM", workdir / "no-such-chromium")
    out = workdir / "out"
    result = runner.invoke(app, ["preview", str(ISSUE), "--out", str(out), "--screenshot"])
    assert result.exit_code == 1
    assert "no-such-chromium is missing" in result.output
    assert (out / "email.html").read_text().startswith("<!doctype html>")
    assert (out / "email.txt").exists()
    assert "HTML" in result.output and "email.html" in result.output
    assert not list(out.glob("*.png"))


def test_out_or_watch_is_required(workdir):
    result = runner.invoke(app, ["preview", str(ISSUE)])
    assert result.exit_code == 2
    assert "--watch" in result.output
    refused = runner.invoke(app, ["preview", str(ISSUE), "--watch", "--screenshot"])
    assert refused.exit_code == 2 and "--out" in refused.output


def test_a_malformed_file_with_as_and_no_database_fails_cleanly(workdir, monkeypatch):
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", f"sqlite:///{workdir / 'missing.db'}")
    result = runner.invoke(app, ["preview", str(ISSUE), "--out", "out", "--as", "ann@example.org"])
    assert result.exit_code == 1
    assert "does not exist" in result.output
    assert not (workdir / "out").exists()


@pytest.fixture
def cli_db(db_url: str, monkeypatch: pytest.MonkeyPatch, workdir: Path) -> Path:
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", db_url)
    return workdir


def test_as_fills_the_subscriber_from_the_database(cli_db):
    added = runner.invoke(app, ["subscribers", "add", "Ann.Lee+news@Example.org", "--name", "Ann <Lee>"])
    assert added.exit_code == 0, added.output
    out = cli_db / "out"
    address = "ann.lee+news@example.org"
    result = runner.invoke(app, ["preview", str(ISSUE), "--out", str(out), "--as", address])
    assert result.exit_code == 0, result.output
    html, text = (out / "email.html").read_text(), (out / "email.txt").read_text()
    assert "This email was sent to Ann.Lee+news@Example.org." in text
    assert "Ann.Lee+news@Example.org" in html and SAMPLE_EMAIL not in html + text
    assert "/u/PREVIEW-this-is-not-a-real-unsubscribe-link" in text  # never a working token


@pytest.mark.parametrize("address", ["nobody@example.org", "not an address", "\x00@x"])
def test_as_an_unknown_address_is_bad_input(cli_db, address):
    out = cli_db / "out"
    result = runner.invoke(app, ["preview", str(ISSUE), "--out", str(out), "--as", address])
    assert result.exit_code == 2, result.output
    assert "error:" in result.output
    assert not out.exists()
