"""Write a rendered issue to disk for editors to open: ``email.html``, ``email.txt`` and screenshots."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from newsletter.config import NewsletterSettings
from newsletter.content.loader import load_issue
from newsletter.render.email import RenderedIssue, render_issue


@dataclass(frozen=True)
class PreviewFiles:
    rendered: RenderedIssue
    html: Path
    text: Path
    screenshots: list[Path] = field(default_factory=list)


def write_preview(
    issue_path: Path, out_dir: Path, settings: NewsletterSettings, *, screenshots: bool = False
) -> PreviewFiles:
    """Load, render and write; the issue is validated before anything is written."""
    rendered = render_issue(load_issue(issue_path).issue, settings)
    shots: list[Path] = []
    if screenshots:
        from newsletter.render.screenshot import screenshot_html  # Playwright loads only when asked

        shots = screenshot_html(rendered.html, out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    html_path, text_path = out_dir / "email.html", out_dir / "email.txt"
    html_path.write_text(rendered.html, encoding="utf-8")
    text_path.write_text(rendered.text, encoding="utf-8")
    return PreviewFiles(rendered, html_path, text_path, shots)
