"""From an issue file to a running send: check, render once, snapshot, and pick up where it was.

The CLI (``send``, ``status``, ``worker``) and later the scheduler call these; they hold the rules
that make a send safe to start twice:

* an issue that fails ``check`` is never sent;
* a send is unique per issue date and segment: starting it again resumes the same ledger rather
  than mailing everyone a second time, and only when asked (``--resume``);
* a send resumes only with the content it started with: the issue is rendered again and its hash
  compared, so recipients of one send never get two versions of an issue.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import ipaddress
import math
import os
import shlex
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from newsletter.config import Settings
from newsletter.content.loader import LoadedIssue, Problem, load_issue
from newsletter.delivery.engine import Personaliser, RunReport, run_send
from newsletter.delivery.esp.base import Outcome, Outgoing
from newsletter.delivery.esp.registry import adapter_factory
from newsletter.delivery.tokens import TokenSigner
from newsletter.errors import BadInput, ConfigError
from newsletter.render.checks import check_issue
from newsletter.render.email import RenderedIssue, render_issue
from newsletter.store.addresses import InvalidAddress, normalize
from newsletter.store.archive import IssueSnapshot
from newsletter.store.db import open_database, writing
from newsletter.store.heartbeats import Heartbeat
from newsletter.store.heartbeats import latest as latest_heartbeat
from newsletter.store.ledger import Claimed, Ledger, SendCounts, SendInfo, ledger_for
from newsletter.store.ledger import Outcome as Recorded
from newsletter.store.models import SendState

__all__ = [
    "IssueNotReady",
    "PreparedIssue",
    "content_hash",
    "execute",
    "outgoing_for",
    "personaliser_for",
    "plan",
    "prepare",
    "prepare_issue",
    "secret_key",
    "send_test",
    "status",
    "work_once",
]

#: Used only with the outbox, so the demo runs with no set-up; every real provider needs a key.
DEVELOPMENT_SECRET = "newsletter-development-key-outbox-only"
SECRET_ENV = "NEWSLETTER_SECRET_KEY"


class IssueNotReady(BadInput):
    """The issue fails ``check``; the message lists the problems."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        lines = "\n".join(str(problem) for problem in problems)
        super().__init__(f"the issue fails check, so it is not sent:\n{lines}")


@dataclass(frozen=True)
class PreparedIssue:
    path: Path
    loaded: LoadedIssue
    rendered: RenderedIssue
    content_hash: str
    warnings: list[Problem]

    @property
    def issue_date(self) -> dt.date:
        return self.loaded.issue.date

    @property
    def snapshot(self) -> IssueSnapshot:
        """What the send publishes in the web archive: the validated issue, not the file."""
        issue = self.loaded.issue
        return IssueSnapshot(issue.date, issue.subject, issue.preheader, issue.model_dump_json())


