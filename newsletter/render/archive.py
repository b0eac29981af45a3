"""The web archive's pages and Atom feed, from the same issue model as the email.

Everything here is a pure function of issues and settings: the store's rows are turned into
:class:`ArchiveEntry` values by the caller (``web/archive.py``), so rendering knows nothing of the
database, and the same function serves a request and writes the static site. Pages are web HTML
(templates under ``templates/archive/``), not the email's tables, and carry nothing of a recipient:
the email's per-recipient slots live in its footer template, which no page includes.

Internal links are relative (``../../archive/``), so the same bytes work on ``newsletter serve``,
under a path prefix and on any static host; canonical and Open Graph URLs are absolute, from
``base_url``.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from itertools import groupby
from typing import Any
from urllib.parse import urlsplit

from newsletter.config import NewsletterSettings
from newsletter.content.model import Image, ImagePart, Issue, PhotosSection, StoriesSection, Story
from newsletter.render.email import lead_story
from newsletter.render.templates import environment, templates_dir
from newsletter.render.text import by_author, long_date

__all__ = [
    "ArchiveEntry",
    "Site",
    "feed_xml",
    "first_image",
    "home_page",
    "index_page",
    "issue_page",
    "issue_path",
    "not_found_page",
    "robots_txt",
    "sitemap_xml",
    "stylesheet",
]

FEED_PATH = "feed.xml"
#: Paths a crawler must not follow: personal pages (unsubscribe and preferences, confirmations,
#: the preferences-link form) and the providers' webhooks.
PRIVATE_PATHS = ("u/", "confirm/", "manage", "webhooks/")


@dataclass(frozen=True)
class ArchiveEntry:
    """One published issue as the listing knows it: enough for the index, the pager, the sitemap."""

    issue_date: dt.date
    subject: str
    preheader: str
    published_at: dt.datetime

    @property
    def path(self) -> str:
        return issue_path(self.issue_date)


def issue_path(day: dt.date) -> str:
    """The issue page's path below the site root: what ``NewsletterSettings.archive_url`` links."""
    return f"issues/{day.isoformat()}/"


@dataclass(frozen=True)
class Stylesheet:
    path: str  #: below the site root, named by its content's hash (cached for good)
    body: bytes


@lru_cache(maxsize=4)
def _stylesheet(directory: str) -> Stylesheet:
    body = (templates_dir() / "archive" / "site.css").read_bytes()
    return Stylesheet(f"assets/archive-{hashlib.sha256(body).hexdigest()[:12]}.css", body)


def stylesheet() -> Stylesheet:
    return _stylesheet(str(templates_dir()))


@dataclass(frozen=True)
class Site:
    """What every page shows of the newsletter, and the published issues, newest first."""

    settings: NewsletterSettings
    entries: Sequence[ArchiveEntry]

    @property
    def base(self) -> str:
        return self.settings.base_url

    def url(self, path: str) -> str:
        """The absolute URL of a path below the site root (``""`` for the root)."""
        return f"{self.base}/{path}"

    @property
    def root_path(self) -> str:
        """The root's path on its host (``/``, or ``/news/`` under a prefix), for pages at any depth."""
        return urlsplit(self.base).path.rstrip("/") + "/"

    def neighbours(self, day: dt.date) -> tuple[ArchiveEntry | None, ArchiveEntry | None]:
        """(newer, older) than ``day`` among the published issues."""
        newer = [e for e in self.entries if e.issue_date > day]
        older = [e for e in self.entries if e.issue_date < day]
        return (newer[-1] if newer else None), (older[0] if older else None)


def first_image(issue: Issue) -> Image | None:
    """The issue's first picture in reading order: the page's Open Graph and Twitter card image."""
    for section in issue.sections:
        if isinstance(section, PhotosSection) and section.photos:
            return section.photos[0]
        if isinstance(section, StoriesSection):
            for story in section.stories:
                if isinstance(story, Story):
                    for part in story.parts():
                        if isinstance(part, ImagePart):
                            return part.image
    return None


def _site_context(site: Site) -> dict[str, Any]:
    news = site.settings
    return {
        "site": {
            "name": news.name,
            "tagline": news.tagline,
            "postal_address": news.postal_address,
            "language": news.language,
            "locale": news.language.replace("-", "_"),
            "feed_url": site.url(FEED_PATH),
            "subscribe_url": site.url("subscribe"),
        },
        "stylesheet": stylesheet().path,
        "long_date": long_date,
        "byline": by_author,
    }


def _render(template: str, site: Site, *, root: str, **context: Any) -> str:
    return environment().get_template(f"archive/{template}").render(
        **_site_context(site), root=root, **context
    )


def _root_for(path: str) -> str:
    """The relative way back to the site root from a page at ``path`` (``issues/x/`` -> ``../../``)."""
    return "../" * path.count("/") or "./"


def _issue_meta(
    issue: Issue, site: Site, entry: ArchiveEntry | None, canonical: str, nav: str
) -> dict[str, Any]:
    return {
        "title": f"{issue.subject} | {site.settings.name}",
        "description": issue.preheader or site.settings.tagline or issue.title,
        "canonical": canonical,
        "og_type": "article",
        "image": first_image(issue),
        "published": entry.published_at.astimezone(dt.UTC).isoformat() if entry else "",
        "nav": nav,
    }


