"""End to end with real processes and the fake Postmark: ``newsletter schedule`` a few seconds
ahead, ``newsletter worker`` as a subprocess, and every recipient in the fake's record exactly once.

Also: a worker stopped before the send's time and another started after it (the job survives the
restart and the downtime), and two workers on one database racing for the same job.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from newsletter.devtools.fake_esp import FakeESP, RunningFakeESP, running
from newsletter.store.db import make_engine
from newsletter.store.models import Send, SendState
from tests.conftest import FIXTURE_ISSUES_DIR, clean_environment
from tests.delivery.conftest import read_record
from tests.delivery.test_crash_and_workers import _seed

ISSUE = "2026-11-20.yaml"
TOKEN = "schedule-test-token"
RECIPIENTS = 300


@pytest.fixture
def workdir(tmp_path: Path, db_url: str) -> Path:
    (tmp_path / "issues").mkdir()
    (tmp_path / "issues" / ISSUE).write_bytes((FIXTURE_ISSUES_DIR / ISSUE).read_bytes())
    _seed(db_url, tmp_path, RECIPIENTS)
    return tmp_path


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[RunningFakeESP]:
    with running(FakeESP(token=TOKEN, record=tmp_path / "record.jsonl", record_bodies="none")) as server:
        yield server


@pytest.fixture
def env(db_url: str, fake: RunningFakeESP) -> dict[str, str]:
    return {
        **clean_environment(),
        "NEWSLETTER_DATABASE_URL": db_url,
        "NEWSLETTER_ESP_PROVIDER": "postmark",
        "NEWSLETTER_ESP_BASE_URL": fake.url,
        "NEWSLETTER_ESP_BATCH_SIZE": "50",
        "POSTMARK_TOKEN": TOKEN,
        "NEWSLETTER_SECRET_KEY": "schedule-test-secret-key-0123456789",
    }


def _newsletter(*args: str) -> list[str]:
    return [sys.executable, "-m", "newsletter", *args]


def _schedule_in(seconds: float, workdir: Path, env: dict[str, str]) -> dt.datetime:
    at = (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).replace(microsecond=0)
    done = subprocess.run(
        _newsletter("schedule", f"issues/{ISSUE}", "--at", f"{at:%Y-%m-%d %H:%M:%S}", "--tz", "UTC"),
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    # The confirmation shows seconds only when there are some: "00:01 UTC", "00:01:07 UTC".
    shown = f"{at:%Y-%m-%d %H:%M:%S}" if at.second else f"{at:%Y-%m-%d %H:%M}"
    assert f"for {shown} UTC" in done.stdout, done.stdout
    return at


def _worker(workdir: Path, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(
        _newsletter("worker", "--poll", "0.2"), cwd=workdir, env=env, stdout=handle, stderr=subprocess.STDOUT
    )


def _wait_for(condition, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _send(db_url: str) -> tuple[SendState, dt.datetime | None, dt.datetime | None]:
    engine = make_engine(db_url)
    try:
        with engine.connect() as conn:
            row = conn.execute(select(Send.state, Send.scheduled_at, Send.started_at)).one()
    finally:
        engine.dispose()
    return row.state, row.scheduled_at, row.started_at


def _stop(worker: subprocess.Popen[bytes]) -> int:
    worker.send_signal(signal.SIGTERM)
    return worker.wait(timeout=30)


def _every_recipient_once(tmp_path: Path) -> None:
    received = Counter(entry["recipient"] for entry in read_record(tmp_path / "record.jsonl"))
    assert set(received) == {f"reader{i}@example.org" for i in range(RECIPIENTS)}
    assert set(received.values()) == {1}


def test_a_scheduled_issue_reaches_every_recipient_once(
    db_url: str, workdir: Path, env: dict[str, str], fake: RunningFakeESP, tmp_path: Path
) -> None:
    """The worker runs first; the command adds the job from another process and the worker sees it."""
    worker = _worker(workdir, env, tmp_path / "worker.log")
    try:
        _wait_for(lambda: "worker started" in (tmp_path / "worker.log").read_text(), "the worker")
        at = _schedule_in(12, workdir, env)
        assert _send(db_url)[0] is SendState.SCHEDULED
        _wait_for(lambda: _send(db_url)[0] is SendState.FINISHED, "the send to finish")
    finally:
        code = _stop(worker)
    log = (tmp_path / "worker.log").read_text()
    assert code == 0, log
    _, scheduled_at, started_at = _send(db_url)
    assert scheduled_at == at and started_at is not None and started_at >= at, log
    _every_recipient_once(tmp_path)
    for line in (
        "worker started",
        "job send:1: firing",
        "started, 300 recipients",
        "finished",
        "worker stopped",
    ):
        assert line in log, log


def test_the_job_survives_a_restart_and_the_downtime(
    db_url: str, workdir: Path, env: dict[str, str], fake: RunningFakeESP, tmp_path: Path
) -> None:
    at = _schedule_in(20, workdir, env)  # room to start and stop a worker (no bytecode cache)
    first = _worker(workdir, env, tmp_path / "first.log")
    _wait_for(lambda: "worker started" in (tmp_path / "first.log").read_text(), "the first worker")
    assert _stop(first) == 0
    assert _send(db_url)[0] is SendState.SCHEDULED
    _wait_for(lambda: dt.datetime.now(dt.UTC) > at + dt.timedelta(seconds=1), "the time to pass")
    second = _worker(workdir, env, tmp_path / "second.log")  # within the grace time: it goes
    try:
        _wait_for(lambda: _send(db_url)[0] is SendState.FINISHED, "the send to finish")
    finally:
        assert _stop(second) == 0
    _every_recipient_once(tmp_path)


def test_two_workers_on_one_database_start_the_send_once(
    db_url: str, workdir: Path, env: dict[str, str], fake: RunningFakeESP, tmp_path: Path
) -> None:
    fake.esp.set_faults(delay=0.05)  # slow batches, so both workers take some
    workers = [_worker(workdir, env, tmp_path / f"worker{i}.log") for i in range(2)]
    try:
        for i in range(2):
            _wait_for(lambda i=i: "worker started" in (tmp_path / f"worker{i}.log").read_text(), "a worker")
        _schedule_in(12, workdir, env)
        _wait_for(lambda: _send(db_url)[0] is SendState.FINISHED, "the send to finish")
    finally:
        codes = [_stop(worker) for worker in workers]
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], logs
    assert sum(log.count("started, 300 recipients") for log in logs) == 1, logs
    _every_recipient_once(tmp_path)


@pytest.mark.skipif(not hasattr(os, "killpg"), reason="POSIX signals")
def test_sigint_stops_the_worker_cleanly(workdir: Path, env: dict[str, str], tmp_path: Path) -> None:
    worker = _worker(workdir, env, tmp_path / "worker.log")
    _wait_for(lambda: "worker started" in (tmp_path / "worker.log").read_text(), "the worker")
    worker.send_signal(signal.SIGINT)
    assert worker.wait(timeout=30) == 0
    assert "worker stopped" in (tmp_path / "worker.log").read_text()
