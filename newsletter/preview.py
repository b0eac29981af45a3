"""What an editor sees before a send: the issue rendered *for a reader*, plus ``check``'s findings.

A preview must tell the truth, so it shows what a subscriber would get, not the template: the
per-recipient slots (``%%name%%``, ``%%email%%``, ``%%unsubscribe_url%%``) are filled with a sample
subscriber, or with a real one from the database (``--as``). The unsubscribe link is never a real
token: a preview is forwarded and clicked, and a working link would unsubscribe the person whose
address it was made for. It says ``preview`` in the URL instead.

Files are written before any screenshot is attempted, so a missing browser costs the screenshots,
never the HTML. ``render_preview`` is pure (no files), which is what the live preview re-runs on
every save.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from newsletter.config import NewsletterSettings, Settings
from newsletter.content.loader import Problem, load_issue
from newsletter.errors import BadInput
from newsletter.render.checks import check_issue
from newsletter.render.email import RenderedIssue, render_issue
from newsletter.render.slots import fill, fill_html

SAMPLE_NAME = "Sam Sample"
SAMPLE_EMAIL = "sam.sample@example.org"
#: The path of the unsubscribe link in previews: obviously not a token, and answered by nothing.
PREVIEW_UNSUBSCRIBE_PATH = "/u/PREVIEW-this-is-not-a-real-unsubscribe-link"


def slot_values(
    settings: NewsletterSettings, *, name: str = SAMPLE_NAME, email: str = SAMPLE_EMAIL
) -> dict[str, str]:
    """The values of every slot for one previewed reader (default: the built-in sample subscriber)."""
    return {
        "name": name,
        "email": email,
        "unsubscribe_url": f"{settings.base_url}{PREVIEW_UNSUBSCRIBE_PATH}",
    }


@dataclass(frozen=True)
class Preview:
    """One issue as one reader gets it: slots filled, and what ``check`` says about the file."""

    rendered: RenderedIssue
    html: str
    text: str
    findings: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        return [finding for finding in self.findings if finding.severity == "error"]


def render_preview(
    issue_path: Path, settings: NewsletterSettings, values: Mapping[str, str] | None = None
) -> Preview:
    """Load, render, fill the slots and check; a malformed file raises :class:`IssueFileError`.

    ``values`` default to the sample subscriber's. They are HTML-escaped for the HTML part (a name
    like ``<b>Ann</b>`` stays text), as delivery does, and go into the text part as they are.
    """
    values = slot_values(settings) if values is None else values
    loaded = load_issue(issue_path)
    rendered = render_issue(loaded.issue, settings)
    return Preview(
        rendered=rendered,
        html=fill_html(rendered.html, values),
        text=fill(rendered.text, values),
        findings=check_issue(loaded, settings),
    )


@dataclass(frozen=True)
class PreviewFiles:
    preview: Preview
    html: Path
    text: Path


def write_preview(
    issue_path: Path,
    out_dir: Path,
    settings: NewsletterSettings,
    *,
    values: Mapping[str, str] | None = None,
) -> PreviewFiles:
    """Render, then write ``out_dir/email.html`` and ``out_dir/email.txt``; nothing if malformed.

    Screenshots are a separate, later step (:func:`screenshot_preview`), so they can only fail
    after the files are on disk.
    """
    preview = render_preview(issue_path, settings, values)
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path, text_path = out_dir / "email.html", out_dir / "email.txt"
    html_path.write_text(preview.html, encoding="utf-8")
    text_path.write_text(preview.text, encoding="utf-8")
    return PreviewFiles(preview, html_path, text_path)


def screenshot_preview(files: PreviewFiles, out_dir: Path) -> list[Path]:
    """PNGs of the filled HTML at 375 and 600 px; :class:`BrowserUnavailable` without Chromium."""
    from newsletter.render.screenshot import screenshot_html  # Playwright loads only when asked

    return screenshot_html(files.preview.html, out_dir)


class UnknownSubscriber(BadInput):
    """``--as`` named an address that is not on the list."""


def subscriber_values(settings: Settings, address: str) -> dict[str, str]:
    """The slot values of a real subscriber, looked up by address in the configured database."""
    from newsletter.store.db import open_database, session_scope  # the database only when asked
    from newsletter.store.subscribers import SubscriberRepository

    engine = open_database(settings.database.url)
    try:
        with session_scope(engine, read_only=True) as session:
            subscriber = SubscriberRepository(session).get_by_email(address)
            if subscriber is None:
                raise UnknownSubscriber(f"no subscriber has the address {address!r}")
            return slot_values(settings.newsletter, name=subscriber.name or "", email=subscriber.email)
    finally:
        engine.dispose()
