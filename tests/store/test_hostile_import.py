"""Hostile and unlucky imports, from the issue "Hardening the foundation", on both databases.

Each test keeps a reproduction of a reported failure: a NUL byte, an unterminated quote, a field
over csv's size limit, two imports of overlapping files at once, a concurrent ``subscribers add``,
rejects files keeping the addresses of people who left, and spreadsheet formulas in exports.
"""

from __future__ import annotations

import csv
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session
from typer.testing import CliRunner

from newsletter.cli import app
from newsletter.errors import BadInput, NewsletterError
from newsletter.store.bulk import bulk_for
from newsletter.store.db import make_engine, upgrade
from newsletter.store.importer import ImportSummary, escape_cell, import_csv, rejects_path_for, unescape_cell
from newsletter.store.models import SubscriberStatus
from newsletter.store.privacy import address_hash
from newsletter.store.subscribers import SubscriberRepository
from tests.databases import PostgresDatabases
from tests.store.test_importer import counts, run, state


def read_rejects(summary: ImportSummary) -> list[dict[str, str]]:
    assert summary.rejects_path is not None
    with summary.rejects_path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def emails(engine: Engine) -> set[str]:
    return set(state(engine))


# -- 1. characters the database cannot store ------------------------------------------------------


@pytest.mark.parametrize("parallel", [False, True])
def test_a_nul_byte_rejects_its_row_and_the_rest_of_the_chunk_imports(
    engine: Engine, write_csv, parallel: bool
) -> None:
    """Reported: a NUL in one cell aborted a PostgreSQL import with a traceback, losing its chunk."""
    path = write_csv(
        "email,name,city\n"
        "ann@example.com,Ann,Paris\n"
        "bob@example.com,B\x00b,Lyon\n"
        "carl@example.com,Carl,Ro\x00me\n"
        "dora@example.com,Dora,\n"
    )
    summary = run(engine, path, parallel=parallel)  # one chunk: its valid rows must survive
    assert counts(summary) == (2, 0, 0, {"NUL character": 2})
    assert summary.invalid == 2
    assert [(r.line, r.reason) for r in summary.rejects] == [
        (3, "a NUL character in column 'name', which the database cannot store"),
        (4, "a NUL character in column 'city', which the database cannot store"),
    ]
    assert emails(engine) == {"ann@example.com", "dora@example.com"}
    rejected = read_rejects(summary)
    assert [(r["line"], r["name"], r["city"]) for r in rejected] == [
        ("3", "B\u2400b", "Lyon"),
        ("4", "Carl", "Ro\u2400me"),
    ]
    assert "\x00" not in summary.rejects_path.read_text(encoding="utf-8")  # type: ignore[union-attr]


def test_a_nul_byte_in_the_header_is_bad_input(engine: Engine, write_csv) -> None:
    with pytest.raises(BadInput, match="header contains a NUL"):
        run(engine, write_csv("email,ci\x00ty\nann@example.com,Paris\n"))
    assert emails(engine) == set()


@pytest.mark.postgres
def test_characters_a_non_utf8_database_lacks_are_rejected_not_mangled(
    pg_databases: PostgresDatabases, write_csv
) -> None:
    """Found while hardening: COPY sent UTF-8 to a LATIN1 database, which stored "Zoë" as "ZoÃ«"."""
    name = f"newsletter_test_latin1_{secrets.token_hex(3)}"
    with pg_databases.admin.connect() as conn:
        conn.execute(
            text(
                f"CREATE DATABASE \"{name}\" ENCODING 'LATIN1' LC_COLLATE 'C' LC_CTYPE 'C' TEMPLATE template0"
            )
        )
    pg_databases.created.append(name)
    url = make_url(pg_databases.admin.url).set(database=name).render_as_string(hide_password=False)
    engine = make_engine(url)
    try:
        upgrade(engine)
        path = write_csv(
            "email,name\n"
            "ann@example.com,Zoë\n"
            "bob@example.com,Bob €\n"  # no euro sign in Latin-1
            "carl@example.com,Carl\n"
            "dora@example.com,Дора\n"
        )
        summary = run(engine, path, chunk_size=100)
        assert counts(summary) == (2, 0, 0, {"refused by the database": 2})
        assert [r.line for r in summary.rejects] == [3, 5]
        assert all("has no equivalent in encoding" in r.reason for r in summary.rejects)
        with engine.connect() as conn:
            rows = conn.execute(text("SELECT email, name FROM subscribers ORDER BY email")).all()
        assert [tuple(r) for r in rows] == [("ann@example.com", "Zoë"), ("carl@example.com", "Carl")]
    finally:
        engine.dispose()
        pg_databases.drop(url)


