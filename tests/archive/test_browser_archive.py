"""The archive in headless Chromium (Debian's), served by the real app over a socket: the index and
an issue page at 375 and 1280 px scroll no wider than the screen, load with no CSP refusal, and
axe-core (injected into each page) finds no serious or critical violation. Screenshots of each are
written for a person to look at. The same server answers the unsubscribe link of a message it
really sent: the subscriber's page passes the same checks, and its buttons work (one browser for
both, started once)."""

from __future__ import annotations

import email
import email.policy
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import uvicorn
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Browser, ConsoleMessage, Page, Route

from newsletter.config import Settings
from newsletter.delivery import runner
from newsletter.render.screenshot import CHROMIUM, PLACEHOLDER_SVG, browser
from newsletter.store.db import make_engine, session_scope, upgrade
from newsletter.store.subscribers import SubscriberRepository
from newsletter.web.app import create_app
from newsletter.web.preview import bind
from tests.conftest import FIXTURE_ISSUES_DIR

pytestmark = pytest.mark.browser

WIDTHS = (375, 1280)
PAGES = {"index": "/archive/", "issue": "/issues/2026-11-27/", "home": "/"}


@dataclass
class Served:
    url: str
    shots: Path
    outbox: Path


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """Two issues sent through the outbox, and ``newsletter serve``'s app on a free port."""
    root = tmp_path_factory.mktemp("archive-browser")
    sock = bind(0)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    (root / "issues").mkdir()
    settings = Settings.model_validate(
        {
            "newsletter": {"base_url": url},
            "database": {"url": f"sqlite:///{root / 'newsletter.db'}"},
            "esp": {"outbox_dir": str(root / "outbox")},
        }
    )
    engine = make_engine(settings.database.url)
    upgrade(engine)
    with session_scope(engine) as session:
        SubscriberRepository(session).add("reader@example.org")
    for name in ("2026-11-20.yaml", "2026-11-27.yaml"):
        shutil.copy(FIXTURE_ISSUES_DIR / name, root / "issues" / name)
        prepared = runner.prepare_issue(root / "issues" / name, settings)
        runner.execute(runner.plan(prepared, settings, "", start=True), settings)
    server = uvicorn.Server(uvicorn.Config(create_app(settings, engine), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.01)
    try:
        yield Served(url, root / "screenshots", root / "outbox")
    finally:
        server.should_exit = True
        thread.join(10)
        sock.close()
        engine.dispose()


@pytest.fixture(scope="module")
def chromium() -> Iterator[Browser]:
    if not CHROMIUM.exists():  # a failure in CI (CI=true): see the hook in tests/conftest.py
        pytest.skip(f"{CHROMIUM} is not installed (scripts/install-chromium.sh)")
    with browser() as instance:
        yield instance


def _offline_but_ours(url: str):
    """Our server answers; remote images get a placeholder; anything else remote is refused."""

    def handle(route: Route) -> None:
        request = route.request
        if request.url.startswith(url):
            route.continue_()
        elif request.resource_type == "image":
            route.fulfill(status=200, content_type="image/svg+xml", body=PLACEHOLDER_SVG)
        else:
            route.abort()

    return handle


#: Every page at both widths in light mode, and dark mode (its own colours) at one width each.
CASES = [
    *((name, width, "light") for name in PAGES for width in WIDTHS),
    ("issue", 375, "dark"),
    ("index", 1280, "dark"),
]


@pytest.mark.parametrize(("name", "width", "scheme"), CASES)
def test_archive_pages_fit_the_screen_and_pass_axe(
    chromium: Browser, served: Served, name: str, width: int, scheme: str
) -> None:
    context = chromium.new_context(
        viewport={"width": width, "height": 900}, device_scale_factor=1, color_scheme=scheme  # type: ignore[arg-type]
    )
    try:
        page = context.new_page()
        refused: list[str] = []

        def on_console(message: ConsoleMessage) -> None:
            if message.type == "error":
                refused.append(message.text)

        page.on("console", on_console)
        page.route("http*://**/*", _offline_but_ours(served.url))
        response = page.goto(served.url + PAGES[name], wait_until="load")
        assert response is not None and response.status == 200
        scroll = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
        assert scroll[0] <= scroll[1], f"{name} at {width}px scrolls sideways: {scroll}"
        assert refused == [], refused  # no CSP refusal: the page needs no inline style or script
        stylesheet = page.evaluate("() => getComputedStyle(document.body).backgroundColor")
        assert stylesheet != "rgba(0, 0, 0, 0)", "the stylesheet did not load"
        results = Axe().run(page)
        serious = [
            (violation["id"], violation["help"], [node["target"] for node in violation["nodes"]][:3])
            for violation in results.response["violations"]
            if violation["impact"] in ("serious", "critical")
        ]
        assert serious == [], serious
        # Lazy images below the fold load as a reader scrolls; for the full-page picture, now.
        page.evaluate(
            "() => Promise.all([...document.images].map(img => { img.loading = 'eager'; "
            "return img.decode().catch(() => null); }))"
        )
        served.shots.mkdir(exist_ok=True)
        shot = served.shots / f"{name}-{width}{'-dark' if scheme == 'dark' else ''}.png"
        page.screenshot(path=str(shot), full_page=True)
        assert shot.read_bytes().startswith(b"\x89PNG")
    finally:
        context.close()


def test_the_skip_link_is_first_and_moves_focus_to_the_content(chromium: Browser, served: Served) -> None:
    context = chromium.new_context(viewport={"width": 375, "height": 900})
    try:
        page = context.new_page()
        page.route("http*://**/*", _offline_but_ours(served.url))
        page.goto(served.url + PAGES["issue"])
        page.keyboard.press("Tab")
        assert page.evaluate("() => document.activeElement.textContent") == "Skip to content"
        visible = page.evaluate("() => document.activeElement.getBoundingClientRect().top >= 0")
        assert visible, "the focused skip link is off screen"
        page.keyboard.press("Enter")
        assert page.evaluate("() => document.activeElement.id") == "main"
    finally:
        context.close()


def _serious(page: Page) -> list[tuple[str, str]]:
    violations = Axe().run(page).response["violations"]
    return [(v["id"], v["help"]) for v in violations if v["impact"] in ("serious", "critical")]


def test_the_unsubscribe_link_of_a_sent_message_unsubscribes_and_resubscribes(
    chromium: Browser, served: Served
) -> None:
    sent = next(served.outbox.rglob("*.eml"))
    message = email.message_from_bytes(sent.read_bytes(), policy=email.policy.default)
    link = str(message["List-Unsubscribe"]).split("<", 1)[1].split(">", 1)[0]
    assert link.startswith(f"{served.url}/u/")
    context = chromium.new_context(viewport={"width": 375, "height": 900})
    try:
        page = context.new_page()
        refused: list[str] = []
        page.on("console", lambda m: refused.append(m.text) if m.type == "error" else None)
        page.route("http*://**/*", _offline_but_ours(served.url))
        response = page.goto(link)
        assert response is not None and response.status == 200
        assert page.evaluate("() => document.documentElement.scrollWidth") <= 375
        assert _serious(page) == [] and refused == []
        served.shots.mkdir(exist_ok=True)
        page.screenshot(path=str(served.shots / "unsubscribe-375.png"), full_page=True)
        page.get_by_label("Too many emails").check()
        page.get_by_role("button", name="Unsubscribe").click()
        page.wait_for_load_state()
        assert page.get_by_role("heading", level=1).inner_text() == "You are unsubscribed"
        assert _serious(page) == []
        page.screenshot(path=str(served.shots / "unsubscribed-375.png"), full_page=True)
        page.get_by_role("button", name="Resubscribe").click()
        page.wait_for_load_state()
        assert "Welcome back" in page.get_by_role("status").inner_text()
    finally:
        context.close()
