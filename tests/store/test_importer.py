"""CSV import: bad rows, duplicates, normalisation, never-reactivate, encodings, kill and rerun."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from sqlalchemy import Engine, func, select
from sqlalchemy.orm import Session, selectinload

from newsletter.errors import BadInput
from newsletter.store.importer import ImportSummary, check_encoding, import_csv, rejects_path_for
from newsletter.store.models import Subscriber, SubscriberStatus, SubscriberTag, Suppression, Tag
from newsletter.store.privacy import address_hash
from newsletter.store.subscribers import SubscriberRepository


def run(engine: Engine, path: Path, **options) -> ImportSummary:
    with engine.connect() as conn:
        return import_csv(conn, path, **options)


def state(engine: Engine) -> dict[str, tuple]:
    """Everything an import may change, keyed by normalised address."""
    with Session(engine) as session:
        subscribers = session.scalars(select(Subscriber).options(selectinload(Subscriber.tags)))
        return {
            s.email_normalized: (
                s.email,
                s.name,
                s.status.value,
                tuple(t.name for t in s.tags),
                tuple(sorted(s.attributes.items())),
            )
            for s in subscribers
        }


def counts(summary: ImportSummary) -> tuple[int, int, int, dict[str, int]]:
    return summary.added, summary.updated, summary.unchanged, dict(summary.skipped)


def test_bad_rows_are_reported_by_line_and_the_rest_imports(engine: Engine, write_csv) -> None:
    path = write_csv(
        "email,name,tags,status\n"
        "ann@example.com,Ann,press,\n"
        "not-an-address,Bad,,\n"
        ",No address,,\n"
        '"multi@example.com","Two\nlines",,\n'
        "bob@example.com,Bob,Not A Tag!,\n"
        "carl@example.com,Carl,,retired\n"
        "dora@example.com,Dora,,,surplus\n"
        "\n"
        "eve@example.com,Eve,,\n"
    )
    summary = run(engine, path)
    assert [(r.line, r.reason.split(":")[0]) for r in summary.rejects] == [
        (3, "invalid address"),
        (4, "missing email"),
        (7, "invalid tag 'Not A Tag!'"),
        (8, "invalid status 'retired'"),
        (9, "5 fields, the header has 4 (extra"),
    ]
    assert summary.added == 3 and summary.invalid == 5
    assert set(state(engine)) == {"ann@example.com", "multi@example.com", "eve@example.com"}
    assert state(engine)["multi@example.com"][1] == "Two\nlines"
    assert summary.rejects_path == path.with_name("list.rejects.csv")
    with summary.rejects_path.open(encoding="utf-8", newline="") as handle:
        rejected = list(csv.DictReader(handle))
    assert [r["line"] for r in rejected] == ["3", "4", "7", "8", "9"]
    assert rejected[0]["email"] == "not-an-address" and rejected[0]["reason"]
    assert list(rejected[0]) == ["email", "name", "tags", "status", "line", "reason"]


def test_reimport_changes_nothing(engine: Engine, write_csv) -> None:
    path = write_csv("Email,Name,Tags,City\nann@example.com,Ann,press;vip,Paris\nbob@example.com,,,\n")
    assert counts(run(engine, path)) == (2, 0, 0, {})
    before = state(engine)
    assert counts(run(engine, path)) == (0, 0, 2, {})
    assert state(engine) == before
    assert before["ann@example.com"][3:] == (("press", "vip"), (("city", "Paris"),))
    assert not path.with_name("list.rejects.csv").exists()


def test_duplicates_within_a_file_and_across_chunks(engine: Engine, write_csv) -> None:
    path = write_csv(
        "email,name\n"
        "ann@example.com,Ann\n"
        "ANN@example.com,Second Ann\n"
        "bob@example.com,Bob\n"
        "carl@example.com,Carl\n"
        " Bob@Example.com ,Bob again\n"
    )
    summary = run(engine, path, chunk_size=2)  # line 6 duplicates line 4 from an earlier chunk
    assert counts(summary) == (3, 0, 0, {"duplicate in file": 2})
    reasons = {r.line: r.reason for r in _rejects(summary)}
    assert reasons == {3: "duplicate of line 2", 6: "duplicate of line 4"}
    assert state(engine)["ann@example.com"][1] == "Ann"  # the first occurrence wins


def test_reading_in_a_child_process_gives_the_same_result(engine: Engine, write_csv, tmp_path: Path) -> None:
    rows = ["email,name,tags"] + [f"user{i % 40}@example.com,User {i},t{i % 3}" for i in range(60)]
    rows[7] = "broken-address,Broken,"
    path = write_csv("\n".join(rows) + "\n")
    summary = run(engine, path, chunk_size=7, parallel=True)
    assert counts(summary) == (40, 0, 0, {"duplicate in file": 19, "invalid address": 1})
    assert summary.rows == 60
    assert [r.line for r in summary.rejects] == [8]
    reference = tmp_path / "reference.csv"
    reference.write_bytes(path.read_bytes())
    assert counts(run(engine, reference, chunk_size=7, parallel=False)) == (
        0,
        0,
        40,
        {"duplicate in file": 19, "invalid address": 1},
    )


def _rejects(summary: ImportSummary) -> list:
    assert summary.rejects_path is not None
    with summary.rejects_path.open(encoding="utf-8", newline="") as handle:
        return [
            type("R", (), {"line": int(r["line"]), "reason": r["reason"]}) for r in csv.DictReader(handle)
        ]


def test_existing_subscribers_are_merged_not_overwritten(
    engine: Engine, repo: SubscriberRepository, session: Session, write_csv
) -> None:
    ann = repo.add("ann@example.com", name="Ann", tags=["staff"])
    ann.attributes = {"city": "Paris"}
    session.commit()
    path = write_csv(
        "email,name,tags,city,zip\n"
        "ANN@example.com,,press,,75001\n"  # adds a tag and an attribute, keeps name and city
        "bob@example.com,Bob,,,\n"
    )
    assert counts(run(engine, path)) == (1, 1, 0, {})
    assert state(engine)["ann@example.com"] == (
        "ann@example.com",
        "Ann",
        "active",
        ("press", "staff"),
        (("city", "Paris"), ("zip", "75001")),
    )
    assert counts(run(engine, path)) == (0, 0, 2, {})


def test_case_and_unicode_normalisation(engine: Engine, write_csv) -> None:
    path = write_csv(
        "email\n"
        "Rene\u0301@Example.com\n"  # NFD
        "REN\u00c9@EXAMPLE.COM\n"  # NFC, other case: the same person
        "x@xn--bcher-kva.example\n"
        "X@BÜCHER.example\n"
    )
    summary = run(engine, path)
    assert counts(summary) == (2, 0, 0, {"duplicate in file": 2})
    assert set(state(engine)) == {"ren\u00e9@example.com", "x@bücher.example"}
    assert state(engine)["ren\u00e9@example.com"][0] == "Rene\u0301@Example.com"  # as given


@pytest.mark.parametrize("left", ["unsubscribed", "bounced", "complained", "forgotten"])
def test_people_who_left_are_never_reactivated(
    engine: Engine, repo: SubscriberRepository, session: Session, write_csv, left: str
) -> None:
    repo.add("ann@example.com", name="Ann")
    if left == "forgotten":
        repo.forget("ann@example.com")
    elif left == "unsubscribed":
        repo.unsubscribe("ann@example.com")
    else:
        subscriber = repo.get_by_email("ann@example.com")
        assert subscriber is not None
        subscriber.status = SubscriberStatus(left)
    session.commit()
    path = write_csv("email,name,status\nAnn@Example.com,Ann B,active\n")
    summary = run(engine, path, status=SubscriberStatus.ACTIVE)
    expected = "suppressed" if left == "forgotten" else left
    assert counts(summary) == (0, 0, 0, {expected: 1})
    assert summary.invalid == 0
    rows = state(engine)
    if left == "forgotten":
        assert rows == {}
    else:
        assert rows["ann@example.com"][1:3] == ("Ann", left)


def test_pending_subscribers_are_not_confirmed_by_import(
    engine: Engine, repo: SubscriberRepository, session: Session, write_csv
) -> None:
    repo.add("ann@example.com", status=SubscriberStatus.PENDING)
    session.commit()
    path = write_csv("email\nann@example.com\nbob@example.com\n")
    assert counts(run(engine, path, status=SubscriberStatus.ACTIVE)) == (1, 0, 1, {})
    assert state(engine)["ann@example.com"][2] == "pending"
    assert counts(
        run(engine, write_csv("email\ncarl@example.com\n", "p.csv"), status=SubscriberStatus.PENDING)
    ) == (1, 0, 0, {})
    assert state(engine)["carl@example.com"][2] == "pending"


def test_status_column_records_people_who_left(engine: Engine, session: Session, write_csv) -> None:
    run(engine, write_csv("email\nann@example.com\n", "first.csv"))
    path = write_csv("email,status\nann@example.com,unsubscribed\nbob@example.com,Bounced\n")
    assert counts(run(engine, path)) == (1, 1, 0, {})
    rows = state(engine)
    assert (rows["ann@example.com"][2], rows["bob@example.com"][2]) == ("unsubscribed", "bounced")
    assert session.scalar(select(func.count()).select_from(Suppression)) == 2
    assert counts(run(engine, path)) == (0, 0, 2, {})


def test_tag_option_tags_every_row(engine: Engine, write_csv) -> None:
    path = write_csv("email,tags\nann@example.com,press\nbob@example.com,\n")
    run(engine, path, tags=["Launch"])
    rows = state(engine)
    assert rows["ann@example.com"][3] == ("launch", "press")
    assert rows["bob@example.com"][3] == ("launch",)


def test_export_imports_back_unchanged(
    engine: Engine, repo: SubscriberRepository, session: Session, write_csv, tmp_path: Path
) -> None:
    path = write_csv(
        "email,name,tags,city,note\n"
        'Ann@Example.com,"Ann, the ""first""",press;staff,Paris,\n'
        'bob@example.com,Bob,,,"line1\nline2"\n'
        "zoë@example.com,Zoë,vip,Zürich,\n"
    )
    run(engine, path)
    repo.unsubscribe("bob@example.com")
    session.commit()
    header, rows = repo.export_rows()
    exported = tmp_path / "export.csv"
    with exported.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    session.rollback()
    before = state(engine)
    summary = run(engine, exported)
    assert counts(summary) == (0, 0, 3, {})
    assert state(engine) == before


