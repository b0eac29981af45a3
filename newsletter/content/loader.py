"""YAML issue file -> :class:`Issue`, with every error located as ``path:line:column: field: message``.

PyYAML's composer keeps the position of every node, so we build the plain data ourselves from the
node tree and remember where each value came from. Pydantic then validates the whole document at
once, and each of its errors is mapped back to the line of the offending key or value. Nothing is
written anywhere: loading reads the file and the headers of the local images it names with
``file`` (for their size), nothing else.

Issue files come from many hands, so the loader also defends itself before and while parsing: a size
cap, no aliases (a few hundred bytes of nested aliases expand to gigabytes), a nesting limit checked
while composing (so nothing deep is ever recursed into), and no control characters in any text.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import yaml
from markdown_it import MarkdownIt
from pydantic import ValidationError

from newsletter.content.image_size import ImageFileError, pixel_size
from newsletter.content.model import SECTION_KINDS, UNION_TAGS, Issue
from newsletter.errors import BadInput
from newsletter.urls import http_url

FieldPath = tuple[str | int, ...]

MAX_ISSUE_BYTES = 1024 * 1024  # the longest real issue is about 20 KB
MAX_DEPTH = 20  # collections inside collections; real issues use 7
MAX_NUMBER_CHARS = 100  # a longer integer is an attack on int(), not a figure

# C0 and C1 controls but tab and newline, DEL, lone surrogates and the 66 Unicode non-characters:
# none belongs in an email, and the MJML compiler fails on them without naming the field.
_NONCHARACTERS = r"\ufdd0-\ufdef" + "".join(rf"\U{plane:04X}FFFE\U{plane:04X}FFFF" for plane in range(17))
_FORBIDDEN_CHAR = re.compile(rf"[\x00-\x08\x0b-\x1f\x7f-\x9f\ud800-\udfff{_NONCHARACTERS}]")
_INT_TAG = "tag:yaml.org,2002:int"


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


class _IssueLoader(yaml.SafeLoader):
    """A safe loader whose composer refuses aliases and deep nesting before building anything.

    Aliases are refused where they are met, so the shared subtrees of a "billion laughs" file are
    never expanded; depth is counted on the way down, so a file nested 900 deep fails at level
    ``MAX_DEPTH + 1`` instead of deep in Python's recursion. Errors carry the field path so far.
    """

    def __init__(self, text: str, path: str):
        super().__init__(text)
        self.path = path
        self.field_path: list[str | int] = []
        self.depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        part = _path_part(parent, index)
        if part is not None:
            self.field_path.append(part)
        if self.check_event(yaml.AliasEvent):
            self._refuse("aliases (*name) are not allowed in issue files; write the value out")
        nested = int(self.check_event(yaml.SequenceStartEvent, yaml.MappingStartEvent))
        self.depth += nested
        if self.depth > MAX_DEPTH:
            self._refuse(f"nested more than {MAX_DEPTH} levels deep (the limit for an issue file)")
        node = super().compose_node(parent, index)
        self.depth -= nested
        if part is not None:
            self.field_path.pop()
        return node

    def _refuse(self, message: str) -> NoReturn:
        mark = self.peek_event().start_mark
        problem = Problem(self.path, mark.line + 1, mark.column + 1, dotted(tuple(self.field_path)), message)
        raise IssueFileError([problem])


def _path_part(parent: yaml.Node | None, index: Any) -> str | int | None:
    """The field-path step to a child node: a list index, a text key, or none (the key itself)."""
    if isinstance(parent, yaml.SequenceNode):
        return int(index)
    if isinstance(index, yaml.ScalarNode):
        return _FORBIDDEN_CHAR.sub("\ufffd", index.value)  # reported later; keep the terminal sane
    return None


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
                key = self._key(key_node, at)
                if key is None:
                    continue
                if key in result:
                    self._problem(key_node, (*at, key), "duplicate key")
                    continue
                self.positions[(*at, key)] = _position(key_node)
                result[key] = self.build(value_node, (*at, key))
            return result
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*at, index)) for index, item in enumerate(node.value)]
        assert isinstance(node, yaml.ScalarNode)
        return self._scalar(node, at)

    def _key(self, node: yaml.Node, at: FieldPath) -> str | None:
        """The text of a mapping key, or ``None`` (reported) if it cannot name a field."""
        if not isinstance(node, yaml.ScalarNode):
            self._problem(node, at, "keys must be text, not a list or mapping")
            return None
        bad = _FORBIDDEN_CHAR.search(node.value)
        if bad is not None:
            self._problem(node, at, f"key {node.value!r}: {_forbidden_message(node.value, bad.start())}")
            return None
        reported = len(self.problems)
        key = self._scalar(node, at)
        if len(self.problems) > reported:
            return None
        if not isinstance(key, str):
            self._problem(node, at, f"keys must be text, got {key!r}")
            return None
        return key

    def _scalar(self, node: yaml.ScalarNode, at: FieldPath) -> Any:
        """The scalar's value; a refused one is reported and replaced, so validation still runs."""
        text = str(node.value)
        bad = _FORBIDDEN_CHAR.search(text)
        if bad is not None:
            self._problem(node, at, _forbidden_message(text, bad.start()))
            return _FORBIDDEN_CHAR.sub("\ufffd", text)
        if node.tag == _INT_TAG and len(text) > MAX_NUMBER_CHARS:
            self._problem(node, at, f"a number may have at most {MAX_NUMBER_CHARS} characters (the limit)")
            return text
        try:
            return self.constructor.construct_object(node, deep=True)
        except Exception:  # PyYAML's constructors raise anything (KeyError, AttributeError) on odd input
            kind = node.tag.removeprefix("tag:yaml.org,2002:")
            self._problem(node, at, f"{_shorten(text)!r} is not a valid {kind}")
            return text

    def _problem(self, node: yaml.Node, at: FieldPath, message: str) -> None:
        where = _position(node)
        self.problems.append(Problem(self.path, where.line, where.column, dotted(at), message))


