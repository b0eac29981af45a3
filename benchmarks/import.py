"""Benchmark: import a 1,000,000-row subscriber CSV into SQLite and PostgreSQL.

Prints, for each database, the import's rows per second and peak memory, and in the same run the
time of a bare bulk insert of the same rows (the CSV parsed with the csv module and written with
``executemany`` on SQLite, ``COPY`` on PostgreSQL; no validation, no upsert, no tags) as the
baseline, with the ratio. Targets: under 60 s per database, within 2x the baseline, under 200 MB.

    .venv/bin/python benchmarks/import.py                  # 1M rows, both databases
    .venv/bin/python benchmarks/import.py --rows 2000 --db sqlite

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
sys.path.insert(0, str(ROOT))

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


def child_import(url: str, csv_path: Path, chunk_size: int) -> dict[str, Any]:
    from newsletter.store.db import make_engine
    from newsletter.store.importer import import_csv

    engine = make_engine(url)
    started = time.perf_counter()
    with engine.connect() as conn:
        summary = import_csv(conn, csv_path, chunk_size=chunk_size)
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
    }


def child_baseline(url: str, csv_path: Path) -> dict[str, Any]:
    """The same rows, straight in: csv module + executemany (SQLite) or COPY (PostgreSQL)."""
    import datetime as dt

    from sqlalchemy.engine import make_url

    from newsletter.store.db import make_engine

    engine = make_engine(url)
    now = dt.datetime.now(dt.UTC)
    started = time.perf_counter()
    rows = 0
    raw = engine.raw_connection()
    try:
        cursor = raw.cursor()
        columns = "email, email_normalized, name, status, attributes, created_at"
        with csv_path.open(encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            next(reader)

            def records() -> Any:
                nonlocal rows
                for email, name, _tags, city in reader:
                    rows += 1
                    attributes = json.dumps({"city": city} if city else {})
                    key = email.lower() or f"<empty {rows}>"  # unique even for bad rows
                    yield (email, key, name, "active", attributes, now)

            if make_url(url).get_backend_name() == "postgresql":
                with cursor.copy(f"COPY subscribers ({columns}) FROM STDIN") as copy:
                    for record in records():
                        copy.write_row(record)
            else:
                iso = now.isoformat(sep=" ")
                cursor.executemany(
                    f"INSERT INTO subscribers ({columns}) VALUES (?, ?, ?, ?, ?, ?)",
                    ((*r[:5], iso) for r in records()),
                )
        raw.commit()
    finally:
        raw.close()
    seconds = time.perf_counter() - started
    engine.dispose()
    return {"seconds": seconds, "rows": rows, "peak_mb": peak_mb()}


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


def run_child(*args: str) -> dict[str, Any]:
    output = subprocess.run(
        [sys.executable, __file__, "--child", *args], check=True, capture_output=True, text=True
    ).stdout
    return json.loads(output.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--db", action="append", choices=["sqlite", "postgresql"])
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--chunk-size", type=int, default=5000)
    parser.add_argument("--data-dir", type=Path, default=ROOT / "benchmarks" / ".data")
    parser.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        step, url, path = args.child[0], args.child[1], Path(args.child[2])
        result = child_import(url, path, args.chunk_size) if step == "import" else child_baseline(url, path)
        print(json.dumps(result))
        return 0

    csv_path = args.data_dir / f"subscribers-{args.rows}.csv"
    if not csv_path.exists():
        started = time.perf_counter()
        generate(csv_path, args.rows)
        print(f"generated {csv_path} ({args.rows:,} rows) in {time.perf_counter() - started:.1f} s")
    failed = False
    with tempfile.TemporaryDirectory(prefix="newsletter-bench-") as tmp:
        for kind in args.db or ["sqlite", "postgresql"]:
            with Database(kind, args.pg_url, Path(tmp)) as db:
                result = run_child("import", db.url, str(csv_path), "--chunk-size", str(args.chunk_size))
            with Database(kind, args.pg_url, Path(tmp)) as db:
                base = run_child("baseline", db.url, str(csv_path))
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
            failed |= args.rows >= 1_000_000 and (
                result["seconds"] > 60 or ratio > 2 or result["peak_mb"] > 200
            )
    if failed:
        print("target missed: 1M rows must take < 60 s, < 2x baseline, < 200 MB peak")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