def content_hash(rendered: RenderedIssue) -> str:
    """Identifies what recipients get: subject, HTML and text, as rendered."""
    digest = hashlib.sha256()
    for part in (rendered.subject, rendered.html, rendered.text):
        digest.update(part.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()


def prepare_issue(path: Path, settings: Settings, *, links: bool = False) -> PreparedIssue:
    """Load, check and render once; refuse an issue with any error (warnings are passed on).

    With ``links`` (a send about to start), the link check runs as ``[check] links`` says: its
    errors refuse the issue (``fail``) or are passed on as warnings (``warn``), or it is skipped.
    """
    loaded = load_issue(path)
    problems = check_issue(loaded, settings.newsletter)
    if links and settings.check.links != "off":
        from newsletter.checks.links import check_issue_links

        found = check_issue_links(loaded, settings)
        if settings.check.links == "warn":
            found = [replace(problem, severity="warning") for problem in found]
        problems = sorted([*problems, *found], key=lambda problem: (problem.line, problem.column))
    errors = [problem for problem in problems if problem.severity == "error"]
    if errors:
        raise IssueNotReady(errors)
    rendered = render_issue(loaded.issue, settings.newsletter)
    warnings = [problem for problem in problems if problem.severity != "error"]
    return PreparedIssue(path, loaded, rendered, content_hash(rendered), warnings)


def outgoing_for(
    send_id: int, prepared: PreparedIssue, settings: Settings, *, subject: str | None = None
) -> Outgoing:
    """The part of every message that is the same for the whole send."""
    news = settings.newsletter
    return Outgoing(
        send_id=send_id,
        key=prepared.content_hash,
        subject=subject or prepared.rendered.subject,
        html=prepared.rendered.html,
        text=prepared.rendered.text,
        from_address=str(news.from_address),
        from_name=news.from_name or news.name,
        reply_to=str(news.reply_to),
        list_id=news.list_id,
        headers={
            "List-Id": f"{news.name} <{news.list_id}>",
            "List-Unsubscribe-Post": "List-Unsubscribe=One-Click",
        },
        tag=f"issue-{prepared.issue_date.isoformat()}",
    )


def secret_key(settings: Settings, environ: dict[str, str] | None = None) -> str:
    """``NEWSLETTER_SECRET_KEY``; only the outbox may run on the built-in development key."""
    environ = dict(os.environ) if environ is None else environ
    key = environ.get(SECRET_ENV, "")
    if key:
        return key
    if settings.esp.provider == "outbox":
        return DEVELOPMENT_SECRET
    raise ConfigError(
        f"{SECRET_ENV} is not set: unsubscribe links are signed with it. "
        f'Set it to a long random value (python -c "import secrets; print(secrets.token_urlsafe(32))")'
    )


#: Hosts a plain-http ``base_url`` may name: a machine's own, for trying the service locally.
_LOOPBACK_NAMES = {"localhost", "ip6-localhost"}


def require_https_links(settings: Settings) -> None:
    """Every message carries ``List-Unsubscribe-Post`` (one-click), which RFC 8058 allows only with an
    https URI: through a real provider, a plain-http ``base_url`` is refused, but for a loopback host
    (local testing). The outbox writes files nobody's mailbox provider reads, so it may use any."""
    if settings.esp.provider == "outbox":
        return
    url = urlsplit(settings.newsletter.base_url)
    if url.scheme == "https":
        return
    host = (url.hostname or "").lower()
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host in _LOOPBACK_NAMES
    if not loopback:
        raise ConfigError(
            f"newsletter.base_url is {settings.newsletter.base_url}: one-click unsubscribe (RFC 8058) "
            "needs an https URL, e.g. https://news.example.org (plain http only for a loopback host)"
        )


def personaliser_for(settings: Settings, environ: dict[str, str] | None = None) -> Personaliser:
    require_https_links(settings)
    news = settings.newsletter
    domain = str(news.from_address).rpartition("@")[2]
    mailto = settings.esp.unsubscribe_mailto or str(news.reply_to)
    bounces = settings.bounces
    verp = bounces.verp and settings.esp.provider == "smtp"  # only SMTP's bounces come back as mail
    return Personaliser(
        TokenSigner(secret_key(settings, environ)),
        news.base_url,
        mailto,
        domain,
        bounce_address=bounces.address if verp else "",
        unsubscribe_address=bounces.unsubscribe_address if verp else "",
    )


def check_resumable(send: SendInfo, prepared: PreparedIssue) -> None:
    """A send continues only with the content it started with."""
    if send.content_hash != prepared.content_hash:
        raise BadInput(
            f"{prepared.path} changed since send {send.id} started "
            f"({send.content_hash[:12]} then, {prepared.content_hash[:12]} now): its remaining "
            "recipients would get a different issue. Restore the file as it was (git) to resume."
        )


RESUMABLE = (SendState.SENDING, SendState.PAUSED, SendState.STOPPED)
#: A scheduled send that ended without going out; ``send`` may still send it.
NEVER_STARTED = (SendState.CANCELLED, SendState.MISSED)


def resume_command(send: SendInfo, *, alone: bool = True) -> str:
    """The command that continues exactly this send.

    A send to everyone is named by ``--segment ''`` when the issue has other sends (``alone`` is
    False): a bare ``--resume`` is then refused as ambiguous.
    """
    command = f"newsletter send {shlex.quote(send.issue_file)}"
    if send.segment or not alone:
        command += f" --segment {shlex.quote(send.segment)}"
    return command + " --resume"


def reopen(ledger: Ledger, send: SendInfo, *, retry_unknown: bool) -> int:
    """Make a paused, stopped or finished send run again; return how many unknown rows reopened."""
    reopened = ledger.retry_unknown(send.id) if retry_unknown else 0
    ledger.set_state(send.id, SendState.SENDING, only_from=[*RESUMABLE, SendState.FINISHED])
    return reopened


prepare = prepare_issue


# -- planning: what `send` would do, read-only (so --dry-run writes nothing) ---------------------


@dataclass(frozen=True)
class Plan:
    prepared: PreparedIssue
    segment: str
    provider: str
    batch: int
    audience: int  #: recipients a new send would snapshot, or the existing send's open rows
    existing: SendInfo | None
    counts: SendCounts | None
    retry_unknown: bool
    nothing_to_do: bool = False
    #: A scheduled send that was cancelled or missed before it started: ``send`` starts it now
    #: (its row is unique per issue and audience, so it is reused rather than created).
    revive: SendInfo | None = None

    @property
    def who(self) -> str:
        return f"segment {self.segment!r}" if self.segment else "all active subscribers"

    def describe(self) -> str:
        issue = self.prepared
        lines = [f"Issue:    {issue.rendered.subject} ({issue.path})", f"Audience: {self.who}"]
        if self.existing is None:
            lines.append(f"Recipients: {self.audience:,} (snapshotted when the send starts)")
        else:
            assert self.counts is not None
            send = self.existing
            lines.append(f"Send {send.id}: {send.state}" + (f" ({send.error})" if send.error else ""))
            lines.append("  " + _counts_line(self.counts))
        batches = math.ceil(self.audience / self.batch) if self.batch else 0
        lines.append(
            f"Provider: {self.provider}, up to {self.batch} per request: "
            f"{batches:,} batch{'es' if batches != 1 else ''}"
        )
        if self.nothing_to_do:
            lines.append("Nothing to send.")
        return "\n".join(lines)

    @property
    def question(self) -> str:
        verb = "Send" if self.existing is None else "Continue sending"
        return f"{verb} to {self.audience:,} recipients now?"


def _counts_line(counts: SendCounts) -> str:
    return ", ".join(f"{n:,} {state}" for state, n in counts.by_state.items() if n) or "no recipients"


def _batch_size(settings: Settings) -> int:
    probe = adapter_factory(settings.esp)()
    try:
        size = probe.max_batch
    finally:
        probe.close()
    return min(size, settings.esp.batch_size) if settings.esp.batch_size else size


def plan(
    prepared: PreparedIssue,
    settings: Settings,
    segment: str | None,
    *,
    resume: bool = False,
    retry_unknown: bool = False,
    start: bool = False,
) -> Plan:
    """Decide what ``send`` does for this issue and audience, without writing anything.

    ``resume``: continue an existing send (and only that); ``start``: start the send, or continue
    it if it exists (the demo and the scheduler, which run unattended). ``segment`` None: no
    ``--segment`` was given, which means everyone, except that ``resume`` then continues the
    issue's only send, whatever its audience, and refuses to guess between several.
    """
    batch = _batch_size(settings)  # also fails early on a missing provider secret
    secret_key(settings)
    require_https_links(settings)
    engine = open_database(settings.database.url)
    try:
        with engine.connect() as conn:
            ledger = ledger_for(conn)
            if segment is None:
                segment = _segment_to_resume(ledger, prepared) if resume and not start else ""
            if segment:
                from newsletter.store.segments import parse_segment

                parse_segment(segment)
            existing = ledger.find_send(prepared.issue_date, segment)
            common: dict[str, Any] = dict(
                prepared=prepared,
                segment=segment,
                provider=settings.esp.provider,
                batch=batch,
                retry_unknown=retry_unknown,
            )
            if existing is None:
                if (resume and not start) or retry_unknown:
                    raise BadInput(
                        f"{prepared.path} has not been sent to {segment or 'everyone'} yet: nothing to resume"
                    )
                return Plan(audience=ledger.audience_count(segment), existing=None, counts=None, **common)
            counts = ledger.counts(existing.id)
            unknown = counts.by_state.get("unknown", 0) if retry_unknown else 0
            if existing.state in (SendState.SCHEDULED,):
                raise BadInput(
                    f"send {existing.id} of this issue is scheduled; change it with `newsletter schedule`"
                )
            if existing.state in NEVER_STARTED and existing.started_at is None and not resume:
                return Plan(
                    audience=ledger.audience_count(segment),
                    existing=None,
                    counts=None,
                    revive=existing,
                    **common,
                )
            if existing.state in (SendState.FINISHED, SendState.CANCELLED, SendState.MISSED) and not unknown:
                return Plan(audience=0, existing=existing, counts=counts, nothing_to_do=True, **common)
            if existing.state in RESUMABLE and not (resume or retry_unknown or start):
                raise BadInput(
                    f"send {existing.id} of this issue is {existing.state} with {counts.open:,} recipients "
                    f"left; continue it with: "
                    f"{resume_command(existing, alone=len(ledger.sends(prepared.issue_date)) == 1)}"
                )
            check_resumable(existing, prepared)
            return Plan(audience=counts.open + unknown, existing=existing, counts=counts, **common)
    finally:
        engine.dispose()


def _segment_to_resume(ledger: Ledger, prepared: PreparedIssue) -> str:
    """The segment of the issue's only send, for a ``--resume`` that names none."""
    sends = ledger.sends(prepared.issue_date)
    if len(sends) <= 1:
        return sends[0].segment if sends else ""
    listed = []
    for send in sends:
        who = f"segment {send.segment!r}" if send.segment else "all active subscribers"
        left = ledger.counts(send.id).open
        listed.append(
            f"  send {send.id} to {who}: {send.state}, {left:,} left: {resume_command(send, alone=False)}"
        )
    raise BadInput(
        f"{prepared.path} has {len(sends)} sends; say which one to resume with --segment:\n"
        + "\n".join(listed)
    )


# -- running ---------------------------------------------------------------------------------------


@dataclass
class SendOutcome:
    send: SendInfo
    counts: SendCounts
    report: RunReport
    unknown: list[tuple[int, str | None, str | None]] = field(default_factory=list)
    #: Whether the send is its issue's only one (then a send to everyone resumes with a bare --resume).
    alone: bool = True

    @property
    def exit_code(self) -> int:
        """0 only when the send finished with no recipient left unknown: those need the editor."""
        unknown = self.counts.by_state.get("unknown", 0)
        return 0 if self.send.state is SendState.FINISHED and not unknown else 1

    def summary(self) -> str:
        send, counts = self.send, self.counts
        lines = [f"Send {send.id} is {send.state}: " + _counts_line(counts)]
        for reason, n in counts.failed_by_reason.items():
            lines.append(f"  failed, {reason}: {n:,}")
        if counts.by_state.get("unknown"):
            lines.append(
                f"  {counts.by_state['unknown']:,} unknown: the provider may or may not have them; "
                "see `newsletter status`, resend with --retry-unknown"
            )
        if send.state is SendState.PAUSED or send.state is SendState.STOPPED:
            lines.append(f"  {send.error or ''}".rstrip())
            lines.append(f"  resume with: {resume_command(send, alone=self.alone)}")
        return "\n".join(lines)


def execute(
    the_plan: Plan,
    settings: Settings,
    *,
    stop: threading.Event | None = None,
    workers: int | None = None,
    processes: int | None = None,
    progress: Any = None,
) -> SendOutcome:
    """Create (snapshot) or reopen the send, then run it to the end or until it stops."""
    prepared = the_plan.prepared
    # A missing provider secret or signing key fails here, before anything is written.
    adapter_factory(settings.esp)
    personaliser_for(settings)
    engine = open_database(settings.database.url)
    try:
        with writing(engine).begin() as conn:
            ledger = ledger_for(conn)
            if the_plan.revive is not None:
                send = _revive(ledger, the_plan.revive, prepared, settings)
            elif the_plan.existing is None:
                send = ledger.create_send(
                    issue_file=str(prepared.path),
                    issue_date=prepared.issue_date,
                    segment=the_plan.segment,
                    subject=prepared.rendered.subject,
                    content_hash=prepared.content_hash,
                    provider=settings.esp.provider,
                    issue=prepared.snapshot,
                )
            else:
                reopen(ledger, the_plan.existing, retry_unknown=the_plan.retry_unknown)
                send = ledger.get_send(the_plan.existing.id)
            total = ledger.counts(send.id).open
        report = _run(engine, send, prepared, settings, stop, workers, progress, total, processes)
        with engine.connect() as conn:
            ledger = ledger_for(conn)
            return SendOutcome(
                ledger.get_send(send.id),
                ledger.counts(send.id),
                report,
                ledger.unknown_recipients(send.id),
                alone=len(ledger.sends(send.issue_date)) == 1,
            )
    finally:
        engine.dispose()


def _revive(ledger: Ledger, send: SendInfo, prepared: PreparedIssue, settings: Settings) -> SendInfo:
    """Start a cancelled or missed scheduled send now, with the issue as it is now."""
    current: dict[str, Any] = {
        "issue_file": str(prepared.path),
        "subject": prepared.rendered.subject,
        "content_hash": prepared.content_hash,
        "provider": settings.esp.provider,
    }
    if not (
        ledger.reschedule(send.id, dt.datetime.now(dt.UTC), only_from=NEVER_STARTED, **current)
        and ledger.start_scheduled(send.id, issue=prepared.snapshot, **current)
    ):
        raise BadInput(f"send {send.id} changed state while this command ran; run it again")
    return ledger.get_send(send.id)


def _run(
    engine: Any,
    send: SendInfo,
    prepared: PreparedIssue,
    settings: Settings,
    stop: threading.Event | None,
    workers: int | None,
    progress: Any,
    total: int,
    processes: int | None = None,
) -> RunReport:
    """Run the send with ``workers`` batches in flight per process (threads), in ``processes``
    processes: this one and, beyond one, as many helpers of a standard-library process pool.

    Threads overlap the waits for the provider; processes add CPUs, since building a batch is
    Python work that one interpreter runs on one core at a time. Every process claims from the
    ledger like any ``newsletter worker``: claims never overlap, whoever finishes the send cleans up.
    """
    processes = processes or settings.esp.processes
    if processes <= 1:
        if progress is None:
            return _send_here(engine, send.id, prepared, settings, workers, stop, None)
        with progress:
            task = progress.add_task("send", total=total)
            return _send_here(
                engine,
                send.id,
                prepared,
                settings,
                workers,
                stop,
                lambda recorded: progress.advance(task, len(recorded)),
            )
    return _run_in_processes(engine, send, prepared, settings, stop, workers, progress, total, processes)


def _send_here(
    engine: Any,
    send_id: int,
    prepared: PreparedIssue,
    settings: Settings,
    workers: int | None,
    stop: Any,
    on_batch: Callable[[Sequence[Recorded]], None] | None,
    rate_share: int = 1,
) -> RunReport:
    """``rate_share``: how many processes share the provider's rate limit."""
    esp = settings.esp
    return run_send(
        engine,
        send_id,
        outgoing_for(send_id, prepared, settings),
        adapter_factory(esp),
        personaliser_for(settings),
        workers=workers or esp.workers,
        rate=esp.rate / rate_share,
        lease=dt.timedelta(seconds=esp.lease_seconds),
        stop=stop,
        on_batch=on_batch,
        batch_size=esp.batch_size or None,
    )


def _run_in_processes(
    engine: Any,
    send: SendInfo,
    prepared: PreparedIssue,
    settings: Settings,
    stop: threading.Event | None,
    workers: int | None,
    progress: Any,
    total: int,
    processes: int,
) -> RunReport:
    """This process sends too; helpers report each recorded batch's size on a queue (for the
    progress bar) and their :class:`RunReport` at the end. ``stop`` (Ctrl-C reaches only this
    process: helpers ignore SIGINT) is passed on through an event they share."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")  # no fork of a process with threads and sockets
    shared_stop = context.Event()
    recorded_sizes: Any = context.SimpleQueue()
    stop = stop or threading.Event()
    here_done = threading.Event()

    def relay_stop() -> None:
        while not here_done.is_set():
            if stop.wait(0.1):
                shared_stop.set()
                return

    task = progress.add_task("send", total=total) if progress is not None else None

    def relay_progress() -> None:
        while (size := recorded_sizes.get()) is not None:
            progress.advance(task, size)

    relays = [threading.Thread(target=relay_stop, daemon=True)]
    if progress is not None:
        relays.append(threading.Thread(target=relay_progress, daemon=True))
    for relay in relays:
        relay.start()
    reports: list[RunReport] = []
    failure: BaseException | None = None
    with progress if progress is not None else contextlib.nullcontext():
        with ProcessPoolExecutor(
            max_workers=processes - 1,
            mp_context=context,
            initializer=_helper_init,
            initargs=(shared_stop, recorded_sizes if progress is not None else None),
        ) as pool:
            helpers = [
                pool.submit(_helper_send, settings, send.id, prepared, workers, processes)
                for _ in range(processes - 1)
            ]
            on_batch = (lambda recorded: progress.advance(task, len(recorded))) if progress else None
            try:
                reports.append(
                    _send_here(engine, send.id, prepared, settings, workers, shared_stop, on_batch, processes)
                )
            except BaseException as exc:  # let the helpers stop and record their batches first
                shared_stop.set()
                failure = exc
            for helper in helpers:
                try:
                    reports.append(helper.result())
                except BaseException as exc:
                    shared_stop.set()
                    failure = failure or exc
        here_done.set()
        if progress is not None:
            recorded_sizes.put(None)
            relays[1].join()
    if failure is not None:
        raise failure
    return _merged(reports)


_HELPER_STOP: Any = None
_HELPER_PROGRESS: Any = None


def _helper_init(stop: Any, progress: Any) -> None:
    """In each helper process: Ctrl-C is the parent's to handle; it passes it on as ``stop``."""
    import signal

    global _HELPER_STOP, _HELPER_PROGRESS
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _HELPER_STOP, _HELPER_PROGRESS = stop, progress


def _helper_send(
    settings: Settings, send_id: int, prepared: PreparedIssue, workers: int | None, processes: int
) -> RunReport:
    engine = open_database(settings.database.url)
    queue = _HELPER_PROGRESS
    try:
        return _send_here(
            engine,
            send_id,
            prepared,
            settings,
            workers,
            _HELPER_STOP,
            (lambda recorded: queue.put(len(recorded))) if queue is not None else None,
            processes,
        )
    finally:
        engine.dispose()


def _merged(reports: Sequence[RunReport]) -> RunReport:
    """One report for the processes of a send: counts added; of the reasons to stop, the one that
    caused it (a helper refused by the provider stops the others, which then only say "paused")."""
    merged = RunReport()
    for report in reports:
        merged.outcomes.update(report.outcomes)
        merged.batches += report.batches
    stopped = [r for r in reports if r.stopped is not None]
    cause = next((r for r in stopped if r.stopped != "paused"), stopped[0] if stopped else None)
    if cause is not None:
        merged.stopped, merged.error = cause.stopped, cause.error
    else:
        merged.error = next((r.error for r in reports if r.error), None)
    return merged


def send_test(prepared: PreparedIssue, settings: Settings, addresses: Sequence[str]) -> list[tuple[str, str]]:
    """A "[TEST]" copy to each address through the configured provider; nothing in the ledger."""
    try:
        normalized = [normalize(address).email for address in addresses]
    except InvalidAddress as exc:
        raise BadInput(f"--test: {exc}") from None
    message = outgoing_for(0, prepared, settings, subject=f"[TEST] {prepared.rendered.subject}")
    adapter = adapter_factory(settings.esp)()
    personaliser = personaliser_for(settings)
    claimed = [Claimed(-(i + 1), 0, address, "", 1) for i, address in enumerate(normalized)]
    try:
        adapter.prepare(message)
        results = adapter.send_batch(message, personaliser.recipients(0, claimed, test=True))
        # Drop what prepare made (Postmark renders a template when it accepts the message), or
        # every edited draft's test copy would leave a template behind.
        adapter.finish(message)
    finally:
        adapter.close()
    by_id = {result.delivery_id: result for result in results}
    out = []
    for row in claimed:
        result = by_id.get(row.delivery_id)
        if result is None:
            out.append((row.email, "no answer"))
        elif result.outcome is Outcome.ACCEPTED:
            out.append((row.email, "accepted"))
        else:
            out.append((row.email, f"{result.outcome}: {result.error or ''}".rstrip(": ")))
    return out


# -- status and workers -----------------------------------------------------------------------


@dataclass(frozen=True)
class SendStatus:
    send: SendInfo
    counts: SendCounts
    unknown: list[tuple[int, str | None, str | None]]

    def as_dict(self) -> dict[str, Any]:
        send = self.send
        return {
            "id": send.id,
            "issue_file": send.issue_file,
            "issue_date": send.issue_date.isoformat(),
            "segment": send.segment,
            "subject": send.subject,
            "provider": send.provider,
            "state": str(send.state),
            "error": send.error,
            "recipients": send.recipients,
            "scheduled_at": send.scheduled_at,
            "created_at": send.created_at,
            "started_at": send.started_at,
            "finished_at": send.finished_at,
            "counts": self.counts.by_state,
            "failed_by_reason": self.counts.failed_by_reason,
            "unknown": [{"delivery_id": i, "email": e, "error": err} for i, e, err in self.unknown],
        }

    def describe(self) -> str:
        send = self.send
        audience = f"segment {send.segment!r}" if send.segment else "everyone"
        lines = [
            f"Send {send.id}  {send.issue_date}  {send.state}  {audience}  via {send.provider}",
            f"  {send.subject}",
        ]
        if send.scheduled_at is not None:
            lines.append(f"  scheduled for {send.scheduled_at:%Y-%m-%d %H:%M} UTC")
        if send.state not in (SendState.SCHEDULED, SendState.CANCELLED, SendState.MISSED):
            lines.append(f"  {send.recipients:,} recipients: {_counts_line(self.counts)}")
        if send.error:
            lines.append(f"  {send.error}")
        for reason, n in self.counts.failed_by_reason.items():
            lines.append(f"  failed, {reason}: {n:,}")
        for delivery_id, email, error in self.unknown:
            lines.append(f"  unknown: {email or '(forgotten)'} (delivery {delivery_id}): {error or ''}")
        return "\n".join(lines)


def last_heartbeat(settings: Settings) -> Heartbeat | None:
    """The worker seen most recently (``status``, ``doctor``)."""
    engine = open_database(settings.database.url)
    try:
        with engine.connect() as conn:
            return latest_heartbeat(conn)
    finally:
        engine.dispose()


def status(settings: Settings, issue: Path | None = None) -> list[SendStatus]:
    issue_date: dt.date | None = None
    if issue is not None:
        issue_date = load_issue(issue).issue.date
    engine = open_database(settings.database.url)
    try:
        with engine.connect() as conn:
            ledger = ledger_for(conn)
            return [
                SendStatus(send, ledger.counts(send.id), ledger.unknown_recipients(send.id))
                for send in ledger.sends(issue_date)
            ]
    finally:
        engine.dispose()


def work_once(
    settings: Settings, *, stop: threading.Event, workers: int = 1, log: Callable[[str], None] = print
) -> bool:
    """Run every send that is ``sending`` to its end (or until stopped); False if there was none."""
    engine = open_database(settings.database.url)
    try:
        with engine.connect() as conn:
            running = [ledger_for(conn).get_send(send_id) for send_id in ledger_for(conn).running_sends()]
        if not running:
            return False
        adapter_factory(settings.esp)  # a missing secret fails at once
        personaliser_for(settings)
        for send in running:
            if stop.is_set():
                break
            try:
                prepared = prepare_issue(Path(send.issue_file), settings)
                check_resumable(send, prepared)
            except BadInput as exc:
                with writing(engine).begin() as conn:
                    ledger_for(conn).set_state(
                        send.id, SendState.PAUSED, error=str(exc), only_from=[SendState.SENDING]
                    )
                log(f"send {send.id}: paused: {exc}")
                continue
            log(f"send {send.id} ({send.issue_file}): working")
            report = _run(engine, send, prepared, settings, stop, workers, None, 0)
            with engine.connect() as conn:
                ledger = ledger_for(conn)
                state, counts = ledger.get_send(send.id).state, _counts_line(ledger.counts(send.id))
                log(f"send {send.id}: {state}: {counts}" + (f" ({report.error})" if report.error else ""))
        return True
    finally:
        engine.dispose()
