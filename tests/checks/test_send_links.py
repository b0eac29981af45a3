"""``send`` and the worker run the link check before a send starts, as ``[check] links`` says."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.config import CheckSettings, Settings
from newsletter.delivery.runner import IssueNotReady, prepare_issue
from tests.checks.link_server import LinkSite
from tests.loopback import serve

ISSUE = """\
title: Links
date: 2026-11-27
subject: Links
preheader: A broken link
sections:
  - kind: headlines
    title: Links
    items:
      - text: gone
        url: {base}/missing
      - text: fine
        url: {base}/ok/send
"""


@pytest.fixture(scope="module")
def site() -> Iterator[tuple[str, LinkSite]]:
    links = LinkSite()
    with serve(links.app) as base:
        yield base, links


def _issue(tmp_path: Path, base: str) -> Path:
    path = tmp_path / "2026-11-27.yaml"
    path.write_text(ISSUE.format(base=base), encoding="utf-8")
    return path


def _settings(tmp_path: Path, base: str, mode: str) -> Settings:
    check = CheckSettings(links=mode, allow_private_links=True, timeout=2, cache_file=tmp_path / "c.json")
    return Settings.model_validate({"newsletter": {"base_url": base}, "check": check.model_dump()})


def test_fail_refuses_an_issue_with_a_broken_link(site, tmp_path: Path) -> None:
    base, _ = site
    with pytest.raises(IssueNotReady) as refused:
        prepare_issue(_issue(tmp_path, base), _settings(tmp_path, base, "fail"), links=True)
    assert f"sections[0].items[0].url: {base}/missing answers 404" in str(refused.value)


def test_warn_passes_the_findings_on_as_warnings(site, tmp_path: Path) -> None:
    base, _ = site
    prepared = prepare_issue(_issue(tmp_path, base), _settings(tmp_path, base, "warn"), links=True)
    assert [(w.severity, w.field) for w in prepared.warnings] == [("warning", "sections[0].items[0].url")]


def test_off_and_a_resumed_send_make_no_request(site, tmp_path: Path) -> None:
    base, links = site
    before = links.hits["/missing"]
    prepare_issue(_issue(tmp_path, base), _settings(tmp_path, base, "off"), links=True)
    prepare_issue(_issue(tmp_path, base), _settings(tmp_path, base, "fail"))  # links=False: a resume
    assert links.hits["/missing"] == before


def test_send_prints_link_warnings_and_refuses_in_fail_mode(
    site, tmp_path: Path, db_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    base, _ = site
    monkeypatch.chdir(tmp_path)
    issue = _issue(tmp_path, base)
    config = tmp_path / "newsletter.toml"
    toml = (
        f'[newsletter]\nbase_url = "{base}"\n[database]\nurl = "{db_url}"\n'
        f'[esp]\noutbox_dir = "{tmp_path / "outbox"}"\n'
        f'[check]\nlinks = "{{mode}}"\nallow_private_links = true\ncache_file = "{tmp_path / "c.json"}"\n'
    )
    runner = CliRunner()
    config.write_text(toml.format(mode="warn"), encoding="utf-8")
    assert runner.invoke(app, ["db", "upgrade", "--config", str(config)]).exit_code == 0
    warned = runner.invoke(app, ["send", str(issue), "--dry-run", "--config", str(config)])
    assert warned.exit_code == 0, warned.output
    assert f"warning {issue}:10:9: sections[0].items[0].url: {base}/missing answers 404" in warned.output
    config.write_text(toml.format(mode="fail"), encoding="utf-8")
    refused = runner.invoke(app, ["send", str(issue), "--dry-run", "--config", str(config)])
    assert refused.exit_code == 2, refused.output
    assert "fails check" in refused.output


def test_the_worker_does_not_start_a_scheduled_send_whose_links_fail(
    site, tmp_path: Path, db_url: str
) -> None:
    from newsletter.schedule.firing import Fired, fire_send
    from newsletter.schedule.service import schedule_issue

    base, _ = site
    settings = Settings.model_validate(
        {**_settings(tmp_path, base, "fail").model_dump(), "database": {"url": db_url}}
    )
    issue = _issue(tmp_path, base)
    now = dt.datetime(2026, 11, 26, 12, tzinfo=dt.UTC)
    off = settings.model_copy(update={"check": CheckSettings(links="off")})
    scheduled = schedule_issue(off, issue, "2026-11-27 09:00", now=now)
    log: list[str] = []
    at = dt.datetime(2026, 11, 27, 14, 5, tzinfo=dt.UTC)
    fired = fire_send(settings, scheduled.send.id, now=at, log=log.append, notify=lambda s, b: log.append(s))
    assert fired is Fired.REFUSED, log
    assert any("answers 404" in line for line in log), log
