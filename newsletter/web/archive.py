"""The web archive: ``/``, ``/archive/``, ``/issues/<date>/``, the Atom feed, the sitemap,
``robots.txt`` and ``/healthz`` on ``newsletter serve``, and the same pages as a static site
(``newsletter archive build``).

Pages come from the store's ``published_issues`` (what each send rendered, stored when it
started) through ``render/archive.py``. Rows are only ever added, so the largest row id is the
archive's version: each request reads it (one indexed ``max``), and pages rendered for a version
are served from memory until it changes. A request never writes. Every answer is a public page
or a 404: unknown, malformed and hostile paths never reach the database with more than a date.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy import Engine
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Route

from newsletter.config import Settings
from newsletter.content.model import Issue
from newsletter.errors import BadInput
from newsletter.render import archive as pages
from newsletter.render.archive import ArchiveEntry, Site
from newsletter.store.archive import Archive, PublishedEntry
from newsletter.store.db import reading

__all__ = ["ArchiveSite", "BuildSummary", "Page", "archive_routes", "build_site"]

log = logging.getLogger(__name__)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
HTML = "text/html; charset=utf-8"
#: Headers of every archive answer. Pages load only the stylesheet (same origin) and the issue's
#: images (wherever the editors link them); they run no script and submit no form.
SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'self'; img-src https: http: data:; base-uri 'none'; "
        "form-action 'self'; frame-ancestors 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "strict-origin-when-cross-origin",
}
IMMUTABLE = "public, max-age=31536000, immutable"


@dataclass(frozen=True)
class Page:
    body: bytes
    media_type: str
    #: ``Cache-Control``; a page's ETag is its content's hash, so a revalidation costs no body.
    cache: str

    @property
    def etag(self) -> str:
        return '"' + hashlib.sha256(self.body).hexdigest()[:20] + '"'


@dataclass(frozen=True)
class _State:
    version: int
    site: Site
    ids: dict[dt.date, int]


class ArchiveSite:
    """The pages of the archive as it stands in the database, cached per version."""

    def __init__(self, settings: Settings, engine: Engine) -> None:
        self.settings = settings
        self.engine = reading(engine)
        self._lock = threading.Lock()
        self._state: _State | None = None
        self._pages: dict[str, Page] = {}
        self._issues: dict[int, Issue | None] = {}

    # -- the store ---------------------------------------------------------------------------------

    def state(self) -> _State:
        with self.engine.connect() as conn:
            version = Archive(conn).version()
            current = self._state
            if current is not None and current.version == version:
                return current
            listing = Archive(conn).listing()
        state = _State(version, Site(self.settings.newsletter, [_entry(row) for row in listing]), {
            row.issue_date: row.id for row in listing
        })
        with self._lock:
            if self._state is None or self._state.version < version:
                self._state, self._pages = state, {}
        return state

    def issue(self, entry_id: int) -> Issue | None:
        """The published issue, parsed once; None (and an error in the log) if it no longer loads."""
        if entry_id in self._issues:
            return self._issues[entry_id]
        with self.engine.connect() as conn:
            document = Archive(conn).document(entry_id)
        issue: Issue | None = None
        if document is not None:
            try:
                issue = Issue.model_validate_json(document)
            except ValidationError as exc:
                log.error("published issue %s no longer loads with the issue model: %s", entry_id, exc)
        self._issues[entry_id] = issue
        return issue

    # -- pages -------------------------------------------------------------------------------------

    def page(self, path: str) -> Page | None:
        """The page at ``path`` below the site root (``""``, ``archive/``, ``issues/<date>/``,
        ``feed.xml``, ...), or None when there is none."""
        state = self.state()
        key = f"{state.version}:{path}"
        if key in self._pages:
            return self._pages[key]
        found = self._build(state, path)
        if found is not None:  # only real pages: a stranger's paths must not fill the memory
            with self._lock:
                if self._state is state:
                    self._pages[key] = found
        return found

    def paths(self) -> list[str]:
        """Every page's path: what the static build writes."""
        state = self.state()
        issues = [pages.issue_path(day) for day in state.ids]
        fixed = ["", "archive/", pages.FEED_PATH, "sitemap.xml", "robots.txt", pages.stylesheet().path]
        return [*fixed, *issues]

    def not_found(self) -> Page:
        return self._html(pages.not_found_page(self.state().site), "no-store")

    def _build(self, state: _State, path: str) -> Page | None:
        site, public = state.site, f"public, max-age={self.settings.archive.max_age}"
        if path == "":
            latest = next(iter(self._published(state, 1)), None)
            return self._html(pages.home_page(latest[1] if latest else None, site), public)
        if path == "archive/":
            return self._html(pages.index_page(site), public)
        if path == pages.FEED_PATH:
            body = pages.feed_xml(site, self._published(state, self.settings.archive.feed_entries))
            return Page(body, "application/atom+xml; charset=utf-8", public)
        if path == "sitemap.xml":
            return Page(pages.sitemap_xml(site).encode(), "application/xml; charset=utf-8", public)
        if path == "robots.txt":
            return Page(pages.robots_txt(site).encode(), "text/plain; charset=utf-8", public)
        if path == pages.stylesheet().path:
            return Page(pages.stylesheet().body, "text/css; charset=utf-8", IMMUTABLE)
        day = _issue_day(path)
        if day is None or day not in state.ids:
            return None
        issue = self.issue(state.ids[day])
        return None if issue is None else self._html(pages.issue_page(issue, site), public)

    def _published(self, state: _State, limit: int) -> list[tuple[ArchiveEntry, Issue]]:
        out = []
        for entry in state.site.entries[:limit]:
            issue = self.issue(state.ids[entry.issue_date])
            if issue is not None:
                out.append((entry, issue))
        return out

    @staticmethod
    def _html(text: str, cache: str) -> Page:
        return Page(text.encode("utf-8"), HTML, cache)


