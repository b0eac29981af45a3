"""The main job on embedded defaults, as ``scripts/demo.sh`` runs it on a fresh machine.

Renders the newest issue, migrates the configured database (a SQLite file by default) and imports
the sample subscribers, so a new user sees the whole pipeline so far without an account or a server.
The sample issue and subscribers ship inside the package (``newsletter/samples/``): with no issue
files in the configured issues folder (an empty directory, an installed wheel) the demo renders the
sample issue.
Then it sends the issue to the sample subscribers through the outbox (one ``.eml`` file per
message), unless another provider is configured: the demo never mails real people. Last, it
builds the web archive of what was sent as a static site in ``<out>/site/`` (the pages
``newsletter serve`` answers with), whose ``index.html`` opens in any browser.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from newsletter.config import Settings
from newsletter.content.calendar import issue_files
from newsletter.errors import NewsletterError
from newsletter.preview import PreviewFiles, write_preview
from newsletter.store.db import make_engine, session_scope, upgrade
from newsletter.store.importer import ImportSummary, import_csv
from newsletter.store.models import SubscriberStatus
from newsletter.store.subscribers import SubscriberRepository

if TYPE_CHECKING:
    from newsletter.web.archive import BuildSummary

# Shipped inside the package (package data), so an installed wheel runs the demo anywhere.
SAMPLES_DIR = Path(__file__).resolve().parent / "samples"
SAMPLE_ISSUES_DIR = SAMPLES_DIR / "issues"
SAMPLE_SUBSCRIBERS = SAMPLES_DIR / "subscribers.csv"


@dataclass(frozen=True)
class DemoResult:
    issue: Path
    #: True when ``issue`` is the packaged sample, because the issues folder had no issue files.
    sample: bool
    preview: PreviewFiles
    database_url: str
    imported: ImportSummary
    active: int
    #: Recipients by state of the send through the outbox; None when another provider is set.
    sent: dict[str, int] | None = None
    #: The outbox folder of that send, and whether an earlier run had sent it already.
    outbox: Path | None = None
    already_sent: bool = False
    #: The static web archive written under ``<out>/site/``.
    site: BuildSummary | None = None


def run_demo(settings: Settings, out_dir: Path, subscribers_csv: Path = SAMPLE_SUBSCRIBERS) -> DemoResult:
    newest, sample = newest_issue(settings.paths.issues)
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
    result = DemoResult(newest, sample, preview, settings.database.url, imported, active)
    if settings.esp.provider != "outbox":
        return replace(result, site=build_archive(settings, out_dir))
    from newsletter.delivery import runner  # the send's modules load only when it sends

    plan = runner.plan(runner.prepare_issue(newest, settings), settings, "", start=True)
    if plan.nothing_to_do and plan.existing is not None and plan.counts is not None:
        send_id, counts, already = plan.existing.id, plan.counts, True
    else:
        outcome = runner.execute(plan, settings)
        send_id, counts, already = outcome.send.id, outcome.counts, False
    return replace(
        result,
        sent=counts.by_state,
        outbox=settings.esp.outbox_dir / str(send_id),
        already_sent=already,
        site=build_archive(settings, out_dir),
    )


def build_archive(settings: Settings, out_dir: Path) -> BuildSummary:
    """The web archive of every issue sent so far, as a static site in ``out_dir/site``."""
    from newsletter.web.archive import build_site

    engine = make_engine(settings.database.url)
    try:
        return build_site(settings, engine, out_dir / "site")
    finally:
        engine.dispose()


def newest_issue(directory: Path) -> tuple[Path, bool]:
    """The newest issue file in ``directory``, else the packaged sample issue (and whether it is)."""
    found = issue_files(directory)
    if found:
        return found[-1], False
    samples = issue_files(SAMPLE_ISSUES_DIR)
    if not samples:  # pragma: no cover - a broken install
        raise NewsletterError(f"no issue files in {directory}, and no sample issue in {SAMPLE_ISSUES_DIR}")
    return samples[-1], True
