"""The web archive over HTTP (Starlette's TestClient) on SQLite and PostgreSQL: what a send
publishes, what a visitor, a feed reader and a crawler get, and what a hostile path gets."""

from __future__ import annotations

import datetime as dt
import email
import email.policy
import html as htmllib
import re
import xml.etree.ElementTree as ET
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

import feedparser
import pytest
from sqlalchemy import func, select
from starlette.testclient import TestClient
from typer.testing import CliRunner

from newsletter.cli import app as cli_app
from newsletter.content.loader import load_issue
from newsletter.render.archive import first_image, stylesheet
from newsletter.store.db import make_engine, upgrade
from newsletter.store.ledger import ledger_for
from newsletter.store.models import PublishedIssue
from newsletter.web.app import create_app
from newsletter.web.archive import build_site
from tests.archive.conftest import BASE_URL, DRAFT, READERS, SENT, Archive, make_settings

SUBJECTS = {day: load_issue(Path(__file__).parents[1] / "fixtures/issues" / f"{day}.yaml").issue.subject
            for day in SENT[1:]}


class Outline(HTMLParser):
    """Headings, links, images, meta tags and the ``lang`` of one page."""

    def __init__(self) -> None:
        super().__init__()
        self.headings: list[int] = []
        self.links: list[str] = []
        self.images: list[dict[str, str | None]] = []
        self.meta: dict[str, str] = {}
        self.canonical: str | None = None
        self.lang: str | None = None
        self.title = ""
        self._in_title = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        values = dict(attrs)
        if tag == "html":
            self.lang = values.get("lang")
        elif re.fullmatch(r"h[1-6]", tag):
            self.headings.append(int(tag[1]))
        elif tag == "a" and values.get("href"):
            self.links.append(str(values["href"]))
        elif tag == "img":
            self.images.append(values)
        elif tag == "meta" and (values.get("property") or values.get("name")):
            self.meta[str(values.get("property") or values.get("name"))] = str(values.get("content"))
        elif tag == "link" and values.get("rel") == "canonical":
            self.canonical = values.get("href")
        elif tag == "title":
            self._in_title = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "title":
            self._in_title = False

    def handle_data(self, data: str) -> None:
        if self._in_title:
            self.title += data


def outline(html: str) -> Outline:
    parser = Outline()
    parser.feed(html)
    return parser


def issue_url(day: str) -> str:
    return f"/issues/{day}/"


def test_every_sent_issue_is_published_and_the_draft_never_is(archive: Archive) -> None:
    client = archive.client
    for day in SENT:
        response = client.get(issue_url(day))
        assert response.status_code == 200, day
        assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert client.get(issue_url(DRAFT)).status_code == 404
    for path in ("/", "/archive/", "/feed.xml", "/sitemap.xml"):
        assert DRAFT not in client.get(path).text, path


def test_the_page_shows_the_issue_as_sent_after_its_file_changes(archive: Archive) -> None:
    path = archive.issues / "2026-11-20.yaml"
    before = archive.client.get(issue_url("2026-11-20")).text
    old_subject = SUBJECTS["2026-11-20"]
    path.write_text(
        path.read_text(encoding="utf-8").replace(old_subject, "Edited after the send went out"),
        encoding="utf-8",
    )
    fresh = TestClient(create_app(archive.settings, archive.engine))  # nothing cached
    after = fresh.get(issue_url("2026-11-20")).text
    assert after == before
    assert old_subject in htmllib.unescape(after) and "Edited after the send went out" not in after
    # Also when the file is gone: the store has the issue, not a path to it.
    path.unlink()
    again = TestClient(create_app(archive.settings, archive.engine)).get(issue_url("2026-11-20"))
    assert again.text == before


