"""``newsletter demo`` anywhere: with no issue files it renders the sample issue shipped in the package."""

from __future__ import annotations

import email
import email.policy
import html
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from newsletter.content.calendar import issue_files
from newsletter.content.loader import load_issue
from newsletter.demo import SAMPLE_ISSUES_DIR, SAMPLE_SUBSCRIBERS, newest_issue
from newsletter.render.checks import check_issue

runner = CliRunner()


def test_package_ships_a_clean_sample_issue_and_subscribers(settings):
    (sample,) = issue_files(SAMPLE_ISSUES_DIR)
    loaded = load_issue(sample)
    assert loaded.issue.date.isoformat() == sample.stem
    assert check_issue(loaded, settings) == []
    assert SAMPLE_SUBSCRIBERS.read_text(encoding="utf-8").startswith("email,")


def test_newest_issue_prefers_the_issues_folder(tmp_path: Path):
    assert newest_issue(tmp_path / "missing") == (issue_files(SAMPLE_ISSUES_DIR)[-1], True)
    (tmp_path / "notes.yaml").write_text("not an issue file\n")
    assert newest_issue(tmp_path)[1] is True
    for name in ("2026-12-04.yaml", "2026-12-11.yaml"):
        (tmp_path / name).write_text("title: x\n")
    assert newest_issue(tmp_path) == (tmp_path / "2026-12-11.yaml", False)


def test_demo_in_an_empty_directory_renders_the_packaged_sample(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from newsletter.cli import app

    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    assert "packaged sample: no issue files in issues" in result.output
    assert (tmp_path / "out" / "2026-11-27" / "email.html").read_text().startswith("<!doctype html>")
    assert "30 added" in result.output and "30 active" in result.output
    assert not (tmp_path / "issues").exists()  # the demo does not create the editors' folder
    # ... and sends it to them through the outbox: one parseable message per active subscriber.
    assert "Sent to 30 subscribers through the outbox" in result.output
    messages = sorted((tmp_path / "outbox" / "1").glob("*.eml"))
    assert len(messages) == 30
    parsed = email.message_from_bytes(messages[0].read_bytes(), policy=email.policy.strict)
    assert parsed["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # ... and builds the web archive of what it sent, a static site that opens from the folder.
    assert "Web archive of 1 sent issue: open out/site/index.html" in result.output
    site = tmp_path / "out" / "site"
    page = (site / "issues" / "2026-11-27" / "index.html").read_text(encoding="utf-8")
    assert parsed["Subject"] in html.unescape(page)
    assert '<link rel="canonical" href="http://127.0.0.1:8000/issues/2026-11-27/">' in page
    assert (site / "index.html").is_file() and (site / "feed.xml").is_file()
    stylesheet = re.search(r'href="\.\./\.\./(assets/[^"]+\.css)"', page)
    assert stylesheet and (site / stylesheet.group(1)).is_file()  # relative links work from the folder
    again = runner.invoke(app, ["demo"])
    assert again.exit_code == 0 and "Already sent to 30 subscribers" in again.output
    assert len(list((tmp_path / "outbox" / "1").glob("*.eml"))) == 30
    assert "Web archive of 1 sent issue" in again.output


def test_the_demo_never_mails_through_a_real_provider(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from newsletter.cli import app

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEWSLETTER_ESP_PROVIDER", "postmark")
    result = runner.invoke(app, ["demo"])
    assert result.exit_code == 0, result.output
    assert "Not sent: the demo sends only through the outbox (esp.provider is postmark)" in result.output
    assert not (tmp_path / "outbox").exists()
    assert "Web archive of 0 sent issues" in result.output  # nothing sent, nothing published
