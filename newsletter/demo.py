"""The main job on embedded defaults, as ``scripts/demo.sh`` runs it on a fresh machine.

Renders the newest issue, migrates the configured database (a SQLite file by default) and imports
the sample subscribers, so a new user sees the whole pipeline so far without an account or a server.
Later stages (sending through the local outbox) extend this same function.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from newsletter.config import Settings
from newsletter.content.draft import issue_files
from newsletter.errors import NewsletterError
from newsletter.preview import PreviewFiles, write_preview
from newsletter.store.db import make_engine, session_scope, upgrade
from newsletter.store.importer import ImportSummary, import_csv
from newsletter.store.models import SubscriberStatus
from newsletter.store.subscribers import SubscriberRepository

SAMPLE_SUBSCRIBERS = Path(__file__).resolve().parents[1] / "samples" / "subscribers.csv"


@dataclass(frozen=True)
class DemoResult:
    issue: Path
    preview: PreviewFiles
    database_url: str
    imported: ImportSummary
    active: int


def run_demo(settings: Settings, out_dir: Path, subscribers_csv: Path = SAMPLE_SUBSCRIBERS) -> DemoResult:
    found = issue_files(settings.paths.issues)
    if not found:
        raise NewsletterError(f"no issue files in {settings.paths.issues}")
    newest = found[-1]
    preview = write_preview(newest, out_dir / newest.stem, settings.newsletter)
    engine = make_engine(settings.database.url)
    try:
        upgrade(engine)
        with engine.connect() as conn:
            imported = import_csv(
                conn, subscribers_csv, rejects_path=out_dir / "subscribers.rejects.csv"
            )
        with session_scope(engine) as session:
            active = SubscriberRepository(session).count(status=SubscriberStatus.ACTIVE)
    finally:
        engine.dispose()
    return DemoResult(newest, preview, settings.database.url, imported, active)
