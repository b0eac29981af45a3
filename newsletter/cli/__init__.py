"""The ``newsletter`` command. Each sub-module holds the commands of one area and stays thin:
parse options, call one function of content/, render/ or store/, print the result with rich.

Registering every command must stay cheap: ``newsletter --help`` and ``newsletter check`` should
answer at once, so a command module imports at module level only typer, ``cli.app`` and light
modules (``newsletter.errors``, the status enum); the store, the renderer, HTTP clients and the
demo are imported inside the command that uses them. ``tests/test_cli_startup.py`` holds this line
and ``benchmarks/cli.py`` measures it.
"""

from __future__ import annotations

import sys

from newsletter.cli import archive as _archive  # noqa: F401  (registers archive build)
from newsletter.cli import bounces as _bounces  # noqa: F401  (registers bounces poll)
from newsletter.cli import demo as _demo  # noqa: F401  (registers demo)
from newsletter.cli import dev as _dev  # noqa: F401  (registers dev fake-esp)
from newsletter.cli import doctor as _doctor  # noqa: F401  (registers doctor)
from newsletter.cli import editor as _editor  # noqa: F401  (registers draft/check/preview)
from newsletter.cli import report as _report  # noqa: F401  (registers report)
from newsletter.cli import schedule as _schedule  # noqa: F401  (registers schedule)
from newsletter.cli import send as _send  # noqa: F401  (registers send/status/worker)
from newsletter.cli import serve as _serve  # noqa: F401  (registers serve)
from newsletter.cli import subscribers as _subscribers  # noqa: F401  (registers db/subscribers)
from newsletter.cli import web as _web  # noqa: F401  (registers web form)
from newsletter.cli.app import app, err_console, styled
from newsletter.errors import NewsletterError

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point; the last line of defence against a traceback for the user.

    Commands turn expected failures into ``NewsletterError`` themselves; what reaches here is the
    environment failing (a database that cannot be reached, a disk that refuses a write).
    """
    try:
        sys.exit(app())
    except NewsletterError as exc:  # a command that forgot to catch it still gets one line
        err_console.print(styled("error:", "bold red", exc))
        sys.exit(exc.exit_code)
    except OSError as exc:
        err_console.print(styled("error:", "bold red", exc))
        sys.exit(1)
    except Exception as exc:
        database_error = _database_error(exc)
        if database_error is None:
            raise
        err_console.print(styled("error:", "bold red", f"database error: {database_error}"))
        sys.exit(1)
    except KeyboardInterrupt:  # a second Ctrl-C during a send: out now, the ledger says the rest
        err_console.print(styled("interrupted:", "bold red", "`newsletter status` shows where sends stand"))
        sys.exit(130)


def _database_error(exc: BaseException) -> str | None:
    """The driver's message if ``exc`` is SQLAlchemy's ``DBAPIError``, else None.

    SQLAlchemy is imported only by commands that use the database; if it was never imported, the
    exception cannot be one of its errors, and ``--help`` does not pay for importing it here.
    """
    if "sqlalchemy.exc" not in sys.modules:
        return None
    from sqlalchemy.exc import DBAPIError

    return str(exc.orig or exc) if isinstance(exc, DBAPIError) else None