def test_a_resend_of_an_edited_issue_to_another_audience_shows_the_newest(make_archive) -> None:
    archive = make_archive(send=("2026-11-27",))
    path = archive.issues / "2026-11-27.yaml"
    subject = SUBJECTS["2026-11-27"]
    path.write_text(path.read_text(encoding="utf-8").replace(subject, "Second edition"), encoding="utf-8")
    prepared = runner_prepare(archive, path)
    from newsletter.delivery import runner

    runner.execute(runner.plan(prepared, archive.settings, "tag:press", start=True), archive.settings)
    page = archive.client.get(issue_url("2026-11-27")).text  # the same app: its cache follows the store
    assert "Second edition" in page and subject not in htmllib.unescape(page)
    assert archive.client.get("/archive/").text.count(issue_url("2026-11-27")[1:]) == 1


def runner_prepare(archive: Archive, path: Path):
    from newsletter.delivery import runner

    return runner.prepare_issue(path, archive.settings)


def test_the_index_lists_years_and_issues_newest_first(archive: Archive) -> None:
    html = archive.client.get("/archive/").text
    years = re.findall(r'<h2 id="year-(\d{4})">', html)
    assert years == ["2026", "2025"]
    listed = re.findall(r'href="\.\./issues/(\d{4}-\d{2}-\d{2})/"', html)
    assert listed == sorted(SENT, reverse=True)
    assert outline(html).headings == [1, 2, 2]


def test_home_shows_the_latest_issue_and_a_sign_up_link(archive: Archive) -> None:
    html = archive.client.get("/").text
    page = outline(html)
    assert SUBJECTS["2026-11-27"] in page.title
    assert f"{BASE_URL}/subscribe" in page.links
    assert page.canonical == f"{BASE_URL}/"
    assert "./archive/" in page.links and "./issues/2026-11-20/" in page.links  # the next older issue


def test_home_before_the_first_send_invites_to_subscribe(make_archive) -> None:
    archive = make_archive(send=())
    response = archive.client.get("/")
    assert response.status_code == 200
    assert "No issue has been sent yet" in response.text and f"{BASE_URL}/subscribe" in response.text
    assert archive.client.get("/archive/").status_code == 200
    assert feedparser.parse(archive.client.get("/feed.xml").content).entries == []


def test_sends_made_before_the_archive_existed_are_not_listed(make_archive) -> None:
    """A send with no published issue (one started before migration 0010) is not in the archive."""
    archive = make_archive(send=())
    with archive.engine.begin() as conn:
        ledger_for(conn).create_send(
            issue_file="issues/2026-11-13.yaml",
            issue_date=dt.date(2026, 11, 13),
            segment="",
            subject="An old send",
            content_hash="0" * 64,
            provider="outbox",
        )
    assert archive.client.get(issue_url("2026-11-13")).status_code == 404
    assert "An old send" not in archive.client.get("/archive/").text


def test_issue_page_meta_tags_and_accessible_outline(archive: Archive) -> None:
    day = "2026-11-27"
    html = archive.client.get(issue_url(day)).text
    page = outline(html)
    issue = load_issue(archive.issues / f"{day}.yaml").issue
    url = archive.settings.newsletter.archive_url(issue.date)
    assert page.lang == "en"
    assert page.title == f"{issue.subject} | {archive.settings.newsletter.name}"
    assert page.canonical == url == page.meta["og:url"]
    assert page.meta["description"] == issue.preheader == page.meta["og:description"]
    image = first_image(issue)
    assert image is not None
    assert page.meta["og:image"] == image.src == page.meta["twitter:image"]
    assert page.meta["og:image:alt"] == image.alt
    assert page.meta["twitter:card"] == "summary_large_image"
    assert page.meta["og:type"] == "article"
    assert page.headings[0] == 1 and page.headings.count(1) == 1
    assert all(b - a <= 1 for a, b in zip(page.headings, page.headings[1:], strict=False)), page.headings
    assert page.images and all(img.get("alt") for img in page.images)
    assert page.links[0] == "#main" and 'id="main"' in html


def test_pages_carry_nothing_of_a_recipient_and_nothing_that_tracks(archive: Archive) -> None:
    for path in ["/", "/archive/", *(issue_url(day) for day in SENT)]:
        response = archive.client.get(path)
        html = response.text
        assert "%%" not in html, path  # no slot marker, filled or not
        assert "/u/" not in html and "unsubscribe" not in html.lower(), path
        for address, name in READERS.items():
            assert address not in html and name not in html, path
        assert "<script" not in html and " style=" not in html and "<style" not in html, path
        assert "<iframe" not in html and "<form" not in html, path
        csp = response.headers["content-security-policy"]
        assert "script-src" not in csp and "default-src 'none'" in csp and "'unsafe-inline'" not in csp
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "public, max-age=300"


