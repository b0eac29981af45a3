"""Each sample issue in headless Chromium at 375 px and 600 px: no sideways scrolling, alt on
every image, and a dark-mode render that really switches colours."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from playwright.sync_api import Browser

from newsletter.content.loader import load_issue
from newsletter.render.email import render_issue
from newsletter.render.screenshot import CHROMIUM, WIDTHS, browser, measure, open_page, screenshot_html
from tests.conftest import ROOT, SAMPLE_ISSUES

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    if not CHROMIUM.exists():  # a failure in CI (CI=true): see the hook in tests/conftest.py
        pytest.skip(f"{CHROMIUM} is not installed (scripts/install-chromium.sh)")
    with browser() as instance:
        yield instance


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("path", SAMPLE_ISSUES, ids=lambda p: p.name)
def test_sample_issue_fits_the_screen_and_every_image_has_alt(chromium, settings, path, width):
    html = render_issue(load_issue(path).issue, settings).html
    page = open_page(chromium, html, width)
    try:
        metrics = measure(page)
        assert metrics.scroll_width <= metrics.width, f"scrolls sideways: {metrics}"
        assert metrics.images > 0
        assert metrics.images_without_alt == 0
        headings = page.evaluate("() => document.querySelectorAll('h1, h2, h3').length")
        assert headings > 5
    finally:
        page.context.close()


def test_dark_mode_changes_card_colours(chromium, settings):
    html = render_issue(load_issue(SAMPLE_ISSUES[-1]).issue, settings).html
    script = "() => getComputedStyle(document.querySelector('.nl-card h2')).color"
    light = open_page(chromium, html, 600)
    dark = open_page(chromium, html, 600, dark=True)
    try:
        assert light.evaluate(script) != dark.evaluate(script)
    finally:
        light.context.close()
        dark.context.close()


def test_screenshots_are_written_at_both_widths(chromium, settings, tmp_path):
    html = render_issue(load_issue(SAMPLE_ISSUES[0]).issue, settings).html
    shots = screenshot_html(html, tmp_path, instance=chromium)
    assert [shot.name for shot in shots] == ["email-375.png", "email-600.png"]
    for shot in shots:
        assert shot.read_bytes().startswith(b"\x89PNG")


PACKAGE_SAMPLE = ROOT / "newsletter/samples/issues/2026-11-27.yaml"
HEADLINE_STYLE = """() => {
    const linked = document.querySelector('a.nl-hl');
    const plain = [...document.querySelectorAll('.nl-card h3')].find(h => !h.querySelector('a'));
    const style = getComputedStyle(linked);
    return {line: style.textDecorationLine, linked: style.color, plain: getComputedStyle(plain).color};
}"""


@pytest.mark.parametrize("width", WIDTHS)
def test_package_sample_fits_and_its_outline_never_skips_a_level(chromium, settings, width):
    html = render_issue(load_issue(PACKAGE_SAMPLE).issue, settings).html
    page = open_page(chromium, html, width)
    try:
        metrics = measure(page)
        assert metrics.scroll_width <= metrics.width, f"scrolls sideways: {metrics}"
        script = "() => [...document.querySelectorAll('h1,h2,h3,h4,h5,h6')].map(h => +h.tagName[1])"
        levels = page.evaluate(script)
        assert levels[0] == 1 and all(b <= a + 1 for a, b in itertools.pairwise(levels)), levels
    finally:
        page.context.close()


def test_read_more_links_are_named_after_their_headline(chromium, settings):
    html = render_issue(load_issue(PACKAGE_SAMPLE).issue, settings).html
    page = open_page(chromium, html, 600)
    try:
        name = "Read More Here: Tens of Thousands Flee Over the Dorrin Pass"
        assert page.get_by_role("link", name=name, exact=True).count() == 1
        assert page.get_by_role("link", name="Read More Here", exact=True).count() == 0
    finally:
        page.context.close()


@pytest.mark.parametrize("dark", [False, True], ids=["light", "dark"])
def test_linked_headlines_are_underlined_in_the_heading_colour(chromium, settings, dark):
    html = render_issue(load_issue(PACKAGE_SAMPLE).issue, settings).html
    page = open_page(chromium, html, 600, dark=dark)
    try:
        style = page.evaluate(HEADLINE_STYLE)
        assert style["line"] == "underline"
        assert style["linked"] == style["plain"], style  # same colour as an unlinked headline
    finally:
        page.context.close()
