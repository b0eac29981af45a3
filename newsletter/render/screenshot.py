"""Screenshots of rendered HTML in headless Chromium, the way a reader's phone or desktop shows it.

Uses Playwright driving Debian's ``/usr/bin/chromium`` (never a downloaded browser). The page is
offline: remote images are answered with a grey placeholder of the same role, so the layout can be
judged without the network and nothing leaves the machine.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from playwright.sync_api import Browser, Page, Route, sync_playwright

from newsletter.errors import NewsletterError

CHROMIUM = Path(os.environ.get("NEWSLETTER_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
WIDTHS = (375, 600)
PLACEHOLDER_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="1200" height="675" viewBox="0 0 1200 675">'
    '<rect width="1200" height="675" fill="#9aa5b1"/>'
    '<text x="600" y="350" font-size="64" text-anchor="middle" fill="#f5f7fa">image</text></svg>'
)


class BrowserUnavailable(NewsletterError):
    """Chromium is not installed; ``scripts/install-chromium.sh`` installs Debian's package."""


@dataclass(frozen=True)
class PageMetrics:
    width: int
    scroll_width: int
    images: int
    images_without_alt: int


@contextmanager
def browser() -> Iterator[Browser]:
    """A headless Chromium for the duration of the block."""
    if not CHROMIUM.exists():
        raise BrowserUnavailable(
            f"{CHROMIUM} is missing; install it with: apt-get install -y chromium"
        )
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield instance
        finally:
            instance.close()


def _offline(route: Route) -> None:
    if route.request.resource_type == "image":
        route.fulfill(status=200, content_type="image/svg+xml", body=PLACEHOLDER_SVG)
    else:
        route.abort()


def open_page(instance: Browser, html: str, width: int, *, dark: bool = False) -> Page:
    """Load ``html`` into a new page ``width`` CSS pixels wide, with the network cut off."""
    context = instance.new_context(
        viewport={"width": width, "height": 800},
        device_scale_factor=1,
        color_scheme="dark" if dark else "light",
    )
    page = context.new_page()
    page.route("http*://**/*", _offline)
    page.set_content(html, wait_until="load")
    return page


def measure(page: Page) -> PageMetrics:
    data = page.evaluate(
        """() => ({
            width: window.innerWidth,
            scroll: document.documentElement.scrollWidth,
            images: document.images.length,
            noAlt: [...document.images].filter(i => !(i.getAttribute('alt') || '').trim()).length,
        })"""
    )
    return PageMetrics(data["width"], data["scroll"], data["images"], data["noAlt"])


def screenshot_html(
    html: str,
    out_dir: Path,
    *,
    stem: str = "email",
    dark: bool = False,
    instance: Browser | None = None,
) -> list[Path]:
    """Write full-page PNGs at 375 px and 600 px wide; returns their paths."""
    if instance is None:
        with browser() as own:
            return screenshot_html(html, out_dir, stem=stem, dark=dark, instance=own)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for width in WIDTHS:
        page = open_page(instance, html, width, dark=dark)
        target = out_dir / f"{stem}-{width}{'-dark' if dark else ''}.png"
        page.screenshot(path=str(target), full_page=True)
        page.context.close()
        written.append(target)
    return written
