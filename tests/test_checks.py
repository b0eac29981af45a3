"""``newsletter check`` lints: each problem located, errors vs warnings, size limits."""

from __future__ import annotations

import pytest

from newsletter.content.loader import load_issue
from newsletter.render import checks
from newsletter.render.checks import check_issue
from newsletter.render.email import render_issue
from tests.conftest import SAMPLE_ISSUES
from tests.issue_texts import EVERY_KIND


def lint(write_issue, settings, text: str) -> list[str]:
    return [f"{p.severity} {p}" for p in check_issue(load_issue(write_issue(text)), settings)]


def test_clean_issue_has_no_problems(write_issue, settings):
    assert lint(write_issue, settings, EVERY_KIND) == []


@pytest.mark.parametrize("path", SAMPLE_ISSUES, ids=lambda p: p.name)
def test_sample_issues_are_clean(path, settings):
    assert check_issue(load_issue(path), settings) == []


def test_image_without_alt(write_issue, settings):
    text = EVERY_KIND.replace("alt: Marchers holding candles", 'alt: ""')
    (problem,) = lint(write_issue, settings, text)
    line = text.splitlines().index('        alt: ""') + 1
    assert problem.startswith("error ")
    assert f":{line}:9: sections[5].photos[0].alt: image has no alt text" in problem


def test_empty_sections_are_errors(write_issue, settings):
    text = EVERY_KIND.replace(
        "  - kind: testimonies\n",
        # A title of its own: two adjacent sections titled "Op-eds" would add a warning.
        "  - kind: opeds\n    title: More op-eds\n    items: []\n  - kind: world\n    stories: []\n"
        "  - kind: testimonies\n",
    )
    problems = lint(write_issue, settings, text)
    assert any("sections[8].items: empty opeds section" in p for p in problems), problems
    assert any("sections[9].stories: empty world section" in p for p in problems), problems
    assert all(p.startswith("error") for p in problems)


def test_duplicate_links_are_warnings_naming_the_first(write_issue, settings):
    text = EVERY_KIND.replace("https://www.example.org/icrc", "https://news.example.com/shelling")
    (problem,) = lint(write_issue, settings, text)
    first = text.splitlines().index("          - url: https://news.example.com/shelling") + 1
    assert problem.startswith("warning")
    assert f"duplicate link https://news.example.com/shelling (also at line {first})" in problem
    assert "sections[4].stories[0].links[0].url" in problem


def test_subject_and_preheader(write_issue, settings):
    long_subject = "S" * 81
    text = EVERY_KIND.replace(
        'subject: "Weekly: the ceasefire is broken again"', f"subject: {long_subject}"
    ).replace(
        "preheader: A statement, news from Congress and world capitals, and the photos of the week",
        'preheader: ""',
    )
    problems = lint(write_issue, settings, text)
    assert any(":3:1: subject: subject is 81 characters" in p for p in problems), problems
    assert any(":4:1: preheader: preheader is empty" in p for p in problems), problems


def test_html_size_warns_at_80_and_fails_at_100_kb(write_issue, settings, monkeypatch):
    path = write_issue(EVERY_KIND)
    size = render_issue(load_issue(path).issue, settings).html_bytes
    monkeypatch.setattr(checks, "HTML_WARN_BYTES", size - 1)
    monkeypatch.setattr(checks, "HTML_FAIL_BYTES", size + 1)
    (warning,) = check_issue(load_issue(path), settings)
    assert warning.severity == "warning" and "close to Gmail's clipping limit" in warning.message
    monkeypatch.setattr(checks, "HTML_FAIL_BYTES", size - 1)
    (error,) = check_issue(load_issue(path), settings)
    assert error.severity == "error" and "Gmail clips" in error.message
