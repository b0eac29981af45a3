"""The editor commands end to end through the CLI: exit codes, output, and files written."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.config import Settings
from newsletter.content.calendar import next_free_send_date, next_send_date
from newsletter.content.loader import load_issue
from tests.conftest import SAMPLE_ISSUES
from tests.issue_texts import EVERY_KIND

runner = CliRunner()


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch) -> Path:
    """A fresh editorial folder with a config and a copy of the sample issues."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
    (tmp_path / "newsletter.toml").write_text(
        '[newsletter]\nname = "Test Weekly"\nsend_weekday = "friday"\n', encoding="utf-8"
    )
    shutil.copytree(Path(SAMPLE_ISSUES[0]).parent, tmp_path / "issues")
    return tmp_path


def test_check_clean_files_exit_0(workdir):
    result = runner.invoke(app, ["check", *map(str, sorted((workdir / "issues").glob("*.yaml")))])
    assert result.exit_code == 0, result.output
    assert "0 error(s), 0 warning(s)" in result.output


def test_check_malformed_file_exits_2_with_every_location(workdir):
    bad = workdir / "issues" / "2026-12-04.yaml"
    bad.write_text(EVERY_KIND.replace("source: Reuters", "source: [x]").replace("kind: world", "kind: globe"))
    result = runner.invoke(app, ["check", str(bad)])
    assert result.exit_code == 2
    assert f"{bad}:" in result.output
    assert "sections[2].stories[0].source" in result.output
    assert "unknown section kind 'globe'" in result.output


def test_check_lint_failure_exits_1_and_json(workdir):
    bad = workdir / "issues" / "2026-12-04.yaml"
    bad.write_text(EVERY_KIND.replace("alt: Marchers holding candles", 'alt: ""'))
    assert runner.invoke(app, ["check", str(bad)]).exit_code == 1
    result = runner.invoke(app, ["check", "--json", str(bad)])
    assert result.exit_code == 1
    (problem,) = json.loads(result.stdout)
    assert problem["field"] == "sections[5].photos[0].alt"
    assert problem["severity"] == "error" and problem["path"] == str(bad) and problem["line"] > 1


