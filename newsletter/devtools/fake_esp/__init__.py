"""A local stand-in for the providers' sending APIs (Postmark, SendGrid, Mailgun, SES), with
faults on demand.

It exists so that the delivery engine can be run, tested and benchmarked end to end on
127.0.0.1: the adapter talks real HTTP to it, exactly as it would to the provider, and the fake
can be told to misbehave in every way that changes what the engine must do (rate limits, outages,
slow answers, dropped connections, refused recipients, a revoked token).

One module per provider's API (:mod:`.postmark`, :mod:`.sendgrid`, :mod:`.mailgun`, :mod:`.ses`,
each with its paths, validation, answers, fault wording and record lines), :mod:`.faults` (the
fault settings and script), :mod:`.record` (the JSON-lines record of accepted messages),
:mod:`.handlebars` (SES's template language), and :mod:`.app`, which mounts the APIs with the
control endpoints (``/_faults``, ``/_reset``, ``/_stats``) and runs them. Adding a provider is one
module with an API class (see :class:`~.app.API`) and its entry in :data:`~.app.APIS`.
"""

from __future__ import annotations

from newsletter.devtools.fake_esp.app import API, APIS, FakeESP, RunningFakeESP, running, serve
from newsletter.devtools.fake_esp.faults import Faults
from newsletter.devtools.fake_esp.postmark import compile_mustachio, render_mustachio
from newsletter.devtools.fake_esp.record import RecordBodies

__all__ = [
    "API",
    "APIS",
    "FakeESP",
    "Faults",
    "RecordBodies",
    "RunningFakeESP",
    "compile_mustachio",
    "render_mustachio",
    "running",
    "serve",
]