def issue_page(issue: Issue, site: Site) -> str:
    """The permanent page of a published issue, at ``base_url/issues/<date>/``."""
    path = issue_path(issue.date)
    entry = next((e for e in site.entries if e.issue_date == issue.date), None)
    newer, older = site.neighbours(issue.date)
    return _render(
        "issue.html.j2",
        site,
        root=_root_for(path),
        page=_issue_meta(issue, site, entry, site.url(path), nav="issue"),
        issue=issue,
        lead_story=lead_story(issue),
        eyebrow="",
        signup=True,
        newer=newer,
        older=older,
    )


def home_page(latest: Issue | None, site: Site) -> str:
    """``/``: the newest issue in full with a sign-up box, or a sign-up invitation before the first."""
    canonical = site.url("")
    if latest is None:
        page = {
            "title": site.settings.name,
            "description": site.settings.tagline or site.settings.name,
            "canonical": canonical,
            "og_type": "website",
            "image": None,
            "published": "",
            "nav": "home",
        }
        return _render("empty.html.j2", site, root="./", page=page)
    entry = next((e for e in site.entries if e.issue_date == latest.date), None)
    page = _issue_meta(latest, site, entry, canonical, nav="home")
    page["title"] = f"{site.settings.name}: {latest.subject}"
    _newer, older = site.neighbours(latest.date)
    return _render(
        "issue.html.j2",
        site,
        root="./",
        page=page,
        issue=latest,
        lead_story=lead_story(latest),
        eyebrow="Latest issue",
        signup=True,
        newer=None,
        older=older,
    )


def index_page(site: Site) -> str:
    """``/archive/``: every published issue by year, newest first."""
    years = [(year, list(group)) for year, group in groupby(site.entries, key=lambda e: e.issue_date.year)]
    page = {
        "title": f"Archive | {site.settings.name}",
        "description": f"Every issue of {site.settings.name} as it was sent.",
        "canonical": site.url("archive/"),
        "og_type": "website",
        "image": None,
        "published": "",
        "nav": "archive",
    }
    return _render("index.html.j2", site, root="../", page=page, years=years)


def not_found_page(site: Site) -> str:
    """The 404 page, linking by absolute paths: it is shown at any depth."""
    page = {
        "title": f"Page not found | {site.settings.name}",
        "description": site.settings.tagline or site.settings.name,
        "canonical": site.url(""),
        "og_type": "website",
        "image": None,
        "published": "",
        "nav": "",
    }
    return _render("not_found.html.j2", site, root=site.root_path, page=page)


def sitemap_xml(site: Site) -> str:
    """The home page, the index and every issue page, each with the day it was last published."""
    newest = site.entries[0].published_at.date().isoformat() if site.entries else ""
    urls = [(site.url(""), newest), (site.url("archive/"), newest)]
    urls += [(site.url(e.path), e.published_at.astimezone(dt.UTC).date().isoformat()) for e in site.entries]
    return environment().get_template("archive/sitemap.xml.j2").render(urls=urls)


def robots_txt(site: Site) -> str:
    root = site.root_path
    return environment().get_template("archive/robots.txt.j2").render(
        disallowed=[root + path for path in PRIVATE_PATHS], sitemap_url=site.url("sitemap.xml")
    )


def issue_content(issue: Issue) -> str:
    """The issue's sections as HTML, for a feed entry's full content."""
    module: Any = environment().get_template("archive/_issue.html.j2").make_module(
        {"byline": by_author, "long_date": long_date}
    )
    return str(module.issue_body(issue, lead_story(issue)))


def feed_xml(site: Site, issues: Sequence[tuple[ArchiveEntry, Issue]]) -> bytes:
    """An Atom feed of ``issues`` (newest first), each entry with its full content."""
    from feedgen.feed import FeedGenerator  # lxml: loaded only for the feed

    news = site.settings
    feed = FeedGenerator()
    feed.id(site.url(""))
    feed.title(news.name)
    if news.tagline:
        feed.subtitle(news.tagline)
    feed.link(href=site.url(FEED_PATH), rel="self", type="application/atom+xml")
    feed.link(href=site.url(""), rel="alternate", type="text/html")
    feed.language(news.language)
    feed.author({"name": news.name})
    items = list(issues)
    newest = max((entry.published_at for entry, _ in items), default=None)
    feed.updated(newest or dt.datetime(1970, 1, 1, tzinfo=dt.UTC))
    for entry, issue in reversed(items):  # feedgen puts the last added first
        item = feed.add_entry()
        url = site.url(entry.path)
        item.id(url)
        item.title(issue.subject)
        item.link(href=url, rel="alternate", type="text/html")
        item.published(entry.published_at)
        item.updated(entry.published_at)
        if issue.preheader:
            item.summary(issue.preheader)
        item.content(issue_content(issue), type="html")
    return bytes(feed.atom_str(pretty=False))
