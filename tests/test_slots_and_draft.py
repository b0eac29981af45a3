"""Slot filling escapes HTML values exactly once; a draft's YAML is written without HTML escaping."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from newsletter.content.draft import write_draft
from newsletter.content.loader import load_issue
from newsletter.render.slots import fill, fill_html, html_values, marker

HOSTILE_NAME = '<b>Ana</b> & "Bo" %%email%%'


def test_fill_html_escapes_values_once():
    body = f"<p>Hello {marker('name')}</p>"
    filled = fill_html(body, {"name": HOSTILE_NAME})
    assert filled == "<p>Hello &lt;b&gt;Ana&lt;/b&gt; &amp; &quot;Bo&quot; %%email%%</p>"
    assert "&amp;lt;" not in filled  # not escaped twice


def test_fill_keeps_text_values_raw_and_fill_html_agrees_with_html_values():
    assert fill(f"Hi {marker('name')}", {"name": HOSTILE_NAME}) == f"Hi {HOSTILE_NAME}"
    body = f"{marker('name')}|{marker('email')}"
    values = {"name": HOSTILE_NAME, "email": "a&b@example.org"}
    assert fill_html(body, values) == fill(body, html_values(values))


def test_a_filled_value_never_fills_again():
    """A value that looks like a marker stays as written: markers are replaced in one pass."""
    assert fill_html(marker("name"), {"name": marker("email"), "email": "x"}) == "%%email%%"


def write_previous(directory: Path, title: str) -> Path:
    path = directory / "2026-11-27.yaml"
    path.write_text(
        "title: T\ndate: 2026-11-27\nsubject: S\nsections:\n"
        f"  - kind: congress\n    title: '{title}'\n    stories: []\n",
        encoding="utf-8",
    )
    return path


def test_draft_keeps_ampersands_percent_signs_and_quotes_in_titles(tmp_path):
    title = 'Congress & the 100% "vote" <now> %%email%%'
    write_previous(tmp_path, title)
    target = write_draft(tmp_path, dt.date(2026, 12, 4))
    text = target.read_text(encoding="utf-8")
    assert "&amp;" not in text and "&#37;" not in text
    congress = next(s for s in load_issue(target).issue.sections if s.kind == "congress")
    assert congress.title == title  # type: ignore[union-attr]
