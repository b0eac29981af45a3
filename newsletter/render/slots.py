"""Per-recipient slots: values that differ per subscriber, filled at send time, never re-rendered.

The rendered HTML and text carry markers such as ``%%unsubscribe_url%%``. Delivery either replaces
them itself or translates them into the provider's own substitution syntax, so the body is rendered
once per issue and travels once per batch. Editor-written text can never forge a marker: every
``%%`` in user content is neutralised before it reaches the output.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping

SLOTS: tuple[str, ...] = ("unsubscribe_url", "email", "name")
_MARKER = re.compile(r"%%(" + "|".join(SLOTS) + r")%%")
_DOUBLE_PERCENT = re.compile(r"%(?=%)")


def marker(name: str) -> str:
    """The text that stands for slot ``name`` in a rendered body."""
    if name not in SLOTS:
        raise KeyError(f"unknown slot {name!r}")
    return f"%%{name}%%"


def neutralise_html(text: str) -> str:
    """Write every ``%`` of already-escaped user HTML as ``&#37;``: it can never form a slot."""
    return text.replace("%", "&#37;")


def neutralise_text(text: str) -> str:
    """Plain-text counterpart of :func:`neutralise_html`: a zero-width joiner between two signs."""
    return _DOUBLE_PERCENT.sub("%\u200d", text)


def slots_in(body: str) -> set[str]:
    return set(_MARKER.findall(body))


def html_values(values: Mapping[str, str]) -> dict[str, str]:
    """Slot values escaped for an HTML body: a name like ``<b>Ana</b>`` stays text.

    The one place that escapes slot values: :func:`fill_html` uses it, and the ESP adapters that
    hand values to the provider's own substitution send these for the HTML body.
    """
    return {key: html.escape(value, quote=True) for key, value in values.items()}


def fill(body: str, values: Mapping[str, str]) -> str:
    """Replace every slot marker of a *plain-text* body (or subject) with the recipient's raw value.

    For an HTML body use :func:`fill_html`: raw values there would let a subscriber's name inject markup.
    """
    return _MARKER.sub(lambda match: values.get(match.group(1), ""), body)


def fill_html(body: str, values: Mapping[str, str]) -> str:
    """Replace every slot marker of an HTML body with the recipient's value, HTML-escaped once."""
    return fill(body, html_values(values))


def pieces(body: str) -> list[str]:
    """``body`` cut at its slot markers: literal text at even indexes, slot names at odd ones.

    For a sender that encodes the literal text once per send and only the values per recipient.
    """
    return _MARKER.split(body)


def translate(body: str, syntax: str) -> str:
    """Rewrite markers into a provider's syntax, e.g. ``"{{%s}}"`` or ``"%%recipient.%s%%"``."""
    return _MARKER.sub(lambda match: syntax % match.group(1), body)
