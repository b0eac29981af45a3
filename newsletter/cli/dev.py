"""``newsletter dev …``: tools for developing and benchmarking delivery, never for production.

``dev fake-esp`` runs :mod:`newsletter.devtools.fake_esp`, a local stand-in for Postmark,
SendGrid, Mailgun and SES; point the adapter's base URL at it. Faults can be set here at start-up, or
changed while it runs with ``curl -X POST localhost:PORT/_faults -d '{"next": ["503", "drop"]}'``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, cast

import typer

from newsletter.cli.app import app, console, fail
from newsletter.cli.help import Typer
from newsletter.errors import BadInput

dev_app = Typer(
    name="dev",
    help="Development tools: a fake email service provider for local sends and benchmarks.",
    no_args_is_help=True,
    add_completion=False,
)


@dev_app.callback()
def dev() -> None:
    """Development tools: a fake email service provider for local sends and benchmarks."""
    # A callback keeps ``dev`` a group even with one command, so ``dev fake-esp`` is the same
    # whether the lead's app mounts it or ``dev_app`` runs on its own.


@dev_app.command("fake-esp")
def fake_esp(
    port: Annotated[int, typer.Option("--port", metavar="PORT", help="Port to listen on.")] = 8025,
    host: Annotated[str, typer.Option("--host", metavar="ADDR", help="Address to listen on.")] = "127.0.0.1",
    record: Annotated[
        Path | None,
        typer.Option(
            "--record", metavar="FILE", help="Append one JSON line per accepted message to this file."
        ),
    ] = None,
    record_bodies: Annotated[
        str,
        typer.Option(
            "--record-bodies",
            metavar="none|text|all",
            help="Bodies kept in the record: none, text or all (with HTML).",
        ),
    ] = "text",
    token: Annotated[
        str,
        typer.Option(
            "--token", metavar="TOKEN", help="The server token it accepts (SES: the access key id)."
        ),
    ] = "fake-token",
    fail_rate: Annotated[
        float,
        typer.Option("--fail-rate", metavar="SHARE", min=0.0, max=1.0, help="Share of batches answered 503."),
    ] = 0.0,
    rate_limit_rate: Annotated[
        float,
        typer.Option("--429-rate", metavar="SHARE", min=0.0, max=1.0, help="Share of batches answered 429."),
    ] = 0.0,
    error_rate: Annotated[
        float,
        typer.Option("--500-rate", metavar="SHARE", min=0.0, max=1.0, help="Share of batches answered 500."),
    ] = 0.0,
    drop_rate: Annotated[
        float,
        typer.Option(
            "--drop-rate",
            metavar="SHARE",
            min=0.0,
            max=1.0,
            help="Share of batches whose connection is dropped.",
        ),
    ] = 0.0,
    retry_after: Annotated[
        float,
        typer.Option(
            "--retry-after", metavar="SECONDS", min=0.0, help="Retry-After seconds sent with 429 and 503."
        ),
    ] = 1.0,
    delay: Annotated[
        float,
        typer.Option(
            "--delay", metavar="SECONDS", min=0.0, help="Seconds every batch waits before its answer."
        ),
    ] = 0.0,
    inactive: Annotated[
        list[str] | None,
        typer.Option(
            "--inactive", metavar="ADDR", help="Recipient answered ErrorCode 406 (inactive); repeatable."
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", metavar="N", help="Seed for the fault rates.")] = 0,
) -> None:
    """Serve a fake Postmark (batch, batch with templates, templates), SendGrid (v3 mail/send),
    Mailgun (v3 messages) and SES (v2 SendBulkEmail, templates) with injectable faults."""
    from newsletter.devtools.fake_esp import Faults, RecordBodies, serve

    if record_bodies not in ("none", "text", "all"):
        fail(BadInput("--record-bodies must be none, text or all"))
    try:
        faults = Faults(
            rate_503=fail_rate,
            rate_429=rate_limit_rate,
            rate_500=error_rate,
            rate_drop=drop_rate,
            retry_after=retry_after,
            delay=delay,
            inactive=list(inactive or []),
            seed=seed,
        )
        faults.validate()
    except ValueError as exc:
        fail(BadInput(str(exc)))
    apis = "Postmark, SendGrid, Mailgun and SES APIs"
    console.print(f"Fake ESP ({apis}) on http://{host}:{port}  token {token!r}")
    if record:
        console.print(f"  recording accepted messages to {record}")
    console.print("  faults: GET/POST /_faults, POST /_reset, GET /_stats")
    serve(host, port, record, faults, token=token, record_bodies=cast(RecordBodies, record_bodies))


app.add_typer(dev_app, name="dev")
