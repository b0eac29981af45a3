"""The ``newsletter`` command. Each sub-module holds the commands of one area and stays thin:
parse options, call one function of content/, render/ or store/, print the result with rich.
"""

from __future__ import annotations

import sys

from sqlalchemy.exc import DBAPIError

from newsletter.cli import demo as _demo  # noqa: F401  (registers demo)
from newsletter.cli import dev as _dev  # noqa: F401  (registers dev fake-esp)
from newsletter.cli import editor as _editor  # noqa: F401  (registers draft/check/preview)
from newsletter.cli import report as _report  # noqa: F401  (registers report)
from newsletter.cli import schedule as _schedule  # noqa: F401  (registers schedule)
from newsletter.cli import send as _send  # noqa: F401  (registers send/status/worker)
from newsletter.cli import serve as _serve  # noqa: F401  (registers serve)
from newsletter.cli import subscribers as _subscribers  # noqa: F401  (registers db/subscribers)
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
    except DBAPIError as exc:
        err_console.print(styled("error:", "bold red", f"database error: {exc.orig or exc}"))
        sys.exit(1)
    except OSError as exc:
        err_console.print(styled("error:", "bold red", exc))
        sys.exit(1)
    except KeyboardInterrupt:  # a second Ctrl-C during a send: out now, the ledger says the rest
        err_console.print(styled("interrupted:", "bold red", "`newsletter status` shows where sends stand"))
        sys.exit(130)