def test_encodings(engine: Engine, write_csv) -> None:
    bom = write_csv("\ufeffemail,name\nzoë@example.com,Zoë\n".encode(), "bom.csv")
    assert run(engine, bom).added == 1
    latin1 = write_csv("email,name\nann@example.com,Ann\nbo@example.com,Zoë\n".encode("latin-1"))
    with pytest.raises(BadInput, match=r"list.csv:3: the file is not UTF-8"):
        run(engine, latin1)
    utf16 = write_csv("email\nx@example.com\n".encode("utf-16"), "u16.csv")
    with pytest.raises(BadInput, match="UTF-16"):
        run(engine, utf16)
    assert set(state(engine)) == {"zoë@example.com"}  # nothing written from the bad files


def test_bad_header_or_file_is_bad_input(engine: Engine, write_csv, tmp_path: Path) -> None:
    with pytest.raises(BadInput, match="no 'email' column"):
        run(engine, write_csv("name,city\nAnn,Paris\n"))
    with pytest.raises(BadInput, match="empty"):
        run(engine, write_csv(""))
    with pytest.raises(BadInput, match="appears twice"):
        run(engine, write_csv("email,city,City\na@example.com,x,y\n"))
    with pytest.raises(BadInput, match="no such file"):
        run(engine, tmp_path / "missing.csv")
    with pytest.raises(BadInput, match="active or pending"):
        run(engine, write_csv("email\n"), status=SubscriberStatus.UNSUBSCRIBED)


