"""The Jinja2 environment of the email and archive renderers.

In the email environment autoescaping is on for every template, and ``finalize`` neutralises slot
markers in editor text, so no field value can inject markup or impersonate a per-recipient slot.
The YAML of a new draft is not HTML: ``content/draft.py`` renders it with a plain environment.
"""

from __future__ import annotations

import os
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from newsletter.render import markdown
from newsletter.render.slots import marker, neutralise_html

# The repository's top-level templates/, shipped inside the package as ``newsletter.templates``
# (pyproject.toml maps it), so an installed wheel renders without a checkout.
TEMPLATES_DIR = Path(str(files("newsletter.templates")))


def templates_dir() -> Path:
    """The package's ``newsletter.templates`` (``templates/`` in a checkout), or ``NEWSLETTER_TEMPLATES``."""
    return Path(os.environ.get("NEWSLETTER_TEMPLATES", TEMPLATES_DIR))


def _finalize(value: Any) -> Any:
    if isinstance(value, Markup) or value is None:
        return "" if value is None else value
    return Markup(neutralise_html(str(escape(value))))


@lru_cache(maxsize=4)
def environment(directory: Path | None = None) -> Environment:
    env = Environment(
        loader=FileSystemLoader(str(directory or templates_dir())),
        autoescape=select_autoescape(default=True, default_for_string=True),
        undefined=StrictUndefined,
        finalize=_finalize,
        trim_blocks=True,
        lstrip_blocks=True,
        auto_reload=False,
    )
    env.filters["md"] = markdown.to_html
    env.filters["md_inline"] = markdown.to_inline_html
    env.filters["web_md"] = markdown.to_web_html
    env.filters["web_md_inline"] = markdown.to_web_inline_html
    env.globals["slot"] = lambda name: Markup(marker(name))
    return env
