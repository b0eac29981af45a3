"""The part of Handlebars an SES email template can hold, rendered as Handlebars does, for the fake ESP.

SES renders a template's subject, text and HTML with Handlebars. The fake ESP must render exactly
as SES would, or a test could pass on a template that SES sends wrong; so this follows the
Handlebars lexer where it matters for an email template, rather than a regular expression:

* ``{{x}}`` inserts ``x`` HTML-escaped (``& < > " ' ` =``), in every part: the subject and the
  text part too; ``{{{x}}}`` and ``{{&x}}`` insert it as it is; a missing value is empty;
* ``\\{{`` is a literal ``{{`` and everything after it up to the next ``{{`` is plain text;
  ``\\\\{{`` is one backslash followed by a live tag (the lexer drops one backslash);
* ``{{! …}}`` and ``{{!-- … --}}`` are comments.

Block helpers (``{{#each}}``), partials, raw blocks (``{{{{``), whitespace control (``~``) and
anything else are refused with :class:`TemplateSyntaxError`: a newsletter template has no use
for them, and a template that contains one by accident is exactly what a test should catch.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any, Final

__all__ = ["Part", "TemplateSyntaxError", "compile_handlebars", "escape", "render_handlebars", "variables"]

#: A literal string, or ``(path, escaped)`` for a tag.
Part = str | tuple[str, bool]

_PATH: Final = re.compile(r"[A-Za-z0-9_$-]+(?:\.[A-Za-z0-9_$-]+)*")
_ESCAPES: Final = str.maketrans(
    {"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;", "`": "&#x60;", "=": "&#x3D;"}
)


class TemplateSyntaxError(ValueError):
    """The template is not Handlebars that this renderer (and a newsletter) uses."""


def escape(value: str) -> str:
    """Handlebars' ``escapeExpression``: what ``{{x}}`` does to a value."""
    return value.translate(_ESCAPES)


def compile_handlebars(source: str) -> list[Part]:
    """Literal strings and ``(path, escaped)`` tags, in order."""
    parts: list[Part] = []
    position, end = 0, len(source)
    while position < end:
        start = source.find("{{", position)
        if start < 0:
            parts.append(source[position:])
            break
        text = source[position:start]
        if text.endswith("\\\\"):  # an escaped backslash: one is dropped, then a live tag
            parts.append(text[:-1])
        elif text.endswith("\\"):  # an escaped tag: literal up to the next {{, \{{ or \\{{
            parts.append(text[:-1])
            stop = _escaped_until(source, start)
            parts.append(source[start:stop])
            position = stop
            continue
        elif text:
            parts.append(text)
        position = _tag(source, start, parts)
    return [part for part in parts if part != ""]


def _escaped_until(source: str, start: int) -> int:
    """Where the literal text of an escaped ``{{`` at ``start`` ends (the lexer's ``emu`` state:
    at least the two braces, then up to a ``{{``, ``\\{{`` or ``\\\\{{``, or the end)."""
    following = source.find("{{", start + 2)
    if following < 0:
        return len(source)
    for backslashes in (2, 1):
        before = following - backslashes
        if before >= start + 2 and source[before:following] == "\\" * backslashes:
            return before
    return following


def _tag(source: str, start: int, parts: list[Part]) -> int:
    """Read the tag at ``start`` into ``parts``; return where the text after it begins."""
    if source.startswith("{{{{", start):
        raise TemplateSyntaxError(f"raw blocks are not supported (at {start})")
    if source.startswith("{{!--", start):
        close = source.find("--}}", start + 5)
        if close < 0:
            raise TemplateSyntaxError(f"unclosed comment (at {start})")
        return close + 4
    if source.startswith("{{{", start):
        close = source.find("}}}", start + 3)
        inner, escaped, after = source[start + 3 : close], False, close + 3
    else:
        close = source.find("}}", start + 2)
        inner, escaped, after = source[start + 2 : close], True, close + 2
        if inner.startswith("!"):
            if close < 0:
                raise TemplateSyntaxError(f"unclosed comment (at {start})")
            return after
        if inner.startswith("&"):
            inner, escaped = inner[1:], False
    if close < 0:
        raise TemplateSyntaxError(f"unclosed tag (at {start})")
    path = inner.strip()
    if not _PATH.fullmatch(path):
        raise TemplateSyntaxError(f"unsupported tag {{{{{inner}}}}} (at {start})")
    parts.append((path, escaped))
    return after


def variables(parts: Sequence[Part]) -> set[str]:
    """The first name of every tag's path: what the data must hold."""
    return {part[0].split(".", 1)[0] for part in parts if not isinstance(part, str)}


def render_handlebars(parts: Sequence[Part], data: Mapping[str, Any]) -> str:
    out: list[str] = []
    for part in parts:
        if isinstance(part, str):
            out.append(part)
            continue
        path, escaped = part
        value: Any = data
        for key in path.split("."):
            value = value.get(key) if isinstance(value, Mapping) else None
        if value is None or value is False:
            text = ""
        elif value is True:
            text = "true"
        else:
            text = value if isinstance(value, str) else str(value)
        out.append(escape(text) if escaped else text)
    return "".join(out)
