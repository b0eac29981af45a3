"""Errors that carry an exit code, so the CLI can map them without knowing every module."""

from __future__ import annotations


class NewsletterError(Exception):
    """A failure the user can act on; ``exit_code`` follows the CLI contract (1 failure, 2 bad input)."""

    exit_code = 1


class BadInput(NewsletterError):
    """The user gave us something we cannot use: a malformed file, a bad option, a bad config value."""

    exit_code = 2


class ConfigError(BadInput):
    """A missing or invalid configuration value; the message names the key."""
