"""Benchmark: import a 1,000,000-row subscriber CSV into SQLite and PostgreSQL.

Prints, for each database, the import's rows per second and peak memory, and in the same run the
time of a bare bulk insert of the same rows as the baseline, with the ratio. The baseline writes
what the import writes, in the fastest plain way: the CSV parsed with the csv module, every row
(bad ones too: it validates nothing) written to ``subscribers`` with the same columns the import
fills (JSON attributes, source, timestamps, consent) and its ``tags`` cell linked in
``subscriber_tags``, with ``executemany`` on SQLite and ``COPY`` on PostgreSQL, in one transaction.
It does not normalise or validate addresses, look for duplicates, existing subscribers or
suppressions, or upsert. Targets: under 60 s per database, within 2x the baseline, under 200 MB.

    .venv/bin/python benchmarks/import.py                  # 1M rows, both databases
    .venv/bin/python benchmarks/import.py --rows 2000 --db sqlite
    .venv/bin/python benchmarks/import.py --compare main --repeat 2 --no-bulk-baseline

``--compare REV`` also imports the same file with the importer of git revision ``REV`` (its
``newsletter/`` exported to a temporary directory), alternating with this tree's, and prints the
ratio: a change to the importer is measured against the code it replaces in the same run.

Each measurement runs in its own child process so peak RSS belongs to that step alone. The CSV is
cached in ``benchmarks/.data/`` (git-ignored). PostgreSQL: ``--pg-url`` names a maintenance database
in which a scratch database ``newsletter_bench_<random>`` is created and dropped afterwards.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import resource
import secrets
import subprocess
import sys
import tempfile
import time
import unicodedata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# A --compare child runs another revision's package: its directory comes first (see run_child).
sys.path.insert(0, os.environ.get("NEWSLETTER_BENCH_CODE", str(ROOT)))

DEFAULT_PG_URL = os.environ.get(
    "NEWSLETTER_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
COMMON_DOMAINS = (
    "gmail.com",
    "yahoo.com",
    "outlook.com",
    "hotmail.com",
    "icloud.com",
    "aol.com",
    "proton.me",
    "gmx.de",
    "web.de",
    "orange.fr",
)
FIRST = ("Ann", "Bob", "Chloé", "Dmitri", "Eve", "Fatima", "Grace", "Hiro", "Ines", "José")
LAST = ("Smith", "Müller", "García", "Nguyen", "Okafor", "Rossi", "Kowalski", "Tanaka")
CITIES = ("Paris", "Berlin", "Lagos", "Lima", "Osaka", "Toronto", "", "")
TAGS = ("", "", "", "press", "staff", "press;vip", "donor")


def generate(path: Path, rows: int, *, seed: int = 42) -> None:
    """A realistic list: common providers plus many company domains, mixed case, 1% bad rows."""
    rng = random.Random(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name", "tags", "city"])
        for i in range(rows):
            first, last = rng.choice(FIRST), rng.choice(LAST)
            if rng.random() < 0.7:
                domain = rng.choice(COMMON_DOMAINS)
            else:
                domain = f"Company{rng.randrange(20_000)}.com"
            local = f"{first.lower()}.{last.lower()}{i}"
            if rng.random() < 0.99:  # internationalised local parts exist, but are rare
                local = unicodedata.normalize("NFKD", local).encode("ascii", "ignore").decode()
            email = f"{local}@{domain}"
            if rng.random() < 0.2:
                email = email.capitalize()
            tags = rng.choice(TAGS)
            if i % 100 == 99:  # 1% bad rows, of three kinds
                kind = (i // 100) % 3
                if kind == 0:
                    email = email.replace("@", "@@")
                elif kind == 1:
                    email = ""
                else:
                    tags = "not a tag!"
            writer.writerow([email, f"{first} {last}", tags, rng.choice(CITIES)])
    tmp.replace(path)


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# -- child steps (each in its own process) -------------------------------------------------------


def child_import(url: str, csv_path: Path, chunk_size: int | None) -> dict[str, Any]:
    from newsletter.store.db import make_engine
    from newsletter.store.importer import import_csv

    engine = make_engine(url)
    started = time.perf_counter()
    with engine.connect() as conn:
        options = {} if chunk_size is None else {"chunk_size": chunk_size}
        summary = import_csv(conn, csv_path, **options)
    seconds = time.perf_counter() - started
    engine.dispose()
    reader_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return {
        "seconds": seconds,
        "rows": summary.rows,
        "added": summary.added,
        "skipped": summary.skipped_total,
        # The importer and its CSV reader process run side by side: count both.
        "peak_mb": peak_mb() + reader_mb,
        "reader_mb": reader_mb,
        "code": str(Path(sys.modules["newsletter.store.importer"].__file__ or "").parent),
    }


def child_baseline(url: str, csv_path: Path, *, with_tags: bool = True) -> dict[str, Any]:
    """The same rows, straight in: csv module + executemany (SQLite) or COPY (PostgreSQL).

    Subscriber ids are assigned here, so the tag links can be written without reading ids back;
    the links (two ints each, a few MB for a million rows) are written after the subscribers.
    ``with_tags=False`` writes the subscriber rows alone: the narrowest possible bulk insert,
    printed beside the full baseline so neither figure hides the other.
    """
    import datetime as dt
    import re
    from array import array
    from hashlib import sha256

    from sqlalchemy.engine import make_url

    from newsletter.store.db import make_engine

    engine = make_engine(url)
    postgres = make_url(url).get_backend_name() == "postgresql"
    now = dt.datetime.now(dt.UTC)
    at: Any = now if postgres else now.strftime("%Y-%m-%d %H:%M:%S.%f")
    source = f"import:{csv_path.name}"
    split = re.compile(r"[;,]").split
    started = time.perf_counter()
    rows = 0
    tag_ids: dict[str, int] = {}
    links = array("i")
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        columns = (
            "id, email, email_normalized, address_hash, name, status, source, attributes, created_at, "
            "confirmed_at, consent_at, consent_method"
        )
        with csv_path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            next(reader)

            def records() -> Any:
                nonlocal rows
                for email, name, tags, city in reader:
                    rows += 1
                    attributes = json.dumps({"city": city} if city else {})
                    key = email.lower() or f"<empty {rows}>"  # unique even for bad rows
                    digest = sha256(key.encode("utf-8")).hexdigest()  # as the import's reader hashes
                    if tags and with_tags:
                        for tag in split(tags):
                            if tag := tag.strip().lower():
                                links.append(rows)
                                links.append(tag_ids.setdefault(tag, len(tag_ids) + 1))
                    yield (rows, email, key, digest, name, "active", source, attributes, at, at, at, source)

            if postgres:
                with cursor.copy(f"COPY subscribers ({columns}) FROM STDIN") as copy:
                    for record in records():
                        copy.write_row(record)
                with cursor.copy("COPY tags (id, name) FROM STDIN") as copy:
                    for name, tag_id in tag_ids.items():
                        copy.write_row((tag_id, name))
                with cursor.copy("COPY subscriber_tags (subscriber_id, tag_id) FROM STDIN") as copy:
                    for i in range(0, len(links), 2):
                        copy.write_row((links[i], links[i + 1]))
            else:
                cursor.executemany(
                    f"INSERT INTO subscribers ({columns}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    records(),
                )
                cursor.executemany(
                    "INSERT INTO tags (id, name) VALUES (?, ?)", [(i, n) for n, i in tag_ids.items()]
                )
                cursor.executemany(
                    "INSERT INTO subscriber_tags (subscriber_id, tag_id) VALUES (?, ?)",
                    ((links[i], links[i + 1]) for i in range(0, len(links), 2)),
                )
        raw.commit()
    finally:
        raw.close()
    seconds = time.perf_counter() - started
    engine.dispose()
    return {"seconds": seconds, "rows": rows, "links": len(links) // 2, "peak_mb": peak_mb()}


# -- orchestration -------------------------------------------------------------------------------


class Database:
    """A fresh, migrated scratch database, removed on exit."""

    def __init__(self, kind: str, pg_admin_url: str, workdir: Path) -> None:
        self.kind = kind
        self.pg_admin_url = pg_admin_url
        self.workdir = workdir
        self.name = f"newsletter_bench_{secrets.token_hex(4)}"
        self.url = ""

    def __enter__(self) -> Database:
        from sqlalchemy import text
        from sqlalchemy.engine import make_url

        from newsletter.store.db import make_engine, upgrade

        if self.kind == "sqlite":
            self.url = f"sqlite:///{self.workdir / (self.name + '.db')}"
        else:
            admin = make_engine(self.pg_admin_url, isolation_level="AUTOCOMMIT")
            with admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{self.name}"'))
            admin.dispose()
            self.url = (
                make_url(self.pg_admin_url).set(database=self.name).render_as_string(hide_password=False)
            )
        engine = make_engine(self.url)
        upgrade(engine)
        engine.dispose()
        return self

    def __exit__(self, *exc: object) -> None:
        from sqlalchemy import text

        from newsletter.store.db import make_engine

        if self.kind == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(self.url.removeprefix("sqlite:///") + suffix).unlink(missing_ok=True)
            return
        admin = make_engine(self.pg_admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{self.name}" WITH (FORCE)'))
        admin.dispose()


def run_child(*args: str, code: Path | None = None) -> dict[str, Any]:
    """One step in a fresh process; ``code``: a directory holding another revision's ``newsletter/``."""
    env = dict(os.environ)
    if code is not None:
        env["NEWSLETTER_BENCH_CODE"] = str(code)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(code), env.get("PYTHONPATH")]))
    # The working directory too: a process it starts with ``python -m`` looks there first.
    output = subprocess.run(
        [sys.executable, __file__, "--child", *args],
        check=True,
        capture_output=True,
        text=True,
        env=env,
        cwd=code,
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def export_revision(revision: str, into: Path) -> Path:
    """``newsletter/`` as of ``revision``, written under ``into``; fails loudly on an unknown one."""
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", "--format=tar", revision, "newsletter"],
        check=True,
        capture_output=True,
    ).stdout
    import io
    import tarfile

    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(into, filter="data")
    return into


