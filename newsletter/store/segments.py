"""Segment expressions: ``tag:press and not (tag:staff or status:pending)``.

An expression is parsed into a small tree and compiled to one SQLAlchemy boolean clause over
``subscribers``, so the database does the filtering; nothing loads the list into Python. ``tag:x``
is an ``EXISTS`` on ``subscriber_tags`` (served by its ``(tag_id, subscriber_id)`` index).

Grammar (keywords are case-insensitive; ``not`` binds tighter than ``and``, ``and`` than ``or``)::

    expr := term ("or" term)*        term := factor ("and" factor)*
    factor := "not" factor | "(" expr ")" | "tag:" NAME | "status:" STATUS | "all"
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, exists, not_, or_, select, true

from newsletter.errors import BadInput
from newsletter.store.models import TAG_MAX, Subscriber, SubscriberStatus, SubscriberTag, Tag

__all__ = [
    "SegmentError",
    "audience_filter",
    "compile_segment",
    "has_tag",
    "normalize_tag",
    "parse_segment",
]

_TAG_RE = re.compile(rf"[a-z0-9][a-z0-9_.\-]{{0,{TAG_MAX - 1}}}")
_TOKEN = re.compile(r"\s*(?:(?P<punct>[()])|(?P<word>[^\s()]+))")


class SegmentError(BadInput):
    """A segment expression that does not parse; the message shows the position."""


def normalize_tag(name: str) -> str:
    """Lower-case and check a tag name: letters, digits, ``_ . -``, at most 64 characters."""
    tag = name.strip().lower()
    if not _TAG_RE.fullmatch(tag):
        raise BadInput(
            f"invalid tag {name!r}: use letters, digits, '_', '.' or '-' "
            f"(starting with a letter or digit, at most {TAG_MAX} characters)"
        )
    return tag


@dataclass(frozen=True)
class TagIs:
    name: str


@dataclass(frozen=True)
class StatusIs:
    status: SubscriberStatus


@dataclass(frozen=True)
class Everyone:
    pass


@dataclass(frozen=True)
class Not:
    operand: Node


@dataclass(frozen=True)
class And:
    operands: tuple[Node, ...]


@dataclass(frozen=True)
class Or:
    operands: tuple[Node, ...]


Node = TagIs | StatusIs | Everyone | Not | And | Or


@dataclass(frozen=True)
class _Token:
    text: str
    pos: int  # 0-based offset into the expression


class _Parser:
    def __init__(self, source: str) -> None:
        self.source = source
        self.tokens: list[_Token] = []
        pos = 0
        while pos < len(source):
            match = _TOKEN.match(source, pos)
            if match is None:  # only trailing white space is left
                break
            start = match.start("punct") if match.group("punct") else match.start("word")
            self.tokens.append(_Token(match.group("punct") or match.group("word"), start))
            pos = match.end()
        self.index = 0

    def error(self, message: str, pos: int | None = None) -> SegmentError:
        at = len(self.source) if pos is None else pos
        return SegmentError(f"segment: {message} at position {at + 1}\n  {self.source}\n  {' ' * at}^")

    def peek(self) -> _Token | None:
        return self.tokens[self.index] if self.index < len(self.tokens) else None

    def keyword(self, word: str) -> bool:
        token = self.peek()
        if token is not None and token.text.lower() == word:
            self.index += 1
            return True
        return False

    def parse(self) -> Node:
        if not self.tokens:
            raise self.error("empty expression", 0)
        node = self.expr()
        token = self.peek()
        if token is not None:
            raise self.error(f"unexpected {token.text!r}", token.pos)
        return node

    def expr(self) -> Node:
        operands = [self.term()]
        while self.keyword("or"):
            operands.append(self.term())
        return operands[0] if len(operands) == 1 else Or(tuple(operands))

    def term(self) -> Node:
        operands = [self.factor()]
        while self.keyword("and"):
            operands.append(self.factor())
        return operands[0] if len(operands) == 1 else And(tuple(operands))

    def factor(self) -> Node:
        token = self.peek()
        if token is None:
            raise self.error("expression ends too early; expected tag:NAME, status:NAME or '('")
        if self.keyword("not"):
            return Not(self.factor())
        self.index += 1
        if token.text == "(":
            node = self.expr()
            closing = self.peek()
            if closing is None or closing.text != ")":
                where = None if closing is None else closing.pos
                raise self.error("missing ')'", where)
            self.index += 1
            return node
        kind, colon, value = token.text.partition(":")
        kind = kind.lower()
        if colon and kind == "tag":
            try:
                return TagIs(normalize_tag(value))
            except BadInput as exc:
                raise self.error(str(exc), token.pos + 4) from None
        if colon and kind == "status":
            try:
                return StatusIs(SubscriberStatus(value.lower()))
            except ValueError:
                choices = ", ".join(s.value for s in SubscriberStatus)
                message = f"unknown status {value!r} (one of {choices})"
                raise self.error(message, token.pos + 7) from None
        if token.text.lower() == "all":
            return Everyone()
        raise self.error(f"expected tag:NAME, status:NAME, 'not' or '(', got {token.text!r}", token.pos)


def parse_segment(source: str) -> Node:
    """Parse a segment expression; :class:`SegmentError` (exit 2) names the position of a mistake."""
    return _Parser(source).parse()


def has_tag(name: str) -> ColumnElement[bool]:
    return exists().where(
        SubscriberTag.subscriber_id == Subscriber.id,
        SubscriberTag.tag_id == select(Tag.id).where(Tag.name == name).scalar_subquery(),
    )


def _compile(node: Node) -> ColumnElement[bool]:
    if isinstance(node, TagIs):
        return has_tag(node.name)
    if isinstance(node, StatusIs):
        return Subscriber.status == node.status
    if isinstance(node, Everyone):
        return true()
    if isinstance(node, Not):
        return not_(_compile(node.operand))
    if isinstance(node, And):
        return and_(*(_compile(operand) for operand in node.operands))
    return or_(*(_compile(operand) for operand in node.operands))


def compile_segment(source: str) -> ColumnElement[bool]:
    """A WHERE clause over ``subscribers`` for the expression."""
    return _compile(parse_segment(source))


def audience_filter(
    *,
    status: SubscriberStatus | None = None,
    tags: tuple[str, ...] | list[str] = (),
    segment: str | None = None,
) -> ColumnElement[bool]:
    """Combine the CLI's filters: a status, every one of ``tags``, and a segment expression."""
    clauses: list[ColumnElement[bool]] = []
    if status is not None:
        clauses.append(Subscriber.status == status)
    clauses.extend(has_tag(normalize_tag(tag)) for tag in tags)
    if segment:
        clauses.append(compile_segment(segment))
    return and_(true(), *clauses)
