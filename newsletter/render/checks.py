"""``newsletter check``: every problem of an issue, its content and its rendered email, located.

The one place that knows both sides: ``content.checks`` lints what the editor wrote, and this adds
what only the rendered email shows, its size. Gmail clips messages over about 102 KB of HTML and
hides the rest (the unsubscribe link included), so 100 KB fails the check and 80 KB warns. ``send``,
the scheduler and ``preview`` all check through :func:`check_issue`.
"""

from __future__ import annotations

from collections.abc import Iterator

from newsletter.config import NewsletterSettings
from newsletter.content.checks import lint_content
from newsletter.content.loader import LoadedIssue, Problem
from newsletter.errors import NewsletterError
from newsletter.render.email import RenderedIssue, render_issue

__all__ = ["HTML_FAIL_BYTES", "HTML_WARN_BYTES", "check_issue", "size_problems"]

HTML_WARN_BYTES = 80 * 1024
HTML_FAIL_BYTES = 100 * 1024


def check_issue(loaded: LoadedIssue, settings: NewsletterSettings) -> list[Problem]:
    """Every problem of an issue that already passed schema validation, in file order."""
    problems = lint_content(loaded, settings)
    try:
        rendered = render_issue(loaded.issue, settings)
    except NewsletterError as exc:
        problems.append(loaded.source.problem((), f"rendering failed: {exc}"))
    else:
        problems.extend(size_problems(loaded, rendered))
    problems.sort(key=lambda problem: (problem.line, problem.column))
    return problems


def size_problems(loaded: LoadedIssue, rendered: RenderedIssue) -> Iterator[Problem]:
    """The rendered HTML against Gmail's clipping limit."""
    size = rendered.html_bytes
    kb = f"{size / 1024:.1f} KB"
    if size > HTML_FAIL_BYTES:
        yield loaded.source.problem(
            (), f"rendered HTML is {kb}; Gmail clips messages over about 102 KB (limit 100 KB)"
        )
    elif size > HTML_WARN_BYTES:
        yield loaded.source.problem(
            (), f"rendered HTML is {kb}, close to Gmail's clipping limit (warn at 80 KB)",
            severity="warning",
        )