def _entry(row: PublishedEntry) -> ArchiveEntry:
    return ArchiveEntry(row.issue_date, row.subject, row.preheader, row.published_at)


def _issue_day(path: str) -> dt.date | None:
    """``issues/2026-11-27/`` -> that date; anything else (a bad date included) -> None."""
    prefix, _, rest = path.partition("/")
    day, slash, tail = rest.partition("/")
    if prefix != "issues" or not slash or tail or not _DATE.fullmatch(day):
        return None
    try:
        return dt.date.fromisoformat(day)
    except ValueError:
        return None


# -- serving -------------------------------------------------------------------------------------


def _respond(request: Request, page: Page, status: int = 200) -> Response:
    headers = {**SECURITY_HEADERS, "Cache-Control": page.cache, "ETag": page.etag}
    if status == 200 and page.etag in _etags(request.headers.get("if-none-match", "")):
        return Response(status_code=304, headers=headers)
    return Response(page.body, status_code=status, media_type=page.media_type, headers=headers)


def _etags(header: str) -> set[str]:
    return {part.strip().removeprefix("W/") for part in header[:2000].split(",")}


def archive_routes(settings: Settings, engine: Engine) -> list[BaseRoute]:
    """The archive's routes, for ``web/app.py`` to mount beside the webhooks."""
    site = ArchiveSite(settings, engine)

    def serve(path_of: Callable[[Request], str]) -> Callable[[Request], object]:
        async def endpoint(request: Request) -> Response:
            path = path_of(request)
            page = await run_in_threadpool(site.page, path)
            if page is None:
                return _respond(request, await run_in_threadpool(site.not_found), 404)
            return _respond(request, page)

        return endpoint

    async def healthz(request: Request) -> Response:
        def check() -> None:
            with site.engine.connect() as conn:
                Archive(conn).ping()

        headers = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff"}
        try:
            await run_in_threadpool(check)
        except Exception:  # whatever it is, the answer says only that the database is unreachable
            log.exception("healthz: the database does not answer")
            return JSONResponse({"status": "unavailable"}, status_code=503, headers=headers)
        return JSONResponse({"status": "ok"}, headers=headers)

    get = ["GET"]
    return [
        Route("/", serve(lambda r: ""), methods=get),
        Route("/archive/", serve(lambda r: "archive/"), methods=get),
        Route("/issues/{day}/", serve(lambda r: f"issues/{r.path_params['day']}/"), methods=get),
        Route("/feed.xml", serve(lambda r: pages.FEED_PATH), methods=get),
        Route("/sitemap.xml", serve(lambda r: "sitemap.xml"), methods=get),
        Route("/robots.txt", serve(lambda r: "robots.txt"), methods=get),
        Route("/assets/{name}", serve(lambda r: f"assets/{r.path_params['name']}"), methods=get),
        # Anything else below the archive's folders: the archive's own 404 page.
        Route("/issues/{rest:path}", serve(lambda r: "-"), methods=get),
        Route("/assets/{rest:path}", serve(lambda r: "-"), methods=get),
        Route("/archive/{rest:path}", serve(lambda r: "-"), methods=get),
        Route("/healthz", healthz, methods=get),
    ]


# -- the static site -----------------------------------------------------------------------------


@dataclass(frozen=True)
class BuildSummary:
    out: Path
    files: list[Path]
    issues: int

    @property
    def home(self) -> Path:
        return self.out / "index.html"


def file_for(out: Path, path: str) -> Path:
    """Where a page's path is written: a directory's page as its ``index.html``."""
    return out / (path + "index.html" if path == "" or path.endswith("/") else path)


def build_site(settings: Settings, engine: Engine, out: Path) -> BuildSummary:
    """Write every archive page under ``out`` (plus ``404.html``), byte for byte as served."""
    if out.exists() and not out.is_dir():
        raise BadInput(f"--out {out} is a file, not a folder")
    site = ArchiveSite(settings, engine)
    written: list[Path] = []
    for path, page in [*((p, site.page(p)) for p in site.paths()), ("404.html", site.not_found())]:
        assert page is not None, path
        target = file_for(out, path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(page.body)
        written.append(target)
    return BuildSummary(out, written, len(site.state().ids))

