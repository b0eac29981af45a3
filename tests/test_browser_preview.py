"""The live preview page in headless Chromium: both widths, the dark switch, and a save that updates
the frames without reloading the page."""

from __future__ import annotations

import re
import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Route

from newsletter.live import force_dark
from newsletter.preview import render_preview
from newsletter.render.screenshot import CHROMIUM, browser, open_page
from tests.conftest import SAMPLE_ISSUES
from tests.live_server import Running, live_server

pytestmark = pytest.mark.browser

LARGEST = max(SAMPLE_ISSUES, key=lambda path: path.stat().st_size)


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    if not CHROMIUM.exists():  # a failure in CI (CI=true): see the hook in tests/conftest.py
        pytest.skip(f"{CHROMIUM} is not installed (scripts/install-chromium.sh)")
    with browser() as instance:
        yield instance


@pytest.fixture
def issue(tmp_path: Path) -> Path:
    path = tmp_path / LARGEST.name
    shutil.copy(LARGEST, path)
    return path


@pytest.fixture
def server(issue: Path, settings) -> Iterator[Running]:
    with live_server(issue, settings) as running:
        time.sleep(0.3)  # let the watch start before a test saves the file
        yield running


@pytest.fixture
def page(chromium: Browser, server: Running) -> Iterator[Page]:
    context = chromium.new_context(viewport={"width": 1600, "height": 1000})
    opened = context.new_page()

    def offline(route: Route) -> None:  # the email's remote images: nothing leaves the machine
        if route.request.url.startswith(server.url):
            route.continue_()
        else:
            route.abort()

    opened.route("**/*", offline)
    opened.goto(server.url + "/")
    opened.wait_for_function("() => document.body.dataset.shown === '1'")
    _wait_for_frames(opened)
    yield opened
    context.close()


def _wait_for_frames(page: Page) -> None:
    for name in ("phone", "desktop"):
        page.wait_for_function(
            f"""() => {{
                const doc = document.getElementById('{name}').contentDocument;
                return doc && doc.readyState === 'complete' && doc.querySelector('.nl-card h2');
            }}"""
        )


def _frame_text(page: Page, name: str) -> str:
    return str(page.evaluate(f"() => document.getElementById('{name}').contentDocument.body.innerText"))


def _heading_colour(page: Page) -> str:
    return str(
        page.evaluate(
            "() => { const w = document.getElementById('desktop').contentWindow;"
            " return w.getComputedStyle(w.document.querySelector('.nl-card h2')).color; }"
        )
    )


def test_the_email_is_shown_375_and_600_px_wide(page):
    assert page.evaluate("() => document.getElementById('phone').contentWindow.innerWidth") == 375
    assert page.evaluate("() => document.getElementById('desktop').contentWindow.innerWidth") == 600
    for name in ("phone", "desktop"):
        scroll = page.evaluate(
            f"() => document.getElementById('{name}').contentDocument.documentElement.scrollWidth"
        )
        assert scroll <= (375 if name == "phone" else 600)
    assert "sam.sample@example.org" in _frame_text(page, "desktop")
    assert page.locator("#text").inner_text().startswith("View in browser")


def test_a_save_updates_the_frames_without_reloading_the_page(page, issue):
    page.evaluate("() => { window.notReloaded = true; }")
    text = issue.read_text(encoding="utf-8")
    subject = re.search(r"^title: .*$", text, re.M)
    assert subject is not None
    issue.write_text(text.replace(subject.group(0), 'title: "Saved in the browser test"'), encoding="utf-8")
    page.wait_for_function("() => Number(document.body.dataset.shown) > 1", timeout=10_000)
    _wait_for_frames(page)
    for name in ("desktop", "phone"):
        # Null-safe: a frame between two documents has no body for a moment.
        page.wait_for_function(
            f"() => document.getElementById('{name}').contentDocument?.body?.innerText"
            "?.includes('Saved in the browser test') === true",
            timeout=10_000,
        )
    assert page.evaluate("() => window.notReloaded") is True


def test_a_broken_save_shows_the_error_and_keeps_the_frames(page, issue):
    before = _frame_text(page, "desktop")
    issue.write_text(issue.read_text(encoding="utf-8") + "sections: [\n", encoding="utf-8")
    banner = page.locator("#broken")
    banner.wait_for(state="visible", timeout=10_000)
    assert re.search(r"\.yaml:\d+:\d+", banner.inner_text())
    assert banner.locator("a.where").first.get_attribute("href", timeout=1000).startswith("/source#L")
    assert page.evaluate("() => document.body.dataset.shown") == "1"
    assert _frame_text(page, "desktop") == before


def test_the_dark_switch_renders_the_email_in_dark_mode(page):
    light = _heading_colour(page)
    page.click("#dark")
    page.wait_for_function("() => document.getElementById('desktop').src.includes('/email/dark')")
    # The new src is set at once, but the frame keeps showing the light document (complete, with its
    # heading) until the dark one replaces it: wait for the heading itself to change, not the frame.
    page.wait_for_function(
        """(light) => {
            const w = document.getElementById('desktop').contentWindow;
            const h2 = w && w.document && w.document.querySelector('.nl-card h2');
            return h2 && w.getComputedStyle(h2).color !== light;
        }""",
        arg=light,
    )
    _wait_for_frames(page)
    assert _heading_colour(page) != light
    assert page.get_attribute("#dark", "aria-pressed") == "true"


def test_the_dark_variant_matches_a_dark_mode_client(chromium, settings):
    """``force_dark`` must show what a reader in dark mode sees, element for element."""
    html = render_preview(LARGEST, settings).html
    colours = """() => [...document.querySelectorAll('body, .nl-card, .nl-card h2, .nl-card h3, a, p')]
        .map((e) => { const s = getComputedStyle(e); return s.color + '/' + s.backgroundColor; })"""
    client = open_page(chromium, html, 600, dark=True)
    forced = open_page(chromium, force_dark(html), 600, dark=False)
    light = open_page(chromium, html, 600, dark=False)
    try:
        assert forced.evaluate(colours) == client.evaluate(colours)
        assert forced.evaluate(colours) != light.evaluate(colours)
    finally:
        for opened in (client, forced, light):
            opened.context.close()
