"""Rendering: every section kind in HTML and text, email structure, slots, and the size budget."""

from __future__ import annotations

import re

import pytest

from newsletter.content.loader import load_issue
from newsletter.render.email import render_issue, render_mjml
from newsletter.render.slots import fill
from tests.conftest import SAMPLE_ISSUES
from tests.issue_texts import EVERY_KIND


@pytest.fixture
def rendered(write_issue, settings):
    return render_issue(load_issue(write_issue(EVERY_KIND)).issue, settings)


def test_every_section_kind_appears_in_html(rendered):
    html = rendered.html
    for text in [
        "Lead headline one",
        "Statement of the president",
        "Convene the Security Council",
        "Shelling resumes near the border",
        "We will not leave",
        "Schools closed",
        "Senators call for sanctions",
        "The ICRC asks for access",
        "Marchers holding candles",
        "times the ceasefire was violated this week",
        "What the West owes the valley",
        "We left with nothing",
    ]:
        assert text in html, text
    assert '<ol style="margin:0 0 12px;padding-left:26px">' in html
    assert "<em>emphasis</em>" in html


def test_email_structure(rendered, settings):
    html = rendered.html
    assert re.search(r'<html lang="en"', html)
    assert re.search(r'<meta name="color-scheme" content="light dark" ?/?>', html)
    assert "prefers-color-scheme: dark" in html
    assert "[if mso" in html, "Outlook conditional comments must survive"
    assert "View in browser" in html
    assert rendered.archive_url == "http://127.0.0.1:8000/issues/2026-11-27/"
    assert f'href="{rendered.archive_url}"' in html
    assert settings.postal_address in html
    assert settings.why_subscribed in html
    assert "fonts.googleapis.com" not in html
    # The preheader is the hidden first text of the body (mj-preview).
    assert re.search(r'display:none[^>]*>A statement, news from Congress', html)
    # Real headings: h1 masthead title, h2 section titles, h3 story headlines.
    assert "<h1" in html and "<h2" in html and "<h3" in html
    for table in re.findall(r"<table[^>]*>", html):
        assert 'role="presentation"' in table, table


def test_recipient_values_are_slots_filled_at_send_time(rendered):
    assert rendered.slots == {"unsubscribe_url", "email"}
    personal = fill(rendered.html, {"unsubscribe_url": "https://x.example/u/abc", "email": "a@b.c"})
    assert 'href="https://x.example/u/abc"' in personal
    assert "%%" not in personal
    assert "Unsubscribe: %%unsubscribe_url%%" in rendered.text


def test_text_part_has_every_headline_quote_and_link(write_issue, settings):
    loaded = load_issue(write_issue(EVERY_KIND))
    text = render_issue(loaded.issue, settings).text
    for needle in [
        "Lead headline one",
        "https://news.example.com/lead-1",
        "Shelling resumes near the border",
        '"We will not leave" -- A resident',
        "https://news.example.com/shelling",
        "https://senate.example.gov/sanctions",
        "https://www.example.org/icrc",
        "https://images.example.org/2026/11/march.jpg",
        "https://opinion.example.com/owes",
        "https://www.example.org/source",
        " 1. Convene the Security Council",
        "8 times the ceasefire was violated this week",
    ]:
        assert needle in text, needle


@pytest.mark.parametrize("path", SAMPLE_ISSUES, ids=lambda p: p.name)
def test_sample_text_part_carries_every_link_and_reads_at_72_columns(path, settings):
    issue = load_issue(path).issue
    rendered = render_issue(issue, settings)
    urls = set(re.findall(r'href="(https?://[^"]+)"', rendered.html))
    urls.discard(rendered.archive_url)
    for url in urls:
        assert url in rendered.text, url
    for line in rendered.text.splitlines():
        if len(line) > 72:
            assert re.search(r"https?://\S{30,}", line), f"line over 72 columns: {line!r}"


def test_largest_sample_stays_under_80_kb(settings):
    sizes = {
        path.name: render_issue(load_issue(path).issue, settings).html_bytes
        for path in SAMPLE_ISSUES
    }
    assert max(sizes.values()) < 80 * 1024, sizes


def test_mjml_source_uses_one_section_per_block(write_issue, settings):
    issue = load_issue(write_issue(EVERY_KIND)).issue
    mjml = render_mjml(issue, settings)
    # masthead, preheader bar and footer, plus exactly one mj-section per issue section
    body = mjml.split("<mj-body", 1)[1]
    assert body.count("<mj-section") == len(issue.sections) + 3
