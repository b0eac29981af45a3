"""The ``newsletter`` command. Each sub-module holds the commands of one area and stays thin:
parse options, call one function of content/, render/ or store/, print the result with rich.
"""

from __future__ import annotations

import sys

from newsletter.cli import demo as _demo  # noqa: F401  (registers demo)
from newsletter.cli import editor as _editor  # noqa: F401  (registers draft/check/preview)
from newsletter.cli import subscribers as _subscribers  # noqa: F401  (registers db/subscribers)
from newsletter.cli.app import app

__all__ = ["app", "main"]


def main() -> None:
    """Console-script entry point."""
    sys.exit(app())
