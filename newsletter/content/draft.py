"""``newsletter draft``: start next week's issue file from the standing sections of the last one.

The draft is written as YAML text from a template (not dumped from data) so it can carry guiding
comments for the editors. It loads cleanly but fails ``check`` until the empty sections are filled.
"""

from __future__ import annotations

import datetime as dt
from importlib.resources import files
from pathlib import Path

from jinja2 import Environment, StrictUndefined

from newsletter.content.calendar import issue_file_for, issue_files
from newsletter.content.loader import load_issue
from newsletter.errors import BadInput

#: The draft's template ships in the package beside the email's (``templates/draft/`` in a checkout,
#: ``newsletter.templates`` installed), but is rendered here with a plain
#: environment of its own: the draft is YAML for an editor, so nothing is HTML-escaped (``&amp;``)
#: or slot-neutralised (``&#37;``), and content needs nothing of the email renderer.
DRAFT_TEMPLATE = Path(str(files("newsletter.templates"))) / "draft" / "issue.yaml.j2"

STANDING_KINDS = ("congress", "world", "photos", "figure", "opeds")
DEFAULT_TITLES = {
    "congress": "U.S. Congress",
    "world": "World Leaders, NGOs",
    "photos": "Photos of the week",
    "figure": "",
    "opeds": "Op-eds",
}


class DraftExists(BadInput):
    """The issue file for that date exists already; drafting never overwrites an editor's work."""


def standing_sections(previous: Path | None) -> list[dict[str, str]]:
    """The standing sections of the last issue, in its order, with its titles."""
    if previous is None:
        return [{"kind": kind, "title": DEFAULT_TITLES[kind]} for kind in STANDING_KINDS]
    issue = load_issue(previous).issue
    sections = []
    for section in issue.sections:
        if section.kind in STANDING_KINDS:
            title = getattr(section, "title", "") or DEFAULT_TITLES[section.kind]
            sections.append({"kind": section.kind, "title": title})
    return sections or standing_sections(None)


def write_draft(directory: Path, date: dt.date, *, previous: Path | None = None) -> Path:
    target = issue_file_for(directory, date)
    if target.exists():
        raise DraftExists(f"{target} already exists; drafting never overwrites an issue file")
    if previous is None:
        earlier = [path for path in issue_files(directory) if path.stem < date.isoformat()]
        previous = earlier[-1] if earlier else None
    template = _environment().from_string(DRAFT_TEMPLATE.read_text(encoding="utf-8"))
    text = template.render(
        date=date.isoformat(),
        previous=previous.name if previous else "",
        sections=standing_sections(previous),
    )
    directory.mkdir(parents=True, exist_ok=True)
    with target.open("x", encoding="utf-8") as handle:
        handle.write(text)
    return target


def _environment() -> Environment:
    """No autoescape, no slot handling: the template itself quotes values (``tojson`` for YAML)."""
    return Environment(
        autoescape=False,
        undefined=StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
