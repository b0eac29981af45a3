"""Configuration: defaults, file, environment overrides, and documentation of every key."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from pydantic import BaseModel

from newsletter.config import Settings, load_settings
from newsletter.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]


def test_defaults_need_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("NEWSLETTER_CONFIG", raising=False)
    settings = load_settings(environ={})
    assert settings.database.url == "sqlite:///newsletter.db"
    assert settings.source is None


def test_every_setting_is_in_the_example_config():
    """The example newsletter.toml is the reference for every key; a new key must be added there."""
    example = tomllib.loads((ROOT / "newsletter.toml").read_text())
    for section, field in Settings.model_fields.items():
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            for key in annotation.model_fields:
                if key == "logo_url":
                    assert "logo_url" in (ROOT / "newsletter.toml").read_text()
                    continue
                assert key in example.get(section, {}), f"[{section}] {key} missing from newsletter.toml"
    assert Settings.model_validate({k: v for k, v in example.items()})


def test_environment_overrides_file(tmp_path):
    path = tmp_path / "n.toml"
    path.write_text('[database]\nurl = "sqlite:///a.db"\n')
    settings = load_settings(path, environ={"NEWSLETTER_DATABASE_URL": "postgresql+psycopg://x/y"})
    assert settings.database.url == "postgresql+psycopg://x/y"


def test_a_bad_environment_override_names_the_variable_not_the_file(tmp_path):
    path = tmp_path / "n.toml"
    path.write_text('[newsletter]\nsend_weekday = "friday"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={"NEWSLETTER_NEWSLETTER_SEND_WEEKDAY": "funday"})
    message = str(caught.value)
    variable = "environment variable NEWSLETTER_NEWSLETTER_SEND_WEEKDAY"
    assert message.startswith(f"{variable}: newsletter.send_weekday")
    assert str(path) not in message
    path.write_text('[newsletter]\nsend_weekday = "funday"\n')  # the file's own bad value names the file
    with pytest.raises(ConfigError, match=f"^{path}: newsletter.send_weekday"):
        load_settings(path, environ={})


def test_invalid_toml_is_a_config_error(tmp_path):
    path = tmp_path / "n.toml"
    path.write_text("[newsletter\nname=")
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert caught.value.exit_code == 2 and "invalid TOML" in str(caught.value)


def test_bad_values_name_their_keys(tmp_path):
    path = tmp_path / "n.toml"
    path.write_text('[newsletter]\ntimezone = "Mars/Olympus"\nfrom_address = "not an address"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    message = str(caught.value)
    assert "newsletter.timezone" in message and "unknown time zone" in message
    assert "newsletter.from_address" in message


def test_url_keys_are_cleaned_and_checked(tmp_path):
    path = tmp_path / "n.toml"
    path.write_text(
        '[newsletter]\nbase_url = " https://news.example.org/the archive/ "\nlogo_url = ""\n',
        encoding="utf-8",
    )
    settings = load_settings(path, environ={}).newsletter
    assert settings.base_url == "https://news.example.org/the%20archive"
    assert settings.logo_url is None  # blank means no logo
    bad = {"NEWSLETTER_NEWSLETTER_LOGO_URL": "javascript:alert(1)"}
    with pytest.raises(ConfigError, match=r"newsletter\.logo_url: .*must be an absolute http\(s\) URL"):
        load_settings(path, environ=bad)
    bad = {"NEWSLETTER_NEWSLETTER_BASE_URL": "https://news.example.org:80a/"}
    with pytest.raises(ConfigError, match=r"newsletter\.base_url: .*must have a numeric port"):
        load_settings(path, environ=bad)


def test_non_utf8_file_names_file_line_and_byte(tmp_path):
    path = tmp_path / "n.toml"
    path.write_bytes(b'# caf\xc3\xa9\n[newsletter]\nname = "Caf\xe9"\n')
    with pytest.raises(ConfigError) as caught:
        load_settings(path, environ={})
    assert str(caught.value) == f"{path}: not UTF-8 text (byte 32, on line 3, is 0xe9); save it as UTF-8"
    assert caught.value.exit_code == 2
