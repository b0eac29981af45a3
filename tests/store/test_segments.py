"""Segment expressions: grammar, errors with positions, and SQL rather than Python filtering."""

from __future__ import annotations

import pytest

from newsletter.store.models import SubscriberStatus
from newsletter.store.segments import (
    And,
    Not,
    Or,
    SegmentError,
    StatusIs,
    TagIs,
    compile_segment,
    parse_segment,
)
from newsletter.store.subscribers import audience


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
