"""YAML issue file -> :class:`Issue`, with every error located as ``path:line:column: field: message``.

PyYAML's composer keeps the position of every node, so we build the plain data ourselves from the
node tree and remember where each value came from. Pydantic then validates the whole document at
once, and each of its errors is mapped back to the line of the offending key or value. Nothing is
written anywhere: loading is pure.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from markdown_it import MarkdownIt
from pydantic import ValidationError

from newsletter.content.model import SECTION_KINDS, Issue
from newsletter.errors import BadInput

FieldPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Position:
    line: int
    column: int


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an issue file, located well enough for an editor to jump to it."""

    path: str
    line: int
    column: int
    field: str
    message: str
    severity: str = "error"

    def __str__(self) -> str:
        where = f"{self.path}:{self.line}:{self.column}"
        return f"{where}: {self.field}: {self.message}" if self.field else f"{where}: {self.message}"

    def as_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "line": self.line,
            "column": self.column,
            "field": self.field,
            "message": self.message,
            "severity": self.severity,
        }


class IssueFileError(BadInput):
    """A malformed issue file; carries every problem found, not just the first."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(problem) for problem in problems))


@dataclass(frozen=True)
class SourceMap:
    """Where each field of the document was written; used by the loader and by ``check``."""

    path: str
    positions: dict[FieldPath, Position] = field(default_factory=dict)

    def locate(self, field_path: FieldPath) -> Position:
        """The position of the field, or of its nearest written ancestor (a missing key)."""
        for end in range(len(field_path), -1, -1):
            found = self.positions.get(tuple(field_path[:end]))
            if found is not None:
                return found
        return Position(1, 1)

    def problem(self, field_path: FieldPath, message: str, severity: str = "error") -> Problem:
        where = self.locate(field_path)
        return Problem(self.path, where.line, where.column, dotted(field_path), message, severity)


@dataclass(frozen=True)
class LoadedIssue:
    issue: Issue
    source: SourceMap


def dotted(field_path: FieldPath) -> str:
    """``("sections", 2, "stories", 0, "url")`` -> ``sections[2].stories[0].url``."""
    out = ""
    for part in field_path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else part)
    return out


class _Builder:
    """Turns a composed YAML node tree into plain data plus a position for every field path."""

    def __init__(self, path: str):
        self.path = path
        self.constructor = yaml.SafeLoader("")
        self.positions: dict[FieldPath, Position] = {}
        self.problems: list[Problem] = []

    def build(self, node: yaml.Node, at: FieldPath) -> Any:
        self.positions.setdefault(at, _position(node))
        if isinstance(node, yaml.MappingNode):
            result: dict[str, Any] = {}
            for key_node, value_node in node.value:
                key = self.constructor.construct_object(key_node, deep=True)
                if not isinstance(key, str):
                    self._problem(key_node, at, f"keys must be text, got {key!r}")
                    continue
                if key in result:
                    self._problem(key_node, (*at, key), "duplicate key")
                    continue
                self.positions[(*at, key)] = _position(key_node)
                result[key] = self.build(value_node, (*at, key))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*at, index)) for index, item in enumerate(node.value)]
        return self.constructor.construct_object(node, deep=True)

    def _problem(self, node: yaml.Node, at: FieldPath, message: str) -> None:
        where = _position(node)
        self.problems.append(Problem(self.path, where.line, where.column, dotted(at), message))


def _position(node: yaml.Node) -> Position:
    return Position(node.start_mark.line + 1, node.start_mark.column + 1)


def _message(error: Any, field_path: FieldPath) -> str:
    kind = error["type"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field"
    if kind in ("union_tag_invalid", "union_tag_not_found"):
        found = error.get("input", {}).get("kind") if isinstance(error.get("input"), dict) else None
        allowed = ", ".join(SECTION_KINDS)
        if found is None:
            return f"section needs a 'kind' (one of: {allowed})"
        return f"unknown section kind {found!r} (expected one of: {allowed})"
    message = str(error["msg"])
    return message.removeprefix("Value error, ")


def _field_path(loc: tuple[Any, ...]) -> FieldPath:
    """Pydantic puts the union tag into ``loc`` (``sections.3.photos.photos.0``); drop it."""
    out: list[str | int] = []
    for index, part in enumerate(loc):
        after_section = index == 2 and loc[0] == "sections" and isinstance(loc[1], int)
        if after_section and part in SECTION_KINDS:
            continue
        out.append(part)
    return tuple(out)


def _markdown_links(text: str) -> Iterator[str]:
    for token in _LINK_FINDER.parseInline(text):
        for child in token.children or []:
            if child.type == "link_open":
                yield str(child.attrs.get("href", ""))


_LINK_FINDER = MarkdownIt("zero").enable(["link", "autolink"])
# Report bad links instead of letting the parser drop them silently.
_LINK_FINDER.validateLink = lambda url: True  # type: ignore[method-assign]
_MARKDOWN_FIELDS = {"summary", "body", "intro", "bullets", "items", "text", "excerpt", "caption"}


def _check_markdown_links(data: Any, at: FieldPath, source: SourceMap) -> Iterator[Problem]:
    """Links written inside Markdown must be absolute http(s) URLs too."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _check_markdown_links(value, (*at, key), source)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _check_markdown_links(value, (*at, index), source)
    elif isinstance(data, str) and ("](" in data or "<" in data):
        names = {part for part in at if isinstance(part, str)}
        if names & _MARKDOWN_FIELDS:
            for href in _markdown_links(data):
                if not href.startswith(("http://", "https://")):
                    yield source.problem(at, f"link must be an absolute http(s) URL, got {href!r}")


def load_issue_text(text: str, path: str) -> LoadedIssue:
    """Parse and validate an issue document; raise :class:`IssueFileError` with every problem."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = f"YAML syntax error: {exc.problem or exc.context}"
        raise IssueFileError([Problem(path, line, column, "", message)]) from None
    except yaml.YAMLError as exc:
        raise IssueFileError([Problem(path, 1, 1, "", f"YAML error: {exc}")]) from None
    if node is None:
        raise IssueFileError([Problem(path, 1, 1, "", "the file is empty")])
    builder = _Builder(path)
    try:
        data = builder.build(node, ())
    except yaml.YAMLError as exc:
        raise IssueFileError([Problem(path, 1, 1, "", f"YAML error: {exc}")]) from None
    source = SourceMap(path, builder.positions)
    problems = list(builder.problems)
    if not isinstance(data, dict):
        problems.append(Problem(path, 1, 1, "", "an issue file must be a mapping of fields"))
        raise IssueFileError(problems)
    issue: Issue | None = None
    try:
        issue = Issue.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            field_path = _field_path(tuple(error["loc"]))
            problems.append(source.problem(field_path, _message(error, field_path)))
    problems.extend(_check_markdown_links(data, (), source))
    if problems or issue is None:
        problems.sort(key=lambda problem: (problem.line, problem.column))
        raise IssueFileError(problems)
    return LoadedIssue(issue, source)


def load_issue(path: Path) -> LoadedIssue:
    """Read an issue file; unreadable or undecodable files are located errors too."""
    shown = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise IssueFileError([Problem(shown, 1, 1, "", "no such file")]) from None
    except UnicodeDecodeError as exc:
        message = f"not UTF-8 text (byte {exc.start})"
        raise IssueFileError([Problem(shown, 1, 1, "", message)]) from None
    except OSError as exc:
        raise IssueFileError([Problem(shown, 1, 1, "", exc.strerror or str(exc))]) from None
    return load_issue_text(text, shown)
