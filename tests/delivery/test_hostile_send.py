"""Hostile and careless input on the send path: the [esp] configuration, the secrets, the CLI
options and the fake ESP's request bodies. Each ends in one clear error, never a traceback."""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.config import load_settings
from newsletter.delivery.esp.registry import adapter_factory
from newsletter.devtools.fake_esp import FakeESP, running
from newsletter.errors import ConfigError
from tests.conftest import FIXTURE_ISSUES_DIR

ISSUE = "2026-11-20.yaml"


@pytest.mark.parametrize(
    ("variable", "value", "named"),
    [
        ("NEWSLETTER_ESP_PROVIDER", "sendmail", None),
        ("NEWSLETTER_ESP_TLS", "ssl3", "esp.tls"),
        ("NEWSLETTER_ESP_PORT", "99999", "esp.port"),
        ("NEWSLETTER_ESP_BASE_URL", "javascript:alert(1)", "esp.base_url"),
        ("NEWSLETTER_ESP_BASE_URL", "http://exa mple.org", "esp.base_url"),
        ("NEWSLETTER_ESP_BATCH_SIZE", "-1", "esp.batch_size"),
        ("NEWSLETTER_ESP_WORKERS", "1000", "esp.workers"),
        ("NEWSLETTER_ESP_TIMEOUT", "0", "esp.timeout"),
        ("NEWSLETTER_ESP_CONFIGURATION_SET", "events; DROP", "esp.configuration_set"),
    ],
)
def test_bad_esp_settings_are_one_line_naming_the_key(variable: str, value: str, named: str | None) -> None:
    with pytest.raises(ConfigError) as caught:
        settings = load_settings(environ={variable: value})
        adapter_factory(settings.esp, environ={})  # the provider list lives in the registry
    assert (named or "esp.provider") in str(caught.value)


def test_missing_secrets_are_named_before_anything_is_written() -> None:
    postmark = load_settings(environ={"NEWSLETTER_ESP_PROVIDER": "postmark"})
    with pytest.raises(ConfigError, match="POSTMARK_TOKEN"):
        adapter_factory(postmark.esp, environ={})
    smtp = load_settings(environ={"NEWSLETTER_ESP_PROVIDER": "smtp", "NEWSLETTER_ESP_USERNAME": "me"})
    with pytest.raises(ConfigError, match="SMTP_PASSWORD"):
        adapter_factory(smtp.esp, environ={})


@pytest.fixture
def cli(db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", db_url)
    monkeypatch.setenv("NEWSLETTER_ESP_OUTBOX_DIR", str(tmp_path / "outbox"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "issues").mkdir()
    shutil.copy(FIXTURE_ISSUES_DIR / ISSUE, tmp_path / "issues" / ISSUE)
    runner = CliRunner()
    assert runner.invoke(app, ["subscribers", "add", "reader@example.org"]).exit_code == 0
    return lambda *args: runner.invoke(app, list(args))


@pytest.mark.parametrize(
    "args",
    [
        ("--segment", "tag:press and ((("),
        ("--segment", "not " * 5000 + "tag:a"),
        ("--segment", "tag:[/]"),
        ("--test", "not an address"),
        ("--test", "a@b.c\r\nBcc: everyone@example.org"),
        ("--workers", "0"),
        ("--resume",),
        ("--retry-unknown",),
    ],
)
def test_bad_send_options_exit_2_and_write_nothing(cli, args: tuple[str, ...], tmp_path: Path) -> None:
    result = cli("send", f"issues/{ISSUE}", "--yes", *args)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "outbox").exists()
    assert "no sends yet" in cli("status").output


def test_a_secret_key_too_short_is_refused(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_SECRET_KEY", "short")
    result = cli("send", f"issues/{ISSUE}", "--yes")
    assert result.exit_code == 2 and "NEWSLETTER_SECRET_KEY" in result.output


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[",
        b"\xff\xfe\x00",
        b"[" * 100_000,
        b'{"Messages": 5}',
        b'{"Messages": [1, "x", null]}',
    ],
)
def test_the_fake_esp_answers_garbage_without_falling_over(body: bytes) -> None:
    with running(FakeESP(token="t")) as fake:
        response = httpx.post(
            f"{fake.url}/email/batchWithTemplates",
            content=body,
            headers={"X-Postmark-Server-Token": "t", "Content-Type": "application/json"},
        )
        assert response.status_code in (200, 422)
        assert httpx.get(f"{fake.url}/_stats").status_code == 200  # still serving
