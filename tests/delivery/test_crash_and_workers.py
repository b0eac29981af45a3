"""The guarantees that matter most, with real processes and the fake Postmark:

* a send killed with SIGKILL part-way and resumed delivers every recipient exactly once, or lists
  them as unknown (never twice, never silently missed);
* three worker processes on one PostgreSQL send: nobody twice, nobody missed.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from newsletter.config import load_settings
from newsletter.delivery.runner import prepare_issue
from newsletter.devtools.fake_esp import FakeESP, RunningFakeESP, running
from newsletter.store.db import make_engine
from newsletter.store.importer import import_csv
from newsletter.store.ledger import ledger_for
from newsletter.store.models import DeliveryState
from tests.conftest import FIXTURE_ISSUES_DIR, clean_environment
from tests.delivery.conftest import read_record

ISSUE = "2026-11-20.yaml"
TOKEN = "crash-test-token"
RECIPIENTS = 20_000


def _seed(db_url: str, directory: Path, n: int = RECIPIENTS) -> None:
    path = directory / "list.csv"
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["email", "name"])
        writer.writerows([f"reader{i}@example.org", f"Reader {i}"] for i in range(n))
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            assert import_csv(conn, path).added == n
    finally:
        engine.dispose()


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    (tmp_path / "issues").mkdir()
    shutil.copy(FIXTURE_ISSUES_DIR / ISSUE, tmp_path / "issues" / ISSUE)
    return tmp_path


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[RunningFakeESP]:
    esp = FakeESP(token=TOKEN, record=tmp_path / "record.jsonl", record_bodies="none")
    with running(esp) as server:
        yield server


def _environment(db_url: str, fake: RunningFakeESP) -> dict[str, str]:
    return {
        **clean_environment(),
        "NEWSLETTER_DATABASE_URL": db_url,
        "NEWSLETTER_ESP_PROVIDER": "postmark",
        "NEWSLETTER_ESP_BASE_URL": fake.url,
        "NEWSLETTER_ESP_TIMEOUT": "5",
        "POSTMARK_TOKEN": TOKEN,
        "NEWSLETTER_SECRET_KEY": "crash-test-secret-key-0123456789",
    }


def _newsletter(*args: str) -> list[str]:
    return [sys.executable, "-m", "newsletter", *args]


def _send(workdir: Path, env: dict[str, str], *options: str) -> subprocess.CompletedProcess[str]:
    """``newsletter send ISSUE OPTIONS`` in a process of its own, run to the end."""
    command = _newsletter("send", f"issues/{ISSUE}", *options)
    return subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=120)


def _send_until(
    fake: RunningFakeESP, workdir: Path, env: dict[str, str], messages: int
) -> subprocess.Popen[str]:
    """``newsletter send`` in a process of its own, returned once the fake has ``messages``."""
    child = subprocess.Popen(
        _newsletter("send", f"issues/{ISSUE}", "--yes"),
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while fake.esp.stats["messages"] < messages:
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "the send did not get going"
        time.sleep(0.005)
    return child


def _recorded(fake: RunningFakeESP, tmp_path: Path) -> Counter[str]:
    # The fake flushes its record after every request.
    return Counter(entry["recipient"] for entry in read_record(tmp_path / "record.jsonl"))


def _ledger(db_url: str) -> dict[str, DeliveryState]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            rows = ledger_for(conn).deliveries()
    finally:
        engine.dispose()
    return {r.email: r.state for r in rows if r.email}


def test_a_killed_send_resumes_without_sending_anyone_twice(
    db_url: str, workdir: Path, fake: RunningFakeESP, tmp_path: Path
) -> None:
    _seed(db_url, tmp_path)
    fake.esp.set_faults(delay=0.03)  # about 1.2 s for the 40 batches: time to kill it part-way
    env = _environment(db_url, fake)
    child = _send_until(fake, workdir, env, 4_000)
    child.send_signal(signal.SIGKILL)
    child.wait()
    before = fake.esp.stats["messages"]
    assert 4_000 <= before < RECIPIENTS

    fake.esp.set_faults(delay=0.0)
    resumed = _send(workdir, env, "--yes", "--resume")
    states = _ledger(db_url)
    recorded = _recorded(fake, tmp_path)
    unknown_left = DeliveryState.UNKNOWN in states.values()
    # Finished; exit 1 while some recipients are unknown (the editor decides), else 0.
    assert resumed.returncode == (1 if unknown_left else 0), resumed.stderr + resumed.stdout
    assert "is finished" in resumed.stdout
    assert len(states) == RECIPIENTS
    assert max(recorded.values()) == 1, "somebody got the issue twice"
    unknown = {address for address, state in states.items() if state is DeliveryState.UNKNOWN}
    accepted = {address for address, state in states.items() if state is DeliveryState.ACCEPTED}
    assert accepted | unknown == set(states), "a recipient was neither sent nor listed as unknown"
    assert accepted <= set(recorded)
    assert len(unknown) <= 500, "at most the batch in flight is unknown"
    status = subprocess.run(
        _newsletter("status"), cwd=workdir, env=env, capture_output=True, text=True, timeout=60
    )
    for address in sorted(unknown)[:5]:
        assert f"unknown: {address}" in status.stdout


@pytest.mark.postgres
@pytest.mark.parametrize("db_url", ["postgresql"], indirect=True)
def test_three_worker_processes_share_one_send(
    db_url: str, workdir: Path, fake: RunningFakeESP, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _seed(db_url, tmp_path)
    monkeypatch.chdir(workdir)  # the workers' configuration: embedded defaults, no newsletter.toml
    settings = load_settings(environ={"NEWSLETTER_DATABASE_URL": db_url})
    prepared = prepare_issue(workdir / "issues" / ISSUE, settings)
    engine = make_engine(db_url)
    with engine.begin() as conn:
        send = ledger_for(conn).create_send(
            issue_file=f"issues/{ISSUE}",
            issue_date=prepared.issue_date,
            segment="",
            subject=prepared.rendered.subject,
            content_hash=prepared.content_hash,
            provider="postmark",
        )
    engine.dispose()
    assert send.recipients == RECIPIENTS
    fake.esp.set_faults(delay=0.05)
    env = {**_environment(db_url, fake), "NEWSLETTER_ESP_BATCH_SIZE": "200"}
    workers = [
        subprocess.Popen(
            _newsletter("worker", "--once"),
            cwd=workdir,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(3)
    ]
    outputs = [worker.communicate(timeout=180) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0, 0], outputs
    recorded = _recorded(fake, tmp_path)
    states = _ledger(db_url)
    assert len(recorded) == RECIPIENTS and max(recorded.values()) == 1, outputs
    assert set(states.values()) == {DeliveryState.ACCEPTED}
    assert fake.esp.templates == {}, outputs  # the worker that finished the send deleted its template
    # Each process took part: its log names the send it worked on with what it recorded.
    assert all(b"working" in err for _, err in outputs)


def test_ctrl_c_records_the_batch_in_flight_pauses_and_resume_finishes(
    db_url: str, workdir: Path, fake: RunningFakeESP, tmp_path: Path
) -> None:
    _seed(db_url, tmp_path, 5_000)
    fake.esp.set_faults(delay=0.05)
    env = _environment(db_url, fake)
    child = _send_until(fake, workdir, env, 1_000)
    child.send_signal(signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 1, out + err
    assert "is paused" in out and "resume with: newsletter send" in out, out
    states = _ledger(db_url)
    recorded = _recorded(fake, tmp_path)
    # Everything the provider took is recorded as accepted; nothing is unknown; the rest waits.
    assert {a for a, s in states.items() if s is DeliveryState.ACCEPTED} == set(recorded)
    assert DeliveryState.UNKNOWN not in states.values()
    assert 0 < len(recorded) < 5_000

    fake.esp.set_faults(delay=0.0)
    resumed = _send(workdir, env, "--yes", "--resume")
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    recorded = _recorded(fake, tmp_path)
    assert len(recorded) == 5_000 and max(recorded.values()) == 1
    assert set(_ledger(db_url).values()) == {DeliveryState.ACCEPTED}


def test_test_copies_through_postmark_leave_no_template_behind(
    db_url: str, workdir: Path, fake: RunningFakeESP, tmp_path: Path
) -> None:
    env = _environment(db_url, fake)
    done = _send(workdir, env, "--test", "editor@example.org")
    assert done.returncode == 0 and "editor@example.org: accepted" in done.stdout, done.stderr
    assert _recorded(fake, tmp_path) == {"editor@example.org": 1}
    assert fake.esp.templates == {}


def test_unknown_outcomes_exit_1_until_the_editor_resends_them(
    db_url: str, workdir: Path, fake: RunningFakeESP, tmp_path: Path
) -> None:
    _seed(db_url, tmp_path, 30)
    fake.esp.set_faults(next=["drop_after"])  # processed, then the connection drops: no answer
    env = _environment(db_url, fake)

    def send(*options: str) -> subprocess.CompletedProcess[str]:
        return _send(workdir, env, "--yes", *options)

    first = send()
    assert first.returncode == 1 and "30 unknown" in first.stdout and "--retry-unknown" in first.stdout
    assert set(_ledger(db_url).values()) == {DeliveryState.UNKNOWN}
    again = send()  # a plain rerun never resends them
    assert again.returncode == 0 and "Nothing to send." in again.stdout
    assert sum(_recorded(fake, tmp_path).values()) == 30
    retried = send("--retry-unknown")
    assert retried.returncode == 0 and "30 accepted" in retried.stdout
    assert set(_recorded(fake, tmp_path).values()) == {2}  # the editor's call: each got it twice


# -- one send in several processes (send --processes) --------------------------------------------


def _claim_owner_pids(db_url: str) -> set[str]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            owners = conn.exec_driver_sql("SELECT owner FROM claims WHERE owner IS NOT NULL").scalars()
            return {owner.split(":")[1] for owner in owners}
    finally:
        engine.dispose()


def _until_two_processes_claim(fake: RunningFakeESP, db_url: str, child: subprocess.Popen[str]) -> None:
    """Hold the send back (each request takes a second) until a helper process claims a batch.

    A helper is a fresh interpreter that imports the package first: on a clean checkout (no
    bytecode yet) that takes seconds, and the parent alone would finish a small send before.
    """
    fake.esp.set_faults(delay=1.0)
    deadline = time.monotonic() + 120
    while len(_claim_owner_pids(db_url)) < 2:
        assert child.poll() is None, child.communicate()
        assert time.monotonic() < deadline, "no helper process claimed a batch"
        time.sleep(0.05)


def _send_process(workdir: Path, env: dict[str, str], *options: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        _newsletter("send", f"issues/{ISSUE}", "--yes", *options),
        cwd=workdir,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's foreground job
    )


def test_a_send_in_three_processes_reaches_everyone_once(
    db_url: str, workdir: Path, fake: RunningFakeESP, tmp_path: Path
) -> None:
    _seed(db_url, tmp_path, 6_000)
    env = {**_environment(db_url, fake), "NEWSLETTER_ESP_BATCH_SIZE": "100"}
    child = _send_process(workdir, env, "--processes", "3", "--workers", "2")
    _until_two_processes_claim(fake, db_url, child)
    fake.esp.set_faults(delay=0.0)
    out, err = child.communicate(timeout=120)
    assert child.returncode == 0, err + out
    assert "6,000 accepted" in out or "6000 accepted" in out, out
    recorded = _recorded(fake, tmp_path)
    assert len(recorded) == 6_000 and max(recorded.values()) == 1
    assert set(_ledger(db_url).values()) == {DeliveryState.ACCEPTED}
    assert len(_claim_owner_pids(db_url)) >= 2, "the helper processes claimed batches"
    assert fake.esp.templates == {}  # made once per process, deleted once by whoever finished


def test_ctrl_c_pauses_every_process_and_resume_finishes(
    db_url: str, workdir: Path, fake: RunningFakeESP, tmp_path: Path
) -> None:
    """A terminal's Ctrl-C reaches the whole process group: helpers leave it to the parent, which
    stops them; each records its batch in flight."""
    _seed(db_url, tmp_path, 5_000)
    env = {**_environment(db_url, fake), "NEWSLETTER_ESP_BATCH_SIZE": "100"}
    child = _send_process(workdir, env, "--processes", "2")
    _until_two_processes_claim(fake, db_url, child)
    os.killpg(child.pid, signal.SIGINT)
    out, err = child.communicate(timeout=60)
    assert child.returncode == 1, out + err
    assert "is paused" in out and "Traceback" not in err, out + err
    states = _ledger(db_url)
    recorded = _recorded(fake, tmp_path)
    assert {a for a, s in states.items() if s is DeliveryState.ACCEPTED} == set(recorded)
    assert DeliveryState.UNKNOWN not in states.values()
    assert 0 < len(recorded) < 5_000

    fake.esp.set_faults(delay=0.0)
    resumed = _send(workdir, env, "--yes", "--resume", "--processes", "2")
    assert resumed.returncode == 0, resumed.stderr + resumed.stdout
    recorded = _recorded(fake, tmp_path)
    assert len(recorded) == 5_000 and max(recorded.values()) == 1


def test_a_refused_token_stops_every_process(
    db_url: str, workdir: Path, fake: RunningFakeESP, tmp_path: Path
) -> None:
    _seed(db_url, tmp_path, 2_000)
    fake.esp.set_faults(unauthorized=True)
    env = {**_environment(db_url, fake), "NEWSLETTER_ESP_BATCH_SIZE": "100"}
    done = _send(workdir, env, "--yes", "--processes", "2")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "stopped" in done.stdout and "refused" in done.stdout, done.stdout
    assert _recorded(fake, tmp_path) == Counter()
    assert set(_ledger(db_url).values()) == {DeliveryState.PENDING}
