"""Issue -> MJML (Jinja2) -> responsive HTML (mjml-python, the Rust MRML compiler).

The HTML is rendered once per issue; per-recipient values stay as slot markers (see ``slots``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import mjml

from newsletter.config import NewsletterSettings
from newsletter.content.model import Issue, Section, StoriesSection
from newsletter.errors import NewsletterError
from newsletter.render.slots import slots_in
from newsletter.render.templates import environment
from newsletter.render.text import long_date, render_text


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


def render_mjml(issue: Issue, settings: NewsletterSettings) -> str:
    template = environment().get_template("email/base.mjml.j2")
    return template.render(
        issue=issue,
        newsletter=settings,
        archive_url=settings.archive_url(issue.date),
        issue_date=long_date(issue.date),
        section_template=section_template,
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
