"""Segment expressions: grammar, errors with positions, and SQL rather than Python filtering."""

from __future__ import annotations

import itertools
import random

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from newsletter.store.models import Subscriber, SubscriberStatus
from newsletter.store.segments import (
    MAX_DEPTH,
    MAX_LENGTH,
    And,
    Node,
    Not,
    Or,
    SegmentError,
    StatusIs,
    TagIs,
    audience_filter,
    compile_segment,
    parse_segment,
)
from newsletter.store.subscribers import SubscriberRepository, audience


def test_precedence_not_and_or() -> None:
    assert parse_segment("tag:a or tag:b and not tag:c") == Or(
        (TagIs("a"), And((TagIs("b"), Not(TagIs("c")))))
    )
    assert parse_segment("(tag:a or tag:b) and status:Pending") == And(
        (Or((TagIs("a"), TagIs("b"))), StatusIs(SubscriberStatus.PENDING))
    )


@pytest.mark.parametrize(
    ("source", "position", "message"),
    [
        ("tag:press and", 14, "ends too early"),
        ("tag:press and not (tag:x", 25, "missing ')'"),
        ("tag:a tag:b", 7, "unexpected 'tag:b'"),
        ("status:gone", 8, "unknown status 'gone'"),
        ("tag:no!good", 5, "invalid tag"),
        ("press", 1, "expected tag:NAME"),
        ("", 1, "empty expression"),
    ],
)
def test_syntax_errors_name_the_position(source: str, position: int, message: str) -> None:
    with pytest.raises(SegmentError) as caught:
        parse_segment(source)
    assert f"at position {position}" in str(caught.value)
    assert message in str(caught.value)
    assert caught.value.exit_code == 2


def test_segments_compile_to_sql_exists_subqueries() -> None:
    sql = str(audience("tag:press and not tag:staff").compile())
    assert "EXISTS" in sql and "subscriber_tags" in sql and "NOT" in sql
    compiled = compile_segment("status:pending").compile()
    assert "subscribers.status = :status_1" in str(compiled)
    assert compiled.params["status_1"] == "pending"


def test_limits_are_named_in_their_errors() -> None:
    with pytest.raises(SegmentError, match=f"the limit is {MAX_LENGTH:,}"):
        parse_segment("tag:a or " * (MAX_LENGTH // 9) + "tag:b")
    with pytest.raises(SegmentError, match=f"nested more than {MAX_DEPTH} levels deep") as caught:
        parse_segment("not " * (MAX_DEPTH + 1) + "tag:a")
    assert caught.value.exit_code == 2


def _longest_flat(operator: str) -> str:
    """``tag:t0 or tag:t1 or ...`` as long as the length limit allows, the widest clause there is."""
    parts = [f"tag:t{index}" for index in range(MAX_LENGTH)]
    while len(f" {operator} ".join(parts)) > MAX_LENGTH:
        parts.pop()
    return f" {operator} ".join(parts)


@pytest.mark.parametrize(
    ("segment", "expected"),
    [
        (_longest_flat("or"), {"a", "b"}),  # a has t5, b has t150
        (_longest_flat("and"), set()),
        ("not " * MAX_DEPTH + "tag:t5", {"a"}),
        ("(not " * (MAX_DEPTH // 2) + "tag:t5" + ")" * (MAX_DEPTH // 2), {"a"}),
        ("(" * MAX_DEPTH + "tag:t5 or tag:t150" + ")" * MAX_DEPTH, {"a", "b"}),
    ],
    ids=["widest-or", "widest-and", "deepest-not", "deepest-mixed", "deepest-parentheses"],
)
def test_the_widest_and_deepest_segments_run_on_the_database(
    repo: SubscriberRepository, session: Session, segment: str, expected: set[str]
) -> None:
    """What the limits allow must still compile and run on SQLite and PostgreSQL."""
    assert len(segment) <= MAX_LENGTH
    repo.add("a@example.com", tags=["t5"])
    repo.add("b@example.com", tags=["t150"])
    repo.add("c@example.com")
    session.commit()
    ids = set(session.scalars(audience(segment)))
    emails = set(session.scalars(select(Subscriber.email).where(Subscriber.id.in_(ids))))
    assert emails == {f"{name}@example.com" for name in expected}


def _holds(node: Node, tags: set[str], status: SubscriberStatus) -> bool:
    """What an expression means, in Python: the reference the compiled SQL must agree with."""
    if isinstance(node, TagIs):
        return node.name in tags
    if isinstance(node, StatusIs):
        return node.status == status
    if isinstance(node, Not):
        return not _holds(node.operand, tags, status)
    if isinstance(node, And):
        return all(_holds(operand, tags, status) for operand in node.operands)
    if isinstance(node, Or):
        return any(_holds(operand, tags, status) for operand in node.operands)
    return True


def _random_segment(rng: random.Random, depth: int = 0) -> str:
    roll = rng.random()
    if depth >= 3 or roll < 0.35:
        return rng.choice(["tag:a", "tag:b", "tag:c", "tag:d", "status:pending", "status:active", "all"])
    if roll < 0.5:
        return rng.choice(["not ", "not not "]) + _random_segment(rng, depth + 1)
    operator = rng.choice([" and ", " or "])
    operands = [_random_segment(rng, depth + 1) for _ in range(rng.randint(2, 5))]
    return "(" + operator.join(operands) + ")"


def test_compiled_segments_match_their_meaning(repo: SubscriberRepository, session: Session) -> None:
    """Tag lists are merged into single subqueries when compiled; random expressions check the merge."""
    people: dict[str, tuple[set[str], SubscriberStatus]] = {}
    for index, subset in enumerate(itertools.product([False, True], repeat=4)):
        tags = {name for name, present in zip("abcd", subset, strict=True) if present}
        status = SubscriberStatus.PENDING if index % 3 == 0 else SubscriberStatus.ACTIVE
        email = f"p{index}@example.com"
        repo.add(email, tags=sorted(tags), status=status)
        people[email] = (tags, status)
    session.commit()
    rng = random.Random(20261127)
    for _ in range(80):
        source = _random_segment(rng)
        node = parse_segment(source)
        expected = {email for email, (tags, status) in people.items() if _holds(node, tags, status)}
        found = set(session.scalars(select(Subscriber.email).where(audience_filter(segment=source))))
        assert found == expected, source
