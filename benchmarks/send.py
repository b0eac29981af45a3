"""Benchmark: send one issue to 1,000,000 subscribers, ledger included, on SQLite and PostgreSQL.

For each database it seeds the subscribers once, then measures each delivery shape in a child
process of its own (so peak RSS is that send's alone), from the audience snapshot to the last
recorded result, and in the same run the *wire baseline* of that shape: the same batches built and
sent one after another by a bare loop with no database and no ledger (the per-recipient values are
made before its clock starts). The figure that matters is the ratio: what the ledger costs.

Under each shape two lines say where the CPU went (Linux), for the send and for its wire baseline:
the sender's processes (start-up and rendering included; with SQLite, the database too), the fake
ESP, and the rest of the machine, which is PostgreSQL when nothing else runs. On two cores shared by
all three, a send is bound by their sum, not by any wait: the way to a faster send is less CPU.

Shapes:

* ``templates``: Postmark ``/email/batchWithTemplates`` through the fake ESP, the body sent once
  per send as a template and per-recipient values as the model (the default shape).
  Must: 1M in under 30 s end to end on each database; aim: under 10 s on PostgreSQL.
* ``sendgrid``: SendGrid ``/v3/mail/send`` through the fake ESP, the body once per batch of 1,000
  with per-recipient substitutions. The same target as ``templates``.
* ``mailgun``: Mailgun ``/v3/{domain}/messages`` through the fake ESP, multipart form data with the
  body once per batch of 1,000 and per-recipient ``recipient-variables``. The same target.
* ``ses``: SES v2 ``SendBulkEmail`` through the fake ESP, SigV4-signed, the body once per send as
  a template and 50 destinations a request with their template data. The same target, in twenty
  times as many requests as SendGrid's: on a 2-core machine the wire alone (20,000 signed requests
  into the fake ESP, no database) took 29 s per million, so there the ratio is the figure to read.
* ``batch``: Postmark ``/email/batch``, a full body per message. Must: within 1.2x of the wire.
* ``smtp``: a full MIME message per recipient to a local aiosmtpd sink. Must: within 1.2x of the
  wire (a bare smtplib loop into the same sink: the sink's own ceiling); aim: twice listmonk's
  tuned 790-930 messages/s on this kind of machine, under 300 MB.
* ``outbox``: one ``.eml`` file per message. Must: within 1.2x of writing the same files.

The full-body shapes carry the 70 KB sample issue per message, so they run on a smaller audience
(``--full-recipients``, default 10,000; a segment ``tag:full`` picks it): a million of them is
70 GB on the wire. Peak memory must stay under 300 MB in every shape.

    .venv/bin/python benchmarks/send.py                                  # everything
    .venv/bin/python benchmarks/send.py --recipients 100000 --db sqlite --shapes templates
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

from scratch import scratch_database  # this script's folder is the first on sys.path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DEFAULT_PG_URL = os.environ.get(
    "NEWSLETTER_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
TOKEN = "bench-token"
SECRET = "benchmark-secret-key-0123456789abcdef"
SHAPES = ("templates", "sendgrid", "mailgun", "ses", "batch", "smtp", "outbox")
#: Shapes whose body travels once per batch or send: a million recipients, the 30 s target.
ONCE = ("templates", "sendgrid", "mailgun", "ses")
MAILGUN_DOMAIN = "mg.example.org"
#: SES signs for a region; the fake checks only the access key id (the token).
SES_REGION = "eu-west-1"
SES_SECRET = "bench-secret-access-key"
MUST_RATIO = 1.2
MUST_MB = 300
MUST_TEMPLATES_SECONDS_PER_MILLION = 30.0


# -- the environment: database, fake ESP, SMTP sink ------------------------------------------------


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_port(port: int, process: subprocess.Popen[bytes], what: str) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"{what} exited: {process.stderr.read().decode() if process.stderr else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f"{what} did not start")


@contextmanager
def fake_esp() -> Iterator[tuple[str, int]]:
    """The fake ESP in a process of its own: its URL and pid (for its CPU time)."""
    port = _free_port()
    command = [sys.executable, "-m", "newsletter", "dev", "fake-esp", "--port", str(port), "--token", TOKEN]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_port(port, process, "the fake ESP")
        yield f"http://127.0.0.1:{port}", process.pid
    finally:
        process.terminate()
        process.wait(10)


@contextmanager
def smtp_sink() -> Iterator[int]:
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "aiosmtpd",
        "-n",
        "-c",
        "aiosmtpd.handlers.Sink",
        "-l",
        f"127.0.0.1:{port}",
    ]
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        _wait_port(port, process, "the SMTP sink")
        yield port
    finally:
        process.terminate()
        process.wait(10)


def database(kind: str, pg_url: str, directory: Path) -> AbstractContextManager[str]:
    """A migrated, empty database of ``kind`` for one run (``scratch.py``)."""
    return scratch_database(None if kind == "sqlite" else pg_url, directory)


def seed(url: str, n: int, tagged: int) -> None:
    """``n`` active subscribers in one statement, the first ``tagged`` with tag ``full``.

    Each row gets its suppression hash as the application writes it (``privacy.address_hash``): on
    SQLite through that very function, registered on this connection for the statement.
    """
    from newsletter.store.db import make_engine
    from newsletter.store.privacy import address_hash

    engine = make_engine(url)
    address = "'reader' || i || '@example.org'"
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            series = f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) "
            source, now = "n", "CURRENT_TIMESTAMP"
            dbapi: Any = conn.connection.dbapi_connection
            dbapi.create_function("newsletter_address_hash", 1, address_hash, deterministic=True)
            digest = f"newsletter_address_hash({address})"
        else:
            series, source, now = "", f"generate_series(1, {n}) AS n(i)", "now()"
            digest = f"encode(sha256(convert_to({address}, 'UTF8')), 'hex')"
        conn.exec_driver_sql(
            f"{series}INSERT INTO subscribers "
            "(email, email_normalized, address_hash, name, status, attributes, created_at) "
            f"SELECT {address}, {address}, {digest}, 'Reader ' || i, "
            f"'active', '{{}}', {now} FROM {source}"
        )
        conn.exec_driver_sql("INSERT INTO tags (name) VALUES ('full')")
        conn.exec_driver_sql(
            "INSERT INTO subscriber_tags (subscriber_id, tag_id) "
            "SELECT s.id, t.id FROM subscribers s, tags t "
            f"WHERE t.name = 'full' AND s.id <= {tagged}"
        )
    engine.dispose()


# -- one measured send, in a child process -------------------------------------------------------


def _settings(url: str, shape: str, esp_url: str, smtp_port: int, outbox: Path) -> Any:
    from newsletter.config import load_settings

    provider = {
        "templates": "postmark",
        "sendgrid": "sendgrid",
        "mailgun": "mailgun",
        "ses": "ses",
        "batch": "postmark",
        "smtp": "smtp",
        "outbox": "outbox",
    }[shape]
    return load_settings(
        environ={
            "NEWSLETTER_DATABASE_URL": url,
            "NEWSLETTER_ESP_PROVIDER": provider,
            "NEWSLETTER_ESP_BASE_URL": esp_url,
            "NEWSLETTER_ESP_DOMAIN": MAILGUN_DOMAIN,
            "NEWSLETTER_ESP_REGION": SES_REGION if shape == "ses" else "",
            "NEWSLETTER_ESP_TEMPLATES": "true" if shape == "templates" else "false",
            "NEWSLETTER_ESP_PORT": str(smtp_port),
            "NEWSLETTER_ESP_OUTBOX_DIR": str(outbox),
            "NEWSLETTER_ESP_WORKERS": os.environ.get("BENCH_WORKERS", "2"),
            # More processes pay for CPU-bound sending (templates: a small model per message).
            # Full bodies are bound by the wire and the sink, and each process holds its own
            # batches of 70 KB messages: one process there.
            "NEWSLETTER_ESP_PROCESSES": os.environ.get("BENCH_PROCESSES", "2") if shape in ONCE else "1",
        }
    )


def child_send(args: argparse.Namespace) -> dict[str, Any]:
    """Snapshot the audience and send it: the whole of ``newsletter send``, timed."""
    from newsletter.delivery import runner
    from newsletter.delivery.esp import registry

    os.environ["POSTMARK_TOKEN"] = os.environ["SENDGRID_API_KEY"] = os.environ["MAILGUN_API_KEY"] = TOKEN
    os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"] = TOKEN, SES_SECRET
    os.environ.pop("AWS_SESSION_TOKEN", None)
    os.environ["NEWSLETTER_SECRET_KEY"] = SECRET
    settings = _settings(args.url, args.shape, args.esp_url, args.smtp_port, Path(args.outbox))
    issue = ROOT / "newsletter" / "samples" / "issues" / "2026-11-27.yaml"
    prepared = runner.prepare_issue(issue, settings)
    segment = "" if args.shape in ONCE else "tag:full"
    # One send per shape: each its own issue date, since a send is unique per issue and audience.
    day = dt.date(2026, 1, 1) + dt.timedelta(days=SHAPES.index(args.shape))
    issue_on_day = prepared.loaded.issue.model_copy(update={"date": day})
    prepared = replace(prepared, loaded=replace(prepared.loaded, issue=issue_on_day))
    # The adapter's module (and httpx with it) is imported before the clock, as the wire baseline
    # imports it: a tenth of a second of start-up is no part of what the ledger costs.
    registry.adapter_factory(settings.esp)
    started = time.perf_counter()
    plan = runner.plan(prepared, settings, segment)
    outcome = runner.execute(plan, settings)
    seconds = time.perf_counter() - started
    return {
        "recipients": outcome.counts.total,
        "accepted": outcome.counts.by_state["accepted"],
        "seconds": seconds,
        # The send's own process and its helper processes (RUSAGE_CHILDREN: the largest helper;
        # times the helpers' count, an upper bound of their sum).
        "peak_mb": (
            resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
            + resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * (settings.esp.processes - 1)
        )
        / 1024,
        "state": str(outcome.send.state),
    }


def _recipients(n: int, send_id: int = 1) -> list[Any]:
    from newsletter.delivery.engine import Personaliser
    from newsletter.delivery.tokens import TokenSigner
    from newsletter.store.ledger import Claimed

    personaliser = Personaliser(TokenSigner(SECRET), "http://127.0.0.1:8000", "u@example.org", "example.org")
    claimed = [Claimed(i, i, f"reader{i}@example.org", f"Reader {i}", 1) for i in range(1, n + 1)]
    return personaliser.recipients(send_id, claimed)


def child_wire(args: argparse.Namespace) -> dict[str, Any]:
    """The same batches with no database: each built and sent by a bare loop, one after another.

    The recipients' values (tokens, Message-IDs) are made before the clock starts; building each
    request (the same per-message objects and encoder as the adapter, or the same MIME template)
    and sending it is timed. So the ratio is what the ledger, the claims and the engine cost.
    """
    import httpx

    from newsletter.delivery.esp.postmark import PLAIN_MESSAGES, PostmarkAdapter
    from newsletter.delivery.message import MimeTemplate
    from newsletter.delivery.runner import outgoing_for, prepare_issue

    settings = _settings("sqlite://", args.shape, args.esp_url, args.smtp_port, Path(args.outbox))
    prepared = prepare_issue(ROOT / "newsletter" / "samples" / "issues" / "2026-11-27.yaml", settings)
    message = outgoing_for(1, prepared, settings)
    recipients = _recipients(args.n)
    if args.shape == "sendgrid":
        from newsletter.delivery.esp.sendgrid import SendGridAdapter

        sendgrid = SendGridAdapter(TOKEN, base_url=args.esp_url)
        client = httpx.Client(
            base_url=args.esp_url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=120
        )
        started = time.perf_counter()
        for start in range(0, len(recipients), sendgrid.max_batch):
            body = sendgrid.encode(message, recipients[start : start + sendgrid.max_batch])
            response = client.post(
                "/v3/mail/send", content=body, headers={"Content-Type": "application/json"}
            )
            assert response.status_code == 202, response.text[:300]
        seconds = time.perf_counter() - started
        client.close()
        sendgrid.close()
    elif args.shape == "mailgun":
        from newsletter.delivery.esp.mailgun import MailgunAdapter

        mailgun = MailgunAdapter(TOKEN, MAILGUN_DOMAIN, base_url=args.esp_url)
        client = httpx.Client(base_url=args.esp_url, auth=("api", TOKEN), timeout=120)
        started = time.perf_counter()
        for start in range(0, len(recipients), mailgun.max_batch):
            content_type, body = mailgun.encode(message, recipients[start : start + mailgun.max_batch])
            response = client.post(mailgun.path, content=body, headers={"Content-Type": content_type})
            assert response.status_code == 200, response.text[:300]
        seconds = time.perf_counter() - started
        client.close()
        mailgun.close()
    elif args.shape == "ses":
        from httpx_auth import AWS4Auth

        from newsletter.delivery.esp.ses import MAX_DESTINATIONS, SEND_PATH, SesAdapter

        ses = SesAdapter(TOKEN, SES_SECRET, SES_REGION, base_url=args.esp_url)
        ses.prepare(message)
        auth = AWS4Auth(TOKEN, SES_SECRET, SES_REGION, "ses")
        client = httpx.Client(base_url=args.esp_url, auth=auth, timeout=120)
        started = time.perf_counter()
        for start in range(0, len(recipients), MAX_DESTINATIONS):
            body = ses.encode(message, recipients[start : start + MAX_DESTINATIONS])
            response = client.post(SEND_PATH, content=body, headers={"Content-Type": "application/json"})
            assert response.status_code == 200, response.text[:300]
        seconds = time.perf_counter() - started
        client.close()
        ses.finish(message)
        ses.close()
    elif args.shape in ("templates", "batch"):
        adapter = PostmarkAdapter(token=TOKEN, base_url=args.esp_url, templates=args.shape == "templates")
        adapter.prepare(message)
        template = adapter._prepare(message) if args.shape == "templates" else None
        path = "/email/batchWithTemplates" if template is not None else "/email/batch"
        client = httpx.Client(base_url=args.esp_url, headers={"X-Postmark-Server-Token": TOKEN}, timeout=120)
        started = time.perf_counter()
        per_request = adapter.max_batch if template is not None else PLAIN_MESSAGES
        for start in range(0, len(recipients), per_request):
            batch = recipients[start : start + per_request]
            if template is not None:
                body = b'{"Messages":[' + b",".join(adapter._encode_templated(message, batch)) + b"]}"
            else:
                body = b"[" + b",".join(adapter._encode_plain(message, batch)) + b"]"
            response = client.post(path, content=body, headers={"Content-Type": "application/json"})
            assert response.status_code == 200, response.text[:300]
        seconds = time.perf_counter() - started
        client.close()
        adapter.close()
    elif args.shape == "smtp":
        mime = MimeTemplate(message)
        started = time.perf_counter()
        with smtplib.SMTP("127.0.0.1", args.smtp_port) as smtp:
            for recipient in recipients:
                smtp.sendmail(message.from_address, [recipient.email], mime.build(recipient))
        seconds = time.perf_counter() - started
    else:
        mime = MimeTemplate(message)
        folder = Path(args.outbox) / "wire"
        folder.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        for recipient in recipients:
            temporary = folder / f".{recipient.delivery_id}.tmp"
            temporary.write_bytes(mime.build(recipient))
            os.replace(temporary, folder / f"{recipient.delivery_id}.eml")
        seconds = time.perf_counter() - started
    return {"recipients": args.n, "seconds": seconds}


class CpuTime(NamedTuple):
    """CPU seconds used so far: by the whole machine, the fake ESP, and our waited-for children."""

    machine: float
    esp: float
    children: float

    @classmethod
    def now(cls, esp_pid: int) -> CpuTime:
        """Linux's ``/proc`` for the machine and the fake ESP (zeros elsewhere); rusage for the
        children, which counts a send's helper processes too (its child waits for them)."""
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        children = usage.ru_utime + usage.ru_stime
        try:
            hz = os.sysconf("SC_CLK_TCK")
            fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
            machine = (sum(fields) - fields[3] - fields[4]) / hz  # all but idle and iowait
            stat = Path(f"/proc/{esp_pid}/stat").read_text().rsplit(")", 1)[1].split()
            esp = (int(stat[11]) + int(stat[12])) / hz  # utime, stime
        except (OSError, ValueError, IndexError):
            machine = esp = 0.0
        return cls(machine, esp, children)

    def since(self, start: CpuTime) -> str:
        """Where the CPU went between ``start`` and this: the sender (with SQLite, the database
        too), the fake ESP, and the rest of the machine (PostgreSQL; anything else running)."""
        machine, esp = self.machine - start.machine, self.esp - start.esp
        sender = self.children - start.children
        if not machine:
            return f"cpu: sender {sender:.1f} s"
        return (
            f"cpu: sender {sender:.1f} s, fake ESP {esp:.1f} s, "
            f"rest (database, others) {max(machine - sender - esp, 0):.1f} s, of {machine:.1f} s used"
        )