# -- 2. broken CSV syntax -------------------------------------------------------------------------


@pytest.mark.parametrize("parallel", [False, True])
def test_an_unterminated_quote_is_an_error_on_its_line_and_the_rows_after_it_import(
    engine: Engine, write_csv, parallel: bool
) -> None:
    """Reported: it swallowed the rest of the file into one field and exited 0."""
    path = write_csv(
        "email,name\n"
        "ann@example.com,Ann\n"
        'bob@example.com,"Bob\n'  # line 3: the quote never closes
        "carl@example.com,Carl\n"
        "dora@example.com,Dora\n"
    )
    summary = run(engine, path, parallel=parallel)
    assert summary.invalid == 1 and summary.skipped == {"unterminated quote": 1}
    (reject,) = summary.rejects
    assert reject.line == 3
    assert reject.reason.startswith("unterminated quote: the quoted field opening on this line never closes")
    assert "swallowed the 2 lines after it" in reject.reason
    assert emails(engine) == {"ann@example.com", "carl@example.com", "dora@example.com"}
    assert summary.rows == 4
    (rejected,) = read_rejects(summary)
    assert (rejected["line"], rejected["email"], rejected["name"]) == ("3", "bob@example.com", "Bob")


def test_a_quote_closed_by_a_later_field_is_caught_too(engine: Engine, write_csv) -> None:
    """Without strict parsing the quote of line 3 ran to the quote on line 5, taking line 4 with it."""
    path = write_csv(
        "email,name\n"
        "ann@example.com,Ann\n"
        'bob@example.com,"Bob\n'
        "carl@example.com,Carl\n"
        'dora@example.com,"Dora"\n'
        "eve@example.com,Eve\n"
    )
    summary = run(engine, path)
    assert [r.line for r in summary.rejects] == [3]
    assert "does not close properly" in summary.rejects[0].reason and "line 5" in summary.rejects[0].reason
    assert emails(engine) == {f"{n}@example.com" for n in ("ann", "carl", "dora", "eve")}
    assert state(engine)["dora@example.com"][1] == "Dora"


def test_multi_line_quoted_fields_still_import(engine: Engine, write_csv) -> None:
    path = write_csv('email,note\nann@example.com,"one\ntwo, ""three""\nfour"\nbob@example.com,x\n')
    summary = run(engine, path)
    assert counts(summary) == (2, 0, 0, {})
    assert state(engine)["ann@example.com"][4] == (("note", 'one\ntwo, "three"\nfour'),)
    assert summary.rows == 2


