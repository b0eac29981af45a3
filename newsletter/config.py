"""Configuration: ``newsletter.toml`` plus environment overrides.

The file is found with ``--config``, then ``NEWSLETTER_CONFIG``, then ``./newsletter.toml``. With no
file at all the embedded defaults apply, so a fresh checkout runs without set-up. Secrets never live
in the file: they come from environment variables only. Any key may be overridden by an environment
variable ``NEWSLETTER_<SECTION>_<KEY>`` (``NEWSLETTER_DATABASE_URL``, ``NEWSLETTER_NEWSLETTER_NAME``),
as a twelve-factor deployment expects.
"""

from __future__ import annotations

import datetime as dt
import os
import tomllib
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, EmailStr, Field, ValidationError, field_validator

from newsletter.errors import ConfigError

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
DEFAULT_CONFIG_NAME = "newsletter.toml"


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class NewsletterSettings(_Section):
    """Who sends the newsletter and when; shown in the masthead and footer of every email."""

    name: str = Field(default="The Weekly Brief", min_length=1)
    tagline: str = "News, statements and actions from the past week"
    from_address: EmailStr = "newsletter@example.org"
    from_name: str = ""
    reply_to: EmailStr = "editors@example.org"
    postal_address: str = Field(
        default="Example Organisation, 1 Example Street, Washington, DC 20001, USA", min_length=1
    )
    base_url: str = "http://127.0.0.1:8000"
    list_id: str = "weekly.example.org"
    language: str = "en"
    logo_url: str | None = None
    why_subscribed: str = "You are receiving this email because you subscribed to our weekly newsletter."
    send_weekday: str = "friday"
    send_time: dt.time = dt.time(9, 0)
    timezone: str = "America/New_York"

    @field_validator("base_url")
    @classmethod
    def _absolute_http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must be an absolute http(s) URL")
        return value.rstrip("/")

    @field_validator("send_weekday")
    @classmethod
    def _weekday(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in WEEKDAYS:
            raise ValueError(f"must be one of {', '.join(WEEKDAYS)}")
        return value

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}") from None
        return value

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def archive_url(self, issue_date: dt.date) -> str:
        """Where the web archive publishes an issue; the email's "View in browser" link."""
        return f"{self.base_url}/issues/{issue_date.isoformat()}/"


class DatabaseSettings(_Section):
    url: str = "sqlite:///newsletter.db"


class PathsSettings(_Section):
    issues: Path = Path("issues")


class Settings(_Section):
    newsletter: NewsletterSettings = NewsletterSettings()
    database: DatabaseSettings = DatabaseSettings()
    paths: PathsSettings = PathsSettings()
    source: Path | None = None


def _apply_env(data: dict[str, Any], environ: dict[str, str]) -> dict[str, Any]:
    """Overlay ``NEWSLETTER_<SECTION>_<KEY>`` variables on the file's values."""
    merged = {key: dict(value) if isinstance(value, dict) else value for key, value in data.items()}
    for section, model in Settings.model_fields.items():
        annotation = model.annotation
        if not (isinstance(annotation, type) and issubclass(annotation, BaseModel)):
            continue
        for key in annotation.model_fields:
            env_name = f"NEWSLETTER_{section}_{key}".upper()
            if env_name in environ:
                merged.setdefault(section, {})[key] = environ[env_name]
    return merged


def find_config_file(explicit: Path | None = None, environ: dict[str, str] | None = None) -> Path | None:
    environ = dict(os.environ) if environ is None else environ
    if explicit is not None:
        if not explicit.is_file():
            raise ConfigError(f"config file {explicit} does not exist")
        return explicit
    if environ.get("NEWSLETTER_CONFIG"):
        path = Path(environ["NEWSLETTER_CONFIG"])
        if not path.is_file():
            raise ConfigError(f"NEWSLETTER_CONFIG points at {path}, which does not exist")
        return path
    local = Path.cwd() / DEFAULT_CONFIG_NAME
    return local if local.is_file() else None


def load_settings(explicit: Path | None = None, environ: dict[str, str] | None = None) -> Settings:
    """Read, overlay and validate the configuration; every bad key is named in the error."""
    environ = dict(os.environ) if environ is None else environ
    path = find_config_file(explicit, environ)
    data: dict[str, Any] = {}
    if path is not None:
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    data = _apply_env(data, environ)
    if path is not None:
        data["source"] = path
    try:
        settings = Settings.model_validate(data)
    except ValidationError as exc:
        where = str(path) if path else "configuration"
        lines = []
        for error in exc.errors():
            key = ".".join(str(part) for part in error["loc"])
            if error["type"] == "extra_forbidden":
                lines.append(f"{where}: {key}: unknown key")
            else:
                lines.append(f"{where}: {key}: {error['msg']}")
        raise ConfigError("\n".join(lines)) from None
    if path is not None and not settings.paths.issues.is_absolute():
        settings = settings.model_copy(
            update={"paths": PathsSettings(issues=path.parent / settings.paths.issues)}
        )
    return settings
