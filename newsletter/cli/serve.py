"""``newsletter serve``: the webhook endpoint providers report bounces and complaints to."""

from __future__ import annotations

from typing import Annotated

import typer

from newsletter.cli.app import ConfigOption, app, fail, settings_or_exit
from newsletter.errors import NewsletterError

__all__ = ["serve"]


@app.command()
def serve(
    host: Annotated[str, typer.Option("--host", metavar="ADDR", help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", metavar="PORT", min=1, max=65535, help="Port to listen on.")
    ] = 8000,
    config: ConfigOption = None,
) -> None:
    """Receive provider webhooks at /webhooks/<provider> (bounces, complaints, unsubscribes)."""
    import uvicorn

    from newsletter.store.db import open_database
    from newsletter.web.app import create_app

    settings = settings_or_exit(config)
    try:
        engine = open_database(settings.database.url)
    except NewsletterError as exc:
        fail(exc)
    try:
        uvicorn.run(create_app(settings, engine), host=host, port=port, proxy_headers=True)
    finally:
        engine.dispose()
