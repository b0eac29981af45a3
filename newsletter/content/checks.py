"""The content lints of ``newsletter check``: an issue beyond its schema, each problem with its
file:line:column.

Errors block a send; warnings are shown but do not fail the check. What needs the rendered email
(its size against Gmail's clipping) is checked in ``newsletter.render.checks``, which runs these
too: content knows nothing of rendering.
"""

from __future__ import annotations

from collections.abc import Iterator

from newsletter.config import NewsletterSettings
from newsletter.content.loader import FieldPath, LoadedIssue, Problem, SourceMap
from newsletter.content.model import (
    FigureSection,
    HeadlinesSection,
    Image,
    ImagePart,
    Oped,
    OpedItem,
    OpedsSection,
    PhotosSection,
    QuotePart,
    StatementSection,
    StoriesSection,
    Story,
    TestimoniesPart,
    TestimoniesSection,
)

SUBJECT_MAX = 80


def lint_content(loaded: LoadedIssue, settings: NewsletterSettings) -> list[Problem]:
    """Every content problem of an issue that already passed schema validation, in file order."""
    problems = [*_issue_fields(loaded), *_sections(loaded), *_repeated_titles(loaded)]
    problems.extend(_duplicate_links(loaded))
    problems.sort(key=lambda problem: (problem.line, problem.column))
    return problems


def _issue_fields(loaded: LoadedIssue) -> Iterator[Problem]:
    issue, source = loaded.issue, loaded.source
    if not issue.subject:
        yield source.problem(("subject",), "subject is empty")
    elif len(issue.subject) > SUBJECT_MAX:
        yield source.problem(
            ("subject",),
            f"subject is {len(issue.subject)} characters; keep it within {SUBJECT_MAX} "
            "so inboxes do not cut it off",
        )
    if not issue.preheader:
        yield source.problem(
            ("preheader",), "preheader is empty; inboxes would show the first body text instead"
        )
    if not issue.title:
        yield source.problem(("title",), "title is empty")
    if not issue.sections:
        yield source.problem(("sections",), "the issue has no sections")


def _image(image: Image, at: FieldPath, source: SourceMap) -> Iterator[Problem]:
    if not image.alt:
        yield source.problem(
            (*at, "alt"), "image has no alt text; screen readers and image-blocking clients need it"
        )


def _story(story: Story, at: FieldPath, source: SourceMap) -> Iterator[Problem]:
    if not story.headline:
        yield source.problem((*at, "headline"), "headline is empty")
    if story.image:
        yield from _image(story.image, (*at, "image"), source)
    if story.quote and not story.quote.text:
        yield source.problem((*at, "quote", "text"), "quote is empty")
    for n, part in enumerate(story.body):
        if isinstance(part, ImagePart):
            yield from _image(part.image, (*at, "body", n, "image"), source)
        elif isinstance(part, QuotePart) and not part.quote.text:
            yield source.problem((*at, "body", n, "quote", "text"), "quote is empty")


def _repeated_titles(loaded: LoadedIssue) -> Iterator[Problem]:
    """Two sections in a row with one title read as one split in two: an op-ed or testimonies can
    go inside a stories section (``- oped:``, a ``testimonies`` body part) instead."""
    sections = loaded.issue.sections
    for index in range(1, len(sections)):
        title = getattr(sections[index], "title", "")
        if title and title.casefold() == getattr(sections[index - 1], "title", "").casefold():
            yield loaded.source.problem(
                ("sections", index, "title"),
                f"the section before has the same title {title!r}; merge them (an op-ed or testimonies "
                "can stand inside a stories section)",
                severity="warning",
            )


def _sections(loaded: LoadedIssue) -> Iterator[Problem]:
    source = loaded.source
    for index, section in enumerate(loaded.issue.sections):
        at: FieldPath = ("sections", index)
        empty = f"empty {section.kind} section"
        if isinstance(section, HeadlinesSection):
            if not section.items:
                yield source.problem((*at, "items"), empty)
            for n, headline in enumerate(section.items):
                if not headline.text:
                    yield source.problem((*at, "items", n, "text"), "headline is empty")
        elif isinstance(section, StatementSection):
            if not section.body and not (section.actions and section.actions.items):
                yield source.problem((*at, "body"), empty)
        elif isinstance(section, StoriesSection):
            if not section.stories:
                yield source.problem((*at, "stories"), empty)
            for n, item in enumerate(section.stories):
                if isinstance(item, Story):
                    yield from _story(item, (*at, "stories", n), source)
                elif not item.oped.title:
                    yield source.problem((*at, "stories", n, "oped", "title"), "op-ed title is empty")
        elif isinstance(section, PhotosSection):
            if not section.photos:
                yield source.problem((*at, "photos"), empty)
            for n, photo in enumerate(section.photos):
                yield from _image(photo, (*at, "photos", n), source)
                if not photo.caption:
                    yield source.problem((*at, "photos", n, "caption"), "photo has no caption")
                if not photo.credit:
                    yield source.problem((*at, "photos", n, "credit"), "photo has no credit")
        elif isinstance(section, FigureSection):
            if not section.value or not section.text:
                yield source.problem(at, f"{empty}: it needs both value and text")
        elif isinstance(section, OpedsSection | TestimoniesSection) and not section.items:
            yield source.problem((*at, "items"), empty)


def _links(loaded: LoadedIssue) -> Iterator[tuple[str, FieldPath]]:
    """Every URL a reader can click, with where it was written (Markdown links excluded)."""
    for index, section in enumerate(loaded.issue.sections):
        at: FieldPath = ("sections", index)
        if isinstance(section, HeadlinesSection):
            for n, headline in enumerate(section.items):
                if headline.url:
                    yield headline.url, (*at, "items", n, "url")
        elif isinstance(section, StoriesSection):
            for n, item in enumerate(section.stories):
                if isinstance(item, OpedItem):
                    yield from _oped_links(item.oped, (*at, "stories", n, "oped"))
                    continue
                if item.url:
                    yield item.url, (*at, "stories", n, "url")
                for m, part in enumerate(item.body):
                    if isinstance(part, TestimoniesPart):
                        for k, testimony in enumerate(part.testimonies):
                            if testimony.url:
                                yield testimony.url, (*at, "stories", n, "body", m, "testimonies", k, "url")
                for m, link in enumerate(item.links):
                    yield link.url, (*at, "stories", n, "links", m, "url")
        elif isinstance(section, OpedsSection):
            for n, oped in enumerate(section.items):
                yield from _oped_links(oped, (*at, "items", n))
        elif isinstance(section, TestimoniesSection):
            for n, testimony in enumerate(section.items):
                if testimony.url:
                    yield testimony.url, (*at, "items", n, "url")
        elif isinstance(section, FigureSection) and section.url:
            yield section.url, (*at, "url")


def _oped_links(oped: Oped, at: FieldPath) -> Iterator[tuple[str, FieldPath]]:
    if oped.url:
        yield oped.url, (*at, "url")


def _duplicate_links(loaded: LoadedIssue) -> Iterator[Problem]:
    first_seen: dict[str, FieldPath] = {}
    for url, at in _links(loaded):
        key = url.rstrip("/")
        if key in first_seen:
            where = loaded.source.locate(first_seen[key])
            yield loaded.source.problem(
                at, f"duplicate link {url} (also at line {where.line})", severity="warning"
            )
        else:
            first_seen[key] = at