def test_markup_and_slot_markers_in_editor_text_stay_text(make_archive) -> None:
    archive = make_archive(send=())
    path = archive.issues / "2026-11-27.yaml"
    text = path.read_text(encoding="utf-8")
    hostile = (
        "  - kind: headlines\n    title: <script>alert(1)</script>\n"
        "    items:\n      - text: 'Hi %%name%% at %%email%% <img src=x onerror=alert(1)>'\n"
    )
    text = text.replace("sections:\n", "sections:\n" + hostile, 1)
    path.write_text(text, encoding="utf-8")
    archive.send(path)
    page = archive.client.get(issue_url("2026-11-27")).text
    feed = archive.client.get("/feed.xml").text
    for body in (page, htmllib.unescape(feed)):
        assert "<script>alert(1)</script>" not in body and "<img src=x" not in body
        assert "%%name%%" not in body and "%%email%%" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    for address, name in READERS.items():
        assert address not in page and name not in page


def test_feed_parses_back_with_every_sent_issue_in_full(archive: Archive) -> None:
    response = archive.client.get("/feed.xml")
    assert response.headers["content-type"] == "application/atom+xml; charset=utf-8"
    feed = feedparser.parse(response.content)
    assert not feed.bozo, feed.bozo_exception
    assert feed.feed.title == archive.settings.newsletter.name
    newest_first = [f"{BASE_URL}/issues/{day}/" for day in sorted(SENT, reverse=True)]
    assert [entry.link for entry in feed.entries] == newest_first
    for entry in feed.entries:
        day = entry.link.rstrip("/").rpartition("/")[2]
        issue = load_issue(archive.issues / f"{day}.yaml").issue
        assert entry.title == issue.subject and entry.id == entry.link
        content = entry.content[0].value
        for section in issue.sections:
            if getattr(section, "title", ""):
                assert section.title in htmllib.unescape(content), section.title
        assert "%%" not in content


def test_feed_keeps_the_configured_number_of_issues(make_archive, db_url: str, tmp_path: Path) -> None:
    archive = make_archive()
    settings = archive.settings.model_copy(
        update={"archive": archive.settings.archive.model_copy(update={"feed_entries": 2})}
    )
    feed = feedparser.parse(TestClient(create_app(settings, archive.engine)).get("/feed.xml").content)
    assert [e.link[-11:-1] for e in feed.entries] == ["2026-11-27", "2026-11-20"]


def test_sitemap_and_robots(archive: Archive) -> None:
    sitemap = archive.client.get("/sitemap.xml")
    assert sitemap.headers["content-type"] == "application/xml; charset=utf-8"
    ns = {"s": "http://www.sitemaps.org/schemas/sitemap/0.9"}
    locs = [loc.text for loc in ET.fromstring(sitemap.content).findall("s:url/s:loc", ns)]
    assert locs == [f"{BASE_URL}/", f"{BASE_URL}/archive/"] + [
        f"{BASE_URL}/issues/{day}/" for day in sorted(SENT, reverse=True)
    ]
    robots = archive.client.get("/robots.txt")
    assert robots.headers["content-type"] == "text/plain; charset=utf-8"
    lines = robots.text.splitlines()
    assert "User-agent: *" in lines
    assert {"Disallow: /u/", "Disallow: /confirm/"} <= set(lines)
    assert f"Sitemap: {BASE_URL}/sitemap.xml" in lines
    assert not any(line == "Disallow: /" or line.startswith("Disallow: /issues") for line in lines)


