"""Segment expressions: ``tag:press and not (tag:staff or status:pending)``.

An expression is parsed into a small tree and compiled to one SQLAlchemy boolean clause over
``subscribers``, so the database does the filtering; nothing loads the list into Python. ``tag:x``
is an ``EXISTS`` on ``subscriber_tags`` (served by its ``(tag_id, subscriber_id)`` index).

Grammar (keywords are case-insensitive; ``not`` binds tighter than ``and``, ``and`` than ``or``)::

    expr := term ("or" term)*        term := factor ("and" factor)*
    factor := "not" factor | "(" expr ")" | "tag:" NAME | "status:" STATUS | "all"

Expressions come from the command line and from saved audiences, so they are bounded before any
recursion: at most ``MAX_LENGTH`` characters and ``MAX_DEPTH`` levels of parentheses and ``not``.
Within those bounds a flat ``tag:a or tag:b or ...`` is one list, which SQLAlchemy compiles without
recursing per operand, and the tags of one ``and`` or ``or`` list become one subquery (see
:func:`_compile`), so a long list costs the database one lookup, not one per tag.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, and_, exists, func, not_, or_, select, true

from newsletter.errors import BadInput
from newsletter.store.models import TAG_MAX, Subscriber, SubscriberStatus, SubscriberTag, Tag

__all__ = [
    "SegmentError",
    "audience_filter",
    "compile_segment",
    "has_all_tags",
    "has_any_tag",
    "has_tag",
    "normalize_tag",
    "parse_segment",
]

MAX_LENGTH = 2000  # characters; a real segment is a line or two
MAX_DEPTH = 32  # parentheses and 'not' inside each other; the parser recurses once or thrice per level
_ERROR_CONTEXT = 60  # characters of the expression shown on each side of the caret

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
        self.depth = 0

    def error(self, message: str, pos: int | None = None) -> SegmentError:
        """The message, the 1-based position, and the expression (a window of a long one) with a caret."""
        at = len(self.source) if pos is None else pos
        start = max(0, at - _ERROR_CONTEXT)
        end = min(len(self.source), at + _ERROR_CONTEXT)
        prefix = "..." if start > 0 else ""
        shown = prefix + self.source[start:end] + ("..." if end < len(self.source) else "")
        caret = " " * (len(prefix) + at - start) + "^"
        return SegmentError(f"segment: {message} at position {at + 1}\n  {shown}\n  {caret}")

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
        if token.text.lower() == "not" or token.text == "(":
            return self.nested(token)
        self.index += 1
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

    def nested(self, token: _Token) -> Node:
        """``not factor`` or ``( expr )``, one level deeper; refused past ``MAX_DEPTH`` before recursing."""
        self.depth += 1
        if self.depth > MAX_DEPTH:
            message = f"nested more than {MAX_DEPTH} levels deep (parentheses and 'not' count; the limit)"
            raise self.error(message, token.pos)
        self.index += 1
        node = Not(self.factor()) if token.text != "(" else self.group()
        self.depth -= 1
        return node

    def group(self) -> Node:
        node = self.expr()
        closing = self.peek()
        if closing is None or closing.text != ")":
            where = None if closing is None else closing.pos
            raise self.error("missing ')'", where)
        self.index += 1
        return node


def parse_segment(source: str) -> Node:
    """Parse a segment expression; :class:`SegmentError` (exit 2) names the position of a mistake."""
    if len(source) > MAX_LENGTH:
        raise SegmentError(
            f"segment: the expression is {len(source):,} characters long; the limit is {MAX_LENGTH:,}"
        )
    return _Parser(source).parse()


def has_tag(name: str) -> ColumnElement[bool]:
    return exists().where(
        SubscriberTag.subscriber_id == Subscriber.id,
        SubscriberTag.tag_id == select(Tag.id).where(Tag.name == name).scalar_subquery(),
    )


def has_any_tag(names: Sequence[str]) -> ColumnElement[bool]:
    """``tag:a or tag:b or ...`` as one ``EXISTS``, however many tags: see :func:`_compile`."""
    wanted = sorted(set(names))
    if len(wanted) == 1:
        return has_tag(wanted[0])
    return exists().where(
        SubscriberTag.subscriber_id == Subscriber.id,
        SubscriberTag.tag_id.in_(select(Tag.id).where(Tag.name.in_(wanted))),
    )


def has_all_tags(names: Sequence[str]) -> ColumnElement[bool]:
    """``tag:a and tag:b and ...`` as one subquery: the subscribers holding every one of the tags."""
    wanted = sorted(set(names))
    if len(wanted) == 1:
        return has_tag(wanted[0])
    holders = (
        select(SubscriberTag.subscriber_id)
        .join(Tag, Tag.id == SubscriberTag.tag_id)
        .where(Tag.name.in_(wanted))
        .group_by(SubscriberTag.subscriber_id)
        .having(func.count() == len(wanted))
    )
    return Subscriber.id.in_(holders)


def _compile(node: Node) -> ColumnElement[bool]:
    """The WHERE clause of a parsed expression, shaped so the query planner's work stays small.

    PostgreSQL turns every ``EXISTS`` that is and-ed at the top into a semi-join and plans them all
    together: 80 of them took it two seconds to plan, 120 took eleven. So the tags of one ``and``
    or ``or`` list (nested parentheses of the same operator flattened, double ``not`` dropped)
    become one subquery, however long the list.
    """
    if isinstance(node, TagIs):
        return has_tag(node.name)
    if isinstance(node, StatusIs):
        return Subscriber.status == node.status
    if isinstance(node, Everyone):
        return true()
    if isinstance(node, Not):
        inner = node.operand
        return _compile(inner.operand) if isinstance(inner, Not) else not_(_compile(inner))
    return _compile_list(node)


def _compile_list(node: And | Or) -> ColumnElement[bool]:
    operands = _flattened(node)
    tags = [operand.name for operand in operands if isinstance(operand, TagIs)]
    negated = [_negated_tag(operand) for operand in operands if _negated_tag(operand)]
    rest = [operand for operand in operands if not (isinstance(operand, TagIs) or _negated_tag(operand))]
    clauses = [_compile(operand) for operand in rest]
    if isinstance(node, And):
        # a and b and not c and not d  ==  (has a and b) and not (has c or d)
        clauses += [has_all_tags(tags)] if tags else []
        clauses += [not_(has_any_tag(negated))] if negated else []
        return and_(*clauses)
    # a or b or not c or not d  ==  (has a or b) or not (has c and d)
    clauses += [has_any_tag(tags)] if tags else []
    clauses += [not_(has_all_tags(negated))] if negated else []
    return or_(*clauses)


def _flattened(node: And | Or) -> list[Node]:
    """``a and (b and c)`` -> ``[a, b, c]``; depth is bounded by the parser, so recursion is too."""
    out: list[Node] = []
    for operand in node.operands:
        while isinstance(operand, Not) and isinstance(operand.operand, Not):
            operand = operand.operand.operand
        if isinstance(operand, type(node)):
            out.extend(_flattened(operand))
        else:
            out.append(operand)
    return out


def _negated_tag(node: Node) -> str:
    """The tag of ``not tag:x``, or ``""``."""
    return node.operand.name if isinstance(node, Not) and isinstance(node.operand, TagIs) else ""


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
    if tags:
        clauses.append(has_all_tags([normalize_tag(tag) for tag in tags]))
    if segment:
        clauses.append(compile_segment(segment))
    return and_(true(), *clauses)