def test_preview_writes_html_and_text_and_prints_sizes(workdir):
    out = workdir / "preview"
    result = runner.invoke(app, ["preview", str(SAMPLE_ISSUES[-1]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert (out / "email.html").read_text().startswith("<!doctype html>")
    # Slots are filled with the sample subscriber: the preview shows what a reader gets.
    text = (out / "email.txt").read_text()
    assert "%%" not in text and "%%" not in (out / "email.html").read_text()
    assert "/u/PREVIEW-this-is-not-a-real-unsubscribe-link" in text
    assert "KB" in result.output and "email.html" in result.output


def test_preview_of_a_bad_file_writes_nothing(workdir):
    bad = workdir / "bad.yaml"
    bad.write_text("title: [\n")
    out = workdir / "preview"
    result = runner.invoke(app, ["preview", str(bad), "--out", str(out)])
    assert result.exit_code == 2
    assert f"{bad}:2:1" in result.output or f"{bad}:1:" in result.output
    assert not out.exists()


def test_draft_writes_standing_sections_and_refuses_to_overwrite(workdir):
    result = runner.invoke(app, ["draft", "--date", "2026-12-04"])
    assert result.exit_code == 0, result.output
    path = workdir / "issues" / "2026-12-04.yaml"
    text = path.read_text()
    assert "# " in text  # guiding comments
    draft = load_issue(path).issue
    kinds = [section.kind for section in draft.sections]
    for standing in ("congress", "world", "photos", "figure", "opeds"):
        assert standing in kinds
    previous = load_issue(workdir / "issues" / "2026-11-27.yaml").issue
    previous_titles = {s.kind: getattr(s, "title", "") for s in previous.sections}
    assert next(s for s in draft.sections if s.kind == "congress").title == previous_titles["congress"]
    # The draft loads, but check fails until the editors fill it in.
    assert runner.invoke(app, ["check", str(path)]).exit_code == 1
    again = runner.invoke(app, ["draft", "--date", "2026-12-04"])
    assert again.exit_code == 2
    assert "already exists" in again.output
    assert path.read_text() == text


def test_draft_takes_the_first_send_date_without_a_file_and_says_which(workdir, time_machine):
    """On a fresh clone next Friday's file is a sample: the draft goes to the week after."""
    time_machine.move_to(dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC), tick=False)  # a Wednesday
    sample = workdir / "issues" / "2026-11-27.yaml"
    before = sample.read_bytes()
    first = runner.invoke(app, ["draft"])
    assert first.exit_code == 0, first.output
    assert first.output.splitlines() == [
        f"Wrote {workdir / 'issues' / '2026-12-04.yaml'}: the issue for Friday 2026-12-04",
        "  skipped 2026-11-27: an issue file exists for that date",
    ]
    assert sample.read_bytes() == before
    second = runner.invoke(app, ["draft"])
    assert second.exit_code == 0, second.output
    assert "the issue for Friday 2026-12-11" in second.output
    assert "skipped 2026-11-27, 2026-12-04:" in second.output
    assert (workdir / "issues" / "2026-12-11.yaml").exists()


def test_draft_of_a_free_next_send_date_skips_nothing(workdir, time_machine):
    time_machine.move_to(dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC), tick=False)
    (workdir / "issues" / "2026-11-27.yaml").unlink()
    result = runner.invoke(app, ["draft"])
    assert result.exit_code == 0, result.output
    assert (
        result.output == f"Wrote {workdir / 'issues' / '2026-11-27.yaml'}: the issue for Friday 2026-11-27\n"
    )


def test_next_free_send_date_walks_past_existing_files(tmp_path: Path):
    settings = Settings().newsletter  # friday 09:00 America/New_York
    wednesday = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
    assert next_free_send_date(settings, tmp_path / "missing", wednesday) == dt.date(2026, 11, 27)
    for day in ("2026-11-27", "2026-12-04", "2026-12-18"):  # a gap: the 11th is free
        (tmp_path / f"{day}.yaml").write_text("")
    assert next_free_send_date(settings, tmp_path, wednesday) == dt.date(2026, 12, 11)


def test_draft_rejects_a_bad_date(workdir):
    result = runner.invoke(app, ["draft", "--date", "next friday"])
    assert result.exit_code == 2


def test_next_send_date_is_the_configured_weekday():
    settings = Settings().newsletter  # friday 09:00 America/New_York
    wednesday = dt.datetime(2026, 11, 25, 12, 0, tzinfo=dt.UTC)
    assert next_send_date(settings, wednesday) == dt.date(2026, 11, 27)
    friday_after_send = dt.datetime(2026, 11, 27, 15, 0, tzinfo=dt.UTC)  # 10:00 in New York
    assert next_send_date(settings, friday_after_send) == dt.date(2026, 12, 4)
    friday_before_send = dt.datetime(2026, 11, 27, 13, 0, tzinfo=dt.UTC)  # 08:00 in New York
    assert next_send_date(settings, friday_before_send) == dt.date(2026, 11, 27)


def test_invalid_config_names_the_key(workdir):
    (workdir / "newsletter.toml").write_text(
        '[newsletter]\nsend_weekday = "caturday"\nbase_url = "ftp://x"\nsurprise = 1\n'
    )
    result = runner.invoke(app, ["check", str(SAMPLE_ISSUES[0])])
    assert result.exit_code == 2
    assert "newsletter.send_weekday: Value error, must be one of" in result.output
    assert "newsletter.base_url" in result.output
    assert "newsletter.surprise: unknown key" in result.output


def test_config_from_environment(workdir, monkeypatch):
    other = workdir / "other.toml"
    other.write_text('[newsletter]\nbase_url = "https://news.example.org/"\n')
    monkeypatch.setenv("NEWSLETTER_CONFIG", str(other))
    out = workdir / "p"
    assert runner.invoke(app, ["preview", str(SAMPLE_ISSUES[0]), "--out", str(out)]).exit_code == 0
    assert "https://news.example.org/issues/" in (out / "email.html").read_text()
    monkeypatch.setenv("NEWSLETTER_NEWSLETTER_BASE_URL", "https://env.example.org")
    assert runner.invoke(app, ["preview", str(SAMPLE_ISSUES[0]), "--out", str(out)]).exit_code == 0
    assert "https://env.example.org/issues/" in (out / "email.html").read_text()
    monkeypatch.setenv("NEWSLETTER_CONFIG", str(workdir / "missing.toml"))
    result = runner.invoke(app, ["preview", str(SAMPLE_ISSUES[0]), "--out", str(out)])
    assert result.exit_code == 2 and "missing.toml" in result.output


def test_demo_renders_the_newest_issue_and_imports_sample_subscribers(workdir):
    result = runner.invoke(app, ["demo", "--out", str(workdir / "out")])
    assert result.exit_code == 0, result.output
    newest = sorted((workdir / "issues").glob("*.yaml"))[-1].stem
    assert (workdir / "out" / newest / "email.html").exists()
    assert "email.txt" in result.output
    assert "30 added" in result.output and "30 active" in result.output
    assert (workdir / "newsletter.db").exists()
    again = runner.invoke(app, ["demo", "--out", str(workdir / "out")])
    assert again.exit_code == 0, again.output
    assert "0 added, 30 unchanged" in again.output
    assert runner.invoke(app, ["subscribers", "count", "--tag", "press"]).output.strip() == "6"


def test_unknown_command_is_usage_error():
    assert runner.invoke(app, ["frobnicate"]).exit_code == 2