KILLER = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from sqlalchemy import event
    from newsletter.store.db import make_engine
    from newsletter.store.importer import import_csv

    url, path, chunk, kill_at = sys.argv[1], Path(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    engine = make_engine(url)
    links = 0

    @event.listens_for(engine, "after_cursor_execute")
    def die_mid_chunk(conn, cursor, statement, parameters, context, executemany):
        # Killed after a chunk's subscribers and tag links are written, before its commit. (On
        # PostgreSQL the links are written by a CTE of the chunk's one statement.)
        global links
        if "INSERT INTO subscriber_tags" in statement:
            links += 1
            if links == kill_at:
                os.kill(os.getpid(), signal.SIGKILL)

    with engine.connect() as conn:
        import_csv(conn, path, chunk_size=chunk)
    """
)


def test_killed_import_keeps_whole_chunks_and_a_rerun_completes_it(
    engine: Engine, db_url: str, write_csv, tmp_path: Path
) -> None:
    rows = ["email,name,tags"] + [f"user{i}@example.com,User {i},t{i % 3}" for i in range(50)]
    path = write_csv("\n".join(rows) + "\n")
    script = tmp_path / "killer.py"
    script.write_text(KILLER, encoding="utf-8")
    done = subprocess.run(
        [sys.executable, str(script), db_url, str(path), "10", "3"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ},
    )
    assert done.returncode == -9, done.stderr
    partial = state(engine)
    assert len(partial) == 20  # two committed chunks, nothing of the third
    for i in range(20):
        assert partial[f"user{i}@example.com"][3] == (f"t{i % 3}",)
    with engine.connect() as conn:
        orphans = conn.scalar(
            select(func.count())
            .select_from(SubscriberTag)
            .where(~SubscriberTag.subscriber_id.in_(select(Subscriber.id)))
        )
    assert orphans == 0
    summary = run(engine, path, chunk_size=10)
    assert counts(summary) == (30, 0, 20, {})
    final = state(engine)
    assert len(final) == 50
    assert all(final[f"user{i}@example.com"][3] == (f"t{i % 3}",) for i in range(50))


def test_chunks_classify_every_kind_of_row(
    engine: Engine, repo: SubscriberRepository, session: Session, write_csv
) -> None:
    """Duplicates of existing, suppressed and new rows across chunks; a new row that leaves."""
    repo.add("old@example.com", name="Old", tags=["staff"])
    repo.add("gone@example.com")
    repo.forget("gone@example.com")
    session.commit()
    path = write_csv(
        "email,name,tags,status\n"
        "old@example.com,,press,\n"  # line 2: existing, gains a tag
        "gone@example.com,,,\n"  # line 3: suppressed
        "new@example.com,New,vip,unsubscribed\n"  # line 4: added as unsubscribed, suppressed
        "OLD@example.com,,other,\n"  # line 5, next chunk: duplicate of line 2
        "Gone@example.com,,,\n"  # line 6: duplicate of line 3
        "new@example.com,,,\n"  # line 7: duplicate of line 4
        "fresh@example.com,,press,\n"  # line 8: added
    )
    summary = run(engine, path, chunk_size=3)
    assert counts(summary) == (2, 1, 0, {"suppressed": 1, "duplicate in file": 3})
    reasons = {r.line: r.reason for r in _rejects(summary)}
    assert reasons == {
        3: "suppressed (unsubscribed or forgotten earlier)",
        5: "duplicate of line 2",
        6: "duplicate of line 3",
        7: "duplicate of line 4",
    }
    rows = state(engine)
    assert rows["old@example.com"][2:4] == ("active", ("press", "staff"))
    assert rows["new@example.com"][1:4] == ("New", "unsubscribed", ("vip",))
    assert rows["fresh@example.com"][2:4] == ("active", ("press",))
    assert set(rows) == {"old@example.com", "new@example.com", "fresh@example.com"}
    assert session.scalar(select(func.count()).select_from(Suppression)) == 2
    assert counts(run(engine, path, chunk_size=3)) == (0, 0, 3, {"suppressed": 1, "duplicate in file": 3})


def test_tags_of_skipped_rows_are_not_created(
    engine: Engine, repo: SubscriberRepository, session: Session, write_csv
) -> None:
    repo.add("gone@example.com")
    repo.forget("gone@example.com")
    session.commit()
    path = write_csv("email,tags\ngone@example.com,secret\nann@example.com,press\nann@example.com,dup\n")
    assert counts(run(engine, path)) == (1, 0, 0, {"suppressed": 1, "duplicate in file": 1})
    with Session(engine) as check:
        assert sorted(check.scalars(select(Tag.name))) == ["press"]


@pytest.mark.parametrize("parallel", [False, True])
def test_special_characters_survive_staging(engine: Engine, tmp_path: Path, parallel: bool) -> None:
    """Tabs, backslashes, line breaks and a literal \\N travel intact (COPY text escaping)."""
    name = "Tab\there \\N back\\slash\r\nnext"
    note = 'say "hi" \\ \t \\N'
    path = tmp_path / "special.csv"
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name", "note"])
        writer.writerow(["ann@example.com", name, note])
        writer.writerow(["bob@example.com", "\\N", ""])
    assert counts(run(engine, path, parallel=parallel)) == (2, 0, 0, {})
    rows = state(engine)
    assert rows["ann@example.com"][1] == name
    assert rows["ann@example.com"][4] == (("note", note),)
    assert rows["bob@example.com"][1] == "\\N"
    assert counts(run(engine, path, parallel=parallel)) == (0, 0, 2, {})


@pytest.mark.parametrize("parallel", [False, True])
def test_imported_subscribers_carry_their_suppression_hash(
    engine: Engine, repo: SubscriberRepository, session: Session, tmp_path: Path, parallel: bool
) -> None:
    """Every new row gets ``address_hash`` from the staged hash (COPY on PostgreSQL, the SQLite
    insert), equal to what ``privacy.address_hash`` makes of its normalised address."""
    repo.add("ann@example.com", name="Ann")
    session.commit()
    path = tmp_path / "hashes.csv"
    path.write_text(
        "email,name,status\n"
        "ANN@example.com,,\n"  # existing: merged, its hash untouched
        "Rene\u0301@Example.com,René,\n"
        "x@xn--bcher-kva.example,,\n"
        "left@example.com,,unsubscribed\n" + "".join(f"user{i}@example.com,User {i},\n" for i in range(20)),
        encoding="utf-8",
    )
    assert counts(run(engine, path, chunk_size=7, parallel=parallel))[:2] == (23, 0)
    with Session(engine) as check:
        stored = check.execute(select(Subscriber.email_normalized, Subscriber.address_hash)).all()
        suppressed = set(check.scalars(select(Suppression.address_hash)))
    assert len(stored) == 24
    assert all(digest == address_hash(normalized) for normalized, digest in stored), stored
    assert suppressed == {dict(stored)["left@example.com"]}


def test_reader_process_batches_match_and_stop_when_abandoned(tmp_path: Path) -> None:
    from newsletter.store.importer.rows import read_ahead, read_batches

    path = tmp_path / "many.csv"
    lines = "".join(f"u{i}@example.com,U {i}\n" for i in range(200))
    path.write_text("email,name\n" + lines, encoding="utf-8")
    for copy in (False, True):
        expected = list(read_batches(path, frozenset(), 30, copy))
        assert len(expected) == 7
        assert list(read_ahead(path, frozenset(), 30, copy)) == expected
    batches = read_ahead(path, frozenset(), 10, True, ahead=3)
    assert next(batches)[1][0][2] == "u0@example.com"
    batches.close()  # cancels what has not started and stops the reader process without hanging


def test_a_reader_process_error_reaches_the_importer(tmp_path: Path) -> None:
    from newsletter.store.importer.rows import read_ahead

    path = tmp_path / "dup.csv"
    path.write_text("email,Email\nann@example.com,x\n", encoding="utf-8")
    with pytest.raises(BadInput, match="appears twice in the header"):
        list(read_ahead(path, frozenset(), 10, False))


@pytest.mark.parametrize("chunk_size", [10, 1], ids=["same chunk", "later chunk"])
def test_a_later_duplicate_saying_the_person_left_is_honoured(
    engine: Engine, repo: SubscriberRepository, write_csv, chunk_size: int
) -> None:
    path = write_csv("email,name,status\nann@example.com,Ann,\nANN@example.com,,unsubscribed\n")
    summary = run(engine, path, chunk_size=chunk_size)
    assert summary.skipped == {"duplicate in file": 1}
    assert state(engine)["ann@example.com"][2] == "unsubscribed"
    assert repo.get_suppression("ann@example.com") is not None
    rejects = rejects_path_for(path).read_text()
    assert "duplicate of line 2; its status unsubscribed was applied" in rejects
    # and the reverse order keeps the first row's leaving status
    again = write_csv("email,name,status\nbob@example.com,Bob,bounced\nbob@example.com,Bob,active\n")
    run(engine, again, chunk_size=chunk_size)
    assert state(engine)["bob@example.com"][2] == "bounced"


def test_a_fixed_rejects_file_imports_without_its_line_and_reason_columns(engine: Engine, write_csv) -> None:
    path = write_csv("email,name,city\nann@@example.com,Ann,Paris\n")
    run(engine, path)
    rejects = rejects_path_for(path)
    assert rejects.read_text().splitlines()[0] == "email,name,city,line,reason"
    fixed = rejects.with_name("fixed.csv")
    fixed.write_text(rejects.read_text().replace("ann@@example.com", "ann@example.com"))
    summary = run(engine, fixed)
    assert summary.added == 1
    assert state(engine)["ann@example.com"][4] == (("city", "Paris"),)
    assert any("rejects file" in warning for warning in summary.warnings)


@pytest.mark.parametrize("block", [1, 2, 3, 4, 5, 1 << 20])
def test_encoding_error_names_the_right_line_and_byte_at_any_block_size(tmp_path: Path, block: int) -> None:
    path = tmp_path / "latin.csv"
    path.write_bytes(b"email\nab@x.org\nabc\xc3(@x.org\n")
    with pytest.raises(BadInput) as caught:
        check_encoding(path, block=block)
    assert f"{path}:3: the file is not UTF-8 (byte 0x" in str(caught.value)
    assert "(byte 0xc3)" in str(caught.value)