def _forbidden_message(text: str, offset: int) -> str:
    """Name the character by code point: printed as is, it would be invisible or break the terminal."""
    char = text[offset]
    where = f"U+{ord(char):04X} (character {offset + 1} of the text) is not allowed in an issue file"
    if unicodedata.category(char) == "Cc":
        return f"control character {where}; only tab and newline are"
    if unicodedata.category(char) == "Cs":
        return f"lone surrogate {where}"
    return f"Unicode non-character {where}"


def _shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


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
    """Pydantic puts union tags into ``loc`` (``sections.3.photos.photos.0``); drop them."""
    out: list[str | int] = []
    for index, part in enumerate(loc):
        if index >= 2 and isinstance(loc[index - 1], int) and part in UNION_TAGS.get(loc[index - 2], ()):
            continue
        out.append(part)
    return tuple(out)


def markdown_links(text: str) -> Iterator[str]:
    for token in _LINK_FINDER.parseInline(text):
        for child in token.children or []:
            if child.type == "link_open":
                yield str(child.attrs.get("href", ""))


_LINK_FINDER = MarkdownIt("zero").enable(["link", "autolink"])
# Report bad links instead of letting the parser drop them silently.
_LINK_FINDER.validateLink = lambda url: True  # type: ignore[method-assign]
MARKDOWN_FIELDS = {
    *("summary", "body", "intro", "bullets", "items", "text", "excerpt", "caption"),
    *("deck", "paragraph", "quote"),
}


def _check_markdown_links(data: Any, at: FieldPath, source: SourceMap) -> Iterator[Problem]:
    """Links written inside Markdown follow the same URL rule as the URL fields."""
    if isinstance(data, dict):
        for key, value in data.items():
            yield from _check_markdown_links(value, (*at, key), source)
    elif isinstance(data, list):
        for index, value in enumerate(data):
            yield from _check_markdown_links(value, (*at, index), source)
    elif isinstance(data, str) and ("](" in data or "<" in data):
        names = {part for part in at if isinstance(part, str)}
        if names & MARKDOWN_FIELDS:
            for href in markdown_links(data):
                try:
                    http_url(href)
                except ValueError as exc:
                    yield source.problem(at, f"link {exc}")