def test_an_unterminated_quote_exits_2_from_the_cli(
    db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", db_url)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "list.csv"
    path.write_text('email,name\nann@example.com,"Ann\nbob@example.com,Bob\n', encoding="utf-8")
    result = CliRunner().invoke(app, ["subscribers", "import", str(path)], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert f"{path}:2: unterminated quote" in " ".join(result.output.split())
    assert "1 added" in result.output  # bob, read again after the broken line


@pytest.mark.parametrize("parallel", [False, True])
def test_a_field_over_the_csv_size_limit_is_a_bad_row(engine: Engine, write_csv, parallel: bool) -> None:
    limit = csv.field_size_limit()
    path = write_csv(
        "email,name\n"
        f"ann@example.com,{'A' * (limit + 1)}\n"  # line 2: one line, too long
        f'bob@example.com,"{"B" * 1000}\n'
        + f"{'b' * 1000}\n" * (limit // 1000 + 5)
        + "carl@example.com,Carl\n"
    )
    summary = run(engine, path, parallel=parallel)
    lines = [r.line for r in summary.rejects]
    assert lines[:2] == [2, 3]
    assert summary.rejects[0].reason == f"a field longer than {limit:,} characters, the most a field may hold"
    assert summary.rejects[1].reason.startswith(
        "unterminated quote: the quoted field opening on this line runs on"
    )
    assert summary.skipped["field too large"] == 1 and summary.skipped["unterminated quote"] == 1
    assert summary.skipped["missing email"] + summary.skipped["invalid address"] == limit // 1000 + 5
    assert emails(engine) == {"carl@example.com"}


def test_a_quote_glued_to_text_is_a_bad_row(engine: Engine, write_csv) -> None:
    path = write_csv('email,name\nann@example.com,"Ann" Smith\nbob@example.com,Bob\n')
    summary = run(engine, path)
    assert [(r.line, r.reason) for r in summary.rejects] == [(2, "malformed CSV: ',' expected after '\"'")]
    assert emails(engine) == {"bob@example.com"}


# -- 3. concurrent writers ------------------------------------------------------------------------


def _overlapping_files(tmp_path: Path) -> tuple[Path, Path]:
    def write(name: str, numbers: range) -> Path:
        path = tmp_path / name
        rows = "".join(f"user{i}@example.com,User {i},t{i % 3}\n" for i in numbers)
        path.write_text("email,name,tags\n" + rows, encoding="utf-8")
        return path

    return write("a.csv", range(0, 1200)), write("b.csv", range(600, 1800))


def _clear(engine: Engine) -> None:
    with engine.begin() as conn:
        for table in ("subscriber_tags", "tags", "subscribers", "suppressions"):
            conn.execute(text(f"DELETE FROM {table}"))


def _wait_for(condition: Callable[[], bool], what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def test_concurrent_imports_of_overlapping_files_end_as_if_run_one_after_the_other(
    engine: Engine, db_url: str, tmp_path: Path
) -> None:
    """Reported: 240,000 rows "skipped, added concurrently" and --tag on 60,000 of 300,000 rows."""
    a, b = _overlapping_files(tmp_path)
    b_may_start, b_waits = threading.Event(), threading.Event()
    summaries: dict[str, ImportSummary] = {}
    errors: list[BaseException] = []

    def a_progress(_: int) -> None:
        # After A's first chunk, B starts, and A goes on only once B waits for it: the runs overlap.
        if not b_may_start.is_set():
            b_may_start.set()
            _wait_for(b_waits.is_set, "the second import to wait for the first")

    def worker(name: str, path: Path, tag: str, **options) -> None:
        own = make_engine(db_url)
        try:
            with own.connect() as conn:
                summaries[name] = import_csv(conn, path, tags=[tag], chunk_size=50, **options)
        except BaseException as exc:
            errors.append(exc)
        finally:
            own.dispose()

    first = threading.Thread(target=worker, args=("a", a, "from-a"), kwargs={"on_progress": a_progress})
    second = threading.Thread(target=worker, args=("b", b, "from-b"), kwargs={"on_wait": b_waits.set})
    first.start()
    _wait_for(b_may_start.is_set, "the first import's first chunk")
    second.start()
    first.join(120)
    second.join(120)
    assert not errors, errors
    concurrent = state(engine)

    _clear(engine)
    sequential = [
        run(engine, a, tags=["from-a"], chunk_size=50),
        run(engine, b, tags=["from-b"], chunk_size=50),
    ]
    assert concurrent == state(engine)
    assert len(concurrent) == 1800
    assert concurrent["user700@example.com"][3] == ("from-a", "from-b", "t1")
    assert concurrent["user100@example.com"][3] == ("from-a", "t1")
    assert concurrent["user1700@example.com"][3] == ("from-b", "t2")

    together = [summaries["a"], summaries["b"]]
    for summary in together:
        assert "added concurrently" not in summary.skipped and summary.skipped_total == 0
    assert [(s.added, s.updated, s.unchanged) for s in together] == [(1200, 0, 0), (600, 600, 0)]
    assert [(s.added, s.updated, s.unchanged) for s in sequential] == [(1200, 0, 0), (600, 600, 0)]
    assert any(w.startswith("waited") for w in summaries["b"].warnings)
    assert not summaries["a"].warnings


def test_an_import_waits_for_another_through_the_cli(
    db_url: str, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The lock belongs to the database: an import queues behind whichever connection holds it."""
    _, b = _overlapping_files(tmp_path)
    monkeypatch.setenv("NEWSLETTER_DATABASE_URL", db_url)
    monkeypatch.chdir(tmp_path)
    engine = make_engine(db_url)
    holder = engine.connect()
    try:
        lock = bulk_for(holder)
        assert lock.lock_imports() is None  # as an import in another process would hold it
        released = threading.Timer(1.0, lock.unlock_imports)
        released.start()
        result = CliRunner().invoke(app, ["subscribers", "import", str(b), "--tag", "from-b"])
        released.join()
    finally:
        holder.close()
        engine.dispose()
    assert result.exit_code == 0, result.output
    assert "waited" in result.output and "1,200 added" in " ".join(result.output.split())


class _Race:
    """Make another writer add each of ``emails`` between a chunk's look-up and its insert.

    PostgreSQL: another session adds the address before the chunk's statement and commits while
    that statement waits on it: the race of two real writers. SQLite serialises writers, so the row
    is added on the import's own connection just before its insert (and rolled back with the chunk).
    One address per run of a chunk's insert after the first ``skip`` runs, in order.
    """

    def __init__(self, engine: Engine, db_url: str, emails: list[str], skip: int) -> None:
        self.skip = skip
        self.pending = list(emails)
        self.fired: list[str] = []
        self.timers: list[threading.Timer] = []
        self.other = make_engine(db_url)
        self.postgres = engine.dialect.name == "postgresql"
        event.listen(engine, "before_cursor_execute", self.race)

    def race(self, conn, cursor, statement, parameters, context, executemany) -> None:
        inserts = (
            "WITH looked AS" in statement
            if self.postgres
            else statement.startswith("INSERT INTO subscribers (")
        )
        if not inserts or not self.pending:
            return
        if self.skip:
            self.skip -= 1
            return
        if self.postgres:
            email = self.pending.pop(0)
            self.fired.append(email)
            other = self.other.connect()
            try:
                other.execute(
                    text(
                        "INSERT INTO subscribers "
                        "(email, email_normalized, address_hash, name, status, source, attributes) "
                        "VALUES (:e, :e, :h, 'Added meanwhile', 'active', 'web', '{}')"
                    ),
                    {"e": email, "h": address_hash(email)},
                )
            except BaseException:
                other.close()
                raise

            def commit() -> None:  # while the chunk's insert waits for this row
                try:
                    other.commit()
                finally:
                    other.close()

            timer = threading.Timer(0.5, commit)
            self.timers.append(timer)
            timer.start()
        else:
            email = self.pending.pop(0)
            self.fired.append(email)
            cursor.execute(
                "INSERT INTO subscribers "
                "(email, email_normalized, address_hash, name, status, attributes, created_at) "
                "VALUES (?, ?, ?, 'Added meanwhile', 'active', '{}', '2026-01-01 00:00:00.000000')",
                (email, email, address_hash(email)),
            )

    def close(self) -> None:
        for timer in self.timers:
            timer.join()
        self.other.dispose()


@pytest.fixture
def race(engine: Engine, db_url: str):
    races: list[_Race] = []

    def start(emails: list[str], skip: int = 0) -> _Race:
        races.append(_Race(engine, db_url, emails, skip))
        return races[-1]

    yield start
    for each in races:
        each.close()


def test_a_chunk_that_lost_rows_to_another_writer_is_run_again(engine: Engine, race, write_csv) -> None:
    path = write_csv("".join(["email,name\n", *(f"user{i}@example.com,User {i}\n" for i in range(20))]))
    racer = race(["user7@example.com"])
    summary = run(engine, path, tags=["launch"], chunk_size=10)
    assert racer.fired == ["user7@example.com"]
    assert "added concurrently" not in summary.skipped and summary.skipped_total == 0
    rows = state(engine)
    assert len(rows) == 20
    assert all(row[3] == ("launch",) for row in rows.values())  # the retry re-created the tag
    assert rows["user7@example.com"][1] == "User 7"
    with engine.connect() as conn:
        source = conn.scalar(text("SELECT source FROM subscribers WHERE email = 'user7@example.com'"))
    if engine.dialect.name == "postgresql":  # the other writer's row is kept and merged into
        assert counts(summary) == (19, 1, 0, {})
        assert source == "web"
    else:  # the injected row was rolled back with the chunk's first try
        assert counts(summary) == (20, 0, 0, {})
        assert source == f"import:{path.name}"


def test_a_chunk_that_keeps_losing_stops_the_import_loudly(engine: Engine, race, write_csv) -> None:
    path = write_csv("".join(["email\n", *(f"user{i}@example.com\n" for i in range(20))]))
    racer = race(["user15@example.com", "user16@example.com", "user17@example.com"], skip=1)
    with pytest.raises(NewsletterError, match=r"lines 12-21: other writers changed these subscribers"):
        run(engine, path, chunk_size=10)
    assert len(racer.fired) == 3
    racer.close()
    rows = set(state(engine))
    assert {f"user{i}@example.com" for i in range(10)} <= rows  # the first chunk is kept
    written = {f"user{i}@example.com" for i in range(10, 20)} & rows  # only the other writer's
    assert written == (set(racer.fired) if engine.dialect.name == "postgresql" else set())
    assert not rejects_path_for(path).exists()


# -- 4. people who left are not copied into rejects files ----------------------------------------


@pytest.mark.parametrize("chunk_size", [100, 2], ids=["one chunk", "many chunks"])
def test_rejects_files_keep_no_cells_of_people_who_left(
    engine: Engine, repo: SubscriberRepository, session: Session, write_csv, chunk_size: int
) -> None:
    """Reported: rows skipped as suppressed were written, address and all, to FILE.rejects.csv."""
    repo.add("forgotten@example.com", name="Forgotten Person")
    repo.forget("forgotten@example.com")
    repo.add("gone@example.com")
    repo.unsubscribe("gone@example.com")
    bounced = repo.add("bounced@example.com")
    bounced.status = SubscriberStatus.BOUNCED
    session.commit()
    path = write_csv(
        "email,name,city,status\n"
        "forgotten@example.com,Secret Name,Secret City,\n"  # 2: suppressed
        "gone@example.com,Secret Name,Secret City,\n"  # 3: unsubscribed earlier
        "BOUNCED@example.com,Secret Name,Secret City,\n"  # 4: bounced earlier
        "Forgotten@Example.com,Secret Name,Secret City,\n"  # 5: duplicate of a suppressed row
        "gone@example.com,Secret Name,Secret City,retired\n"  # 6: bad row of someone who left
        "leaving@example.com,Secret Name,Secret City,unsubscribed\n"  # 7: leaves by this file
        "leaving@example.com,Secret Name,Secret City,\n"  # 8: duplicate of a leaving row
        "ann@example.com,Ann,Paris,retired\n"  # 9: a bad row of someone who stays
    )
    summary = run(engine, path, chunk_size=chunk_size)
    raw = rejects_path_for(path).read_bytes()
    for secret in (b"forgotten@", b"Forgotten@", b"gone@", b"bounced@", b"BOUNCED@", b"leaving@", b"Secret"):
        assert secret not in raw
    rejected = {int(r["line"]): r for r in read_rejects(summary)}
    assert sorted(rejected) == [2, 3, 4, 5, 6, 8, 9]
    assert rejected[2]["reason"] == "suppressed (unsubscribed or forgotten earlier)"
    assert rejected[3]["reason"] == "unsubscribed earlier; never reactivated by import"
    assert rejected[4]["reason"] == "bounced earlier; never reactivated by import"
    assert rejected[5]["reason"] == "duplicate of line 2"
    assert rejected[6]["reason"] == "invalid status (the address is suppressed: its cells are not kept)"
    assert rejected[8]["reason"] == "duplicate of line 7"
    for line in (2, 3, 4, 5, 6, 8):
        assert (rejected[line]["email"], rejected[line]["name"], rejected[line]["city"]) == ("", "", "")
    assert (rejected[9]["email"], rejected[9]["name"]) == ("ann@example.com", "Ann")  # still fixable
    assert all(b"Secret" not in r.reason.encode() for r in summary.rejects)
    assert summary.invalid == 2


# -- 5. spreadsheet formulas ----------------------------------------------------------------------

FORMULAS = [
    '=HYPERLINK("http://x","y")',
    "+1 555",
    "-5",
    "@SUM(A1)",
    "\tTab",
    "\rReturn",
    "'=already quoted",
    "''+twice",
    "'plain quote",
    "'",
    "O'Brien",
    "",
]


@pytest.mark.parametrize("value", FORMULAS)
def test_escape_and_unescape_are_inverse(value: str) -> None:
    escaped = escape_cell(value)
    assert unescape_cell(escaped) == value
    assert escaped[:1] not in ("=", "+", "-", "@", "\t", "\r")
    assert unescape_cell(value) == value or value.startswith("'")


def test_export_escapes_formulas_and_imports_them_back_unchanged(
    engine: Engine, repo: SubscriberRepository, session: Session, tmp_path: Path
) -> None:
    for i, value in enumerate(FORMULAS):
        subscriber = repo.add(f"user{i}@example.com", name=value or None)
        subscriber.attributes = {"note": value, "=key": value} if value else {}
    repo.add("-dash@example.com", name="-Dash")
    repo.add("+plus@example.com")
    repo.add("'=quote@example.com")
    session.commit()

    def export(name: str) -> Path:
        header, rows = SubscriberRepository(session).export_rows()
        path = tmp_path / name
        with path.open("w", encoding="utf-8", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(header)
            writer.writerows(rows)
        session.rollback()
        return path

    first = export("first.csv")
    with first.open(encoding="utf-8", newline="") as handle:
        cells = [cell for row in csv.reader(handle) for cell in row]
    assert not [cell for cell in cells if cell[:1] in ("=", "+", "-", "@", "\t", "\r")]
    assert '\'=HYPERLINK("http://x","y")' in cells and "'-dash@example.com" in cells
    assert "''=already quoted" in cells and "'''+twice" in cells and "'plain quote" in cells
    assert "'=key" in cells

    before = state(engine)
    summary = run(engine, first)
    assert counts(summary) == (0, 0, len(before), {})
    assert state(engine) == before
    _clear(engine)
    assert run(engine, first).added == len(before)  # into an empty database, the same rows
    assert state(engine) == before
    assert export("second.csv").read_bytes() == first.read_bytes()


def test_the_rejects_file_escapes_formulas_and_a_fixed_one_imports_the_values(
    engine: Engine, write_csv
) -> None:
    path = write_csv('email,name,note\nann@@example.com,"=HYPERLINK(""http://x"",""y"")",@SUM(A1)\n')
    run(engine, path)
    rejects = rejects_path_for(path)
    with rejects.open(encoding="utf-8", newline="") as handle:
        (row,) = list(csv.DictReader(handle))
    assert (row["name"], row["note"]) == ('\'=HYPERLINK("http://x","y")', "'@SUM(A1)")
    fixed = rejects.with_name("fixed.csv")
    fixed.write_text(rejects.read_text(encoding="utf-8").replace("@@", "@"), encoding="utf-8")
    assert run(engine, fixed).added == 1
    assert state(engine)["ann@example.com"][1] == '=HYPERLINK("http://x","y")'
    assert state(engine)["ann@example.com"][4] == (("note", "@SUM(A1)"),)
