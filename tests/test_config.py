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