def run_child(kind: str, **options: Any) -> dict[str, Any]:
    command = [sys.executable, __file__, "--child", kind]
    for key, value in options.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    # Bytecode as an installed package has it (pip compiles on install): a shell that sets
    # PYTHONDONTWRITEBYTECODE would otherwise make every child compile its imports again.
    environ = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    done = subprocess.run(command, capture_output=True, text=True, env=environ)
    if done.returncode != 0:
        raise SystemExit(f"{kind} failed:\n{done.stderr}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# -- the report -------------------------------------------------------------------------------------


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--recipients", type=int, default=1_000_000)
    parser.add_argument("--full-recipients", type=int, default=10_000)
    parser.add_argument("--db", nargs="+", default=["sqlite", "postgresql"], choices=["sqlite", "postgresql"])
    parser.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=SHAPES)
    parser.add_argument("--pg-url", default=DEFAULT_PG_URL)
    parser.add_argument("--strict", action="store_true", help="exit 1 when a target is missed")
    # The child processes' arguments.
    parser.add_argument("--child", choices=["send", "wire"])
    parser.add_argument("--url", default="")
    parser.add_argument("--shape", default="templates")
    parser.add_argument("--esp-url", default="")
    parser.add_argument("--smtp-port", type=int, default=25)
    parser.add_argument("--outbox", default="outbox")
    parser.add_argument("--n", type=int, default=0)
    args = parser.parse_args()
    if args.child:
        print(json.dumps((child_send if args.child == "send" else child_wire)(args)))
        return 0

    missed = []
    print(
        f"send benchmark: {args.recipients:,} recipients (templates), "
        f"{args.full_recipients:,} (full bodies); "
        f"{os.environ.get('BENCH_PROCESSES', '2')} processes x {os.environ.get('BENCH_WORKERS', '2')} "
        f"batches in flight (full bodies: 1 process); {os.cpu_count()} CPUs shared with the fake ESP "
        "and the database"
    )
    with fake_esp() as (esp_url, esp_pid), smtp_sink() as smtp_port, tempfile.TemporaryDirectory() as tmp:
        for kind in args.db:
            with database(kind, args.pg_url, Path(tmp)) as url:
                started = time.perf_counter()
                seed(url, args.recipients, args.full_recipients)
                print(
                    f"\n{kind}: seeded {args.recipients:,} subscribers "
                    f"in {time.perf_counter() - started:.1f} s"
                )
                for shape in args.shapes:
                    n = args.recipients if shape in ONCE else min(args.full_recipients, args.recipients)
                    common = {"shape": shape, "esp_url": esp_url, "smtp_port": smtp_port}
                    before_send = CpuTime.now(esp_pid)
                    sent = run_child("send", url=url, outbox=Path(tmp) / f"outbox-{kind}", **common)
                    before_wire = CpuTime.now(esp_pid)
                    wire = run_child("wire", n=n, outbox=Path(tmp) / f"wire-{kind}", **common)
                    after_wire = CpuTime.now(esp_pid)
                    rate, wire_rate = sent["recipients"] / sent["seconds"], n / wire["seconds"]
                    ratio = sent["seconds"] / wire["seconds"] * n / max(sent["recipients"], 1)
                    print(
                        f"  {shape:9} {sent['recipients']:>9,} in {sent['seconds']:6.1f} s "
                        f"= {rate:>9,.0f}/s, "
                        f"peak {sent['peak_mb']:5.0f} MB | wire {wire_rate:>9,.0f}/s | ratio {ratio:4.2f}x"
                    )
                    print(f"            send {before_wire.since(before_send)}")
                    print(f"            wire {after_wire.since(before_wire)}")
                    if sent["accepted"] != n or sent["state"] != "finished":
                        missed.append(f"{kind} {shape}: {sent['accepted']} of {n} accepted, {sent['state']}")
                    if sent["peak_mb"] > MUST_MB:
                        missed.append(f"{kind} {shape}: peak {sent['peak_mb']:.0f} MB > {MUST_MB} MB")
                    if shape in ONCE:
                        per_million = sent["seconds"] * 1_000_000 / max(n, 1)
                        print(
                            f"            {per_million:.1f} s per million "
                            f"(must: < {MUST_TEMPLATES_SECONDS_PER_MILLION:.0f} s)"
                        )
                        if per_million > MUST_TEMPLATES_SECONDS_PER_MILLION:
                            missed.append(f"{kind} {shape}: {per_million:.1f} s per million")
                    elif ratio > MUST_RATIO:
                        missed.append(f"{kind} {shape}: {ratio:.2f}x the wire (must: <= {MUST_RATIO}x)")
    print("\n" + ("all targets met" if not missed else "missed:\n  " + "\n  ".join(missed)))
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    raise SystemExit(main())
