"""Issue -> MJML (Jinja2) -> responsive HTML (mjml-python, the Rust MRML compiler).

The HTML is rendered once per issue; per-recipient values stay as slot markers (see ``slots``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mjml
from markupsafe import Markup

from newsletter.config import NewsletterSettings
from newsletter.content.model import Image, Issue, Section, StoriesSection, Story
from newsletter.errors import NewsletterError
from newsletter.render.slots import slots_in
from newsletter.render.templates import environment
from newsletter.render.text import by_author, masthead_date, render_text

IMAGE_WIDTH = 552  # the 600 px column less 24 px padding either side
# Inboxes fill the preview line after the preheader with the start of the body ("View in browser
# ..."). Invisible filler (combining grapheme joiner, zero-width non-joiner, no-break space) after
# it keeps that line to the preheader; enough for the longest previews (about 200 characters).
PREHEADER_SPAN = 200
_PREHEADER_FILLER = "&#847;&zwnj;&nbsp;"


class RenderError(NewsletterError):
    """The templates produced MJML the compiler rejects: a bug in templates, not in the issue."""


@dataclass(frozen=True)
class RenderedIssue:
    """Everything delivery needs to build a message, identical for every recipient."""

    subject: str
    preheader: str
    html: str
    text: str
    archive_url: str
    slots: frozenset[str] = field(default_factory=frozenset)

    @property
    def html_bytes(self) -> int:
        return len(self.html.encode("utf-8"))


def section_template(section: Section) -> str:
    """News, congress and world stories share one template; every other kind has its own."""
    return "stories" if isinstance(section, StoriesSection) else str(section.kind)


def lead_story(issue: Issue) -> Story | None:
    """The issue's first story (of its first news-like section): it gets a larger headline."""
    for section in issue.sections:
        if isinstance(section, StoriesSection):
            return next((story for story in section.stories if isinstance(story, Story)), None)
    return None


def image_height(image: Image) -> int:
    """The height the image takes at the column's width, from its size in pixels."""
    assert image.width is not None and image.height is not None
    return max(1, round(IMAGE_WIDTH * image.height / image.width))


def preheader_padding(preheader: str) -> Markup:
    """Invisible filler after the preheader, up to :data:`PREHEADER_SPAN` characters (3 per unit)."""
    units = max(0, -(-(PREHEADER_SPAN - len(preheader)) // 3))
    return Markup(_PREHEADER_FILLER * units)


def render_mjml(issue: Issue, settings: NewsletterSettings) -> str:
    template = environment().get_template("email/base.mjml.j2")
    return template.render(
        issue=issue,
        newsletter=settings,
        archive_url=settings.archive_url(issue.date),
        issue_date=masthead_date(issue),
        preheader_padding=preheader_padding(issue.preheader) if issue.preheader else "",
        section_template=section_template,
        lead_story=lead_story(issue),
        image_width=IMAGE_WIDTH,
        image_height=image_height,
        byline=by_author,
    )


def compile_mjml(source: str) -> str:
    try:
        return str(mjml.mjml2html(source, disable_comments=True, fonts={}))
    except ValueError as exc:
        raise RenderError(f"MJML compile failed: {exc}") from exc


def render_issue(issue: Issue, settings: NewsletterSettings) -> RenderedIssue:
    html = compile_mjml(render_mjml(issue, settings))
    text = render_text(issue, settings)
    return RenderedIssue(
        subject=issue.subject,
        preheader=issue.preheader,
        html=html,
        text=text,
        archive_url=settings.archive_url(issue.date),
        slots=frozenset(slots_in(html) | slots_in(text)),
    )