def describe(result: dict[str, Any]) -> str:
    return (
        f"{result['rows']:>9,} rows in {result['seconds']:6.1f} s = "
        f"{result['rows'] / result['seconds']:>9,.0f} rows/s, peak {result['peak_mb']:.0f} MB"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--db", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--chunk-size", type=int, help="default: the importer's")
    parser.add_argument("--data-dir", type=Path, default=ROOT / "benchmarks" / ".data")
    parser.add_argument("--compare", metavar="REV", help="also time the importer of git revision REV")
    parser.add_argument("--repeat", type=int, default=1, help="imports per database (with --compare)")
    parser.add_argument(
        "--no-bulk-baseline", action="store_true", help="skip the bare bulk inserts (with --compare)"
    )
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        step, url, path = args.child[0], args.child[1], Path(args.child[2])
        chunk_size = int(args.child[3]) if len(args.child) > 3 else None
        if step == "import":
            result = child_import(url, path, chunk_size)
        else:
            result = child_baseline(url, path, with_tags=step == "baseline")
        print(json.dumps(result))
        return 0

    csv_path = args.data_dir.resolve() / f"subscribers-{args.rows}.csv"
    if not csv_path.exists():
        started = time.perf_counter()
        generate(csv_path, args.rows)
        print(f"generated {csv_path} ({args.rows:,} rows) in {time.perf_counter() - started:.1f} s")
    if (args.repeat != 1 or args.no_bulk_baseline) and not args.compare:
        parser.error("--repeat and --no-bulk-baseline go with --compare")
    failed = False
    with tempfile.TemporaryDirectory(prefix="newsletter-bench-") as tmp:
        old_code = export_revision(args.compare, Path(tmp) / "old") if args.compare else None
        chunk = [] if args.chunk_size is None else [str(args.chunk_size)]
        for kind in args.db or ["sqlite", "postgresql"]:
            if old_code is not None:
                new_runs, old_runs = [], []
                for _ in range(max(args.repeat, 1)):  # alternating, so drift in load hits both
                    with Database(kind, args.pg_url, Path(tmp)) as db:
                        old_runs.append(run_child("import", db.url, str(csv_path), *chunk, code=old_code))
                    with Database(kind, args.pg_url, Path(tmp)) as db:
                        new_runs.append(run_child("import", db.url, str(csv_path), *chunk))
                for new, old in zip(new_runs, old_runs, strict=True):
                    if not old["code"].startswith(str(old_code)) or new["code"].startswith(str(old_code)):
                        raise SystemExit(f"a compared run used the wrong code: {old['code']}, {new['code']}")
                    print(
                        f"{kind:10} import {describe(new)} | at {args.compare}: {describe(old)} "
                        f"| ratio {new['seconds'] / old['seconds']:.2f}x"
                    )
                best = min(r["seconds"] for r in new_runs) / min(r["seconds"] for r in old_runs)
                print(f"{'':10} best of {len(new_runs)}: ratio {best:.2f}x this tree / {args.compare}")
                if args.no_bulk_baseline:
                    continue
            with Database(kind, args.pg_url, Path(tmp)) as db:
                result = run_child("import", db.url, str(csv_path), *chunk)
            with Database(kind, args.pg_url, Path(tmp)) as db:
                base = run_child("baseline", db.url, str(csv_path))
            with Database(kind, args.pg_url, Path(tmp)) as db:
                narrow = run_child("baseline-rows", db.url, str(csv_path))
            ratio = result["seconds"] / base["seconds"]
            rate = result["rows"] / result["seconds"]
            print(
                f"{kind:10} import {result['rows']:>9,} rows in {result['seconds']:6.1f} s "
                f"= {rate:>9,.0f} rows/s, added {result['added']:,}, skipped "
                f"{result['skipped']:,}, peak {result['peak_mb']:.0f} MB (reader process "
                f"{result['reader_mb']:.0f} MB included) | baseline "
                f"({'COPY' if kind == 'postgresql' else 'executemany'}) {base['seconds']:.1f} s, "
                f"peak {base['peak_mb']:.0f} MB | ratio {ratio:.2f}x"
            )
            method = "COPY" if kind == "postgresql" else "executemany"
            print(
                f"{'':10} baseline of the subscriber rows alone, no tags ({method}) "
                f"{narrow['seconds']:.1f} s | ratio {result['seconds'] / narrow['seconds']:.2f}x"
            )
            failed |= args.rows >= 1_000_000 and (
                result["seconds"] > 60 or ratio > 2 or result["peak_mb"] > 200
            )
    if failed:
        print("target missed: 1M rows must take < 60 s, < 2x baseline, < 200 MB peak")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