def test_a_base_url_with_a_path_prefixes_robots_and_keeps_links_relative(make_archive) -> None:
    archive = make_archive(send=("2026-11-27",), base_url=f"{BASE_URL}/weekly")
    lines = archive.client.get("/robots.txt").text.splitlines()
    assert "Disallow: /weekly/u/" in lines and f"Sitemap: {BASE_URL}/weekly/sitemap.xml" in lines
    page = outline(archive.client.get(issue_url("2026-11-27")).text)
    assert page.canonical == f"{BASE_URL}/weekly/issues/2026-11-27/"
    assert "../../archive/" in page.links


def test_the_static_build_is_the_served_site(archive: Archive, tmp_path: Path) -> None:
    out = tmp_path / "site"
    summary = build_site(archive.settings, archive.engine, out)
    assert summary.issues == len(SENT)
    written = {path.relative_to(out).as_posix() for path in out.rglob("*") if path.is_file()}
    expected = {"index.html", "archive/index.html", "feed.xml", "sitemap.xml", "robots.txt", "404.html",
                stylesheet().path, *(f"issues/{day}/index.html" for day in SENT)}
    assert written == expected
    for name in sorted(written - {"404.html"}):
        url = "/" + name.removesuffix("index.html")
        response = archive.client.get(url)
        assert response.status_code == 200, url
        assert response.content == (out / name).read_bytes(), url
    assert archive.client.get("/nowhere/").status_code == 404


def test_archive_build_command(archive: Archive, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", archive.settings.database.url)
    monkeypatch.setenv("NEWSLETTER_NEWSLETTER_BASE_URL", BASE_URL)
    runner = CliRunner()
    result = runner.invoke(cli_app, ["archive", "build", "--out", str(tmp_path / "public")])
    assert result.exit_code == 0, result.output
    assert f"for {len(SENT)} published issues" in result.output
    assert (tmp_path / "public" / "issues" / "2026-11-27" / "index.html").is_file()
    (tmp_path / "a-file").write_text("x")
    refused = runner.invoke(cli_app, ["archive", "build", "--out", str(tmp_path / "a-file")])
    assert refused.exit_code == 2 and "is a file" in refused.output
    assert runner.invoke(cli_app, ["archive", "build"]).exit_code == 2  # --out is required


def test_every_view_in_browser_link_of_a_sent_message_opens_its_page(archive: Archive) -> None:
    messages = sorted(archive.outbox.glob("*/*.eml"))
    assert len(messages) == len(SENT) * len(READERS)
    seen = set()
    for path in messages:
        message = email.message_from_bytes(path.read_bytes(), policy=email.policy.default)
        html_part = message.get_body(preferencelist=("html",))
        assert html_part is not None
        html = html_part.get_content()
        links = [href for href in outline(html).links if href.startswith(f"{BASE_URL}/issues/")]
        text = message.get_body(preferencelist=("plain",)).get_content()
        links += re.findall(rf"{re.escape(BASE_URL)}/issues/[^\s>)]+", text)
        assert links, path
        for link in links:
            response = archive.client.get(urlsplit(link).path)
            assert response.status_code == 200, link
            assert message["Subject"] in htmllib.unescape(response.text)
            seen.add(link)
    assert seen == {f"{BASE_URL}/issues/{day}/" for day in SENT}


HOSTILE = [
    "/issues/../",
    "/issues/..%2F..%2Fetc%2Fpasswd/",
    "/issues/%2e%2e/",
    "/issues/2026-11-27%00/",
    "/issues/%00/",
    "/issues/2026-02-30/",
    "/issues/9999-99-99/",
    "/issues/0000-01-01/",
    "/issues/2026-11-26/",
    "/issues/2026-11-27/extra/",
    "/issues/2026-1-27/",
    "/issues/%EF%BC%92026-11-27/",  # a fullwidth digit
    "/issues/" + "9" * 100_000 + "/",
    "/issues/2026-11-27" + "%2F" * 5000 + "/",
    "/assets/../../etc/passwd",
    "/assets/archive-0000.css",
    "/assets/%00",
    "/assets/" + "a" * 100_000,
    "/archive/x",
    "/feed.xml/",
    "/\x7f",
]


def raw_get(app: object, path: str) -> tuple[int, dict[str, str], bytes]:
    """GET ``path`` exactly as written (an HTTP client would resolve ``..`` first), the way uvicorn
    hands it to the app: percent-escapes decoded into ``path``, the bytes kept in ``raw_path``."""
    import anyio

    scope = {
        "type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
        "scheme": "https", "path": unquote(path), "raw_path": path.encode("latin-1"), "query_string": b"",
        "root_path": "", "headers": [(b"host", b"news.example.org")], "client": ("127.0.0.1", 9),
        "server": ("news.example.org", 443),
    }
    sent: list[dict[str, object]] = []

    async def receive() -> dict[str, object]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: dict[str, object]) -> None:
        sent.append(message)

    anyio.run(app, scope, receive, send)  # type: ignore[arg-type]
    start = sent[0]
    headers = {k.decode(): v.decode() for k, v in start["headers"]}  # type: ignore[attr-defined]
    body = b"".join(m.get("body", b"") for m in sent[1:])  # type: ignore[misc]
    return int(start["status"]), headers, body  # type: ignore[call-overload]