def _read_image_sizes(data: Any, at: FieldPath, source: SourceMap, issue_dir: Path) -> Iterator[Problem]:
    """Fill ``width`` and ``height`` of an image that names a local ``file`` and has neither."""
    if isinstance(data, list):
        for index, value in enumerate(data):
            yield from _read_image_sizes(value, (*at, index), source, issue_dir)
    elif isinstance(data, dict):
        name = data.get("file")
        if "src" in data and isinstance(name, str) and name and "width" not in data and "height" not in data:
            try:
                data["width"], data["height"] = pixel_size(name, issue_dir)
            except ImageFileError as exc:
                yield source.problem((*at, "file"), str(exc))
        for key, value in data.items():
            yield from _read_image_sizes(value, (*at, key), source, issue_dir)


def load_issue_text(text: str, path: str) -> LoadedIssue:
    """Parse and validate an issue document; raise :class:`IssueFileError` with every problem."""
    _check_size(_utf8_size(text), path)
    node = _compose(text, path)
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
    problems.extend(_read_image_sizes(data, (), source, Path(path).parent))
    # A field the builder already reported (a bad number, say) would only be reported again.
    reported = {problem.field for problem in problems}
    issue: Issue | None = None
    try:
        issue = Issue.model_validate(data)
    except ValidationError as exc:
        for error in exc.errors():
            field_path = _field_path(tuple(error["loc"]))
            if dotted(field_path) not in reported:
                problems.append(source.problem(field_path, _message(error, field_path)))
    problems.extend(_check_markdown_links(data, (), source))
    if problems or issue is None:
        problems.sort(key=lambda problem: (problem.line, problem.column))
        raise IssueFileError(problems)
    return LoadedIssue(issue, source)


def _compose(text: str, path: str) -> yaml.Node | None:
    """The node tree of the document, with YAML's own errors located."""
    try:
        loader = _IssueLoader(text, path)
    except yaml.reader.ReaderError as exc:  # a raw control character; PyYAML gives only an offset
        line = text.count("\n", 0, exc.position) + 1
        column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
        message = f"YAML error: character U+{exc.character:04X} is not allowed in YAML text"
        raise IssueFileError([Problem(path, line, column, "", message)]) from None
    try:
        return loader.get_single_node()
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line, column = (mark.line + 1, mark.column + 1) if mark else (1, 1)
        message = f"YAML syntax error: {exc.problem or exc.context}"
        raise IssueFileError([Problem(path, line, column, "", message)]) from None
    except yaml.YAMLError as exc:
        raise IssueFileError([Problem(path, 1, 1, "", f"YAML error: {exc}")]) from None
    finally:
        loader.dispose()


def _utf8_size(text: str) -> int:
    """The text's size in UTF-8; a text with more characters than the limit is not encoded to count."""
    return len(text) if len(text) > MAX_ISSUE_BYTES else len(text.encode("utf-8", "surrogatepass"))


def _check_size(size: int, path: str) -> None:
    """Refuse oversized input before parsing: PyYAML needs about 2.5 s per MiB, and more is no issue."""
    if size > MAX_ISSUE_BYTES:
        limit = f"{MAX_ISSUE_BYTES // 1024 // 1024} MiB ({MAX_ISSUE_BYTES:,} bytes)"
        raise IssueFileError(
            [Problem(path, 1, 1, "", f"the file is larger than {limit}, the limit for an issue file")]
        )


def load_issue(path: Path) -> LoadedIssue:
    """Read an issue file; unreadable, oversized or undecodable files are located errors too."""
    shown = str(path)
    try:
        with path.open("rb") as file:
            raw = file.read(MAX_ISSUE_BYTES + 1)  # never read more than the limit, whatever the file
    except FileNotFoundError:
        raise IssueFileError([Problem(shown, 1, 1, "", "no such file")]) from None
    except OSError as exc:
        raise IssueFileError([Problem(shown, 1, 1, "", exc.strerror or str(exc))]) from None
    _check_size(len(raw), shown)
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        message = f"not UTF-8 text (byte {exc.start})"
        raise IssueFileError([Problem(shown, 1, 1, "", message)]) from None
    return load_issue_text(text, shown)