def test_hostile_paths_are_404_never_500(archive: Archive) -> None:
    for path in HOSTILE:
        status, headers, body = raw_get(archive.client.app, path)
        assert status in (404, 307), (path[:80], status)
        if status == 404 and path.startswith(("/issues/", "/assets/", "/archive/")):
            assert b"Page not found" in body, path[:80]
            assert b"Traceback" not in body and headers["cache-control"] == "no-store"
    assert archive.client.get(issue_url("2026-11-27")).status_code == 200  # and the site still works


def test_a_get_never_writes_and_other_methods_are_refused(archive: Archive) -> None:
    def rows() -> int:
        with archive.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(PublishedIssue)).scalar_one())

    before = rows()
    for method in ("POST", "PUT", "DELETE", "PATCH"):
        assert archive.client.request(method, issue_url("2026-11-27")).status_code == 405
    head = archive.client.head(issue_url("2026-11-27"))
    assert head.status_code == 200 and head.content == b""
    assert rows() == before == len(SENT)


def test_revalidation_costs_no_body_and_the_stylesheet_is_cached_for_good(archive: Archive) -> None:
    first = archive.client.get(issue_url("2026-11-27"))
    again = archive.client.get(issue_url("2026-11-27"), headers={"If-None-Match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    other = archive.client.get(issue_url("2026-11-27"), headers={"If-None-Match": '"nope", ' * 3000})
    assert other.status_code == 200
    css = archive.client.get("/" + stylesheet().path)
    assert css.status_code == 200 and css.headers["content-type"] == "text/css; charset=utf-8"
    assert css.headers["cache-control"] == "public, max-age=31536000, immutable"
    assert f'href="../../{stylesheet().path}"' in first.text


def test_healthz_checks_the_database(archive: Archive, tmp_path: Path) -> None:
    response = archive.client.get("/healthz")
    assert response.status_code == 200 and response.json() == {"status": "ok"}
    assert response.headers["cache-control"] == "no-store"
    unmigrated = make_engine(f"sqlite:///{tmp_path / 'empty.db'}")
    try:
        sick = TestClient(create_app(make_settings("sqlite://", tmp_path), unmigrated))
        failed = sick.get("/healthz")
        assert failed.status_code == 503 and failed.json() == {"status": "unavailable"}
    finally:
        unmigrated.dispose()


def test_a_published_issue_that_no_longer_loads_is_a_404_not_a_500(archive: Archive) -> None:
    with archive.engine.begin() as conn:
        conn.execute(
            PublishedIssue.__table__.update()
            .where(PublishedIssue.issue_date == dt.date(2026, 11, 13))
            .values(document='{"title": 1}')
        )
    client = TestClient(create_app(archive.settings, archive.engine))
    assert client.get(issue_url("2026-11-13")).status_code == 404
    assert len(feedparser.parse(client.get("/feed.xml").content).entries) == len(SENT) - 1


def test_the_migration_creates_the_table_on_an_empty_database(empty_db_url: str) -> None:
    engine = make_engine(empty_db_url)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            assert conn.execute(select(func.count()).select_from(PublishedIssue)).scalar_one() == 0
    finally:
        engine.dispose()
